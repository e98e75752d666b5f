#!/usr/bin/env bash
# `make clean-tests`: drop the throwaway databases that tests and benchmarks left behind, after a
# confirmation. Each suite and benchmark drops its own databases when it ends; one that was killed
# (Ctrl-C twice, a CI timeout, `kill -9`) leaves them, and a 1M-order benchmark's databases hold
# gigabytes.
#   - which: databases named as the tests and benchmarks (and `make generator-shape`) name them, on the
#     MySQL server of $RETAILFLOW_MYSQL_URL and the PostgreSQL server of $RETAILFLOW_WAREHOUSE_URL: a
#     service (retail, warehouse, superset, airflow), a kind of run (test, dags, wl, bench, ui, shape),
#     then a random tag of 8 or 10 hexadecimal digits, e.g. retail_test_1f2e3d4c5b or
#     airflow_test_scale_1m_6f553ae2; on PostgreSQL only those this user owns;
#   - never while a test or benchmark runs on this machine (a pytest or tests/bench process): a running
#     suite's databases sit without a session for minutes at a time (MATCH below lifts this check: it
#     names the runs to clean);
#   - never a database some session is connected to, nor any other database (retail, warehouse,
#     airflow, superset: the local mode's own stay).
# MATCH=<regex> narrows the choice (Python's re.search on the name; a killed run's tag, say).
# CONFIRM=yes skips the question; without a terminal and without it, the list is printed and nothing
# is dropped.
set -euo pipefail
LOG_NAME=clean-tests
# shellcheck source=hack/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
# shellcheck source=hack/env.sh
source "$ROOT/hack/env.sh"

mysql_url="$(env_setting RETAILFLOW_MYSQL_URL)"
warehouse_url="$(env_setting RETAILFLOW_WAREHOUSE_URL)"
[[ -n "$mysql_url" && -n "$warehouse_url" ]] || die "RETAILFLOW_MYSQL_URL / RETAILFLOW_WAREHOUSE_URL unset: nothing to clean (run 'make services' first)"
python="$ROOT/dags/.venv/bin/python"
[[ -x "$python" ]] || die "$python not found: run 'make sync' first"
terminal=""
[[ -t 0 ]] && terminal=yes

RETAILFLOW_MYSQL_URL="$mysql_url" RETAILFLOW_WAREHOUSE_URL="$warehouse_url" MATCH="${MATCH:-}" CONFIRM="${CONFIRM:-}" \
  TERMINAL="$terminal" MYSQL_PORT="$(catalog_port mysql)" exec "$python" - <<'PY'
import os
import re
import sys
import time
from urllib.parse import unquote, urlsplit

import psycopg
import pymysql

#: how the tests and benchmarks name their databases (tests/support/databases.py's throwaway_tag,
#: generator/shape_docs.py's database_name): 8 or 10 hex digits, a letter among them, so a date (all
#: digits) is never taken for a tag
SERVICES = "^(retail|warehouse|superset|airflow)_"
THROWAWAY = re.compile(SERVICES + r"(test|dags|wl|bench|ui|shape)(_[0-9a-z]+)*_(?=[0-9]*[a-f])([0-9a-f]{8}|[0-9a-f]{10})$")
narrow = re.compile(os.environ["MATCH"]) if os.environ["MATCH"] else None


def runs_going() -> list[str]:
    """Test and benchmark processes on this machine, other than this script's own callers."""
    import psutil

    mine = {p.pid for p in psutil.Process().parents()} | {os.getpid()}
    found = []
    for proc in psutil.process_iter(["pid", "cmdline"]):
        line = " ".join(proc.info["cmdline"] or [])
        if proc.info["pid"] not in mine and re.search(r"(^|[/ ])(py\.test|pytest)( |$)|-m pytest\b|(^|[/ ])tests/bench/", line):
            found.append(f"{proc.info['pid']} {line[:100]}")
    return found


def wanted(name: str) -> bool:
    return bool(THROWAWAY.match(name)) and (narrow is None or bool(narrow.search(name)))


my = urlsplit(os.environ["RETAILFLOW_MYSQL_URL"])
mysql = pymysql.connect(host=my.hostname, port=my.port or int(os.environ["MYSQL_PORT"]),
                        user=unquote(my.username or ""), password=unquote(my.password or ""), autocommit=True)
_, _, rest = os.environ["RETAILFLOW_WAREHOUSE_URL"].partition("://")
pg = psycopg.connect("postgresql://" + rest, autocommit=True)

