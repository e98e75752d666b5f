"""`make reset` (hack/reset.sh) against throwaway databases: it asks first, then drops RetailFlow's own
tables, schemas and files, and nothing else."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from conftest import mysql_connect, pg_connect
from ingest_support import seed

pytestmark = pytest.mark.integration

RESET = Path(__file__).resolve().parents[3] / "hack" / "reset.sh"


def reset(mysql_url: str, warehouse_url: str, home: Path, **env: str) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items() if not k.startswith("RETAILFLOW_") and k != "CONFIRM"}
    base.update(RETAILFLOW_MYSQL_URL=mysql_url, RETAILFLOW_WAREHOUSE_URL=warehouse_url, RETAILFLOW_HOME=str(home),
                RETAILFLOW_ENV_FILE=str(home / "no-env-file"), **env)
    return subprocess.run([str(RESET)], env=base, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                          timeout=120)


def mysql_tables(url: str) -> list[str]:
    with mysql_connect(url) as conn, conn.cursor() as cur:
        cur.execute("select table_name from information_schema.tables where table_schema = database()")
        return sorted(r[0] for r in cur.fetchall())


def schemas(url: str) -> set[str]:
    with pg_connect(url) as conn:
        return {r[0] for r in conn.execute("select nspname from pg_namespace where nspname not like 'pg\\_%'"
                                           " and nspname <> 'information_schema'").fetchall()}


def test_reset_asks_then_drops_only_retailflows_own_data(mysql_url, warehouse_url, tmp_path):
    seed(mysql_url)
    with mysql_connect(mysql_url) as conn, conn.cursor() as cur:
        cur.execute("create table orders__new like orders")
        cur.execute("create table not_ours (id int primary key)")
    with pg_connect(warehouse_url) as conn:
        for schema in ("raw", "staging", "marts", "analyst"):
            conn.execute(f"create schema {schema}")
            conn.execute(f"create table {schema}.t (id int)")
    for path in (".lake/raw/orders/part-0.parquet", "dbt/target/manifest.json", ".airflow/logs/run.log",
                 "dbt/models/keep.sql", ".airflow/airflow.cfg"):
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).write_text("x")

    refused = reset(mysql_url, warehouse_url, tmp_path)
    assert refused.returncode == 1 and "not confirmed" in refused.stderr
    assert "orders" in mysql_tables(mysql_url) and "raw" in schemas(warehouse_url)
    assert (tmp_path / ".lake").exists()

    done = reset(mysql_url, warehouse_url, tmp_path, CONFIRM="yes")
    assert done.returncode == 0, done.stderr
    assert "schemas raw, staging, marts" in done.stdout and "@" in done.stdout
    assert mysql_url.split("//")[1].split("@")[0] not in done.stdout, "the password is never printed"
    assert mysql_tables(mysql_url) == ["not_ours"]
    assert schemas(warehouse_url) & {"raw", "staging", "marts", "analyst"} == {"analyst"}
    assert not (tmp_path / ".lake").exists() and not (tmp_path / "dbt" / "target").exists()
    assert not (tmp_path / ".airflow" / "logs").exists()
    assert (tmp_path / "dbt" / "models" / "keep.sql").exists() and (tmp_path / ".airflow" / "airflow.cfg").exists()
