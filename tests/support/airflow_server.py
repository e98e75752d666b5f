"""A real Airflow 3.3 API server for tests and benchmarks.

It runs the Airflow API server (the app ``airflow api-server`` serves, core and execution APIs)
from the pipeline project's virtual environment (``dags/.venv``) with SQLite metadata in a
temporary directory, the Simple auth manager with one admin user whose password (generated per
run) sits in a passwords file, and a free loopback port, held from the pick on: uvicorn serves on
the listening socket bound here (``--fd``; through the CLI, which takes no socket, a start that
finds the port taken is made again on a fresh one). Only the API server runs: no scheduler,
no DAG processor, because the operator only talks to the REST API (variables). The process group
is killed on stop, on errors during start, and at interpreter exit.

An empty migrated metadata database is cached per Airflow install (keyed by the installed
distributions) in the temp directory, which saves ``airflow db migrate`` on later runs.

Usable from pytest (see ``tests/integration/operator/conftest.py``) and from plain scripts::

    with AirflowServer() as af:
        af.set_variable("k", "v")
"""

from __future__ import annotations

import atexit
import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.parse
from pathlib import Path
from typing import Any

import requests

from support.ports import PortTaken, bind_refused, listening_socket, start_on_free_port

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_AIRFLOW_BIN = REPO_ROOT / "dags" / ".venv" / "bin" / "airflow"


