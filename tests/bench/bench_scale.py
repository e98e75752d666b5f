"""How the pipeline's cost grows with the data: the same steps at 10k, 100k and 1M orders (10M on
request), each size in throwaway databases.

For each size (``--scales``, or ``$SCALES``: ``10k,100k,1M`` by default; ``3M`` and ``10M`` are
opt-in), one run of each step:

- ``generator``: ``retailflow-generator seed`` (customers = orders / 10, products = orders / 100, at
  least 500; two years of history);
- ``ingest_full``: the engine's command line (``retailflow-ingest --full-refresh --no-lake``; the four
  source tables and the store CSV);
- ``ingest_incr``: one tick of ``retailflow-generator live`` that adds or changes about 1% of the rows
  (as in bench_ingest.py), then ``retailflow-ingest --no-lake``;
- ``dbt_build``: ``python -m retailflow_pipeline.dbt build`` on what the engine wrote;
- ``audit``: ``python -m retailflow_pipeline.audit`` (``make audit``: MySQL against the marts just built);
- ``warehouse_mb``: ``pg_database_size`` of the warehouse database after the build (raw, staging and
  marts, with their indexes);
- ``dag_run``: ``retail_pipeline`` (full refresh) through a local Airflow of its own (bench_dags.py's
  machinery), from the trigger to success; it ingests (with a local lake) and builds again;
  ``dag_vs_steps`` is its time over the full ingestion, ``dbt build`` and the audit above (which write
  no lake: ``make bench-dags ORDERS=1000000`` gives the like-for-like ratio, ``dag_overhead_ratio``).

Time is wall-clock seconds of the step's process, start-up included. Memory (``*_rss_mb``): each step
runs in a fresh process, started by a small intermediate interpreter that reads
``getrusage(RUSAGE_CHILDREN).ru_maxrss`` when it ends: the largest resident set of the step's process
or of any descendant it waited for (children included, as a maximum, not a sum; see
``benchlib.measured`` for why not ``wait4`` from this process). The Airflow
run is polled instead (psutil, every 0.5 s): ``dag_rss_mb`` is the peak of the summed RSS of the
Airflow process group (scheduler, API server, DAG processor, triggerer and the task processes), and
``dag_task_rss_mb`` the largest single process in it. The database servers' own memory is not counted.

Prints ``bench: scale_<size>_<metric> <value>`` lines and ``bench: scale_rss_growth_<step>`` (the peak
RSS at the largest size over the smallest), and writes a CSV (``--csv``, default ``.bench/scale.csv``;
a size measured again replaces its row). ``make bench-scale-plot`` draws ``docs/bench-scale.png`` from
it. Each size records the machine's load averages (1, 5, 15 min) before and after.

    make bench-scale                      # 10k, 100k, 1M
    make bench-scale SCALES=1M,3M         # memory growth past 1M without the 10M seed
    make bench-scale SCALES=10M           # the large size alone (hours on 2 cores)
"""

from __future__ import annotations

import argparse
import csv
import os
import re
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil
import psycopg

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from bench_dags import start_airflow, stop_airflow  # noqa: E402
from benchlib import (  # noqa: E402
    REPO,
    bench,
    generator_command,
    ingest_command,
    load_average,
    measured,
    row_counts,
    seed_shape,
    settle,
    throwaway_databases,
)

SIZES = {"10k": 10_000, "100k": 100_000, "1M": 1_000_000, "3M": 3_000_000, "10M": 10_000_000}
DEFAULT_SCALES = "10k,100k,1M"
#: the most new orders a second ``retailflow-generator live`` accepts
LIVE_MAX_RATE = 10_000
COLUMNS = ["size", "orders", "source_rows", "order_lines", "generator_s", "generator_rss_mb", "ingest_full_s",
           "ingest_full_rss_mb", "ingest_incr_s", "ingest_incr_rss_mb", "incr_rows", "dbt_build_s",
           "dbt_build_rss_mb", "audit_s", "audit_rss_mb", "warehouse_mb", "dag_run_s", "dag_vs_steps", "dag_rss_mb",
           "dag_task_rss_mb", "load_before", "load_after"]
#: steps whose time and memory the plot and the growth lines show
STEPS = ("generator", "ingest_full", "ingest_incr", "dbt_build", "audit", "dag")


