"""The scheduler (with the LocalExecutor) preloads dbt and Cosmos for the task processes it forks and has
their supervisors see a task's exit when it happens, the triggerer the dbt sensors' trigger; nothing
else preloads."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap


def run_as(command: str, executor: str = "LocalExecutor") -> str:
    code = textwrap.dedent(f"""
        import sys
        sys.argv = ["airflow", "{command}"]
        from retailflow_pipeline.preload import preload
        loaded = preload()
        supervisor = sys.modules.get("airflow.sdk.execution_time.supervisor")
        service = supervisor and supervisor.ActivitySubprocess.__dict__.get("_service_subprocess")
        print(sorted(loaded), "dbt.cli.main" in sys.modules, "retailflow_pipeline.watcher" in sys.modules,
              getattr(service, "__name__", None) == "service_or_wait")
    """)
    env = {**os.environ, "AIRFLOW__CORE__EXECUTOR": executor}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, env=env)
    assert out.returncode == 0, out.stderr[-2000:]
    return out.stdout.strip().splitlines()[-1]


def test_the_scheduler_preloads_dbt_and_cosmos_and_patches_task_supervisors():
    line = run_as("scheduler")
    assert line.endswith("True False True") and "'cosmos'" in line and "'dbt.cli.main'" in line


def test_a_scheduler_that_forks_no_tasks_preloads_nothing():
    assert run_as("scheduler", executor="KubernetesExecutor") == "[] False False False"


def test_the_triggerer_preloads_the_dbt_sensors_trigger_only():
    assert run_as("triggerer") == "['retailflow_pipeline.watcher'] False True False"


def test_other_airflow_processes_do_not():
    assert run_as("api-server") == "[] False False False"


def supervised_exit(patched: bool) -> tuple[bool, int, float]:
    """Airflow's own task supervisor (``ActivitySubprocess``) watching a real process whose pipes are
    all closed already, as when a task's process is exiting: (patch applied, exit code, seconds until
    the supervisor saw the exit, its select() allowed 3 s)."""
    code = textwrap.dedent(f"""
        import socket, subprocess, time, uuid
        import psutil, structlog
        from airflow.sdk.execution_time.supervisor import ActivitySubprocess, PsutilTracker
        from retailflow_pipeline.preload import reap_exited_tasks
        patched = reap_exited_tasks() if {patched} else False
        child = subprocess.Popen(["sleep", "0.2"])
        ours, theirs = socket.socketpair()
        watched = ActivitySubprocess(id=uuid.uuid4(), pid=child.pid, stdin=ours, client=None,
                                     process=PsutilTracker(psutil.Process(child.pid)),
                                     process_log=structlog.get_logger())
        began = time.monotonic()
        exit_code = watched._service_subprocess(max_wait_time=3.0)
        print(patched, exit_code, round(time.monotonic() - began, 2))
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    patched_, exit_code, seconds = out.stdout.strip().splitlines()[-1].split()
    return patched_ == "True", int(exit_code), float(seconds)


def test_a_task_supervisor_sees_its_process_exit_when_it_happens():
    """A task reported skipped or failed ends in Airflow when its supervisor has seen the process exit;
    without the scheduler's patch that came up to one select() timeout (1 s here) after it."""
    patched, exit_code, seconds = supervised_exit(patched=True)
    assert patched and exit_code == 0
    assert seconds < 1.5, f"the exit was seen {seconds} s after the wait began (the process lived 0.2 s)"
    # the same supervisor without the patch waits out its select() timeout: this check can fail
    unpatched, exit_code, seconds = supervised_exit(patched=False)
    assert not unpatched and exit_code == 0 and seconds >= 2.9
