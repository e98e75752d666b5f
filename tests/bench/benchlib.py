"""What the ingestion benchmarks share: throwaway databases, the raw ``mysql | psql \\copy`` pipe, the
engine called through its command line, and a step run in a process of its own with its time and peak
memory.

The engine is reached through ``ingest_command()`` only (its console script, ``retailflow-ingest``), so
that a move of its package changes one line here.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote, urlsplit

import psycopg
import pymysql

REPO = Path(__file__).resolve().parents[2]
# the tests' own helpers (tests/support), which name and drop the tests' throwaway databases: the
# benchmarks run as scripts, with only tests/bench on sys.path, so tests/ is put there too (as
# bench_dags.py and bench_operator.py do) rather than keeping a second copy here
if str(REPO / "tests") not in sys.path:
    sys.path.insert(0, str(REPO / "tests"))
from support.databases import drop_pg_database, throwaway_name, throwaway_tag, with_database  # noqa: E402

TABLES = ("customers", "products", "orders", "order_items")
PRIMARY_KEYS = {"customers": "customer_id", "products": "product_id", "orders": "order_id",
                "order_items": "order_item_id"}


#: the ingestion engine's package (``run``, ``LakeConfig``, ``configure_logging``)
ENGINE_MODULE = "retailflow_ingest.engine"


def ingest_command() -> list[str]:
    """The ingestion engine's command line."""
    return [str(Path(sys.executable).with_name("retailflow-ingest"))]


def engine_module():
    """The ingestion engine's package, imported on first use (the benchmarks that call it in-process)."""
    import importlib

    return importlib.import_module(ENGINE_MODULE)


def generator_command() -> list[str]:
    return [shutil.which("retailflow-generator") or str(Path(sys.executable).with_name("retailflow-generator"))]


def seed_shape(orders: int) -> tuple[int, int]:
    """Customers and products of a seed of ``orders`` orders, as the sized benchmarks seed them
    (orders / 10 customers, orders / 100 products, at least 500)."""
    return orders // 10, max(500, orders // 100)


def settle() -> None:
    """Flush the page cache's dirty pages now, so the next measurement starts on a quiet disk."""
    os.sync()


def quiet_warehouse(warehouse_url: str) -> float:
    """Vacuum and analyze every table of the warehouse's database now, then flush the page cache: the
    next measurement starts where the one before it left no work behind (autovacuum would otherwise
    analyze a million freshly loaded rows, and the kernel write them back, during it). Returns the
    seconds this took."""
    started = time.monotonic()
    with psycopg.connect(warehouse_url, autocommit=True) as conn:
        conn.execute("set client_min_messages = error")  # tables of other owners are skipped with a warning
        conn.execute("vacuum (analyze)")
    settle()
    return time.monotonic() - started


@dataclass(frozen=True)
class MachineCPU:
    """CPU-seconds the whole machine has spent since boot, summed over its cores, from the first line of
    ``/proc/stat`` (proc(5)): ``work`` (user, nice, system, irq, softirq: every process's, not only the
    measured one's) and ``stolen`` (steal: time a virtual machine's cores were ready to run but its host
    ran something else, which slows wall times without showing as work)."""

    work: float
    stolen: float

    def __sub__(self, other: MachineCPU) -> MachineCPU:
        return MachineCPU(self.work - other.work, self.stolen - other.stolen)


def machine_cpu(stat: str = "/proc/stat") -> MachineCPU | None:
    """The machine's CPU-seconds so far (``MachineCPU``), or None where there is no ``/proc/stat``."""
    try:
        with open(stat) as f:
            fields = [int(v) for v in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    tick = os.sysconf("SC_CLK_TCK")
    user, nice, system, _idle, _iowait, irq, softirq, steal = (fields + [0] * 8)[:8]
    return MachineCPU((user + nice + system + irq + softirq) / tick, steal / tick)


def cores(stat: str = "/proc/stat") -> int:
    """The cores ``machine_cpu`` sums over: the ``cpuN`` lines of the same ``/proc/stat`` (every online
    core of the machine, also those a container's CPU set leaves out), else ``os.cpu_count()``."""
    try:
        with open(stat) as f:
            found = sum(1 for line in f if re.match(r"cpu\d+ ", line))
    except OSError:
        found = 0
    return found or os.cpu_count() or 1


def bench(name: str, value: float | str, note: str = "") -> None:
    print(f"bench: {name} {value}" + (f"  # {note}" if note else ""), flush=True)


def load_average() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f} {five:.2f} {fifteen:.2f}"


