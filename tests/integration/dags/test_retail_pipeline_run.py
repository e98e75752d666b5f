"""Runs of retail_pipeline on the local engine (``dag.test()``) against the real MariaDB and PostgreSQL.

One module-scoped history: a first run (full refresh) must end green with the marts filled and the
audit passed; a second, incremental run while ``retailflow-generator live`` keeps writing
must stay green; a tampered mart must fail the audit, naming the table and both figures.
"""

from __future__ import annotations

import os
import re
import subprocess
import time

import psycopg
import pytest
from conftest import GENERATOR

pytestmark = pytest.mark.integration


def states(dag_run) -> dict[str, str]:
    return {ti.task_id + (f"[{ti.map_index}]" if ti.map_index >= 0 else ""): ti.state
            for ti in dag_run.get_task_instances()}


def return_value(dag_run, task_id: str):
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    with create_session() as session:
        row = session.query(XComModel).filter_by(dag_id=dag_run.dag_id, run_id=dag_run.run_id, task_id=task_id,
                                                 key="return_value").one()
        return XComModel.deserialize_value(row)


def mart_count(warehouse_url: str, table: str) -> int:
    with psycopg.connect(warehouse_url) as conn:
        return conn.execute(f"select count(*) from marts.{table}").fetchone()[0]


@pytest.fixture(scope="module")
def first_run(dagbag, pipeline_dbs):
    return dagbag.dags["retail_pipeline"].test(run_conf={"full_refresh": True})


def test_first_run_is_green_with_marts_filled_and_audited(first_run, pipeline_dbs):
    _, warehouse_url = pipeline_dbs
    got = states(first_run)
    assert first_run.state == "success", {k: v for k, v in got.items() if v != "success"}
    assert got["ingestion.direct"] == "success" and got["ingestion.trigger_sync"] == "skipped"
    # Not configured here (no Superset, no OpenMetadata): skipped, not failed.
    assert got["refresh_dashboards"] == "skipped" and got["governance"] == "skipped"
    assert got["audit"] == "success"
    assert mart_count(warehouse_url, "orders") > 2900 and mart_count(warehouse_url, "top_customers") > 0
    report = return_value(first_run, "audit")
    assert report["ok"] is True
    figures = {c["name"]: (c["mysql"], c["marts"]) for c in report["checks"]}
    assert set(figures) == {"orders rows", "order_items rows", "customers rows", "products rows", "revenue"}
    assert all(mysql == marts for mysql, marts in figures.values())
    assert figures["orders rows"][0] > 2900 and float(figures["revenue"][0]) > 0


def test_incremental_run_while_live_traffic_writes_stays_green(first_run, dagbag, pipeline_dbs):
    from integration.pipeline.conftest import mysql_connect

    mysql_url, warehouse_url = pipeline_dbs
    assert first_run.state == "success"
    before = mart_count(warehouse_url, "orders")
    source = mysql_connect(mysql_url)
    placed = source.cursor()
    placed.execute("select max(order_id) from orders")
    (last_seeded,) = placed.fetchone()
    live = subprocess.Popen([str(GENERATOR), "live", "--duration", "600", "--rate", "40", "--interval", "0.25",
                             "--seed", "5"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            env={**os.environ, "RETAILFLOW_MYSQL_URL": mysql_url})
    try:
        # orders placed and statuses moved (a first tick committed) before the run starts, more during it
        deadline = time.monotonic() + 60
        while placed.execute("select 1 from orders where order_id > %s limit 1", (last_seeded,)) == 0:
            assert live.poll() is None, live.stderr.read().decode()[-2000:]
            assert time.monotonic() < deadline, "live wrote no order in 60 s"
            time.sleep(0.1)
        assert live.poll() is None, live.stderr.read().decode()[-2000:]
        run = dagbag.dags["retail_pipeline"].test(run_conf={"full_refresh": False})
    finally:
        live.terminate()
        live.wait(timeout=30)
        source.close()
    got = states(run)
    assert run.state == "success", {k: v for k, v in got.items() if v != "success"}
    ingested = return_value(run, "ingestion.direct")
    assert ingested["streams"]["orders"]["mode"] == "incremental"
    assert ingested["streams"]["orders"]["inserted"] > 0, "live traffic wrote no order before the sync"
    report = return_value(run, "audit")
    assert report["ok"] is True
    assert mart_count(warehouse_url, "orders") > before


def test_tampered_mart_fails_the_audit_naming_the_table(first_run, dagbag, pipeline_dbs, capfd):
    _, warehouse_url = pipeline_dbs
    assert first_run.state == "success"
    with psycopg.connect(warehouse_url, autocommit=True) as conn:
        total = conn.execute("select count(*) from marts.customers").fetchone()[0]
        conn.execute("delete from marts.customers where customer_id in"
                     " (select customer_id from marts.customers order by customer_id limit 3)")
    dag = dagbag.dags["retail_pipeline"].partial_subset(["load_settings", "audit"], include_upstream=False,
                                                        include_downstream=False)
    run = dag.test()
    assert run.state == "failed"
    assert states(run)["audit"] == "failed"
    out = capfd.readouterr()
    log = out.out + out.err
    assert "audit failed" in log
    found = re.search(r"customers rows: MySQL customers = ([\d,]+), marts\.customers = ([\d,]+) \[MISMATCH\]", log)
    assert found, log[-3000:]
    mysql, marts = (int(g.replace(",", "")) for g in found.groups())
    assert mysql - marts == 3 and mysql <= total


def test_a_raw_schema_without_ingestion_state_fails_the_audit(first_run, dagbag, pipeline_dbs, capfd, monkeypatch):
    """Where the audit used to compare nothing and pass (every row "in flight", 0 = 0)."""
    assert first_run.state == "success"
    monkeypatch.setenv("RETAILFLOW_RAW_SCHEMA", "nosuch")  # the local defaults' raw schema (no pipeline variables)
    dag = dagbag.dags["retail_pipeline"].partial_subset(["load_settings", "audit"], include_upstream=False,
                                                        include_downstream=False)
    run = dag.test()
    assert run.state == "failed" and states(run)["audit"] == "failed"
    (audit,) = [ti for ti in run.get_task_instances() if ti.task_id == "audit"]
    assert audit.try_number == 1  # failed at once: a retry 30 s later would find the same schema
    out = capfd.readouterr()
    log = out.out + out.err
    assert "raw schema nosuch has no ingestion state: the warehouse has no schema nosuch" in log, log[-3000:]
    assert "[ok]" not in log
