"""`make airflow`'s local Airflow (``hack/airflow.sh``: API server, scheduler, DAG processor and
triggerer), started by a test or a benchmark on a port of its own.

The script checks its port, migrates the metadata database (seconds, more on a fresh one), then starts
the API server, which binds the port itself: another program may take it in between. The script then
stops what it started and says so (``port N is taken by another program``), and ``start_local_airflow``
runs it again on a fresh port (``support.ports``).
"""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path

from support.ports import PortTaken, start_on_free_port

AIRFLOW_SH = Path(__file__).resolve().parents[2] / "hack" / "airflow.sh"


def start_local_airflow(env: dict[str, str], *, timeout: float = 900, echo: bool = False,
                        attempts: list[tuple[int, subprocess.CompletedProcess]] | None = None,
                        ) -> tuple[int, subprocess.CompletedProcess]:
    """``hack/airflow.sh`` with ``env`` and ``RETAILFLOW_AIRFLOW_PORT`` a free port: (that port, the script's
    result, its output captured; stderr merged into stdout). ``echo``: each line is also written to this
    process's stdout as it comes (a benchmark's progress). ``attempts``: each run of the script is appended
    to it as (port, result), a run that found its port taken included. Stop it with ``hack/stop.sh`` and
    the same ``RETAILFLOW_RUN_DIR``."""

    def start(port: int) -> tuple[int, subprocess.CompletedProcess]:
        args = [str(AIRFLOW_SH)]
        proc = subprocess.Popen(args, env=env | {"RETAILFLOW_AIRFLOW_PORT": str(port)}, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True)
        killer = threading.Timer(timeout, proc.kill)
        killer.start()
        lines = []
        try:
            for line in proc.stdout:  # the script's daemons write to their own logs: EOF comes as it exits
                lines.append(line)
                if echo:
                    sys.stdout.write(line)
                    sys.stdout.flush()
            code = proc.wait()
        finally:
            killer.cancel()
            proc.stdout.close()
        if code < 0:
            raise subprocess.TimeoutExpired(args, timeout, output="".join(lines))
        done = subprocess.CompletedProcess(args, code, "".join(lines), "")
        if attempts is not None:
            attempts.append((port, done))
        if code != 0 and f"airflow: error: port {port} is taken by another program" in done.stdout:
            raise PortTaken(port, "make airflow")
        return port, done

    return start_on_free_port(start)
