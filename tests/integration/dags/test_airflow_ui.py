"""`make airflow`'s local Airflow, a real scheduler run of retail_pipeline, and its UI in Chromium.

``hack/airflow.sh`` (what ``make airflow`` runs) starts the api-server, scheduler, dag-processor and
triggerer on a free port, with its own env file, run folder, AIRFLOW_HOME and metadata database (a
throwaway PostgreSQL database), pointed at this module's seeded databases. The module's Airflow is started
as a user whose port another program takes meanwhile: the first port picked is taken while the script
migrates the metadata database, the script stops and says so, and it is run again on a fresh port
(``support.local_airflow``); the first test checks what each run did. The scheduler runs
retail_pipeline (Cosmos's default watcher mode: one ``dbt build`` and a sensor per node, each started
and ended in the triggerer); then
headless Chromium logs in with the generated password, opens retail_pipeline and its run, and must
show the run and its tasks as successful. The screenshot is kept under the test's tmp folder (and in
``$RETAILFLOW_SCREENSHOT_DIR`` when set).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import threading
import time
from pathlib import Path

import psycopg
import pytest
import requests
from conftest import REPO_ROOT
from support import ports
from support.databases import drop_pg_database, throwaway_name, throwaway_tag
from support.local_airflow import start_local_airflow

pytestmark = [pytest.mark.integration, pytest.mark.slow]

#: the sensors whose upstream is the ingestion (the others' upstream are sensors)
ROOT_SENSORS = {f"dbt.stg_retail__{name}.run" for name in ("customers", "orders", "order_items", "products",
                                                               "store_locations")}


def local_airflow_env(work: Path, mysql_url: str, warehouse_url: str, meta_url: str) -> tuple[dict[str, str], Path]:
    """The environment ``hack/airflow.sh`` runs with here (its own env file, run folder, AIRFLOW_HOME and
    metadata database; the port is ``start_local_airflow``'s), and that env file."""
    env_file = work / "env.local"
    env_file.write_text(f"RETAILFLOW_MYSQL_URL={mysql_url}\nRETAILFLOW_WAREHOUSE_URL={warehouse_url}\n"
                        f"RETAILFLOW_AIRFLOW_DB_URL={meta_url}\n")
    env_file.chmod(0o600)
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("AIRFLOW", "RETAILFLOW_")) and k not in ("DO_NOT_TRACK",)}
    env.update(
        RETAILFLOW_ENV_FILE=str(env_file), RETAILFLOW_RUN_DIR=str(work / "run"),
        RETAILFLOW_AIRFLOW_HOME=str(work / "home"),
        # the log servers' ports: one taken meanwhile stops only that log server, not Airflow
        RETAILFLOW_AIRFLOW_WORKER_LOG_PORT=str(ports.free_port()),
        RETAILFLOW_AIRFLOW_TRIGGER_LOG_PORT=str(ports.free_port()),
        RETAILFLOW_DBT_MANIFEST=os.environ["RETAILFLOW_DBT_MANIFEST"],
    )
    return env, env_file


def stop_local_airflow(env: dict[str, str]) -> None:
    subprocess.run([str(REPO_ROOT / "hack" / "stop.sh")], env=env, capture_output=True, timeout=120)


def processes_with(setting: str) -> list[int]:
    """The pids of the processes whose environment holds ``setting`` (``NAME=value``)."""
    found = []
    for environ in Path("/proc").glob("[0-9]*/environ"):
        try:
            if setting.encode() in environ.read_bytes().split(b"\0"):
                found.append(int(environ.parent.name))
        except OSError:  # gone meanwhile, or not ours to read
            continue
    return found


@pytest.fixture(scope="module")
def airflow_stack(pipeline_dbs, tmp_path_factory):
    """The module's Airflow, started as a user whose port another program takes meanwhile: the first port
    picked is taken once the script migrates the metadata database (after its check of the port, before its
    API server binds it), so the script's first run stops and says so, and it is run again on a fresh port
    (``start_local_airflow``). What each run did is kept in ``attempts``."""
    from integration.pipeline.conftest import _with_database, pg_connect

    if not Path("/usr/bin/chromium").exists() and not os.environ.get("RETAILFLOW_CHROMIUM"):
        pytest.skip("no Chromium at /usr/bin/chromium: `make services` installs it")
    mysql_url, warehouse_url = pipeline_dbs
    base_pg = os.environ["RETAILFLOW_WAREHOUSE_URL"]
    meta_db = throwaway_name("airflow", "ui", throwaway_tag())
    with pg_connect(base_pg) as pg:
        pg.execute(f'create database "{meta_db}"')
    work = tmp_path_factory.mktemp("airflow-stack")
    env, env_file = local_airflow_env(work, mysql_url, warehouse_url, _with_database(base_pg, meta_db))
    first = ports.free_port()
    squatter = socket.socket()
    taken = threading.Event()
    migrating = work / "run" / "airflow-migrate.log"

    def take_the_port_once_the_migration_starts() -> None:
        deadline = time.monotonic() + 600
        while not migrating.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        squatter.bind(("127.0.0.1", first))
        squatter.listen()
        taken.set()

    threading.Thread(target=take_the_port_once_the_migration_starts, daemon=True).start()
    attempts: list[tuple[int, subprocess.CompletedProcess]] = []
    try:
        picks = [first]
        free_port = ports.free_port
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(ports, "free_port", lambda: picks.pop(0) if picks else free_port())
            port, started = start_local_airflow(env, attempts=attempts)
        env["RETAILFLOW_AIRFLOW_PORT"] = str(port)
        assert started.returncode == 0, started.stdout[-3000:] + (work / "run" / "airflow.log").read_text()[-3000:]
        password = next(line.split("=", 1)[1] for line in env_file.read_text().splitlines()
                        if line.startswith("RETAILFLOW_AIRFLOW_ADMIN_PASSWORD="))
        yield {"url": f"http://127.0.0.1:{port}", "password": password, "stderr": started.stdout + started.stderr, "env": env,
               "env_file": env_file, "work": work, "taken_port": first if taken.is_set() else None,
               "attempts": attempts}
    finally:
        stop_local_airflow(env)
        squatter.close()
        drop_pg_database(base_pg, meta_db)