class TreeMemory:
    """Polls the summed RSS of a process and its descendants (and the largest single one) until stopped."""

    def __init__(self, pid: int, every: float = 0.5):
        self.pid, self.every = pid, every
        self.peak_sum = self.peak_one = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def _poll(self) -> None:
        root = psutil.Process(self.pid)
        while not self._stop.is_set():
            total = largest = 0
            try:
                procs = [root, *root.children(recursive=True)]
            except psutil.NoSuchProcess:
                return
            for proc in procs:
                try:
                    rss = proc.memory_info().rss
                except psutil.Error:
                    continue
                total += rss
                largest = max(largest, rss)
            self.peak_sum, self.peak_one = max(self.peak_sum, total), max(self.peak_one, largest)
            self._stop.wait(self.every)

    def __enter__(self) -> TreeMemory:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


class Row(dict):
    """A size's figures; each is printed as a ``bench:`` line as soon as it is known (a long size
    that is stopped still leaves what it measured)."""

    def __setitem__(self, key: str, value) -> None:
        super().__setitem__(key, value)
        if key not in ("size", "load_before", "load_after"):
            bench(f"scale_{self['size']}_{key}", f"{value:.2f}" if isinstance(value, float) else value)

    def update(self, other: dict) -> None:
        for key, value in other.items():
            self[key] = value