with mysql.cursor() as cur:
    cur.execute("select s.schema_name, coalesce(sum(t.data_length + t.index_length), 0) from information_schema.schemata s"
                " left join information_schema.tables t on t.table_schema = s.schema_name group by s.schema_name")
    mysql_dbs = {name: int(size) for name, size in cur.fetchall() if wanted(name)}
    # a session's current database (the user's own sessions: the tests connect as this user)
    cur.execute("select distinct db from information_schema.processlist where db is not null and id <> connection_id()")
    mysql_busy = {r[0] for r in cur.fetchall()}
# only the names that may match are sized (pg_database_size needs CONNECT), only this user's dropped
pg_found = [(name, size, mine) for name, size, mine in pg.execute(
    "select datname, case when has_database_privilege(datname, 'connect') then pg_database_size(datname) else 0 end,"
    " pg_has_role(datdba, 'member') from pg_database"
    " where not datistemplate and datname ~ %s", (SERVICES,)).fetchall() if wanted(name)]
pg_dbs = {name: size for name, size, mine in pg_found if mine}
for name, _, mine in pg_found:
    if not mine:
        print(f"clean-tests: kept PostgreSQL {name}: another role owns it (drop it as that role or a superuser)")
pg_busy = {r[0] for r in pg.execute("select distinct datname from pg_stat_activity where datname is not null"
                                    " and pid <> pg_backend_pid()").fetchall()}

drop = [("MySQL", n, s) for n, s in sorted(mysql_dbs.items()) if n not in mysql_busy]
drop += [("PostgreSQL", n, s) for n, s in sorted(pg_dbs.items()) if n not in pg_busy]
busy = [("MySQL", n) for n in sorted(mysql_dbs) if n in mysql_busy] + [("PostgreSQL", n) for n in sorted(pg_dbs) if n in pg_busy]
for server, name in busy:
    print(f"clean-tests: kept {server} {name}: a session is connected to it (a run still going?)")
if not drop:
    print("clean-tests: no test or benchmark database left behind")
    sys.exit(0)
going = [] if narrow else runs_going()
if going:
    print("clean-tests: error: a test or benchmark is running on this machine; its databases may be among"
          " these (they sit without a session between steps). Run make clean-tests when it has ended, or name"
          " a killed run's databases with MATCH=<its tag>. Running:\n  " + "\n  ".join(going), file=sys.stderr)
    sys.exit(1)
print(f"clean-tests: these {len(drop)} databases were left by tests or benchmarks"
      f" ({sum(s for *_, s in drop) / 2**20:,.0f} MB in all):")
for server, name, size in drop:
    print(f"  {server:10s} {name}  {size / 2**20:,.1f} MB")
if os.environ["CONFIRM"] != "yes" and not os.environ["TERMINAL"]:
    print("clean-tests: error: not confirmed: run 'make clean-tests' in a terminal, or 'make clean-tests CONFIRM=yes';"
          " nothing dropped", file=sys.stderr)
    sys.exit(1)
if os.environ["CONFIRM"] != "yes":
    print("clean-tests: type 'drop' to drop them: ", end="", flush=True)
    with open("/dev/tty") as tty:  # the script itself is Python's stdin
        answer = tty.readline().strip()
    if answer != "drop":
        print("clean-tests: cancelled, nothing dropped")
        sys.exit(1)
failed = 0
for server, name, _ in drop:
    try:
        if server == "MySQL":
            with mysql.cursor() as cur:  # MySQL drops a database in use: look again just before
                cur.execute("select count(*) from information_schema.processlist where db = %s", (name,))
                if cur.fetchone()[0]:
                    print(f"clean-tests: kept MySQL {name}: a session connected to it meanwhile")
                    continue
                cur.execute(f"drop database `{name}`")
        else:
            for attempt in range(10):  # PostgreSQL refuses while a session is there, autovacuum's too
                try:
                    pg.execute(f'drop database "{name}"')
                    break
                except psycopg.errors.ObjectInUse:
                    if attempt == 9:
                        raise
                    time.sleep(0.5)
        print(f"clean-tests: dropped {server} {name}")
    except (pymysql.MySQLError, psycopg.Error) as exc:  # connected to since, or not this user's to drop
        failed += 1
        print(f"clean-tests: could not drop {server} {name}: {str(exc).strip().splitlines()[0]}", file=sys.stderr)
sys.exit(1 if failed else 0)
PY