def test_make_airflow_whose_port_is_taken_during_the_migration_says_so_and_comes_up_on_a_fresh_one(airflow_stack):
    """The script checks its port, migrates the metadata database, then its API server binds the port:
    another program took the port in between (the module's Airflow, started so). The script stopped what it
    had started and said so; run again on a fresh port, Airflow came up healthy there."""
    first = airflow_stack["taken_port"]
    assert first is not None, "the port was not taken during the migration"
    (refused_port, refused), (port, _) = airflow_stack["attempts"]
    assert refused_port == first
    assert refused.returncode == 1, refused.stdout[-3000:]
    assert f"airflow: error: port {first} is taken by another program" in refused.stdout, refused.stdout[-3000:]
    # none of the servers or workers it had started is left (those of the run on the fresh port are seen)
    assert processes_with(f"AIRFLOW__API__PORT={first}") == []
    assert processes_with(f"AIRFLOW__API__PORT={port}") != []
    health = requests.get(f"{airflow_stack['url']}/api/v2/monitor/health", timeout=30).json()
    assert {part: (health.get(part) or {}).get("status") for part in ("metadatabase", "scheduler", "triggerer",
            "dag_processor")} == dict.fromkeys(("metadatabase", "scheduler", "triggerer", "dag_processor"),
                                               "healthy"), health


def test_make_airflow_prints_access_and_keeps_the_password_out_of_sight(airflow_stack):
    out = airflow_stack["stderr"]
    assert f"UI and API at {airflow_stack['url']}" in out and "user:     admin" in out
    assert "RETAILFLOW_AIRFLOW_ADMIN_PASSWORD" in out and airflow_stack["password"] not in out
    assert oct(airflow_stack["env_file"].stat().st_mode & 0o777) == "0o600"
    again = subprocess.run([str(REPO_ROOT / "hack" / "airflow.sh")], env=airflow_stack["env"], capture_output=True,
                           text=True, timeout=300)
    assert again.returncode == 0 and "already running" in again.stderr, again.stderr[-2000:]
    assert f"UI and API at {airflow_stack['url']}" in again.stdout


def test_the_triggerer_builds_its_execution_api_as_it_starts(airflow_stack):
    """Without any run: the first run's triggers then find it built (about 3 s of CPU that otherwise
    fell on that run, during its ingestion; ``retailflow_pipeline.preload.warm_execution_api``)."""
    log = airflow_stack["work"] / "run" / "airflow.log"
    deadline = time.monotonic() + 180
    while "the triggerer's execution API built" not in log.read_text():
        assert time.monotonic() < deadline, log.read_text()[-3000:]
        time.sleep(1)
    (line,) = [line for line in log.read_text().splitlines() if "the triggerer's execution API built" in line]
    assert line.endswith("(/health: 200)"), line


