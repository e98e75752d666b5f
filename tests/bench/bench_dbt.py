"""Benchmark: `dbt build` time at 1M orders, against a 10k-order baseline measured in the same run.

Seeds throwaway MySQL databases with the generator, ingests them into throwaway warehouse databases
with the local engine, then times `python -m retailflow_pipeline.dbt build` (models, data tests and
unit tests) on each. Prints `bench: <name> <value>` lines:

    bench: dbt_build_s_10k <seconds>     baseline, 10k orders
    bench: dbt_build_s <seconds>         1M orders
    bench: dbt_build_ratio <1M / 10k>
    bench: dbt_build_orders_per_s <orders / second at 1M>

Needs RETAILFLOW_MYSQL_URL and RETAILFLOW_WAREHOUSE_URL (`hack/with-env`). Takes a few minutes.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psycopg

from retailflow_pipeline import dbt as runner
from retailflow_ingest.engine import run as ingest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchlib import drop_warehouse, mysql_conn, throwaway_name, throwaway_tag, with_database  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parents[2]
GENERATOR = Path(sys.executable).with_name("retailflow-generator")
#: (label, customers, products, orders): the 1M scale keeps the demo's proportions.
SCALES = [("10k", 1_000, 100, 10_000), ("1m", 100_000, 10_000, 1_000_000)]


def measure(label: str, customers: int, products: int, orders: int, mysql_base: str, pg_base: str) -> float:
    kind, tag = f"test_bench_{label}", throwaway_tag(8)
    mysql_db, pg_db = throwaway_name("retail", kind, tag), throwaway_name("warehouse", kind, tag)
    admin = mysql_conn(mysql_base, database="")
    admin.cursor().execute(f"create database `{mysql_db}` character set utf8mb4")
    with psycopg.connect(pg_base, autocommit=True) as conn:
        conn.execute(f'create database "{pg_db}"')
    mysql_url, pg_url = with_database(mysql_base, mysql_db), with_database(pg_base, pg_db)
    try:
        started = time.perf_counter()
        subprocess.run(
            [str(GENERATOR), "seed", "--customers", str(customers), "--products", str(products),
             "--orders", str(orders), "--start", "2024-01-01", "--end", "2025-12-31", "--seed", "1"],
            # the URL (with its password) through the environment, never argv (visible in `ps`)
            check=True, stdout=subprocess.DEVNULL, env={**os.environ, "RETAILFLOW_MYSQL_URL": mysql_url},
        )
        ingest(mysql_url, pg_url, stores_csv=REPO_ROOT / "data" / "store_locations.csv")
        print(f"{label}: seeded and ingested {orders:,} orders in {time.perf_counter() - started:.1f} s", flush=True)
        with tempfile.TemporaryDirectory() as target:
            # A parse first, so both scales time the build itself, not dbt's one-off project parse.
            assert runner.run(["parse"], warehouse_url=pg_url, target_path=target, log_path=target) == 0
            started = time.perf_counter()
            code = runner.run(["build", "--quiet"], warehouse_url=pg_url, target_path=target, log_path=target)
            elapsed = time.perf_counter() - started
        if code != 0:
            raise SystemExit(f"dbt build failed at {label} (exit {code})")
        return elapsed
    finally:
        admin.cursor().execute(f"drop database if exists `{mysql_db}`")
        admin.close()
        drop_warehouse(pg_base, pg_db)


def main() -> None:
    mysql_base = os.environ["RETAILFLOW_MYSQL_URL"]
    pg_base = os.environ["RETAILFLOW_WAREHOUSE_URL"]
    results = {label: measure(label, c, p, o, mysql_base, pg_base) for label, c, p, o in SCALES}
    print(f"bench: dbt_build_s_10k {results['10k']:.2f}")
    print(f"bench: dbt_build_s {results['1m']:.2f}")
    print(f"bench: dbt_build_ratio {results['1m'] / results['10k']:.1f}")
    print(f"bench: dbt_build_orders_per_s {SCALES[1][3] / results['1m']:.0f}")


if __name__ == "__main__":
    main()
