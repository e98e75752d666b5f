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
#     airflow, superset: the local mode's own stay);
#   - the workloads suite's throwaway users too (rf_wl_ and its run's tag: a PostgreSQL role owning
#     that run's PostgreSQL databases, and a MariaDB user), made by the servers' administrators over
#     their local sockets. Only they can drop them: on PostgreSQL 15 (`make services`' server), DROP
#     ROLE needs CREATEROLE, which lets a role alter and drop every non-superuser role and grant itself
#     membership in any of them, pg_execute_server_program included (commands run as the server's OS
#     user), so this user is not given it; PostgreSQL 16 narrows CREATEROLE to the roles a role
#     administers (postgres/postgres@cf5eb37c5). Run as root on the servers' machine, this script drops
#     them as the administrators (postgres, MariaDB's root) over the same sockets, with their
#     databases, after the same question; otherwise they are listed as kept. A user with a session, or
#     owning anything else, is kept.
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
  TERMINAL="$terminal" MYSQL_PORT="$(catalog_port mysql)" PG_PORT="$(catalog_port postgresql)" exec "$python" - <<'PY'
import os
import re
import subprocess
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
#: the workloads suite's throwaway users (tests/support/databases.py's throwaway_user): rf_wl_ and its
#: run's tag, which also ends the names of the databases that run made
TEST_USER = re.compile(r"^rf_wl_((?=[0-9]*[a-f])[0-9a-f]{8})$")
narrow = re.compile(os.environ["MATCH"]) if os.environ["MATCH"] else None
my = urlsplit(os.environ["RETAILFLOW_MYSQL_URL"])
wh = urlsplit(os.environ["RETAILFLOW_WAREHOUSE_URL"])
#: root, with both servers on this machine: their administrators are reachable over the local sockets
administrator = os.geteuid() == 0 and {my.hostname, wh.hostname} <= {"127.0.0.1", "localhost", "::1"}


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


def wanted_user(name: str) -> bool:
    return bool(TEST_USER.match(name)) and (narrow is None or bool(narrow.search(name)))


class AdministratorRefused(Exception):
    pass


def as_administrator(server: str, sql: str) -> list[str]:
    """SQL as the server's administrator over its local socket (root only): MariaDB's root, PostgreSQL's
    postgres, as the workloads suite makes its users. The statements hold names, never a password."""
    if server == "MySQL":
        argv = ["mysql", "--batch", "--skip-column-names", "-e", sql]
    else:
        argv = ["runuser", "-u", "postgres", "--", "psql", "-X", "-p", str(wh.port or os.environ["PG_PORT"]),
                "-v", "ON_ERROR_STOP=1", "-Atc", sql, "postgres"]
    done = subprocess.run(argv, capture_output=True, text=True, cwd="/", check=False)
    if done.returncode:
        raise AdministratorRefused(done.stderr.strip() or f"{argv[0]} exited {done.returncode}")
    return done.stdout.splitlines()


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
mysql_users: list[str] = []
mysql_user_busy: set[str] = set()
if administrator:  # every session, the workloads suite's users' too; and those users
    sessions = [line.split("\t") for line in as_administrator(
        "MySQL", "select user, coalesce(db, '') from information_schema.processlist where id <> connection_id()")]
    mysql_busy |= {db for _, db in sessions if db}
    mysql_user_busy = {user for user, _ in sessions}
    mysql_users = sorted(u for u in as_administrator("MySQL", "select user from mysql.user where host = '%'")
                         if wanted_user(u))
# only the names that may match are sized (pg_database_size needs CONNECT), only this user's dropped
pg_found = [(name, size, mine, owner) for name, size, mine, owner in pg.execute(
    "select datname, case when has_database_privilege(datname, 'connect') then pg_database_size(datname) else 0 end,"
    " pg_has_role(datdba, 'member'), pg_get_userbyid(datdba) from pg_database"
    " where not datistemplate and datname ~ %s", (SERVICES,)).fetchall() if wanted(name)]
pg_dbs = {name: size for name, size, mine, _ in pg_found if mine}
pg_users = sorted(r[0] for r in pg.execute("select rolname from pg_roles where rolname ~ '^rf_wl_'").fetchall()
                  if wanted_user(r[0]))
# a workloads run's databases: owned by its user, named with its tag
pg_user_dbs = {name: (size, owner) for name, size, mine, owner in pg_found
               if not mine and owner in pg_users and name.endswith("_" + TEST_USER.match(owner).group(1))}
for name, _, mine, owner in pg_found:
    if name in pg_user_dbs and not administrator:
        print(f"clean-tests: kept PostgreSQL {name}: the workloads suite's role {owner} owns it; only PostgreSQL's"
              " administrator can drop it: run make clean-tests as root on the servers' machine")
    elif not mine and name not in pg_user_dbs:
        print(f"clean-tests: kept PostgreSQL {name}: another role owns it (drop it as that role or a superuser)")
