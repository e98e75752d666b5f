"""Benchmark of the orchestration: retail_pipeline through a real local Airflow against its steps
called directly, and the freshness of an order through an incremental run.

Prints:

- ``bench: dag_steps_direct_s`` the steps without Airflow, one after the other (the baseline): local
  ingestion (full refresh), ``dbt build``, the audit;
- ``bench: dag_run_s`` the same work as a retail_pipeline run on the local Airflow (``hack/airflow.sh``:
  scheduler, LocalExecutor, Cosmos tasks), the first run after it started, from the run's
  ``queued_at`` (set when it is triggered) to its ``end_date`` in Airflow's metadata database (the
  benchmark's own polling, every 2 s, is not counted; the note gives what it saw);
- ``bench: dag_overhead_s`` the second minus the first (target <= 20 s at demo scale), and
  ``bench: dag_overhead_ratio`` the second over the first;
- ``bench: dag_before_dbt_s``, ``dag_dbt_producer_s``, ``dag_dbt_sensor_tail_s``, ``dag_after_dbt_s``:
  where the run's time went (from the task instances in Airflow's metadata database), and
  ``dag_worker_processes`` how many task instances ran on a worker;
- the same lines prefixed ``dag_warm_`` for a second full-refresh run right after, in the same
  Airflow: what a long-running Airflow's runs cost. The first run after a start also pays one-time
  costs (the triggerer's first requests to its in-process execution API build that API; modules
  imported on first use), which land during the ingestion. Airflow starts as ``make airflow`` starts
  it: on a dbt project parsed for the run's warehouse (``make dbt-manifest``; here a copy of the
  project, so the checkout's ``dbt/target`` is left alone), whose partial-parse file the first run's
  dbt build reads. The direct steps and each run start on a quiet warehouse: vacuumed and analyzed,
  the page cache flushed (``benchlib.quiet_warehouse``), so that none pays for the load before it;
- ``bench: freshness_s`` from an order committed to MySQL to its revenue in ``marts.orders``, through
  an incremental run triggered right after the insert (target <= 60 s at demo scale).

Demo scale by default (5,000 customers, 500 products, 50,000 orders); ``--orders N`` (or ``$ORDERS``:
``make bench-dags ORDERS=1000000`` for the 1M-order ratio) changes it, with customers and products
scaled as ``make bench-scale`` scales them. Uses
throwaway databases and its own Airflow (own port, home, metadata database), never the demo's.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests"))

from benchlib import drop_warehouse, quiet_warehouse, seed_shape, throwaway_name, throwaway_tag  # noqa: E402
from integration.pipeline.conftest import _with_database, mysql_connect, pg_connect  # noqa: E402
from support.local_airflow import start_local_airflow  # noqa: E402
from support.ports import free_port  # noqa: E402


def bench(name: str, value: float, note: str) -> None:
    print(f"bench: {name} {value:.2f}  # {note}", flush=True)


def run_phases(meta_url: str, run_id: str, queued) -> list[tuple[str, float, str]]:
    """Where a run's time went, from its task instances in Airflow's metadata database and its
    ``queued_at`` (``timed_run``): the steps before dbt, the producer's ``dbt build``, the sensors'
    tail after it, and the steps after dbt."""
    with pg_connect(meta_url) as meta:
        rows = meta.execute("select task_id, start_date, end_date, hostname from task_instance where dag_id ="
                            " 'retail_pipeline' and run_id = %s and start_date is not null", (run_id,)).fetchall()
    tasks = {task_id: (start, end, host) for task_id, start, end, host in rows}
    producer = tasks["dbt.dbt_producer_watcher"]
    dbt_end = max(end for task_id, (_, end, _) in tasks.items() if task_id.startswith("dbt."))
    run_end = max(end for _, end, _ in tasks.values())
    on_workers = sum(1 for _, _, host in tasks.values() if host)
    return [
        ("dag_before_dbt_s", (producer[0] - queued).total_seconds(),
         "trigger -> producer start: load_settings, choose_engine, the ingestion (about 1 s of it is work)"),
        ("dag_dbt_producer_s", (producer[1] - producer[0]).total_seconds(),
         "the producer task: one dbt build (the direct steps' own dbt build is most of dag_steps_direct_s)"),
        ("dag_dbt_sensor_tail_s", (dbt_end - producer[1]).total_seconds(),
         "producer end -> last dbt sensor end: the sensors reporting the build's last nodes"),
        ("dag_after_dbt_s", (run_end - dbt_end).total_seconds(),
         "the audit, beside dashboards -> governance (both skipped here)"),
        ("dag_worker_processes", on_workers, "task instances that ran on a worker (sensors end in the triggerer)"),
    ]


def timed_run(api, meta_url: str) -> tuple[str, datetime, float, float]:
    """Trigger a full-refresh run and wait for its success: (run id, its queued_at, seconds from then to
    its end_date in Airflow's metadata database, seconds until the benchmark saw it end)."""
    from retailflow_pipeline.runs import follow

    began = time.monotonic()
    run_id = api.trigger("retail_pipeline", {"full_refresh": True})["dag_run_id"]
    final = follow(api, "retail_pipeline", run_id, timeout=3600, poll=2, echo=lambda _: None)
    observed = time.monotonic() - began
    assert final["state"] == "success", f"run {run_id} {final['state']}"
    with pg_connect(meta_url) as meta:
        queued, ended = meta.execute("select queued_at, end_date from dag_run"
                                      " where dag_id = 'retail_pipeline' and run_id = %s", (run_id,)).fetchone()
    return run_id, queued, (ended - queued).total_seconds(), observed


def start_airflow(work: Path, mysql_url: str, warehouse_url: str, meta_url: str, manifest: Path, project: Path):
    """A local Airflow of its own (``hack/airflow.sh``: own port, home, run folder and metadata database)
    on the given databases and the dbt ``project`` (its ``manifest`` parsed for them, wherever that
    was written), with retail_pipeline parsed: (its API client, its environment for ``stop_airflow``).
    Its process group's leader is in ``<work>/run/airflow.pid``."""
    env_file = work / "env.local"
    env_file.write_text(f"RETAILFLOW_MYSQL_URL={mysql_url}\nRETAILFLOW_WAREHOUSE_URL={warehouse_url}\n"
                        f"RETAILFLOW_AIRFLOW_DB_URL={meta_url}\n")
    env_file.chmod(0o600)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "RETAILFLOW_"))}
    env.update(RETAILFLOW_ENV_FILE=str(env_file), RETAILFLOW_RUN_DIR=str(work / "run"),
               RETAILFLOW_AIRFLOW_HOME=str(work / "home"),
               RETAILFLOW_AIRFLOW_WORKER_LOG_PORT=str(free_port()),
               RETAILFLOW_AIRFLOW_TRIGGER_LOG_PORT=str(free_port()), RETAILFLOW_DBT_MANIFEST=str(manifest),
               RETAILFLOW_DBT_PROJECT_DIR=str(project))
    try:
        # on a fresh port if another program takes the first; its progress shown as it comes
        port, started = start_local_airflow(env, echo=True)
        env["RETAILFLOW_AIRFLOW_PORT"] = str(port)
        if started.returncode != 0:
            raise RuntimeError(f"hack/airflow.sh exited with {started.returncode}")
        password = next(line.split("=", 1)[1] for line in env_file.read_text().splitlines()
                        if line.startswith("RETAILFLOW_AIRFLOW_ADMIN_PASSWORD="))
        from retailflow_pipeline.runs import AirflowAPI

        api = AirflowAPI(f"http://127.0.0.1:{port}", "admin", password, timeout=60)
        api.wait_for_dag("retail_pipeline", timeout=600)
    except BaseException:
        stop_airflow(env)
        raise
    return api, env