def measure_size(size: str, orders: int, work: Path, airflow: bool, save) -> dict:
    row = Row(size=size)
    row["orders"] = orders
    row["load_before"] = load_average()
    with throwaway_databases(f"scale_{size.lower()}", extra_pg=["airflow"]) as dbs:
        # the URLs (with their passwords) reach every step through the environment, never argv (`ps`)
        env = {**os.environ, "RETAILFLOW_MYSQL_URL": dbs.mysql_url, "RETAILFLOW_WAREHOUSE_URL": dbs.warehouse_url}
        gen = generator_command()
        customers, products = seed_shape(orders)
        step = measured([*gen, "seed", "--customers", str(customers), "--products", str(products),
                         "--orders", str(orders), "--start", "2024-01-01", "--end", "2025-12-31", "--seed", "11"],
                        env=env)
        row["generator_s"], row["generator_rss_mb"] = step.seconds, step.peak_rss_mb
        counts = row_counts(dbs.mysql_url)
        row["source_rows"], row["order_lines"] = sum(counts.values()), counts["order_items"]
        print(f"{size}: seeded {counts} in {step.seconds:.1f} s", flush=True)

        settle()
        step = measured([*ingest_command(), "--full-refresh", "--no-lake"], env=env)
        row["ingest_full_s"], row["ingest_full_rss_mb"] = step.seconds, step.peak_rss_mb
        print(f"{size}: full ingestion {step.seconds:.1f} s\n{step.stdout.strip()}", flush=True)
        with psycopg.connect(dbs.warehouse_url, autocommit=True) as pg:
            for t in ("customers", "products", "orders", "order_items"):
                pg.execute(f"vacuum (analyze) raw.{t}")  # as autovacuum would between two scheduled syncs

        # one tick of about 1% of the rows: rate x interval new orders (live takes at most 10,000 a second)
        wanted = max(1, row["source_rows"] // 380)
        interval = -(-wanted // LIVE_MAX_RATE)
        measured([*gen, "live", "--iterations", "1", "--interval", str(interval), "--rate",
                  str(-(-wanted // interval)), "--seed", "12"], env=env, quiet=True)
        settle()
        step = measured([*ingest_command(), "--no-lake"], env=env)
        row["ingest_incr_s"], row["ingest_incr_rss_mb"] = step.seconds, step.peak_rss_mb
        written = sum(int(n.replace(",", "")) + int(m.replace(",", "")) for n, m in re.findall(
            r"^(?:customers|products|orders|order_items)\s+\S+\s+[\d,]+\s+([\d,]+)\s+([\d,]+)", step.stdout, re.M))
        row["incr_rows"] = written
        print(f"{size}: incremental ingestion {step.seconds:.2f} s, {written:,} rows new or changed"
              f" ({written / row['source_rows']:.2%})", flush=True)

        settle()
        target = work / f"dbt-{size}"
        step = measured([sys.executable, "-m", "retailflow_pipeline.dbt", "build", "--quiet", "--target-path",
                         str(target), "--log-path", str(target / "logs")], env=env, cwd=REPO)
        row["dbt_build_s"], row["dbt_build_rss_mb"] = step.seconds, step.peak_rss_mb
        with psycopg.connect(dbs.warehouse_url) as pg:
            row["warehouse_mb"] = pg.execute("select pg_database_size(current_database())").fetchone()[0] / 2**20
        print(f"{size}: dbt build {step.seconds:.1f} s; warehouse {row['warehouse_mb']:.0f} MB", flush=True)

        settle()
        step = measured([sys.executable, "-m", "retailflow_pipeline.audit"], env=env, cwd=REPO)
        row["audit_s"], row["audit_rss_mb"] = step.seconds, step.peak_rss_mb
        print(f"{size}: audit {step.seconds:.1f} s", flush=True)

        if airflow:
            save(row)  # the steps so far, in case the long Airflow run is stopped
            row.update(dag_run(size, work, dbs))
            steps = row["ingest_full_s"] + row["dbt_build_s"] + row["audit_s"]
            row["dag_vs_steps"] = row["dag_run_s"] / steps
    row["load_after"] = load_average()
    return row


def dag_run(size: str, work: Path, dbs) -> dict:
    """retail_pipeline (full refresh) through a local Airflow of its own: seconds, memory."""
    from retailflow_pipeline import dbt
    from retailflow_pipeline.runs import follow

    home = work / f"airflow-{size}"
    home.mkdir()
    manifest = home / "dbt-target" / "manifest.json"
    assert dbt.run(["parse", "--quiet"], warehouse_url=dbs.warehouse_url, target_path=manifest.parent,
                   log_path=home / "dbt-logs") == 0
    # the project the parse above read, parsed into a folder of this run's (its dbt/target stays the user's)
    api, env = start_airflow(home, dbs.mysql_url, dbs.warehouse_url, dbs.extra["airflow"], manifest,
                             dbt.project_dir())
    try:
        pid = int((home / "run" / "airflow.pid").read_text().strip())
        settle()
        with TreeMemory(pid) as memory:
            began = time.monotonic()
            run_id = api.trigger("retail_pipeline", {"full_refresh": True})["dag_run_id"]
            final = follow(api, "retail_pipeline", run_id, timeout=6 * 3600, poll=2, echo=lambda _: None)
            seconds = time.monotonic() - began
        if final["state"] != "success":
            raise SystemExit(f"bench_scale: retail_pipeline run {run_id} ended {final['state']} at {size}")
        print(f"{size}: retail_pipeline through Airflow {seconds:.1f} s", flush=True)
        return {"dag_run_s": seconds, "dag_rss_mb": memory.peak_sum / 2**20, "dag_task_rss_mb": memory.peak_one / 2**20}
    finally:
        stop_airflow(env)


def write_csv(path: Path, rows: list[dict]) -> None:
    """Merge into the CSV: a size measured again replaces its row; rows are kept in order of size."""
    old = []
    if path.exists():
        with path.open() as f:
            old = [r for r in csv.DictReader(f) if r["size"] not in {row["size"] for row in rows}]
    merged = sorted(old + rows, key=lambda r: int(r["orders"]))
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS, extrasaction="ignore")
        writer.writeheader()
        for r in merged:
            writer.writerow({k: (f"{v:.3f}" if isinstance(v, float) else v) for k, v in r.items()})


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scales", default=os.environ.get("SCALES") or DEFAULT_SCALES,
                    help=f"sizes to run, of {', '.join(SIZES)} (default $SCALES or {DEFAULT_SCALES})")
    ap.add_argument("--csv", type=Path, default=REPO / ".bench" / "scale.csv")
    ap.add_argument("--no-airflow", action="store_true", help="skip the retail_pipeline run through Airflow")
    args = ap.parse_args()
    sizes = [s.strip() for s in args.scales.split(",") if s.strip()]
    unknown = [s for s in sizes if s not in SIZES]
    if unknown:
        ap.error(f"unknown size(s) {', '.join(unknown)}; choose from {', '.join(SIZES)}")
    rows = []
    with tempfile.TemporaryDirectory(prefix="retailflow-bench-scale-") as tmp:
        for size in sizes:
            row = measure_size(size, SIZES[size], Path(tmp), airflow=not args.no_airflow,
                               save=lambda partial: write_csv(args.csv, [partial]))
            rows.append(row)
            bench(f"scale_{size}_load_average", f"'{row['load_before']}' -> '{row['load_after']}'",
                  "1, 5, 15 min, before and after the size")
            write_csv(args.csv, [row])
    if len(rows) > 1:
        first, last = rows[0], rows[-1]
        for step in STEPS:
            key = f"{step}_rss_mb"
            if key in first and key in last:
                bench(f"scale_rss_growth_{step}", f"{last[key] / first[key]:.2f}",
                      f"peak RSS at {last['size']} over {first['size']} ({last[key]:.0f} / {first[key]:.0f} MB;"
                      f" data x{last['orders'] // first['orders']})")
    print(f"bench_scale: wrote {args.csv}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
