"""The ingestion engine beside other tools loading the same MySQL database into PostgreSQL.

One throwaway MySQL database (``retailflow-generator seed``, about 1M order lines by default) is
loaded in full into one throwaway warehouse database, each tool into a schema of its own, by:

- ``engine``: RetailFlow's engine through its command line (``retailflow-ingest --full-refresh
  --no-lake``, schema ``peers_engine``; its defaults otherwise: two streams at once, 50k-row batches);
- ``pipe``: the raw ``mysql --quick --batch | psql \\copy`` pipe of bench_ingest.py (shared, in
  benchlib.py), into tables of the engine's column types with no index: the floor;
- ``dlt``: ``tests/bench/peers_dlt.py`` (ConnectorX backend, CSV + COPY into PostgreSQL; see there);
- ``sling``: Sling 1.4.11, one replication of the four tables, ``SLING_THREADS=2``;
- ``pgloader``: Debian's pgloader, one ``LOAD DATABASE`` of the four tables at its defaults, with the
  ``CAST`` MariaDB's ``current_timestamp(6)`` defaults need.

Each tool runs in a process of its own (time: wall seconds, start-up included; memory: the peak
``ru_maxrss`` of the tool's process tree, children included as a maximum, see ``benchlib.measured``). The tools run in ``--rounds`` interleaved rounds
(the order rotates each round); the best round of each counts, and the ratio to the pipe is taken
within the same round. After every run the target is checked: the row count of each table against
MySQL's (a tool that differs is reported as failed and not ranked), and the column types, printed
beside the engine's.

Then the incremental runs, for the tools that have an incremental mode (the engine, dlt's cursor on
``updated_at`` with merge, Sling's ``incremental`` mode with ``update_key: updated_at``): ``--rounds``
ticks of ``retailflow-generator live`` (about 1% of the rows new or changed each), each followed by
one incremental run of each tool; each is checked again (row counts, and the newest ``updated_at`` of
each table equal to MySQL's). ``rows_per_s`` of an incremental is the rows MySQL changed in that tick
over the run's seconds.

Prints ``bench: peers_<tool>_full_rows_per_s``, ``peers_<tool>_ratio_to_pipe``,
``peers_<tool>_peak_rss_mb``, ``peers_<tool>_incr_rows_per_s``, ``peers_<tool>_incr_s``,
``peers_engine_vs_best_peer_full`` and ``peers_engine_vs_best_peer_incr`` (the engine's rows/s over
the best peer's; target ≥ 1.5). Needs ``make peers-env`` (dlt, Sling) and Debian's ``pgloader`` (apt,
as root); a tool that is missing is reported as skipped.

    make bench-peers
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import psycopg

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from benchlib import (  # noqa: E402
    REPO,
    TABLES,
    RawPipe,
    bench,
    generator_command,
    ingest_command,
    load_average,
    measured,
    mysql_conn,
    row_counts,
    settle,
    throwaway_databases,
    typed_columns,
)

PEERS_ENV = REPO / ".tools" / "peers"
SCHEMAS = {"engine": "peers_engine", "pipe": "peers_pipe", "dlt": "peers_dlt", "sling": "peers_sling",
           "pgloader": "peers_pgloader"}
PRIMARY_KEYS = {"customers": "customer_id", "products": "product_id", "orders": "order_id",
                "order_items": "order_item_id"}
INCREMENTAL = ("engine", "dlt", "sling")


def sling_binary() -> str | None:
    found = sorted(PEERS_ENV.glob("lib/python*/site-packages/sling_linux_amd64/bin/sling-linux-amd64"))
    return str(found[0]) if found else None


@dataclass
class Tool:
    name: str
    full: Callable[[], object]
    incr: Callable[[], object] | None = None
    runs: list[dict] = field(default_factory=list)
    incr_runs: list[dict] = field(default_factory=list)
    failed: str = ""


class Bench:
    def __init__(self, mysql_url: str, warehouse_url: str, work: Path):
        self.mysql_url, self.warehouse_url, self.work = mysql_url, warehouse_url, work
        self.database = urlsplit(mysql_url).path.lstrip("/")
        self.env = {**os.environ, "RETAILFLOW_MYSQL_URL": mysql_url, "RETAILFLOW_WAREHOUSE_URL": warehouse_url}

    def drop_schema(self, schema: str) -> None:
        with psycopg.connect(self.warehouse_url, autocommit=True) as pg:
            pg.execute(f'drop schema if exists "{schema}" cascade')

    # ------------------------------------------------------------------ the tools
    def engine(self, full: bool):
        if full:
            self.drop_schema(SCHEMAS["engine"])
        return measured([*ingest_command(), *(["--full-refresh"] if full else []), "--no-lake", "--schema",
                         SCHEMAS["engine"], "--stores-csv", "none", "--streams", *TABLES], env=self.env)

    def pipe(self, ddl: dict[str, str]):
        return measured([sys.executable, __file__, "--pipe-only", ";".join(f"{t}={d}" for t, d in ddl.items())],
                        env=self.env)

    def dlt(self, full: bool):
        pipelines = self.work / "dlt-pipelines"
        if full:
            self.drop_schema(SCHEMAS["dlt"])
            self.drop_schema(SCHEMAS["dlt"] + "_staging")
            shutil.rmtree(pipelines, ignore_errors=True)
        return measured([str(PEERS_ENV / "bin" / "python"), str(HERE / "peers_dlt.py"), "full" if full else "incr",
                         str(pipelines), SCHEMAS["dlt"]], env=self.env, quiet=True)

    def sling(self, full: bool):
        replication = self.work / "sling.yaml"
        streams = "\n".join(f"  {self.database}.{t}: {{primary_key: [{PRIMARY_KEYS[t]}], update_key: updated_at}}"
                            for t in TABLES)
        replication.write_text(f"source: PEERS_MYSQL\ntarget: PEERS_PG\ndefaults:\n"
                               f"  mode: {'full-refresh' if full else 'incremental'}\n"
                               f"  object: {SCHEMAS['sling']}.{{stream_table}}\nstreams:\n{streams}\n")
        if full:
            self.drop_schema(SCHEMAS["sling"])
        env = {**self.env, "PEERS_MYSQL": self.mysql_url, "PEERS_PG": self.warehouse_url + "?sslmode=disable",
               "SLING_THREADS": "2", "SLING_DISABLE_TELEMETRY": "true"}
        return measured([sling_binary(), "run", "-r", str(replication)], env=env, quiet=True)

    def pgloader(self):
        self.drop_schema(SCHEMAS["pgloader"])
        load = self.work / "pgloader.load"
        tables = ", ".join(f"'{t}'" for t in TABLES)
        load.write_text(f"LOAD DATABASE\n  FROM {self.mysql_url}\n  INTO {self.warehouse_url}\n"
                        "WITH include drop, create tables, create indexes, reset sequences\n"
                        "CAST type datetime to timestamptz drop default drop not null using zero-dates-to-null\n"
                        f"INCLUDING ONLY TABLE NAMES MATCHING {tables}\n"
                        f"ALTER SCHEMA '{self.database}' RENAME TO '{SCHEMAS['pgloader']}';\n")
        load.chmod(0o600)  # it holds the passwords; the command line names only the file
        return measured(["pgloader", "--quiet", str(load)], env=self.env, quiet=True)

    # ------------------------------------------------------------------ checks
    def check(self, tool: str, incremental: bool = False) -> str:
        """'' when every table holds MySQL's row count (and, after an incremental, MySQL's newest
        updated_at); otherwise what differs."""
        source = row_counts(self.mysql_url)
        problems = []
        conn = mysql_conn(self.mysql_url)
        with psycopg.connect(self.warehouse_url) as pg, conn.cursor() as cur:
            for t in TABLES:
                try:
                    got = pg.execute(f'select count(*), max(updated_at) from "{SCHEMAS[tool]}"."{t}"').fetchone()
                except psycopg.Error as exc:
                    problems.append(f"{t}: {exc.diag.message_primary}")
                    pg.rollback()
                    continue
                if got[0] != source[t]:
                    problems.append(f"{t}: {got[0]:,} rows, MySQL has {source[t]:,}")
                if incremental:
                    cur.execute(f"select date_format(max(updated_at), '%Y-%m-%d %H:%i:%s.%f') from `{t}`")
                    newest = cur.fetchone()[0]
                    have = got[1].strftime("%Y-%m-%d %H:%M:%S.%f") if got[1] is not None else None
                    if have != newest:
                        problems.append(f"{t}: newest updated_at {have}, MySQL's {newest}")
        conn.close()
        return "; ".join(problems)


def pipe_only(spec: str) -> int:
    """The raw pipe, in a process of its own: drop and create its tables, copy the four tables."""
    ddl = dict(part.split("=", 1) for part in spec.split(";"))
    with tempfile.TemporaryDirectory() as tmp:
        pipe = RawPipe(os.environ["RETAILFLOW_MYSQL_URL"], os.environ["RETAILFLOW_WAREHOUSE_URL"], Path(tmp),
                       schema=SCHEMAS["pipe"])
        pipe.prepare(ddl)
        started = time.monotonic()
        for t in TABLES:
            pipe.copy(t)
        print(f"copied in {time.monotonic() - started:.2f} s", flush=True)
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--orders", type=int, default=400_000, help="orders to seed (≈ 2.5 lines each; default "
                    "%(default)s ≈ 1M order lines)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--pipe-only", metavar="DDL", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.pipe_only:
        return pipe_only(args.pipe_only)
    with throwaway_databases("peers") as dbs, tempfile.TemporaryDirectory(prefix="retailflow-bench-peers-") as tmp:
        return measure(args, dbs.mysql_url, dbs.warehouse_url, Path(tmp))


def measure(args, mysql_url: str, warehouse_url: str, work: Path) -> int:
    print(f"load average before: {load_average()}", flush=True)
    # the URL (with its password) through the environment, never argv: every local user reads argv in `ps`
    generator_env = {**os.environ, "RETAILFLOW_MYSQL_URL": mysql_url}
    subprocess.run([*generator_command(), "seed", "--customers", "50000", "--products", "2000", "--orders",
                    str(args.orders), "--start", "2024-01-01", "--end", "2025-12-31", "--seed", "7"], check=True,
                   env=generator_env)
    counts = row_counts(mysql_url)
    rows = sum(counts.values())
    print(f"source: {counts} ({rows:,} rows)", flush=True)
    b = Bench(mysql_url, warehouse_url, work)

    # the engine's column types give the pipe its tables (and the reference for the others' types)
    b.engine(full=True)
    reference = {t: typed_columns(warehouse_url, SCHEMAS["engine"], t) for t in TABLES}
    ddl = {t: ", ".join(f'"{c}" {ty}' for c, ty in cols) for t, cols in reference.items()}

    tools = [Tool("engine", lambda: b.engine(True), lambda: b.engine(False)), Tool("pipe", lambda: b.pipe(ddl))]
    missing = []
    if (PEERS_ENV / "bin" / "python").exists():
        tools.append(Tool("dlt", lambda: b.dlt(True), lambda: b.dlt(False)))
    else:
        missing.append("dlt (make peers-env)")
    if sling_binary():
        tools.append(Tool("sling", lambda: b.sling(True), lambda: b.sling(False)))
    else:
        missing.append("sling (make peers-env)")
    if shutil.which("pgloader"):
        tools.append(Tool("pgloader", b.pgloader))
    else:
        missing.append("pgloader (apt-get install pgloader)")
    for name in missing:
        print(f"bench_peers: skipped {name}: not installed", flush=True)

    for r in range(args.rounds):
        order = tools[r % len(tools):] + tools[:r % len(tools)]
        pipe_seconds = None
        results = {}
        for tool in order:
            settle()
            try:
                step = tool.full()
            except subprocess.CalledProcessError as exc:
                tool.failed = f"exited {exc.returncode}"
                print(f"round {r + 1}: {tool.name} failed ({tool.failed})", flush=True)
                continue
            problem = b.check(tool.name)
            if problem:
                tool.failed = problem
            results[tool.name] = step
            if tool.name == "pipe":
                pipe_seconds = step.seconds
        for tool in tools:
            if tool.name in results:
                step = results[tool.name]
                tool.runs.append({"seconds": step.seconds, "rss": step.peak_rss_mb,
                                  "ratio": pipe_seconds / step.seconds if pipe_seconds else float("nan")})
        print(f"round {r + 1} (load {load_average()}): " + ", ".join(
            f"{t.name} {rows / results[t.name].seconds:,.0f} rows/s ({results[t.name].seconds:.2f} s)"
            for t in order if t.name in results), flush=True)

    # column types in the target, beside the engine's
    for tool in tools:
        if tool.name in ("engine", "pipe") or tool.failed:
            continue
        differ = []
        for t in TABLES:
            theirs = dict(typed_columns(warehouse_url, SCHEMAS[tool.name], t))
            for column, ours in reference[t]:
                if theirs.get(column) != ours:
                    differ.append(f"{t}.{column} {theirs.get(column, 'missing')} (engine: {ours})")
        print(f"types {tool.name}: " + ("same as the engine's" if not differ else "; ".join(differ)), flush=True)

    # incremental: every tool's state is that of its last full load; each tick changes ~1%
    incr_tools = [t for t in tools if t.incr and t.name in INCREMENTAL and not t.failed]
    for tick in range(args.rounds):
        since = time.time()
        conn = mysql_conn(mysql_url)
        with conn.cursor() as cur:
            cur.execute("select utc_timestamp(6)")
            tick_start = cur.fetchone()[0]
        subprocess.run([*generator_command(), "live", "--iterations", "1", "--interval", "1", "--rate",
                        str(max(1, rows // 380)), "--seed", str(20 + tick)], check=True,
                       stdout=subprocess.DEVNULL, env=generator_env)
        with conn.cursor() as cur:
            changed = 0
            for t in TABLES:
                cur.execute(f"select count(*) from `{t}` where updated_at >= %s", (tick_start,))
                changed += cur.fetchone()[0]
        conn.close()
        order = incr_tools[tick % len(incr_tools):] + incr_tools[:tick % len(incr_tools)]
        line = []
        for tool in order:
            settle()
            try:
                step = tool.incr()
            except subprocess.CalledProcessError as exc:
                tool.failed = f"incremental exited {exc.returncode}"
                continue
            problem = b.check(tool.name, incremental=True)
            if problem:
                tool.failed = f"incremental: {problem}"
            tool.incr_runs.append({"seconds": step.seconds, "rss": step.peak_rss_mb, "changed": changed})
            line.append(f"{tool.name} {step.seconds:.2f} s")
        print(f"incremental {tick + 1}: {changed:,} rows changed ({changed / rows:.2%}), took {time.time() - since:.0f} s"
              f" in all: " + ", ".join(line), flush=True)

    # ------------------------------------------------------------------ figures
    best_full, best_incr = {}, {}
    for tool in tools:
        if tool.failed:
            bench(f"peers_{tool.name}_failed", "1", tool.failed)
            continue
        if not tool.runs:
            continue
        best = min(tool.runs, key=lambda run: run["seconds"])
        best_full[tool.name] = rows / best["seconds"]
        bench(f"peers_{tool.name}_full_rows_per_s", f"{rows / best['seconds']:.0f}",
              "rounds: " + ", ".join(f"{rows / run['seconds']:,.0f}" for run in tool.runs))
        bench(f"peers_{tool.name}_ratio_to_pipe", f"{max(run['ratio'] for run in tool.runs):.3f}",
              "best round's; rounds: " + ", ".join(f"{run['ratio']:.3f}" for run in tool.runs))
        bench(f"peers_{tool.name}_peak_rss_mb", f"{max(run['rss'] for run in tool.runs):.0f}")
        if tool.incr_runs:
            fastest = min(tool.incr_runs, key=lambda run: run["seconds"])
            best_incr[tool.name] = fastest["changed"] / fastest["seconds"]
            bench(f"peers_{tool.name}_incr_rows_per_s", f"{best_incr[tool.name]:.0f}",
                  f"{fastest['changed']:,} rows changed in {fastest['seconds']:.2f} s")
            bench(f"peers_{tool.name}_incr_s", f"{fastest['seconds']:.3f}",
                  "ticks: " + ", ".join(f"{run['seconds']:.2f}" for run in tool.incr_runs))
            bench(f"peers_{tool.name}_incr_peak_rss_mb", f"{max(run['rss'] for run in tool.incr_runs):.0f}")
    for kind, best in (("full", best_full), ("incr", best_incr)):
        peers = {name: rate for name, rate in best.items() if name not in ("engine", "pipe")}
        if "engine" in best and peers:
            leader = max(peers, key=peers.get)
            bench(f"peers_engine_vs_best_peer_{kind}", f"{best['engine'] / peers[leader]:.2f}",
                  f"best peer {leader}; target >= 1.5")
    bench("peers_rows", rows)
    bench("peers_load_average", f"'{load_average()}'", "1, 5, 15 min at the end")
    return 0


if __name__ == "__main__":
    sys.exit(main())
