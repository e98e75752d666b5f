"""Fixtures of the DAG suites: an Airflow metadata database for ``dag.test()``, seeded throwaway
databases, and the DAGs parsed from ``dags/``.

Airflow reads its configuration when it is first imported, so this module sets it (in
``os.environ``) before anything imports Airflow: a SQLite metadata database in a temporary
``AIRFLOW_HOME`` (migrated once per Airflow install and cached, as ``support.airflow_server`` does),
no examples, serve-logs on free ports, Cosmos telemetry off, dbt tasks one process per node
(``RETAILFLOW_DBT_EXECUTION_MODE=local``: ``dag.test()`` runs one task at a time, so Cosmos's
watcher sensors would wait for a producer that never starts), and a dbt manifest parsed for the
session.

Fixtures:

- ``pipeline_dbs`` (module): ``(mysql_url, warehouse_url)`` of a fresh MySQL database seeded with a
  small history by ``retailflow-generator seed`` and an empty warehouse; dropped after the module.
  The Airflow connections ``retailflow_mysql`` / ``retailflow_warehouse`` point at them
  (``AIRFLOW_CONN_*``) while the module runs.
- ``dagbag`` (session): the DAGs of ``dags/``, parsed once.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from support.databases import drop_pg_database, throwaway_name, throwaway_tag
from support.ports import free_port

REPO_ROOT = Path(__file__).resolve().parents[3]
DAGS_DIR = REPO_ROOT / "dags"
GENERATOR = Path(sys.executable).with_name("retailflow-generator")
#: the small history every module seeds (about 7,000 order lines: seconds to seed and ingest)
SEED_ARGS = ["--customers", "400", "--products", "80", "--orders", "3000", "--start", "2024-01-01",
             "--end", "2025-12-31", "--seed", "7"]


# What is configured is the tests' choice, not .env.local's: a local Superset or OpenMetadata that
# `make dashboards` recorded there must not turn the skipped steps into calls to it.
for _key in [k for k in os.environ if k.startswith(("RETAILFLOW_SUPERSET_", "RETAILFLOW_OPENMETADATA_"))]:
    del os.environ[_key]

_HOME = Path(tempfile.mkdtemp(prefix="retailflow-dags-test-"))
os.environ.update({
    "AIRFLOW_HOME": str(_HOME),
    "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{_HOME / 'airflow.db'}",
    "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
    "AIRFLOW__CORE__DAGS_FOLDER": str(DAGS_DIR),
    "AIRFLOW__CORE__PARALLELISM": "4",
    # no log server is started here (dag.test() runs tasks in this process): free ports all the same, so
    # one that starts by mistake does not take another Airflow's
    "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(free_port()),
    "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(free_port()),
    "AIRFLOW__COSMOS__ENABLE_TELEMETRY": "False",
    "AIRFLOW__COSMOS__CACHE_DIR": str(_HOME / "cosmos"),
    "DO_NOT_TRACK": "1",
    "RETAILFLOW_DBT_EXECUTION_MODE": "local",
    "RETAILFLOW_DBT_MANIFEST": str(_HOME / "dbt-target" / "manifest.json"),
    "RETAILFLOW_AIRBYTE_POKE_SECONDS": "1",
})


def _prepare_airflow() -> None:
    from support.airflow_server import AirflowServer

    server = AirflowServer()
    server.home = _HOME
    server._prepare_database({k: v for k, v in os.environ.items()})
    server.home = None  # the temporary home is this module's, not the server's to delete


def _parse_manifest() -> None:
    from retailflow_pipeline import dbt

    # dbt parse needs a profile's variables, not a server: any well-formed URL does.
    code = dbt.run(["parse", "--quiet"], warehouse_url="postgresql://parse@127.0.0.1:1/parse",
                   target_path=_HOME / "dbt-target", log_path=_HOME / "dbt-logs")
    assert code == 0, "dbt parse failed"


_prepare_airflow()
_parse_manifest()


def pytest_sessionfinish(session, exitstatus):
    shutil.rmtree(_HOME, ignore_errors=True)


@pytest.fixture(scope="session")
def dagbag():
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(DAGS_DIR))


def _env_url(name: str) -> str:
    url = os.environ.get(name)
    if not url:
        pytest.skip(f"{name} is not set: run `make services` and the tests through `hack/with-env`")
    return url


@pytest.fixture(scope="module")
def pipeline_dbs() -> Iterator[tuple[str, str]]:
    """A seeded MySQL database and an empty warehouse, wired as the pipeline's Airflow connections."""
    from integration.pipeline.conftest import _with_database, mysql_connect, pg_connect

    base_my, base_pg = _env_url("RETAILFLOW_MYSQL_URL"), _env_url("RETAILFLOW_WAREHOUSE_URL")
    tag = throwaway_tag()
    my_name, pg_name = throwaway_name("retail", "dags", tag), throwaway_name("warehouse", "dags", tag)
    admin = mysql_connect(base_my, database="")
    with admin.cursor() as cur:
        cur.execute(f"create database `{my_name}` character set utf8mb4")
    with pg_connect(base_pg) as pg:
        pg.execute(f'create database "{pg_name}"')
    mysql_url, warehouse_url = _with_database(base_my, my_name), _with_database(base_pg, pg_name)
    saved = {k: os.environ.get(k) for k in ("AIRFLOW_CONN_RETAILFLOW_MYSQL", "AIRFLOW_CONN_RETAILFLOW_WAREHOUSE")}
    try:
        # the URL (with its password) through the environment: the generator refuses one in argv
        subprocess.run([str(GENERATOR), "seed", *SEED_ARGS], check=True, stdout=subprocess.DEVNULL,
                       env={**os.environ, "RETAILFLOW_MYSQL_URL": mysql_url})
        os.environ["AIRFLOW_CONN_RETAILFLOW_MYSQL"] = mysql_url
        os.environ["AIRFLOW_CONN_RETAILFLOW_WAREHOUSE"] = warehouse_url
        yield mysql_url, warehouse_url
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        with admin.cursor() as cur:
            cur.execute(f"drop database if exists `{my_name}`")
        admin.close()
        drop_pg_database(base_pg, pg_name)