def test_scheduler_run_is_green_and_the_ui_shows_it(airflow_stack, pipeline_dbs, tmp_path):
    from retailflow_pipeline.runs import AirflowAPI, follow
    from support.airflow_ui import AirflowUI

    api = AirflowAPI(airflow_stack["url"], "admin", airflow_stack["password"], timeout=60)
    api.wait_for_dag("retail_pipeline", timeout=600)
    run_id = api.trigger("retail_pipeline", {"full_refresh": True})["dag_run_id"]
    seen: list[str] = []
    final = follow(api, "retail_pipeline", run_id, timeout=1500, poll=3, echo=seen.append)
    instances = api.task_instances("retail_pipeline", run_id)
    tis = {t["task_id"]: t["state"] for t in instances}
    assert final["state"] == "success", {k: v for k, v in tis.items() if v != "success"}
    assert tis["audit"] == "success" and tis["dbt.dbt_producer_watcher"] == "success"
    # Each model's and test's sensor starts and ends in the triggerer: never on a worker (no host),
    # and never retried (on a worker, a deferred sensor's late executor event could fail it).
    sensors = [t for t in instances if t["task_id"].startswith("dbt.") and "producer" not in t["task_id"]]
    assert len(sensors) >= 20 and all(t["state"] == "success" for t in sensors), sensors
    assert [t["task_id"] for t in sensors if t.get("hostname") or t["try_number"] != 1] == []
    # The sensors keep dbt's edges but do not wait on them: those behind other sensors (the deepest
    # ten steps down the graph) were already waiting in the triggerer before the build ended, and
    # report as their nodes finish instead of walking the graph one trigger hop at a time after it.
    ended = {t["task_id"]: t["end_date"] for t in instances}
    followers = [t for t in sensors if t["task_id"] not in ROOT_SENSORS]
    assert len(followers) >= 15
    late = [t["task_id"] for t in followers if t["start_date"] >= ended["dbt.dbt_producer_watcher"]]
    assert late == [], late
    assert any("running" in line for line in seen), "the states were not followed while the run went on"
    # The triggers read the nodes' results from one XCom the producer rewrites as nodes finish: it
    # holds every model's result and every model's tests' result, all passed.
    results = api.json("GET", f"/dags/retail_pipeline/dagRuns/{run_id}/taskInstances/dbt.dbt_producer_watcher/"
                       "xcomEntries/retailflow_node_results", params={"deserialize": "true"})["value"]
    results = json.loads(results) if isinstance(results, str) else results
    models = {t["task_id"].split(".")[1] for t in sensors if t["task_id"].endswith(".run")}
    assert len(models) >= 10 and {f"model__retailflow__{m}_status" for m in models} <= set(results), results
    assert {f"model__retailflow__{m}_tests_status" for m in models} <= set(results), results
    assert {v["status"] if isinstance(v, dict) else v for v in results.values()} <= {"success", "pass"}, results
    with psycopg.connect(pipeline_dbs[1]) as conn:
        assert conn.execute("select count(*) from marts.top_customers").fetchone()[0] > 0

    shot = tmp_path / "airflow-retail-pipeline-run.png"
    with AirflowUI(airflow_stack["url"], "admin", airflow_stack["password"]) as ui:
        ui.login()
        ui.dag("retail_pipeline")
        page = ui.run("retail_pipeline", run_id, shot)
    assert page.run_state == "Success", page.text[:2000]
    assert page.task_states.get("audit") == "Success", page.task_states
    assert page.task_states.get("refresh_dashboards") == "Skipped"
    listed = {k: v for k, v in page.task_states.items() if k in tis}
    assert len(listed) >= 10 and set(listed.values()) <= {"Success", "Skipped"}, listed
    assert shot.stat().st_size > 20_000
    if os.environ.get("RETAILFLOW_SCREENSHOT_DIR"):
        shutil.copy(shot, Path(os.environ["RETAILFLOW_SCREENSHOT_DIR"]) / shot.name)


def test_a_failed_dbt_test_fails_the_run_and_nothing_behind_it_passes(airflow_stack, pipeline_dbs):
    """The sensors do not wait on their edges, so a failure must still stop the run: an order naming a
    store that is not in the store file fails the staging relationship test in the producer's build.
    That test's task fails; the nodes behind it, which dbt skipped, fail as Cosmos reports them (and
    their retries, Cosmos's per-node dbt runs once the producer skipped its own retry, do not run
    past a failed upstream); the audit does not run, and the run fails."""
    from integration.pipeline.conftest import mysql_connect
    from retailflow_pipeline.runs import AirflowAPI, follow

    my = mysql_connect(pipeline_dbs[0])
    with my.cursor() as cur:
        cur.execute("update orders set store_id = 999999 where channel = 'store' order by order_id limit 1")
        assert cur.rowcount == 1
    my.commit()
    my.close()
    api = AirflowAPI(airflow_stack["url"], "admin", airflow_stack["password"], timeout=60)
    run_id = api.trigger("retail_pipeline", {"full_refresh": True})["dag_run_id"]
    final = follow(api, "retail_pipeline", run_id, timeout=1500, poll=3, echo=lambda line: None)
    tis = {t["task_id"]: t["state"] for t in api.task_instances("retail_pipeline", run_id)}
    assert final["state"] == "failed", tis
    failed_test = "dbt.stg_retail__orders_store_id_names_a_loaded_store__see_raw_store_locations_quarantine_test"
    assert tis[failed_test] == "failed", tis
    assert tis["dbt.stg_retail__orders.run"] == "success" and tis["dbt.stg_retail__store_locations.test"] == "success"
    behind = {k: v for k, v in tis.items()
              if k.startswith(("dbt.customers.", "dbt.top_customers.", "dbt.sales_by_region.", "dbt.product_sales."))}
    assert len(behind) == 8 and "success" not in behind.values(), behind
    assert tis["audit"] == "upstream_failed" and tis["refresh_dashboards"] == "upstream_failed", tis
    assert not {k for k, v in tis.items() if v in ("running", "deferred", "queued", "scheduled", "up_for_retry")}, tis