class AirflowServer:
    """A real Airflow API server (``airflow api-server``) on loopback, with SQLite metadata."""

    def __init__(
        self,
        airflow_bin: str | os.PathLike[str] | None = None,
        *,
        username: str = "retailflow",
        password: str | None = None,
        start_timeout: float = 120.0,
    ) -> None:
        self.airflow_bin = Path(airflow_bin or os.environ.get("RETAILFLOW_AIRFLOW_BIN", DEFAULT_AIRFLOW_BIN))
        self.username = username
        # Generated per run: nothing fixed that looks like a credential lives in the repository.
        self.password = password or os.urandom(12).hex()
        self.start_timeout = start_timeout
        self.port = 0
        self.url = ""
        self.home: Path | None = None
        #: Seconds from start() to the first answered token request (db migrate included).
        self.start_seconds: float | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._log_path: Path | None = None
        self._token: str | None = None
        self._token_at = 0.0
        self._session = requests.Session()

    # -- lifecycle -----------------------------------------------------------------------------

    def env(self) -> dict[str, str]:
        assert self.home is not None
        env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
        env.update(
            AIRFLOW_HOME=str(self.home),
            AIRFLOW__CORE__LOAD_EXAMPLES="False",
            AIRFLOW__CORE__PARALLELISM="4",
            AIRFLOW__CORE__DAGS_FOLDER=str(self.home / "dags"),
            AIRFLOW__CORE__EXECUTION_API_SERVER_URL=f"{self.url}/execution/",
            AIRFLOW__DATABASE__SQL_ALCHEMY_CONN=f"sqlite:///{self.home / 'airflow.db'}",
            AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS=f"{self.username}:admin",
            AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE=str(self.home / "passwords.json"),
            AIRFLOW__API_AUTH__JWT_SECRET=os.urandom(32).hex(),
            AIRFLOW_API_APPS="all",
            AIRFLOW__API__SECRET_KEY=os.urandom(16).hex(),
            AIRFLOW__API__WORKERS="1",
            AIRFLOW__API__BASE_URL=self.url,
            AIRFLOW__LOGGING__BASE_LOG_FOLDER=str(self.home / "logs"),
        )
        return env

    def start(self) -> "AirflowServer":
        if not self.airflow_bin.exists():
            raise FileNotFoundError(f"{self.airflow_bin} not found: run `uv sync --project dags` first")
        began = time.monotonic()
        self.home = Path(tempfile.mkdtemp(prefix="retailflow-airflow-"))
        (self.home / "dags").mkdir()
        (self.home / "passwords.json").write_text(json.dumps({self.username: self.password}))
        self._log_path = self.home / "api-server.log"
        try:
            if self._through_cli():
                start_on_free_port(lambda port: self._launch(began, port))
            else:
                listener = listening_socket()
                self._launch(began, listener.getsockname()[1], listener)
        except BaseException:
            self.stop()
            raise
        self.start_seconds = time.monotonic() - began
        return self

    def _launch(self, began: float, port: int, listener: socket.socket | None = None) -> None:
        """The server on ``port``: on ``listener`` (bound to it, closed here once the server has it) if
        given, else binding the port itself."""
        assert self.home is not None and self._log_path is not None
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        env = self.env()
        try:
            if not (self.home / "airflow.db").exists():
                self._prepare_database(env)
            with open(self._log_path, "ab") as log:
                # A new session makes the server and its uvicorn workers one process group,
                # so stop() can end all of them even if the test run is interrupted.
                self._proc = subprocess.Popen(
                    self._server_command(listener),
                    env=env, cwd=self.home, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                    pass_fds=(listener.fileno(),) if listener is not None else (),
                )
        finally:
            if listener is not None:
                listener.close()
        atexit.register(self.stop)  # also on an interrupted test run
        self._wait_ready(began)

    @staticmethod
    def _through_cli() -> bool:
        return os.environ.get("RETAILFLOW_AIRFLOW_SERVER_MODE") == "cli"

    def _server_command(self, listener: socket.socket | None) -> list[str]:
        """The API server process: the app ``airflow api-server`` serves, started by uvicorn directly on
        ``listener``.

        ``airflow api-server`` with one worker just calls ``uvicorn.run("airflow.api_fastapi.main:app")``
        after the CLI's own start-up, which costs seconds; set RETAILFLOW_AIRFLOW_SERVER_MODE=cli to go
        through the CLI anyway (it binds ``--port`` itself: ``listener`` is None then).
        """
        if listener is None:
            return [str(self.airflow_bin), "api-server", "--host", "127.0.0.1", "--port", str(self.port),
                    "--workers", "1"]
        python = self.airflow_bin.parent / "python"
        return [str(python), "-m", "uvicorn", "airflow.api_fastapi.main:app", "--fd", str(listener.fileno()),
                "--workers", "1", "--no-access-log"]

    def _metadata_cache(self) -> Path:
        """Where a freshly migrated, empty metadata database for this Airflow install is kept.

        ``airflow db migrate`` costs several seconds; an empty migrated database only depends
        on the installed packages, so the key is the list of installed distributions.
        """
        venv = self.airflow_bin.resolve().parent.parent
        dists = sorted(p.name for p in venv.glob("lib/python*/site-packages/*.dist-info"))
        key = hashlib.sha256("\n".join([str(venv), *dists]).encode()).hexdigest()[:16]
        return Path(tempfile.gettempdir()) / "retailflow-airflow-cache" / f"airflow-{key}.db"

    def _prepare_database(self, env: dict[str, str]) -> None:
        assert self.home is not None
        cached = self._metadata_cache()
        if cached.exists():
            shutil.copyfile(cached, self.home / "airflow.db")
            return
        migrate = subprocess.run(
            [str(self.airflow_bin), "db", "migrate"], env=env, cwd=self.home,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=self.start_timeout,
        )
        if migrate.returncode != 0:
            self._cleanup_home()
            raise RuntimeError(f"airflow db migrate failed:\n{migrate.stdout.decode(errors='replace')[-4000:]}")
        cached.parent.mkdir(parents=True, exist_ok=True)
        partial = cached.with_suffix(f".{os.getpid()}.tmp")
        shutil.copyfile(self.home / "airflow.db", partial)
        os.replace(partial, cached)

    def _wait_ready(self, began: float) -> None:
        assert self._proc is not None
        while time.monotonic() - began < self.start_timeout:
            exited = self._proc.poll() is not None
            # Read as soon as it is written: ``airflow api-server`` takes about 10 s more to exit after
            # saying so (its interpreter's final garbage collection), and a SIGTERM ends it at once.
            if bind_refused(self.log_tail(), self.port):
                self._end_process()
                raise PortTaken(self.port, "airflow api-server")
            if exited:
                raise RuntimeError(f"airflow api-server exited with {self._proc.returncode}:\n{self.log_tail()}")
            try:
                # briefly: until the server has bound the port, whatever program holds it may take the
                # request and never answer, and the server's own words are read between the tries
                self.token(refresh=True, timeout=3)
                return
            except (requests.ConnectionError, requests.HTTPError, requests.Timeout):
                time.sleep(0.2)
        raise TimeoutError(f"airflow api-server did not answer in {self.start_timeout} s:\n{self.log_tail()}")

    def log_tail(self, chars: int = 4000) -> str:
        if self._log_path is None or not self._log_path.exists():
            return ""
        return self._log_path.read_text(errors="replace")[-chars:]

    def stop(self) -> None:
        atexit.unregister(self.stop)
        self._end_process()
        self._session.close()
        self._cleanup_home()

    def _end_process(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            for sig, wait in ((signal.SIGTERM, 10), (signal.SIGKILL, 5)):
                try:
                    os.killpg(proc.pid, sig)
                except ProcessLookupError:
                    break
                try:
                    proc.wait(timeout=wait)
                    break
                except subprocess.TimeoutExpired:
                    continue
        if proc is not None:
            # The group may outlive its leader (uvicorn workers): make sure nothing is left.
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    def _cleanup_home(self) -> None:
        if self.home is not None:
            shutil.rmtree(self.home, ignore_errors=True)
            self.home = None

    def __enter__(self) -> "AirflowServer":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    # -- REST helpers ----------------------------------------------------------------------------

    def token(self, refresh: bool = False, timeout: float = 10) -> str:
        """A bearer token for the REST API (``POST /auth/token``), cached for a few minutes."""
        if refresh or self._token is None or time.monotonic() - self._token_at > 300:
            resp = self._session.post(
                f"{self.url}/auth/token", json={"username": self.username, "password": self.password},
                timeout=timeout,
            )
            resp.raise_for_status()
            self._token = resp.json()["access_token"]
            self._token_at = time.monotonic()
        return self._token

    def api(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        """Call ``/api/v2{path}`` with a bearer token."""
        headers = {"Authorization": f"Bearer {self.token()}", **kwargs.pop("headers", {})}
        return self._session.request(method, f"{self.url}/api/v2{path}", headers=headers, timeout=15, **kwargs)

    def get_variable(self, key: str) -> str | None:
        resp = self.api("GET", f"/variables/{urllib.parse.quote(key, safe='')}")
        if resp.status_code == 404:
            return None
        resp.raise_for_status()
        return resp.json()["value"]

    def set_variable(self, key: str, value: str) -> None:
        """Create or overwrite one variable (bulk upsert, as the REST API offers it)."""
        resp = self.api("PATCH", "/variables", json={"actions": [{
            "action": "create", "action_on_existence": "overwrite",
            "entities": [{"key": key, "value": value}],
        }]})
        resp.raise_for_status()
        errors = resp.json().get("create", {}).get("errors") or []
        if errors:
            raise RuntimeError(f"setting variable {key!r} failed: {errors}")

    def delete_variable(self, key: str) -> None:
        """Delete one variable; a missing one is not an error."""
        resp = self.api("DELETE", f"/variables/{urllib.parse.quote(key, safe='')}")
        if resp.status_code != 404:
            resp.raise_for_status()

    def variables(self) -> dict[str, str]:
        result: dict[str, str] = {}
        offset = 0
        while True:
            resp = self.api("GET", "/variables", params={"limit": 100, "offset": offset})
            resp.raise_for_status()
            page = resp.json()
            for item in page["variables"]:
                result[item["key"]] = item["value"]
            offset += len(page["variables"])
            if not page["variables"] or offset >= page["total_entries"]:
                return result
