"""`make clean-tests` (hack/clean-tests.sh) on the real servers: it asks first, refuses while a test or
benchmark runs, then drops the databases a killed test or benchmark left behind, and keeps the ones in
use and every other database.

The databases it may drop are narrowed to this test's own (``MATCH``), so that a suite running beside
it keeps its databases. The one call without ``MATCH`` (the refusal while a benchmark-like process
runs) has no ``CONFIRM`` either: the script looks for running tests before it asks, so the refusal is
checked all the same, and were that look broken the call would list the databases and drop none.

Run as root, it also drops what a killed workloads run leaves: its user (a PostgreSQL role and a MariaDB
user, made by the servers' administrators) with the PostgreSQL databases that role owns."""

from __future__ import annotations

import os
import random
import re
import secrets
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit

import pymysql
import pytest
from conftest import mysql_connect, pg_connect
from support.databases import env_url, throwaway_name, throwaway_tag, throwaway_user, with_database

pytestmark = pytest.mark.integration

CLEAN = Path(__file__).resolve().parents[3] / "hack" / "clean-tests.sh"


def clean(**env: str) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items() if k not in ("CONFIRM", "MATCH")}
    base.update(env)
    return subprocess.run([str(CLEAN)], env=base, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                          timeout=120)


def test_clean_tests_drops_what_killed_runs_left_and_keeps_the_rest():
    mysql_base, pg_base = env_url("RETAILFLOW_MYSQL_URL"), env_url("RETAILFLOW_WAREHOUSE_URL")
    tag, digits = throwaway_tag(), str(random.randrange(10**7, 10**8))
    match = f"{tag}|{digits}"
    mysql_left, mysql_busy, mysql_other = f"retail_test_{tag}", f"retail_dags_{tag}", f"retail_mine_{tag}"
    pg_left, pg_busy, pg_other = f"warehouse_test_bench_{tag}", f"airflow_ui_{tag}", f"warehouse_mine_{tag}"
    pg_dated = f"warehouse_test_{digits}"  # a user's database named with a date: not a test's tag
    mysql_all, pg_all = (mysql_left, mysql_busy, mysql_other), (pg_left, pg_busy, pg_other, pg_dated)
    mysql_admin, pg_admin = mysql_connect(mysql_base, database=""), pg_connect(pg_base)
    held = []

    def there() -> tuple[set[str], set[str]]:
        with mysql_admin.cursor() as cur:
            cur.execute("show databases")
            mysql_dbs = {r[0] for r in cur.fetchall() if re.search(match, r[0])}
        pg_dbs = {r[0] for r in pg_admin.execute("select datname from pg_database").fetchall() if re.search(match, r[0])}
        return mysql_dbs, pg_dbs

    try:
        with mysql_admin.cursor() as cur:
            for name in mysql_all:
                cur.execute(f"create database `{name}`")
            cur.execute(f"create table `{mysql_left}`.t (id int primary key)")
        for name in pg_all:
            pg_admin.execute(f'create database "{name}"')
        # a run still going: connected to its databases
        held += [mysql_connect(with_database(mysql_base, mysql_busy)), pg_connect(with_database(pg_base, pg_busy))]
        everything = (set(mysql_all), set(pg_all))

        asked = clean(MATCH=match)  # no terminal, no CONFIRM: the list, then nothing dropped
        assert asked.returncode != 0 and "not confirmed" in asked.stderr
        assert mysql_left in asked.stdout and pg_left in asked.stdout
        assert not {mysql_other, pg_other, pg_dated} & set(asked.stdout.split())
        assert there() == everything

        # while a benchmark runs (its databases may sit without a session), nothing is dropped: refused
        # before the question (hence no CONFIRM here: unnarrowed, a broken refusal would drop every
        # idle test database on the servers, other suites' too; without CONFIRM it drops none)
        bench = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", "tests/bench/bench_fake.py"])
        try:
            refused = clean()
        finally:
            bench.kill()
            bench.wait()
        assert refused.returncode != 0 and "a test or benchmark is running" in refused.stderr, refused.stderr
        assert "not confirmed" not in refused.stderr, refused.stderr
        assert f"{bench.pid} " in refused.stderr
        assert there() == everything

        done = clean(MATCH=match, CONFIRM="yes")
        assert done.returncode == 0, done.stdout + done.stderr
        assert there() == ({mysql_busy, mysql_other}, {pg_busy, pg_other, pg_dated})
        assert f"dropped MySQL {mysql_left}" in done.stdout and f"dropped PostgreSQL {pg_left}" in done.stdout
        assert f"kept MySQL {mysql_busy}" in done.stdout and f"kept PostgreSQL {pg_busy}" in done.stdout

        again = clean(MATCH=match, CONFIRM="yes")  # what is left is in use or not a test's: nothing to do
        assert again.returncode == 0 and "no test or benchmark database left behind" in again.stdout
    finally:
        for conn in held:
            conn.close()
        with mysql_admin.cursor() as cur:
            for name in mysql_all:
                cur.execute(f"drop database if exists `{name}`")
        mysql_admin.close()
        for name in pg_all:
            pg_admin.execute(f'drop database if exists "{name}" with (force)')
        pg_admin.close()