def stop_airflow(env: dict[str, str]) -> None:
    subprocess.run([str(REPO / "hack" / "stop.sh")], env=env, capture_output=True)


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--orders", type=int, default=int(os.environ.get("ORDERS") or 50_000),
                   help="orders to seed (default $ORDERS or 50,000, demo scale)")
    p.add_argument("--customers", type=int, help="default: orders / 10")
    p.add_argument("--products", type=int, help="default: orders / 100, at least 500")
    p.add_argument("--keep", action="store_true", help="keep the databases and the work folder (for profiling)")
    args = p.parse_args()
    customers, products = seed_shape(args.orders)
    args.customers = args.customers or customers
    args.products = args.products or products
    base_my, base_pg = os.environ["RETAILFLOW_MYSQL_URL"], os.environ["RETAILFLOW_WAREHOUSE_URL"]
    tag = throwaway_tag(8)
    my_db, pg_db, meta_db = (throwaway_name(service, "bench", tag) for service in ("retail", "warehouse", "airflow"))
    admin = mysql_connect(base_my, database="")
    with admin.cursor() as cur:
        cur.execute(f"create database `{my_db}` character set utf8mb4")
    with pg_connect(base_pg) as pg:
        pg.execute(f'create database "{pg_db}"')
        pg.execute(f'create database "{meta_db}"')
    mysql_url, warehouse_url = _with_database(base_my, my_db), _with_database(base_pg, pg_db)
    work = Path(tempfile.mkdtemp(prefix="retailflow-bench-dags-"))
    env: dict[str, str] = {}
    try:
        print(f"seeding {args.orders:,} orders into {my_db}", flush=True)
        subprocess.run([str(Path(sys.executable).with_name("retailflow-generator")), "seed", "--customers",
                        str(args.customers), "--products", str(args.products), "--orders", str(args.orders),
                        "--start", "2024-01-01", "--end", "2025-12-31", "--seed", "42"],
                       # the URL (with its password) through the environment, never argv (visible in `ps`)
                       check=True, stdout=subprocess.DEVNULL, env={**os.environ, "RETAILFLOW_MYSQL_URL": mysql_url})
        # the dbt project as `make airflow` leaves it: parsed for the run's warehouse (`make dbt-manifest`),
        # so that the first run's producer parses partially, as a user's first run does; in a copy, so
        # that the checkout's dbt/target stays the user's
        project = work / "dbt"
        shutil.copytree(REPO / "dbt", project, ignore=shutil.ignore_patterns("target", "logs", "dbt_packages"))
        os.environ["RETAILFLOW_DBT_PROJECT_DIR"] = str(project)
        manifest = project / "target" / "manifest.json"
        from retailflow_pipeline import dbt

        assert dbt.run(["parse", "--quiet"], warehouse_url=warehouse_url, log_path=work / "dbt-logs") == 0

        # ---------------------------------------------------------------- baseline: the steps directly
        os.environ["AIRFLOW_CONN_RETAILFLOW_MYSQL"] = mysql_url
        os.environ["AIRFLOW_CONN_RETAILFLOW_WAREHOUSE"] = warehouse_url
        from retailflow_pipeline import tasks
        from retailflow_pipeline.settings import local_defaults

        settings = local_defaults().to_dict()
        quiet_warehouse(warehouse_url)
        began = time.monotonic()
        tasks.ingest_direct(settings, full_refresh=True)
        assert dbt.run(["build", "--quiet"], warehouse_url=warehouse_url, target_path=work / "dbt-direct",
                       log_path=work / "dbt-logs") == 0
        tasks.run_audit(settings)
        direct = time.monotonic() - began
        bench("dag_steps_direct_s", direct, "ingest (full) + dbt build + audit, called directly")

        # ---------------------------------------------------------------- the same through Airflow
        api, env = start_airflow(work, mysql_url, warehouse_url, _with_database(base_pg, meta_db), manifest,
                                 project)
        meta_url = _with_database(base_pg, meta_db)
        for prefix, label in (("dag", "the first run after Airflow started"),
                              ("dag_warm", "a second run in the same Airflow (its processes warmed up)")):
            # each run starts as the direct steps did: nothing left over from the load before it
            quiet = quiet_warehouse(warehouse_url)
            print(f"warehouse vacuumed, analyzed and flushed in {quiet:.1f} s before the run", flush=True)
            run_id, queued, dag_run, observed = timed_run(api, meta_url)
            bench(f"{prefix}_run_s", dag_run, f"retail_pipeline, full refresh, {label}: queued -> ended, from "
                  f"Airflow's metadata (the benchmark saw the success {observed:.1f} s after its trigger, polling "
                  f"every 2 s)")
            bench(f"{prefix}_overhead_s", dag_run - direct, f"{prefix}_run_s - dag_steps_direct_s"
                  + (" (target <= 20 s at demo scale)" if prefix == "dag" else ""))
            bench(f"{prefix}_overhead_ratio", dag_run / direct,
                  f"{prefix}_run_s / dag_steps_direct_s; {dag_run:.1f} s / {direct:.1f} s")
            for name, value, note in run_phases(meta_url, run_id, queued):
                bench(name.replace("dag_", f"{prefix}_", 1), value, note)

        # ---------------------------------------------------------------- freshness of one order
        conn = mysql_connect(mysql_url)
        with conn.cursor() as cur:
            cur.execute("set time_zone = '+00:00'")
            cur.execute("select (select max(order_id) + 1 from orders), (select min(customer_id) from customers),"
                        " (select min(product_id) from products), (select max(order_item_id) + 1 from order_items)")
            order_id, customer_id, product_id, item_id = cur.fetchone()
            written = time.monotonic()
            cur.execute("insert into orders (order_id, customer_id, channel, store_id, status, ordered_at)"
                        " values (%s, %s, 'online', null, 'paid', utc_timestamp(6))", (order_id, customer_id))
            cur.execute("insert into order_items (order_item_id, order_id, product_id, quantity, unit_price)"
                        " values (%s, %s, %s, 3, 12.50)", (item_id, order_id, product_id))
        conn.close()
        run_id = api.trigger("retail_pipeline", {"full_refresh": False})["dag_run_id"]
        with pg_connect(warehouse_url) as pg:
            while True:
                row = pg.execute("select revenue from marts.orders where order_id = %s", (order_id,)).fetchone()
                if row and float(row[0]) == 37.5:
                    fresh = time.monotonic() - written
                    break
                if time.monotonic() - written > 1800:
                    raise TimeoutError("the new order did not reach marts.orders in 30 minutes")
                time.sleep(0.5)
        from retailflow_pipeline.runs import follow

        final = follow(api, "retail_pipeline", run_id, timeout=1800, poll=2, echo=lambda _: None)
        bench("freshness_s", fresh, f"an order written to MySQL -> its revenue in marts.orders, incremental run "
              f"(target <= 60 s; that run ended {final['state']})")
        return 0
    finally:
        if env:
            stop_airflow(env)
        if args.keep:
            print(f"kept: {work}, databases {my_db}, {pg_db}, {meta_db}", flush=True)
        else:
            with admin.cursor() as cur:
                cur.execute(f"drop database if exists `{my_db}`")
            admin.close()
            for db in (pg_db, meta_db):
                drop_warehouse(base_pg, db)
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
