"""Ingestion speed: the local engine against the raw pipe, and an incremental sync against a full load.

Seeds a throwaway MySQL database with ``retailflow-generator`` and loads a throwaway warehouse
database, both dropped at the end. Prints ``bench: <name> <value>`` lines:

- ``ingest_vs_raw_pipe``: the engine's full-load rows/s over the rows/s of
  ``mysql --quick --batch … | psql -c "\\copy …"`` on the same four tables in the same run (each side
  measured ``--rounds`` times, alternating, best kept: the machine is shared; every figure is
  printed). Target ≥ 0.9.
- ``raw_pipe_airbyte_shape_rows_per_s`` and ``ingest_vs_raw_pipe_airbyte_shape``: like for like. The
  raw pipe above writes less than the engine: tables without Airbyte's four meta columns and without
  indexes. This second pipe copies into the engine's table shape (record id from
  ``gen_random_uuid()``, the other meta columns as defaults) and then builds the engine's three
  indexes per table; measured in the same rounds.
- ``ingest_without_indexes_rows_per_s``, ``ingest_without_indexes_vs_raw_pipe`` and
  ``ingest_index_builds_seconds``: the floor. The same full load with the engine's index builds
  replaced by nothing (in the measuring process only; into an empty schema, so the tables are created
  rather than swapped in), one per round, and the difference of the two best times: what the three
  indexes per table of Airbyte's tables add to the load's wall time, with the swap and the old
  tables' drop, which the floor's loads do not do.
- ``raw_pipe_cpu_seconds``, ``ingest_full_cpu_seconds``, ``ingest_cpu_vs_raw_pipe``, ``raw_pipe_cpu_use``,
  ``ingest_cpu_use`` and ``ingest_vs_raw_pipe_cpu_bound``: the floor in CPU (Linux only: read from
  ``/proc/stat``). The CPU-seconds the whole machine spent during the pipe's copies and during the
  engine's load (client, MySQL and PostgreSQL alike; anything else running counts too), the best of
  the rounds, and their ratio; the share of the cores each kept busy in its fastest round (over the
  window its CPU-seconds were read in, which for the engine adds its start and clean-up); and the
  ``ingest_vs_raw_pipe`` the engine would reach if it kept every core busy from start to end
  (the pipe's best time over the engine's least CPU-seconds divided by the cores): where both sides
  are CPU-bound, a ratio above it needs the engine to spend less CPU, not to wait less. Whatever else
  runs on the machine counts too: with other work keeping the cores busy, ``ingest_cpu_use`` comes out
  near 1 and the bound merely repeats ``ingest_vs_raw_pipe``; read these lines from a quiet machine.
- ``ingest_full_with_lake_rows_per_s``: one more full load that also writes the lake (Parquet files
  to a local folder, and the manifests), as the pipeline's DAG does; the figures above write none,
  like the pipe.
- ``ingest_peak_rss_mb``: the peak resident memory of the engine's process over the full loads (the
  engine runs in a process of its own). Target < 1024.
- ``incremental_vs_full``: the time of an incremental sync after about 1% of the rows were added or
  changed (one tick of ``retailflow-generator live``: new orders and lines, open orders moving on),
  over the time of the full load; ``--rounds`` + 1 ticks, each followed by a sync, the best kept
  (like the full loads; every figure is printed). Target ≤ 0.05. The raw tables are vacuumed first,
  as autovacuum would have done between two scheduled syncs.
- ``ingest_incremental_cli_wall_seconds``: the same kind of sync (one more tick each) through the
  ``retailflow-ingest`` command, wall clock of the whole process: interpreter start, imports,
  connections, the sync and exit, as a scheduler (or a comparison with other tools) sees it; best of
  ``--rounds`` + 1. Each sync also re-reads the earlier ticks' rows (they are inside the 5-minute
  lookback window), so it reads more than 1%. ``ingest_cli_outside_sync_seconds``: the part of that
  wall time outside the sync (interpreter start, imports, exit), best of the same runs;
  ``ingest_incremental_cli_cpu_seconds``: the CPU time (user + system) of that process, best of the
  same runs (what it takes from a machine that runs other things).
- ``dbt_build_seconds``: ``python -m retailflow_pipeline.dbt build`` on the tables the engine wrote
  (skipped with ``--no-dbt``).

Before each timed load or sync the benchmark calls ``sync(2)``: the kernel writes back the previous
load's files (hundreds of MB of table and WAL pages) instead of doing it, with its CPU and I/O, during
whichever measurement comes next.

The engine syncs two streams at once (``parallel=2``, its default); the pipe copies one table after
the other, as ``mysql | psql`` does.

    hack/with-env uv run --project dags python tests/bench/bench_ingest.py [--orders N]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchlib import (  # noqa: E402
    ENGINE_MODULE,
    PRIMARY_KEYS,
    REPO,
    TABLES,
    MachineCPU,
    RawPipe,
    bench,
    cores,
    drop_warehouse,
    engine_module,
    machine_cpu,
    mysql_conn,
    settle,
    throwaway_name,
    throwaway_tag,
    with_database,
)

_engine = engine_module()
run, configure_logging = _engine.run, _engine.configure_logging


ENGINE_FULL_LOAD = """
import importlib, json, os, resource, sys, time
sys.path.insert(0, sys.argv[6])
from benchlib import machine_cpu
_engine = importlib.import_module(sys.argv[3])
LakeConfig, run = _engine.LakeConfig, _engine.run
lake = LakeConfig(local_dir=sys.argv[2]) if sys.argv[2] else None
if sys.argv[5] == "without-indexes":  # the floor measurement: the same load, its index builds left out
    _engine.Warehouse.create_indexes = lambda *args, **kwargs: None