def as_administrator(server: str, sql: str) -> list[str]:
    """SQL as the server's administrator over its local socket, read from standard input (it may hold a
    password), as the workloads suite makes its users."""
    argv = (["mysql", "--batch", "--skip-column-names"] if server == "mysql"
            else ["runuser", "-u", "postgres", "--", "psql", "-X", "-v", "ON_ERROR_STOP=1", "-At", "postgres"])
    done = subprocess.run(argv, input=sql, capture_output=True, text=True, check=False, cwd="/", timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout.split()


@pytest.mark.skipif(os.geteuid() != 0, reason="the workloads suite's users are made and dropped by the servers'"
                                             " administrators over their local sockets (root)")
def test_as_root_clean_tests_drops_a_killed_workloads_runs_users_and_their_databases():
    mysql_base, pg_base = env_url("RETAILFLOW_MYSQL_URL"), env_url("RETAILFLOW_WAREHOUSE_URL")
    left, going = throwaway_tag(8), throwaway_tag(8)  # a killed run's tag, and a run still connected
    match = f"{left}|{going}"
    password = secrets.token_hex(16)
    runs = {tag: (throwaway_user(tag), [throwaway_name(s, "wl", tag) for s in ("warehouse", "superset")],
                  throwaway_name("retail", "wl", tag)) for tag in (left, going)}

    def there() -> dict[str, set[str]]:
        return {"roles": {r for r in as_administrator("pg", "select rolname from pg_roles") if re.search(match, r)},
                "pg": {d for d in as_administrator("pg", "select datname from pg_database") if re.search(match, d)},
                "users": {u for u in as_administrator("mysql", "select user from mysql.user") if re.search(match, u)},
                "mysql": {d for d in as_administrator("mysql", "show databases") if re.search(match, d)}}

    held = []
    try:
        for user, pg_dbs, mysql_db in runs.values():  # as tests/integration/workloads' `databases` fixture
            as_administrator("mysql", f"create database `{mysql_db}`; create user '{user}'@'%' identified by "
                                      f"'{password}'; grant all on `{mysql_db}`.* to '{user}'@'%'")
            as_administrator("pg", f"create role {user} login password '{password}'")
            for name in pg_dbs:
                as_administrator("pg", f'create database "{name}" owner {user}')
        everything = there()
        user, pg_dbs, mysql_db = runs[going]
        server = urlsplit(mysql_base)
        held += [pg_connect(with_database(pg_base, pg_dbs[0]), user=user, password=password),
                 pymysql.connect(host=server.hostname, port=server.port or 3306, user=user, password=password,
                                 database=mysql_db)]

        asked = clean(MATCH=match)  # no terminal, no CONFIRM: the list, then nothing dropped
        assert asked.returncode != 0 and "not confirmed" in asked.stderr, asked.stdout + asked.stderr
        for name in (runs[left][0], *runs[left][1], runs[left][2]):
            assert name in asked.stdout.split(), asked.stdout
        assert there() == everything

        done = clean(MATCH=match, CONFIRM="yes")
        assert done.returncode == 0, done.stdout + done.stderr
        user, pg_dbs, mysql_db = runs[left]
        assert f"dropped PostgreSQL role {user}" in done.stdout and f"dropped MySQL user {user}" in done.stdout
        assert all(f"dropped PostgreSQL {name}" in done.stdout for name in pg_dbs)
        user, pg_dbs, mysql_db = runs[going]
        assert f"kept PostgreSQL role {user}: a session is connected as it" in done.stdout, done.stdout
        assert f"kept MySQL user {user}: a session is connected as it" in done.stdout, done.stdout
        assert there() == {"roles": {user}, "pg": set(pg_dbs), "users": {user}, "mysql": {mysql_db}}
    finally:
        for conn in held:
            conn.close()
        for user, pg_dbs, mysql_db in runs.values():
            as_administrator("mysql", f"drop database if exists `{mysql_db}`; drop user if exists '{user}'@'%'")
            for name in pg_dbs:
                as_administrator("pg", f'drop database if exists "{name}" with (force)')
            as_administrator("pg", f"drop role if exists {user}")