pg_busy = {r[0] for r in pg.execute("select distinct datname from pg_stat_activity where datname is not null"
                                    " and pid <> pg_backend_pid()").fetchall()}
pg_user_busy = {r[0] for r in pg.execute("select distinct usename from pg_stat_activity where usename is not null"
                                         " and pid <> pg_backend_pid()").fetchall()}

drop = [("MySQL", n, s) for n, s in sorted(mysql_dbs.items()) if n not in mysql_busy]
drop += [("PostgreSQL", n, s) for n, s in sorted(pg_dbs.items()) if n not in pg_busy]
busy = [("MySQL", n) for n in sorted(mysql_dbs) if n in mysql_busy] + [("PostgreSQL", n) for n in sorted(pg_dbs) if n in pg_busy]
busy += [("PostgreSQL", n) for n in sorted(pg_user_dbs) if n in pg_busy]
for server, name in busy:
    print(f"clean-tests: kept {server} {name}: a session is connected to it (a run still going?)")
# the workloads suite's users, as their servers' administrator: each with its databases, unless in use
drop_admin = []  # (server, kind, name, size)
for user in pg_users:
    owned = [r[0] for r in pg.execute("select datname from pg_database where pg_get_userbyid(datdba) = %s",
                                      (user,)).fetchall()]
    if not administrator:
        print(f"clean-tests: kept PostgreSQL role {user} (and the MariaDB user of that name) of a workloads run:"
              " only the servers' administrators can drop them: run make clean-tests as root on the servers' machine")
    elif user in pg_user_busy:
        print(f"clean-tests: kept PostgreSQL role {user}: a session is connected as it (a run still going?)")
    elif [d for d in owned if d not in pg_user_dbs or d in pg_busy]:
        print(f"clean-tests: kept PostgreSQL role {user}: it owns "
              + ", ".join(d for d in owned if d not in pg_user_dbs or d in pg_busy))
    else:
        drop_admin += [("PostgreSQL", "database", d, pg_user_dbs[d][0]) for d in sorted(owned)]
        drop_admin.append(("PostgreSQL", "role", user, 0))
for user in mysql_users:
    if user in mysql_user_busy:
        print(f"clean-tests: kept MySQL user {user}: a session is connected as it (a run still going?)")
    else:
        drop_admin.append(("MySQL", "user", user, 0))
if not drop and not drop_admin:
    print("clean-tests: no test or benchmark database left behind")
    sys.exit(0)
going = [] if narrow else runs_going()
if going:
    print("clean-tests: error: a test or benchmark is running on this machine; its databases may be among"
          " these (they sit without a session between steps). Run make clean-tests when it has ended, or name"
          " a killed run's databases with MATCH=<its tag>. Running:\n  " + "\n  ".join(going), file=sys.stderr)
    sys.exit(1)
everything = drop + [(server, name, size) for server, _, name, size in drop_admin]
print(f"clean-tests: these {len(everything)} databases and users were left by tests or benchmarks"
      f" ({sum(s for *_, s in everything) / 2**20:,.0f} MB in all):")
for server, name, size in drop:
    print(f"  {server:10s} {name}  {size / 2**20:,.1f} MB")
for server, kind, name, size in drop_admin:
    print(f"  {server:10s} {name}  " + (f"{size / 2**20:,.1f} MB" if kind == "database" else kind)
          + ", as the server's administrator")
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
left: set[str] = set()  # a user's database that could not be dropped keeps the user
for server, kind, name, _ in drop_admin:
    try:
        if kind == "database":
            for attempt in range(10):  # refused while a session is there (autovacuum's too): never forced
                try:
                    as_administrator("PostgreSQL", f'drop database "{name}"')
                    break
                except AdministratorRefused as exc:
                    if "is being accessed by other users" not in str(exc) or attempt == 9:
                        raise
                    time.sleep(0.5)
        elif server == "PostgreSQL":
            if name in left:
                print(f"clean-tests: kept PostgreSQL role {name}: a database it owns is still there")
                continue
            as_administrator("PostgreSQL", f'drop role "{name}"')
        else:
            if as_administrator("MySQL", f"select id from information_schema.processlist where user = '{name}'"):
                print(f"clean-tests: kept MySQL user {name}: a session connected as it meanwhile")
                continue
            as_administrator("MySQL", f"drop user '{name}'@'%'")
        print(f"clean-tests: dropped {server} {kind + ' ' if kind != 'database' else ''}{name}")
    except AdministratorRefused as exc:
        failed += 1
        if kind == "database":
            left.add(pg_user_dbs[name][1])
        print(f"clean-tests: could not drop {server} {kind} {name}: {str(exc).splitlines()[0]}", file=sys.stderr)
sys.exit(1 if failed else 0)
PY