before, began = machine_cpu(), time.monotonic()
result = run(os.environ["RETAILFLOW_MYSQL_URL"], os.environ["RETAILFLOW_WAREHOUSE_URL"], schema=sys.argv[4],
             stores_csv=None, streams=sys.argv[1].split(","), full_refresh=True, lake=lake)
used = machine_cpu() - before if before else None
ended = time.monotonic()  # the CPU's window: the engine's own seconds leave out its start and its clean-up
print(json.dumps({"seconds": result.seconds, "cpu_window_seconds": ended - began, "rows": result.rows_read,
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "cpu": used and used.work, "stolen": used and used.stolen}))
"""


def use(cpu_seconds: float, wall_seconds: float) -> float:
    """The share of the machine's cores kept busy: CPU-seconds over wall seconds times cores."""
    return cpu_seconds / (wall_seconds * cores()) if wall_seconds > 0 else 0.0


def engine_full_load(mysql_url: str, wh_url: str, lake_dir: Path | None = None, *, schema: str = "raw",
                     indexes: bool = True) -> dict:
    """One full load by the engine in a process of its own (URLs through the environment): its time as
    the engine reports it, the process's peak RSS, and the machine's CPU-seconds over the load
    (``cpu``: every process's work, the servers' included; ``stolen``: taken by the host; None without
    ``/proc/stat``), and the seconds of the window that CPU was read over (``cpu_window_seconds``: the
    engine's own ``seconds`` plus its start and clean-up). With ``lake_dir`` it also writes the lake there.
    ``indexes=False``: the engine's index builds are replaced by nothing in that process (a measurement
    of what they cost, not a mode of the engine); into an empty ``schema``, where the load creates its
    tables (a swap would rename their indexes)."""
    done = subprocess.run([sys.executable, "-c", ENGINE_FULL_LOAD, ",".join(TABLES),
                           str(lake_dir) if lake_dir else "", ENGINE_MODULE, schema,
                           "with-indexes" if indexes else "without-indexes", str(Path(__file__).resolve().parent)],
                          capture_output=True, text=True,
                          env={**os.environ, "RETAILFLOW_MYSQL_URL": mysql_url, "RETAILFLOW_WAREHOUSE_URL": wh_url},
                          check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--orders", type=int, default=400_000, help="orders to seed (about 2.5 lines each; default "
                    "%(default)s ≈ 1M order lines)")
    ap.add_argument("--no-dbt", action="store_true", help="skip the dbt build timing")
    ap.add_argument("--customers", type=int, default=50_000)
    ap.add_argument("--products", type=int, default=2_000)
    ap.add_argument("--rounds", type=int, default=3, help="full loads of each side, alternating (default %(default)s)")
    args = ap.parse_args()
    configure_logging()
    base_mysql = os.environ.get("RETAILFLOW_MYSQL_URL")
    base_wh = os.environ.get("RETAILFLOW_WAREHOUSE_URL")
    if not base_mysql or not base_wh:
        sys.exit("bench_ingest: set RETAILFLOW_MYSQL_URL and RETAILFLOW_WAREHOUSE_URL (make services; hack/with-env)")
    tag = throwaway_tag(8)
    mysql_db, wh_db = throwaway_name("retail", "test_bench", tag), throwaway_name("warehouse", "test_bench", tag)
    mysql_url, wh_url = with_database(base_mysql, mysql_db), with_database(base_wh, wh_db)
    admin = mysql_conn(base_mysql, "")
    admin.cursor().execute(f"create database `{mysql_db}`")
    with psycopg.connect(base_wh, autocommit=True) as conn:
        conn.execute(f'create database "{wh_db}"')
    try:
        with tempfile.TemporaryDirectory() as tmp:
            return measure(args, mysql_url, wh_url, Path(tmp))
    finally:
        admin.cursor().execute(f"drop database if exists `{mysql_db}`")
        admin.close()
        drop_warehouse(base_wh, wh_db)


def measure(args, mysql_url: str, wh_url: str, tmp: Path) -> int:
    generator = shutil.which("retailflow-generator") or str(Path(sys.executable).parent / "retailflow-generator")
    # the URL (with its password) through the environment, never argv: every local user reads argv in `ps`
    generator_env = {**os.environ, "RETAILFLOW_MYSQL_URL": mysql_url}
    t0 = time.monotonic()
    subprocess.run(
        [generator, "seed", "--customers", str(args.customers), "--products", str(args.products),
         "--orders", str(args.orders), "--start", "2024-01-01", "--end", "2025-12-31", "--seed", "7"],
        check=True, env=generator_env)
    conn = mysql_conn(mysql_url)
    with conn.cursor() as cur:
        counts = {}
        for t in TABLES:
            cur.execute(f"select count(*) from `{t}`")
            counts[t] = cur.fetchone()[0]
    rows = sum(counts.values())
    print(f"seeded {counts} ({rows:,} rows) in {time.monotonic() - t0:.1f} s", flush=True)

    # the same typed tables on the pipe side, so both write the same column types
    first = run(mysql_url, wh_url, stores_csv=None, streams=list(TABLES))
    with psycopg.connect(wh_url) as pg:
        typed = {t: pg.execute(
            "select column_name, format_type(atttypid, atttypmod) from information_schema.columns c"
            " join pg_attribute a on a.attrelid = ('raw.' || c.table_name)::regclass and a.attname = c.column_name"
            " where table_schema = 'raw' and table_name = %s and column_name not like '\\_airbyte%%'"
            " order by ordinal_position", (t,)).fetchall() for t in TABLES}
    ddl = {t: ", ".join(f'"{c}" {ty}' for c, ty in cols) for t, cols in typed.items()}
    print(f"first load (creates the tables): {first.seconds:.2f} s", flush=True)
    pipe = RawPipe(mysql_url, wh_url, tmp)
    pipe_times, shaped_times, engine_runs, floor_runs, lake_runs = [], [], [], [], []
    pipe_cpu: list[MachineCPU] = []
    for _ in range(args.rounds):
        pipe.prepare(ddl)
        settle()
        before = machine_cpu()
        start = time.monotonic()
        for t in TABLES:
            pipe.copy(t)
        pipe_times.append(time.monotonic() - start)
        if before is not None:
            pipe_cpu.append(machine_cpu() - before)
        # like for like: the same pipe into the engine's table shape, then the engine's indexes
        pipe.prepare_airbyte_shape(ddl)
        settle()
        start = time.monotonic()
        for t in TABLES:
            pipe.copy(t, ", ".join(f'"{c}"' for c, _ in typed[t]))
            pipe.index(t, PRIMARY_KEYS[t])
        shaped_times.append(time.monotonic() - start)
        pipe.psql("drop schema pipe cascade")
        settle()
        engine_runs.append(engine_full_load(mysql_url, wh_url))
        # the floor: the same load without the three index builds per table that Airbyte's tables carry
        with psycopg.connect(wh_url, autocommit=True) as pg:
            pg.execute("drop schema if exists floor cascade")
        settle()
        floor_runs.append(engine_full_load(mysql_url, wh_url, schema="floor", indexes=False))
        print(f"round {len(pipe_times)}: raw pipe {rows / pipe_times[-1]:,.0f} rows/s ({pipe_times[-1]:.2f} s),"
              f" raw pipe into the engine's tables and indexes {rows / shaped_times[-1]:,.0f} rows/s"
              f" ({shaped_times[-1]:.2f} s), engine {rows / engine_runs[-1]['seconds']:,.0f} rows/s"
              f" ({engine_runs[-1]['seconds']:.2f} s), ratio {pipe_times[-1] / engine_runs[-1]['seconds']:.3f}"
              f" (like for like {shaped_times[-1] / engine_runs[-1]['seconds']:.3f}); engine without its index builds"
              f" {rows / floor_runs[-1]['seconds']:,.0f} rows/s ({floor_runs[-1]['seconds']:.2f} s), ratio"
              f" {pipe_times[-1] / floor_runs[-1]['seconds']:.3f}", flush=True)
        if pipe_cpu and engine_runs[-1]["cpu"] is not None:
            piped, loaded = pipe_cpu[-1], engine_runs[-1]
            print(f"  the machine's CPU-seconds: raw pipe {piped.work:.2f} ({use(piped.work, pipe_times[-1]):.0%} of"
                  f" {cores()} cores), engine {loaded['cpu']:.2f} ({use(loaded['cpu'], loaded['cpu_window_seconds']):.0%}),"
                  f" engine over pipe {loaded['cpu'] / piped.work:.3f}; stolen by the host {piped.stolen:.2f} and"
                  f" {loaded['stolen']:.2f}", flush=True)
    with psycopg.connect(wh_url, autocommit=True) as pg:
        pg.execute("drop schema if exists floor cascade")
    lake_dir = tmp / "lake"
    settle()
    lake_runs.append(engine_full_load(mysql_url, wh_url, lake_dir))
    print(f"engine with a local lake: {rows / lake_runs[-1]['seconds']:,.0f} rows/s ({lake_runs[-1]['seconds']:.2f} s)",
          flush=True)
    shutil.rmtree(lake_dir, ignore_errors=True)
    engine_times = [r["seconds"] for r in engine_runs]
    engine_rate, pipe_rate, shaped_rate = rows / min(engine_times), rows / min(pipe_times), rows / min(shaped_times)
    bench("raw_pipe_rows_per_s", f"{pipe_rate:.0f}")
    bench("ingest_full_rows_per_s", f"{engine_rate:.0f}")
    bench("ingest_vs_raw_pipe", f"{engine_rate / pipe_rate:.3f}")
    bench("raw_pipe_airbyte_shape_rows_per_s", f"{shaped_rate:.0f}")
    bench("ingest_vs_raw_pipe_airbyte_shape", f"{engine_rate / shaped_rate:.3f}")
    floor_rate = rows / min(r["seconds"] for r in floor_runs)
    bench("ingest_without_indexes_rows_per_s", f"{floor_rate:.0f}")
    bench("ingest_without_indexes_vs_raw_pipe", f"{floor_rate / pipe_rate:.3f}")
    bench("ingest_index_builds_seconds", f"{rows / engine_rate - rows / floor_rate:.2f}")
    bench("ingest_full_with_lake_rows_per_s", f"{rows / lake_runs[0]['seconds']:.0f}")
    if pipe_cpu and all(r["cpu"] is not None for r in engine_runs):
        # the floor in CPU: both sides keep this machine's cores busy, so wall time follows CPU time
        engine_cpu, piped_cpu = min(r["cpu"] for r in engine_runs), min(c.work for c in pipe_cpu)
        bench("raw_pipe_cpu_seconds", f"{piped_cpu:.2f}")
        bench("ingest_full_cpu_seconds", f"{engine_cpu:.2f}")
        bench("ingest_cpu_vs_raw_pipe", f"{engine_cpu / piped_cpu:.3f}")
        fastest = min(range(len(engine_runs)), key=lambda i: engine_runs[i]["seconds"])
        bench("ingest_cpu_use", f"{use(engine_runs[fastest]['cpu'], engine_runs[fastest]['cpu_window_seconds']):.3f}")
        quickest = min(range(len(pipe_times)), key=pipe_times.__getitem__)
        bench("raw_pipe_cpu_use", f"{use(pipe_cpu[quickest].work, pipe_times[quickest]):.3f}")
        bench("ingest_vs_raw_pipe_cpu_bound", f"{min(pipe_times) / (engine_cpu / cores()):.3f}")
    bench("ingest_peak_rss_mb", f"{max(r['peak_rss_mb'] for r in engine_runs + lake_runs):.0f}")

    # between scheduled syncs autovacuum visits freshly loaded tables; do it now so the incremental
    # sync meets the steady state instead of racing a vacuum of a million rows
    with psycopg.connect(wh_url, autocommit=True) as pg:
        for t in TABLES:
            pg.execute(f"vacuum (analyze) raw.{t}")

    # +1%: one tick of the generator's live shop (new orders with their lines, open orders moving
    # along: the changes the pipeline sees in production, concentrated on recent orders), sized so
    # that about 1% of all rows are new or changed
    conn.close()
    incrementals, ok = [], True
    for tick in range(args.rounds + 1):
        subprocess.run([generator, "live", "--iterations", "1", "--interval", "1", "--rate", str(max(1, rows // 380)),
                        "--seed", str(7 + tick)], check=True, env=generator_env)
        settle()
        incremental = run(mysql_url, wh_url, stores_csv=None, streams=list(TABLES))
        written = sum(s.inserted + s.updated for s in incremental.streams.values())
        print(f"incremental {tick + 1}: {written:,} rows new or changed ({written / rows:.2%} of {rows:,})"
              f" in {incremental.seconds:.3f} s; full load {min(engine_times):.2f} s", flush=True)
        incrementals.append(incremental.seconds)
        ok = ok and written >= rows // 200
    bench("ingest_incremental_seconds", f"{min(incrementals):.3f}")
    bench("incremental_vs_full", f"{min(incrementals) / min(engine_times):.4f}")
    # the same, as a scheduler or another tool's comparison sees it: the whole retailflow-ingest process
    # (interpreter, imports, connections, sync, exit), wall clock
    ingest_cli = shutil.which("retailflow-ingest") or str(Path(sys.executable).parent / "retailflow-ingest")
    walls, outside, cpus = [], [], []
    for tick in range(args.rounds + 1):
        subprocess.run([generator, "live", "--iterations", "1", "--interval", "1", "--rate", str(max(1, rows // 380)),
                        "--seed", str(107 + tick)], check=True, env=generator_env)
        settle()
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.monotonic()
        done = subprocess.run([ingest_cli, "--no-lake", "--stores-csv", "none", "--streams", *TABLES],
                              env={**os.environ, "RETAILFLOW_MYSQL_URL": mysql_url, "RETAILFLOW_WAREHOUSE_URL": wh_url},
                              capture_output=True, text=True, check=True)
        wall, summary = time.monotonic() - start, done.stdout.strip().splitlines()[-1]
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpus.append(after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime)
        walls.append(wall)
        # what the process spends around the sync itself: interpreter, imports, argument checks, exit
        outside.append(wall - float(re.search(r"rows read in ([\d.]+) s", summary)[1]))
        print(f"incremental through the command line {tick + 1}: {wall:.3f} s wall, {outside[-1]:.3f} s of it"
              f" outside the sync, {cpus[-1]:.3f} CPU-s; {summary}", flush=True)
    bench("ingest_incremental_cli_wall_seconds", f"{min(walls):.3f}")
    bench("ingest_cli_outside_sync_seconds", f"{min(outside):.3f}")
    bench("ingest_incremental_cli_cpu_seconds", f"{min(cpus):.3f}")
    if not args.no_dbt:
        ok = dbt_build(mysql_url, wh_url) and ok
    return 0 if ok else 1


def dbt_build(mysql_url: str, wh_url: str) -> bool:
    """The dbt project on what the engine wrote: the marts must build, and how long that takes."""
    stores_csv = REPO / "data" / "store_locations.csv"
    run(mysql_url, wh_url, streams=["store_locations"], stores_csv=stores_csv)
    start = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "retailflow_pipeline.dbt", "build"], cwd=REPO,
                          env={**os.environ, "RETAILFLOW_WAREHOUSE_URL": wh_url}, capture_output=True, text=True)
    if done.returncode != 0:
        print(done.stdout[-3000:], done.stderr[-3000:], "dbt build failed", sep="\n", flush=True)
        return False
    bench("dbt_build_seconds", f"{time.monotonic() - start:.1f}")
    return True


if __name__ == "__main__":
    sys.exit(main())
