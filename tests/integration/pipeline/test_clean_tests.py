"""`make clean-tests` (hack/clean-tests.sh) on the real servers: it asks first, then drops the
databases a killed test or benchmark left behind, and keeps the ones in use and every other database.

The databases it may drop are narrowed to this test's own tag (``MATCH``), so that a suite running
beside it keeps its databases."""

from __future__ import annotations

import os
import subprocess
import uuid
from pathlib import Path

import pytest
from conftest import mysql_connect, pg_connect
from support.databases import env_url, with_database

pytestmark = pytest.mark.integration

CLEAN = Path(__file__).resolve().parents[3] / "hack" / "clean-tests.sh"


def clean(**env: str) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items() if k not in ("CONFIRM", "MATCH")}
    base.update(env)
    return subprocess.run([str(CLEAN)], env=base, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                          timeout=120)


def test_clean_tests_drops_what_killed_runs_left_and_keeps_the_rest():
    mysql_base, pg_base = env_url("RETAILFLOW_MYSQL_URL"), env_url("RETAILFLOW_WAREHOUSE_URL")
    tag = uuid.uuid4().hex[:10]
    mysql_left, mysql_busy = f"retail_test_{tag}", f"retail_dags_{tag}"
    pg_left, pg_busy, pg_other = f"warehouse_test_bench_{tag}", f"airflow_ui_{tag}", f"warehouse_mine_{tag}"
    mysql_admin, pg_admin = mysql_connect(mysql_base, database=""), pg_connect(pg_base)
    held = []

    def there() -> tuple[set[str], set[str]]:
        with mysql_admin.cursor() as cur:
            cur.execute(f"show databases like '%{tag}'")
            mysql_dbs = {r[0] for r in cur.fetchall()}
        pg_dbs = {r[0] for r in pg_admin.execute("select datname from pg_database where datname like %s",
                                                (f"%{tag}",)).fetchall()}
        return mysql_dbs, pg_dbs

    try:
        with mysql_admin.cursor() as cur:
            for name in (mysql_left, mysql_busy):
                cur.execute(f"create database `{name}`")
            cur.execute(f"create table `{mysql_left}`.t (id int primary key)")
        for name in (pg_left, pg_busy, pg_other):
            pg_admin.execute(f'create database "{name}"')
        # a run still going: connected to its databases
        held += [mysql_connect(with_database(mysql_base, mysql_busy)), pg_connect(with_database(pg_base, pg_busy))]

        asked = clean(MATCH=tag)  # no terminal, no CONFIRM: the list, then nothing dropped
        assert asked.returncode != 0 and "not confirmed" in asked.stderr
        assert mysql_left in asked.stdout and pg_left in asked.stdout and pg_other not in asked.stdout
        assert there() == ({mysql_left, mysql_busy}, {pg_left, pg_busy, pg_other})

        done = clean(MATCH=tag, CONFIRM="yes")
        assert done.returncode == 0, done.stdout + done.stderr
        assert there() == ({mysql_busy}, {pg_busy, pg_other})
        assert f"dropped MySQL {mysql_left}" in done.stdout and f"dropped PostgreSQL {pg_left}" in done.stdout
        assert f"kept MySQL {mysql_busy}" in done.stdout and f"kept PostgreSQL {pg_busy}" in done.stdout

        again = clean(MATCH=tag, CONFIRM="yes")  # what is left is in use or not a test's: nothing to do
        assert again.returncode == 0 and "no test or benchmark database left behind" in again.stdout
    finally:
        for conn in held:
            conn.close()
        with mysql_admin.cursor() as cur:
            for name in (mysql_left, mysql_busy):
                cur.execute(f"drop database if exists `{name}`")
        mysql_admin.close()
        for name in (pg_left, pg_busy, pg_other):
            pg_admin.execute(f'drop database if exists "{name}" with (force)')
        pg_admin.close()
