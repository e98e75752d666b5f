"""A real Superset 6.1 and a real warehouse for the dashboard tests, both thrown away afterwards.

Fixtures:

- ``stack`` (session): a ``Stack`` with
  - ``warehouse_url``: a fresh PostgreSQL database ``warehouse_test_<hex>`` holding the marts,
    built the way ``make demo`` builds them (the generator seeds a fresh MySQL database
    ``retail_test_<hex>``, ``retailflow-ingest`` loads it, ``python -m retailflow_pipeline.dbt build``
    builds the models), each step in its own project environment;
  - ``superset``: a Superset started here with gunicorn (two workers, as in the chart) on a free
    port held from the pick to gunicorn's start (``Gunicorn``), its metadata in a fresh PostgreSQL
    database ``superset_test_<hex>``, configured by the same ``superset_config.py`` and admin script
    the local Superset and the chart use, with a generated admin password;
  - ``env``: the settings ``retailflow_pipeline.dashboards.refresh`` reads.
  The two are prepared in parallel (Superset's migrations take most of the time).
- ``api``: a logged-in ``SupersetClient`` on that Superset.
- ``imported`` (session): the summary of the first ``refresh()`` of the bundle.

Credentials come from ``RETAILFLOW_MYSQL_URL`` and ``RETAILFLOW_WAREHOUSE_URL`` (``hack/with-env``
exports them from ``.env.local``); the ``warehouse`` role has CREATEDB and the ``retail`` user may
create ``retail_%`` databases. The suite is skipped with a clear reason when they are absent.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote, urlsplit, urlunsplit

import psycopg2
import pymysql
import pytest
import requests

REPO_ROOT = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(REPO_ROOT / "dags"))  # retailflow_pipeline.dashboards: requests and yaml only

from retailflow_pipeline import dashboards  # noqa: E402
from support.databases import drop_pg_database, throwaway_name, throwaway_tag  # noqa: E402
from support.ports import listening_socket, socket_activation  # noqa: E402

SUPERSET_FILES = REPO_ROOT / "charts" / "retailflow" / "files" / "superset"
VENV_BIN = Path(sys.executable).parent  # the Superset environment this suite runs in
UV = os.environ.get("UV") or str(REPO_ROOT / ".tools" / "bin" / "uv")
SCHEMA_SQL = REPO_ROOT / "generator" / "retailflow_generator" / "schema.sql"
#: Small enough to seed, ingest and build in seconds; large enough for every chart to have rows.
SEED_ARGS = ["--customers", "600", "--products", "80", "--orders", "5000",
             "--start", "2024-07-01", "--end", "2025-09-30", "--seed", "7"]


def _env_url(name: str) -> str:
    url = os.environ.get(name)
    if not url:
        pytest.skip(f"{name} is not set: run `make services` and the tests through `hack/with-env`")
    return url


def with_database(url: str, database: str, scheme: str | None = None) -> str:
    parts = urlsplit(url)
    return urlunsplit((scheme or parts.scheme, parts.netloc, "/" + database, parts.query, parts.fragment))


def pg(url: str):
    conn = psycopg2.connect(url)
    conn.autocommit = True
    return conn


def query(url: str, sql: str, params: tuple = ()) -> list[tuple]:
    conn = pg(url)
    try:
        with conn.cursor() as cur:
            cur.execute(sql, params)
            return cur.fetchall()
    finally:
        conn.close()


def _mysql(url: str, database: str | None = None):
    parts = urlsplit(url)
    return pymysql.connect(host=parts.hostname or "127.0.0.1", port=parts.port or 3306,
                           user=unquote(parts.username or ""), password=unquote(parts.password or ""),
                           database=database, autocommit=True)


def run(cmd: list[str], env: dict[str, str], log: Path, what: str) -> None:
    with log.open("a") as out:
        out.write(f"\n$ {what}\n")
        out.flush()
        rc = subprocess.call(cmd, env=env, stdout=out, stderr=subprocess.STDOUT, cwd=REPO_ROOT)
    if rc != 0:
        tail = "\n".join(log.read_text().splitlines()[-40:])
        raise RuntimeError(f"{what} failed (rc {rc}); last lines of {log}:\n{tail}")


@dataclass
class Superset:
    url: str
    username: str
    password: str
    process: subprocess.Popen
    log: Path
    workers: int


@dataclass
class Stack:
    warehouse_url: str
    superset: Superset
    env: dict[str, str] = field(default_factory=dict)
    workdir: Path = Path(".")


class Gunicorn:
    """gunicorn on a loopback port held from the pick (here) to its start (``start``), which may be minutes
    apart (Superset's migrations run in between): the listening socket is bound here and handed to
    gunicorn by socket activation, so no other program can take the port meanwhile."""

    def __init__(self) -> None:
        self.listener = listening_socket()
        self.port = self.listener.getsockname()[1]

    def start(self, app: str, *, workers: int, env: dict[str, str], cwd: Path, log: Path) -> subprocess.Popen:
        """gunicorn serving ``app`` (gthread workers, as in the chart), in its own session. No control socket
        (nothing here uses ``gunicornc``): its default path, ``$XDG_RUNTIME_DIR/gunicorn.ctl`` or
        ``~/.gunicorn/gunicorn.ctl``, is one for every gunicorn of the user, and each one started takes it
        over from the last (``make test`` runs this suite and the workloads' Superset side by side)."""
        argv = [str(VENV_BIN / "gunicorn"), "--workers", str(workers), "--worker-class", "gthread", "--threads", "4",
                "--timeout", "120", "--no-control-socket", "--bind", f"127.0.0.1:{self.port}", app]
        try:
            return subprocess.Popen(socket_activation(argv, self.listener), env=env, cwd=cwd, stdout=log.open("a"),
                                    stderr=subprocess.STDOUT, start_new_session=True,
                                    pass_fds=(self.listener.fileno(),))
        finally:
            self.listener.close()  # gunicorn has its own copy


class _SupersetStarter:
    """Superset's migrations, `superset init` and the admin (superset_setup.py setup), run in the
    background so the warehouse can be built meanwhile; then gunicorn, on the port picked first."""

    def __init__(self, metadata_url: str, workdir: Path) -> None:
        self.server = Gunicorn()
        self.port = self.server.port
        self.log = workdir / "superset.log"
        self.username = "admin"
        self.password = secrets.token_hex(12)
        self.env = {
            **os.environ,
            "PATH": f"{VENV_BIN}:{os.environ.get('PATH', '')}",
            "SUPERSET_CONFIG_PATH": str(SUPERSET_FILES / "superset_config.py"),
            "SUPERSET_SECRET_KEY": secrets.token_urlsafe(32),
            "SUPERSET_DATABASE_URI": metadata_url,
            "FLASK_APP": "superset",
            "RETAILFLOW_SUPERSET_USERNAME": self.username,
            "RETAILFLOW_SUPERSET_PASSWORD": self.password,
        }
        # db upgrade, init and the admin, as the chart's Superset pods (setup init container) and hack/superset.sh run them
        self.setup = subprocess.Popen([sys.executable, str(SUPERSET_FILES / "superset_setup.py"), "setup"],
                                      env=self.env, cwd=workdir, stdout=self.log.open("w"), stderr=subprocess.STDOUT)

    def start(self) -> Superset:
        if self.setup.wait() != 0:
            self.server.listener.close()
            raise RuntimeError("Superset setup failed:\n" + "\n".join(self.log.read_text().splitlines()[-40:]))
        workers = 2
        process = self.server.start("superset.app:create_app()", workers=workers, env=self.env, cwd=self.log.parent,
                                    log=self.log)
        url = f"http://127.0.0.1:{self.port}"
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError("gunicorn exited:\n" + "\n".join(self.log.read_text().splitlines()[-40:]))
            try:
                if requests.get(f"{url}/health", timeout=3).status_code == 200:
                    return Superset(url, self.username, self.password, process, self.log, workers)
            except requests.RequestException:
                pass
            time.sleep(1)
        raise RuntimeError(f"Superset did not answer /health within 180 s (see {self.log})")


def _build_warehouse(mysql_base: str, warehouse_url: str, mysql_db: str, log: Path) -> None:
    conn = _mysql(mysql_base)
    with conn.cursor() as cur:
        cur.execute(f"create database `{mysql_db}` character set utf8mb4")
    conn.close()
    conn = _mysql(mysql_base, mysql_db)
    text = "\n".join(l for l in SCHEMA_SQL.read_text().splitlines() if not l.lstrip().startswith("--"))
    with conn.cursor() as cur:
        for stmt in (s.strip() for s in text.split(";")):
            if stmt:
                cur.execute(stmt)
    conn.close()
    mysql_url = with_database(mysql_base, mysql_db)
    env = {**os.environ, "UV_PYTHON_DOWNLOADS": "never"}
    # the URLs carry passwords: through the environment, never argv (both commands refuse them there)
    run([UV, "run", "--quiet", "--project", "generator", "retailflow-generator", "seed", *SEED_ARGS,
         "--truncate"], {**env, "RETAILFLOW_MYSQL_URL": mysql_url}, log, "retailflow-generator seed")
    run([UV, "run", "--quiet", "--project", "dags", "retailflow-ingest", "--no-lake", "--full-refresh"],
        {**env, "RETAILFLOW_MYSQL_URL": mysql_url, "RETAILFLOW_WAREHOUSE_URL": warehouse_url}, log, "retailflow-ingest")
    run([UV, "run", "--quiet", "--project", "dags", "python", "-m", "retailflow_pipeline.dbt", "build",
         "--target-path", str(log.parent / "dbt-target")],
        {**env, "RETAILFLOW_WAREHOUSE_URL": warehouse_url}, log, "dbt build")


@pytest.fixture(scope="session")
def stack() -> Iterator[Stack]:
    mysql_base = _env_url("RETAILFLOW_MYSQL_URL")
    pg_base = _env_url("RETAILFLOW_WAREHOUSE_URL")
    if not Path("/usr/bin/chromium").exists() or not Path("/usr/bin/chromedriver").exists():
        pytest.skip("chromium and chromium-driver are not installed: run `make services` (apt, as root)")
    tag = throwaway_tag()
    warehouse_db, metadata_db, mysql_db = (throwaway_name(service, "test", tag)
                                           for service in ("warehouse", "superset", "retail"))
    workdir = Path(tempfile.mkdtemp(prefix="retailflow-dashboards-"))
    conn = pg(pg_base)
    with conn.cursor() as cur:
        cur.execute(f'create database "{warehouse_db}"')
        cur.execute(f'create database "{metadata_db}"')
    conn.close()
    superset = None
    try:
        starter = _SupersetStarter(with_database(pg_base, metadata_db, "postgresql+psycopg2"), workdir)
        try:
            warehouse_url = with_database(pg_base, warehouse_db)
            _build_warehouse(mysql_base, warehouse_url, mysql_db, workdir / "warehouse.log")
        except BaseException:
            starter.setup.kill()
            starter.server.listener.close()
            raise
        superset = starter.start()
        env = {
            "RETAILFLOW_SUPERSET_URL": superset.url,
            "RETAILFLOW_SUPERSET_USERNAME": superset.username,
            "RETAILFLOW_SUPERSET_PASSWORD": superset.password,
            "RETAILFLOW_WAREHOUSE_URL": warehouse_url,
        }
        yield Stack(warehouse_url, superset, env, workdir)
    finally:
        if superset is not None:
            os.killpg(superset.process.pid, signal.SIGTERM)
            try:
                superset.process.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(superset.process.pid, signal.SIGKILL)
                superset.process.wait()
        drop_pg_database(pg_base, warehouse_db)
        drop_pg_database(pg_base, metadata_db)
        conn = _mysql(mysql_base)
        with conn.cursor() as cur:
            cur.execute(f"drop database if exists `{mysql_db}`")
        conn.close()
        shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture(scope="session")
def imported(stack: Stack) -> dict:
    return dashboards.refresh(stack.env)


@pytest.fixture
def api(stack: Stack, imported) -> dashboards.SupersetClient:
    return dashboards.SupersetClient(stack.superset.url, stack.superset.username, stack.superset.password)
