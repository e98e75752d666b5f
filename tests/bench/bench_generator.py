"""Generator speed and memory, against LOAD DATA of the same rows measured in the same run.

1. `retailflow-generator seed` runs in a subprocess into a throwaway database (`retail_bench_<hex>`);
   the time it reports (connect to COMMIT: Faker pools, customers, products, orders) gives rows/s
   over all four tables (`generator_rows_per_s`, the unit of `load_data_rows_per_s`) and order lines/s
   (`generator_process_order_lines_per_s` also counts interpreter start-up and imports), and its
   `ru_maxrss` (from wait4) its peak memory.
2. Every row it wrote (orders, order lines, customers, products) is exported (mysql client,
   tab-separated) and loaded with `LOAD DATA LOCAL INFILE` into empty copies of the tables (CREATE
   TABLE ... LIKE: same columns and indexes), in the generator's order, in one transaction with foreign
   key checks off, as the generator loads them: the baseline, i.e. what the server takes for the same
   rows when nothing has to be generated.
3. Steps 1-2 repeat (`--rounds`, default 2); the best time of each side counts.

Prints `bench: <name> <value>` lines. Targets: `generator_vs_load_data` (the baseline's seconds over
the generator's, the same rows on both sides) >= 0.8: the generator loads chunk n on a background
thread while it generates chunk n+1, so its time is the server's load plus what cannot overlap (the
first chunk with the plan's first block, the commit); and peak RSS under 500 MB at 5M order lines
(`--order-lines 5000000`). `generator_vs_load_data_order_lines` keeps the earlier yardstick: the whole
seed against a LOAD DATA of the order lines alone (the generator also writes the orders, about 40% of
the server's work).

Run: `make bench-generator` (or `hack/with-env uv run --project generator python tests/bench/bench_generator.py`).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import unquote, urlsplit, urlunsplit

import pymysql
from retailflow_generator.shape import lines_pmf

# tests/support names the throwaway database (not benchlib: it needs psycopg, which this environment lacks)
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from support.databases import throwaway_name, throwaway_tag  # noqa: E402

DEFAULT_ORDER_LINES = 600_000
DEFAULT_ROUNDS = 2


def _connect(url: str, **kwargs) -> pymysql.connections.Connection:
    parts = urlsplit(url)
    return pymysql.connect(
        host=parts.hostname, port=parts.port or 3306, user=unquote(parts.username or ""),
        password=unquote(parts.password or ""), database=parts.path.lstrip("/") or None,
        autocommit=True, **kwargs,
    )


def _with_db(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, "/" + name, "", ""))


def _mean_lines() -> float:
    pmf = lines_pmf()
    return float(sum((k + 1) * p for k, p in enumerate(pmf)))


def run_generator(url: str, order_lines: int) -> tuple[int, float, float, float, str]:
    """Seed in a subprocess: (order lines, seconds writing, process wall seconds, peak RSS MB, summary)."""
    orders = max(1, round(order_lines / _mean_lines()))
    cmd = [
        sys.executable, "-m", "retailflow_generator", "seed",
        "--customers", str(max(1000, orders // 20)), "--products", str(max(100, orders // 400)),
        "--orders", str(orders), "--start", "2023-01-01", "--end", "2025-12-31", "--seed", "7",
    ]
    # the URL (with its password) through the environment, never argv: every local user reads argv in `ps`
    env = {**os.environ, "RETAILFLOW_MYSQL_URL": url}
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        started = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, text=True, env=env)
        # wait4: the resource usage of exactly this child (ru_maxrss in kilobytes on Linux)
        _pid, status, usage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - started
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read(), err.read()
    if proc.returncode != 0:
        sys.exit(f"bench: generator failed: {stderr.strip()}")
    lines = int(re.search(r"orders, (\d+) order lines", stdout).group(1))
    # the generator's own clock: from connecting to COMMIT (Faker pools, customers, products and
    # orders included; interpreter start-up and imports not)
    writing = float(re.search(r" in ([\d.]+) s ", stdout).group(1))
    return lines, writing, seconds, usage.ru_maxrss / 1024, stdout.strip()


#: the tables in the order the generator loads them (its loader thread: orders, their lines, then
#: customers and products)
LOAD_ORDER = ("orders", "order_items", "customers", "products")


def export_table(url: str, table: str, path: Path) -> None:
    """A table as tab-separated text via the mysql client (streams; no Python row decoding)."""
    parts = urlsplit(url)
    client = shutil.which("mariadb") or shutil.which("mysql")
    if not client:
        sys.exit("bench: the mysql/mariadb command-line client is needed to export the baseline rows")
    with tempfile.NamedTemporaryFile("w", suffix=".cnf", delete=False) as cnf:
        os.chmod(cnf.name, 0o600)
        cnf.write(f"[client]\npassword={unquote(parts.password or '')}\n")
    try:
        with path.open("wb") as out:
            subprocess.run(
                [client, f"--defaults-extra-file={cnf.name}", "--protocol=tcp", "-h", parts.hostname,
                 "-P", str(parts.port or 3306), "-u", unquote(parts.username or ""), "--batch", "--quick",
                 "--skip-column-names", "-e", f"select * from {table} order by 1",
                 parts.path.lstrip("/")],
                stdout=out, check=True,
            )
    finally:
        os.unlink(cnf.name)


def load_baseline(url: str, dumps: dict[str, Path], expected: dict[str, int]) -> dict[str, float]:
    """LOAD DATA LOCAL of the exported rows into empty copies of the tables (CREATE TABLE ... LIKE:
    same columns and indexes), in the generator's order, in one transaction with foreign key checks
    off as the generator's; returns the seconds of each table's load."""
    conn = _connect(url, local_infile=True)
    seconds = {}
    try:
        with conn.cursor() as cur:
            cur.execute("set session foreign_key_checks = 0")
            for table in dumps:
                cur.execute(f"create table {table}_copy like {table}")
            # the originals' pages would crowd the buffer pool: the copies start where the generator
            # started, with empty tables
            cur.execute("drop table " + ", ".join(reversed(LOAD_ORDER)))
            conn.autocommit(False)
            started = time.perf_counter()
            for table, path in dumps.items():
                # the client writes NULL as the word NULL: nullable columns pass through a variable
                cur.execute("select column_name, is_nullable = 'YES' from information_schema.columns"
                            " where table_schema = database() and table_name = %s order by ordinal_position",
                            (f"{table}_copy",))
                columns = cur.fetchall()
                targets = ", ".join(f"@{c}" if nullable else c for c, nullable in columns)
                nulls = ", ".join(f"{c} = nullif(@{c}, 'NULL')" for c, nullable in columns if nullable)
                began = time.perf_counter()
                loaded = cur.execute(
                    f"load data local infile %s into table {table}_copy character set utf8mb4 ({targets})"
                    + (f" set {nulls}" if nulls else ""), (str(path),)
                )
                seconds[table] = time.perf_counter() - began
                if loaded != expected[table]:
                    sys.exit(f"bench: baseline loaded {loaded} rows into {table}, expected {expected[table]}")
            conn.commit()
            seconds["all"] = time.perf_counter() - started
    finally:
        conn.close()
    return seconds


def one_round(server: str, order_lines: int) -> tuple[int, int, float, float, dict[str, float], float, str]:
    """Generator then baseline in a fresh database: (order lines, all rows, generator writing s,
    generator process s, baseline seconds by table and in all, peak MB, summary)."""
    name = throwaway_name("retail", "bench", throwaway_tag(8))
    url = _with_db(server, name)
    admin = _connect(_with_db(server, ""))
    with admin.cursor() as cur:
        cur.execute(f"create database `{name}`")
    try:
        lines, gen_seconds, wall_seconds, peak_mb, summary = run_generator(url, order_lines)
        conn = _connect(url)
        with conn.cursor() as cur:
            counts = {}
            for table in LOAD_ORDER:
                cur.execute(f"select count(*) from {table}")
                counts[table] = cur.fetchone()[0]
        conn.close()
        with tempfile.TemporaryDirectory(prefix="retailflow-bench-") as tmp:
            dumps = {table: Path(tmp) / f"{table}.tsv" for table in LOAD_ORDER}
            for table, path in dumps.items():
                export_table(url, table, path)
            load_seconds = load_baseline(url, dumps, counts)
    finally:
        with admin.cursor() as cur:
            cur.execute(f"drop database if exists `{name}`")
        admin.close()
    return lines, sum(counts.values()), gen_seconds, wall_seconds, load_seconds, peak_mb, summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--order-lines", type=int, default=DEFAULT_ORDER_LINES,
                        help=f"approximate order lines to generate (default {DEFAULT_ORDER_LINES:,})")
    parser.add_argument("--rounds", type=int, default=DEFAULT_ROUNDS,
                        help=f"alternating generator/baseline rounds; the best of each counts (default {DEFAULT_ROUNDS})")
    args = parser.parse_args()
    server = os.environ.get("RETAILFLOW_MYSQL_URL")
    if not server:
        sys.exit("bench: RETAILFLOW_MYSQL_URL is not set (run `make services`, then use hack/with-env)")

    # The machine is shared: alternate the two measurements and keep the best of each, so that a
    # burst of load elsewhere does not decide the ratio.
    gen_best = wall_best = load_best = lines_load_best = float("inf")
    peak_mb = 0.0
    lines = rows = 0
    for i in range(max(1, args.rounds)):
        lines, rows, gen_seconds, wall_seconds, load, peak, summary = one_round(server, args.order_lines)
        print(f"bench: info round {i + 1}: generator {gen_seconds:.1f} s ({wall_seconds:.1f} s with start-up), "
              f"load data {load['all']:.1f} s (" + ", ".join(f"{t} {load[t]:.1f} s" for t in LOAD_ORDER)
              + f"); {summary}", flush=True)
        gen_best, wall_best = min(gen_best, gen_seconds), min(wall_best, wall_seconds)
        load_best, peak_mb = min(load_best, load["all"]), max(peak_mb, peak)
        lines_load_best = min(lines_load_best, load["order_items"])

    print(f"bench: order_lines {lines}")
    print(f"bench: rows {rows}")
    print(f"bench: generator_rows_per_s {rows / gen_best:.0f}  # all four tables, the unit of load_data_rows_per_s")
    print(f"bench: generator_order_lines_per_s {lines / gen_best:.0f}")
    print(f"bench: generator_process_order_lines_per_s {lines / wall_best:.0f}  # start-up included")
    print(f"bench: load_data_rows_per_s {rows / load_best:.0f}  # all four tables, same rows as the generator's")
    print(f"bench: generator_vs_load_data {load_best / gen_best:.2f}  # target >= 0.8")
    print(f"bench: generator_vs_load_data_order_lines {lines_load_best / gen_best:.2f}"
          "  # the generator's whole seed against a LOAD DATA of its order lines alone (the earlier yardstick)")
    print(f"bench: generator_peak_rss_mb {peak_mb:.0f}")


if __name__ == "__main__":
    main()