def mysql_conn(url: str, database: str | None = None) -> pymysql.connections.Connection:
    parts = urlsplit(url)
    return pymysql.connect(host=parts.hostname, port=parts.port or 3306, user=unquote(parts.username or ""),
                           password=unquote(parts.password or ""),
                           database=parts.path.lstrip("/") if database is None else database or None,
                           autocommit=True, local_infile=True)


def drop_warehouse(pg_base: str, name: str) -> None:
    """Drop a PostgreSQL database; autovacuum may hold it a while (a non-superuser cannot end it), so 10
    tries 1, 2, ... 9 s apart, then a warning, not an error: the benchmark goes on to print its figures."""
    drop_pg_database(pg_base, name, pauses=range(1, 10), strict=False)


@dataclass(frozen=True)
class Databases:
    mysql_url: str = field(repr=False)  # the URLs carry the servers' passwords
    warehouse_url: str = field(repr=False)
    #: further PostgreSQL databases asked for, by the name given (their URLs)
    extra: dict[str, str] = field(repr=False)


@contextmanager
def throwaway_databases(prefix: str, extra_pg: Sequence[str] = ()) -> Iterator[Databases]:
    """A MySQL database and a warehouse database (plus ``extra_pg`` PostgreSQL ones), named
    ``<kind>_test_<prefix>_<hex>`` and dropped on the way out."""
    base_mysql = os.environ.get("RETAILFLOW_MYSQL_URL")
    base_wh = os.environ.get("RETAILFLOW_WAREHOUSE_URL")
    if not base_mysql or not base_wh:
        sys.exit("bench: set RETAILFLOW_MYSQL_URL and RETAILFLOW_WAREHOUSE_URL (make services; hack/with-env)")
    kind, tag = f"test_{prefix}", throwaway_tag(8)
    mysql_db, wh_db = throwaway_name("retail", kind, tag), throwaway_name("warehouse", kind, tag)
    others = {name: throwaway_name(name, kind, tag) for name in extra_pg}
    admin = mysql_conn(base_mysql, "")
    admin.cursor().execute(f"create database `{mysql_db}` character set utf8mb4")
    with psycopg.connect(base_wh, autocommit=True) as conn:
        for db in (wh_db, *others.values()):
            conn.execute(f'create database "{db}"')
    try:
        yield Databases(with_database(base_mysql, mysql_db), with_database(base_wh, wh_db),
                        {name: with_database(base_wh, db) for name, db in others.items()})
    finally:
        admin.cursor().execute(f"drop database if exists `{mysql_db}`")
        admin.close()
        for db in (wh_db, *others.values()):
            drop_warehouse(base_wh, db)


@dataclass(frozen=True)
class Step:
    seconds: float
    peak_rss_mb: float
    stdout: str


#: runs a step and writes the peak RSS of its process tree (KiB) to the file named in argv[1]; a small
#: interpreter (no site packages) so that its own resident set, which a child inherits as a floor of
#: ru_maxrss across fork and exec, stays a few MB
_RUN_AND_MEASURE = (
    "import resource, subprocess, sys\n"
    "code = subprocess.call(sys.argv[2:])\n"
    "open(sys.argv[1], 'w').write(str(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss))\n"
    "sys.exit(code)\n"
)


def measured(cmd: Sequence[str], env: dict[str, str] | None = None, cwd: Path | None = None,
             quiet: bool = False) -> Step:
    """Run one step in a process of its own: wall seconds, and its peak RSS (children included, as a
    maximum). The step is started by a small intermediate process that reads
    ``getrusage(RUSAGE_CHILDREN).ru_maxrss`` once the step ended: a child's ``ru_maxrss`` starts at its
    parent's resident set at fork (the kernel keeps the pre-exec high-water mark), so measuring the
    step as a direct child of this (large) process would floor every figure at this process's size."""
    with tempfile.NamedTemporaryFile("r", prefix="bench-rss-") as peak:
        started = time.monotonic()
        done = subprocess.run([sys.executable, "-I", "-S", "-c", _RUN_AND_MEASURE, peak.name, *cmd], env=env,
                              cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL if quiet else None,
                              text=True)
        seconds = time.monotonic() - started
        if done.returncode != 0:
            print(done.stdout[-3000:], file=sys.stderr)
            raise subprocess.CalledProcessError(done.returncode, list(cmd[:2]))
        return Step(seconds, int(peak.read() or 0) / 1024, done.stdout)


def row_counts(mysql_url: str) -> dict[str, int]:
    conn = mysql_conn(mysql_url)
    try:
        with conn.cursor() as cur:
            counts = {}
            for t in TABLES:
                cur.execute(f"select count(*) from `{t}`")
                counts[t] = cur.fetchone()[0]
            return counts
    finally:
        conn.close()


class RawPipe:
    """``mysql --quick --batch | psql \\copy`` per table, credentials passed through a 0600 defaults
    file and ``PGPASSWORD``, never on a command line."""

    def __init__(self, mysql_url: str, warehouse_url: str, workdir: Path, schema: str = "pipe"):
        if not shutil.which("mysql") or not shutil.which("psql"):
            sys.exit("bench: the raw pipe needs the mysql and psql clients")
        m = urlsplit(mysql_url)
        self.schema = schema
        self.database = m.path.lstrip("/")
        self.defaults = workdir / "my.cnf"
        self.defaults.write_text(f"[client]\nuser={unquote(m.username)}\npassword={unquote(m.password)}\n"
                                 f"host={m.hostname}\nport={m.port or 3306}\n")
        self.defaults.chmod(0o600)
        w = urlsplit(warehouse_url)
        self.env = {**os.environ, "PGPASSWORD": unquote(w.password or ""),
                    "PGOPTIONS": "-c client_min_messages=warning"}
        self.pg_args = ["-h", w.hostname, "-p", str(w.port or 5432), "-U", unquote(w.username), "-d",
                        w.path.lstrip("/"), "-v", "ON_ERROR_STOP=1", "-q"]

    def psql(self, sql: str) -> None:
        subprocess.run(["psql", *self.pg_args, "-c", sql], env=self.env, check=True)

    def prepare(self, tables_ddl: dict[str, str]) -> None:
        s = self.schema
        self.psql(f"drop schema if exists {s} cascade; create schema {s}; "
                  + " ".join(f"create table {s}.{t} ({ddl});" for t, ddl in tables_ddl.items()))

    def prepare_airbyte_shape(self, tables_ddl: dict[str, str]) -> None:
        """The engine's table shape: Airbyte's four meta columns first (the record id from
        ``gen_random_uuid()``, the others as defaults), then the stream's columns."""
        meta = ("_airbyte_raw_id varchar not null default gen_random_uuid()::varchar,"
                " _airbyte_extracted_at timestamp with time zone not null default now(),"
                " _airbyte_meta jsonb not null default '{\"changes\": [], \"sync_id\": 1}'::jsonb,"
                " _airbyte_generation_id bigint default 0, ")
        s = self.schema
        self.psql(f"drop schema if exists {s} cascade; create schema {s}; "
                  + " ".join(f"create table {s}.{t} ({meta}{ddl});" for t, ddl in tables_ddl.items()))

    def index(self, table: str, primary_key: str) -> None:
        """The indexes the engine builds after a full load: primary key, cursor, ``_airbyte_extracted_at``."""
        s = self.schema
        self.psql("set maintenance_work_mem = '256MB';"
                  f" create index on {s}.{table} ({primary_key}); create index on {s}.{table} (updated_at);"
                  f" create index on {s}.{table} (_airbyte_extracted_at)")

    def copy(self, table: str, columns: str = "") -> None:
        reader = subprocess.Popen(
            ["mysql", f"--defaults-extra-file={self.defaults}", "--quick", "--batch", "--skip-column-names",
             self.database, "-e", f"select * from `{table}`"], stdout=subprocess.PIPE)
        target = f"{self.schema}.{table}" + (f" ({columns})" if columns else "")
        subprocess.run(["psql", *self.pg_args, "-c", f"\\copy {target} from stdin with (null 'NULL')"],
                       stdin=reader.stdout, env=self.env, check=True, stdout=subprocess.DEVNULL)
        reader.stdout.close()
        if reader.wait() != 0:
            raise RuntimeError(f"mysql failed reading {table}")


def typed_columns(warehouse_url: str, schema: str, table: str) -> list[tuple[str, str]]:
    """(column, PostgreSQL type) of a table, Airbyte's and loaders' own bookkeeping columns left out."""
    with psycopg.connect(warehouse_url) as pg:
        return pg.execute(
            "select a.attname, format_type(a.atttypid, a.atttypmod) from pg_attribute a"
            " join pg_class c on c.oid = a.attrelid join pg_namespace n on n.oid = c.relnamespace"
            " where n.nspname = %s and c.relname = %s and a.attnum > 0 and not a.attisdropped"
            " and a.attname not like '\\_airbyte%%' and a.attname not like '\\_dlt%%'"
            " order by a.attnum", (schema, table)).fetchall()
