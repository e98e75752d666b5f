"""The DAG files parse cleanly, without I/O, into the DAGs the pipeline promises."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

from conftest import DAGS_DIR

DAG_IDS = {"retail_pipeline", "airbyte_ingestion", "dbt_transformation", "retail_pipeline_schedules"}


def test_dagbag_has_no_import_errors(dagbag):
    assert dagbag.import_errors == {}
    assert set(dagbag.dag_ids) == DAG_IDS


def test_each_dag_file_holds_one_documented_dag(dagbag):
    files = {Path(d.fileloc).name: d for d in dagbag.dags.values()}
    assert len(files) == len(DAG_IDS), "one DAG per file"
    for name, dag in files.items():
        assert dag.doc_md and dag.doc_md.strip(), f"{name}: no docstring"
        assert dag.catchup is False, name
        assert "retailflow" in dag.tags, name
        assert dag.start_date is not None, name


def test_dag_files_do_no_io_at_import_time(tmp_path):
    """Parsing with no reachable database, no variables and no connections still succeeds, and no
    DAG file calls Variable.get or opens a connection at module level."""
    for path in DAGS_DIR.glob("*.py"):
        tree = ast.parse(path.read_text())
        calls = {ast.unparse(n.func) for n in ast.walk(tree) if isinstance(n, ast.Call)}
        assert not any("Variable" in c or "connect" in c or "get_connection" in c for c in calls), path.name
    code = (
        "from airflow.dag_processing.dagbag import DagBag;"
        f"b = DagBag(dag_folder={str(DAGS_DIR)!r});"
        "import json; print(json.dumps({'errors': list(b.import_errors), 'dags': sorted(b.dag_ids)}))"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW_CONN_", "AIRFLOW_VAR_"))}
    env.update(RETAILFLOW_MYSQL_URL="mysql://nobody:x@127.0.0.1:1/none",
               RETAILFLOW_WAREHOUSE_URL="postgresql://nobody:x@127.0.0.1:1/none")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    parsed = json.loads(out.stdout.strip().splitlines()[-1])
    assert parsed == {"errors": [], "dags": sorted(DAG_IDS)}


def test_retail_pipeline_runs_its_steps_in_order(dagbag):
    dag = dagbag.dags["retail_pipeline"]
    t = dag.task_dict

    def upstream_closure(task_id: str) -> set[str]:
        seen, todo = set(), [task_id]
        while todo:
            for up in t[todo.pop()].upstream_task_ids:
                if up not in seen:
                    seen.add(up)
                    todo.append(up)
        return seen

    assert "ingestion.done" in upstream_closure("dbt.stg_retail__orders.run")
    before_dashboards = upstream_closure("refresh_dashboards")
    assert {"dbt.top_customers.test", "dbt.sales_by_region.test", "dbt.product_sales.test"} <= before_dashboards
    assert "refresh_dashboards" in upstream_closure("governance")
    # The audit compares MySQL with the marts: it waits for every dbt node, not for the dashboards
    # or governance, which run beside it.
    before_audit = upstream_closure("audit")
    assert {"ingestion.done", "load_settings"} | before_dashboards <= before_audit
    assert not {"refresh_dashboards", "governance"} & before_audit
    assert dag.task_dict["audit"].downstream_task_ids == set() and dag.task_dict["governance"].downstream_task_ids == set()


def test_cosmos_renders_each_model_and_its_tests_from_the_manifest(dagbag):
    manifest = json.loads(Path(os.environ["RETAILFLOW_DBT_MANIFEST"]).read_text())
    models = {n["name"] for n in manifest["nodes"].values() if n["resource_type"] == "model"}
    assert {"stg_retail__orders", "orders", "customers", "top_customers", "sales_by_region", "product_sales"} <= models
    dag = dagbag.dags["retail_pipeline"]
    for model in models:
        assert f"dbt.{model}.run" in dag.task_dict, model
        assert f"dbt.{model}.test" in dag.task_dict, model
    # Relationship tests have their own tasks, after both models they join.
    rel = dag.task_dict["dbt.relationships_orders_customer_id__customer_id__ref_customers__test"]
    assert {"dbt.orders.test", "dbt.customers.test"} <= rel.upstream_task_ids


def test_tasks_have_retries_and_timeouts_for_their_work(dagbag):
    t = dagbag.dags["retail_pipeline"].task_dict
    assert t["ingestion.direct"].retries >= 1 and t["ingestion.direct"].execution_timeout.total_seconds() >= 3600
    # the audit reads what the ingestion reads: its limit must not stop a run whose data has landed
    assert t["ingestion.direct"].execution_timeout <= t["audit"].execution_timeout <= timedelta(hours=6)
    assert t["load_settings"].execution_timeout.total_seconds() <= 300
    assert t["dbt.orders.run"].retries >= 1 and t["dbt.orders.run"].execution_timeout is not None
    sensor = t["ingestion.wait_for_sync"]
    assert sensor.partial_kwargs.get("mode") == "reschedule"
    for task_id, task in t.items():
        assert task.execution_timeout is not None or task_id.endswith(("done", "wait_for_sync", "_watcher_done")), task_id


def test_watcher_sensors_keep_dbts_edges_and_report_as_their_nodes_finish(monkeypatch):
    """In the default watcher mode every sensor starts in the triggerer; those whose upstream are all
    sensors keep their edges (the UI's graph) but do not wait on them (``always``), and carry the
    upstream their trigger waits on before a retry's dbt run, through the serialized DAG the scheduler reads."""
    from airflow.dag_processing.dagbag import DagBag
    from airflow.serialization.serialized_objects import DagSerialization

    monkeypatch.setenv("RETAILFLOW_DBT_EXECUTION_MODE", "watcher")
    for name in [m for m in sys.modules if m in ("retail_pipeline", "transformation")]:
        monkeypatch.delitem(sys.modules, name)
    bag = DagBag(dag_folder=str(DAGS_DIR))
    assert bag.import_errors == {}
    for dag_id in ("retail_pipeline", "dbt_transformation"):
        # the producer that also pushes all node results in one XCom, which the triggers read
        producer = bag.dags[dag_id].task_dict["dbt.dbt_producer_watcher"]
        assert type(producer).__name__ == "NodeResultsProducer", dag_id
        # it pushes dbt events only for the nodes the sensors watch, and for each of them
        watched = {t.model_unique_id for t in bag.dags[dag_id].tasks if hasattr(t, "is_test_sensor")}
        assert len(watched) >= 15 and producer.event_nodes == watched, dag_id
        dag = DagSerialization.from_dict(DagSerialization.to_dict(bag.dags[dag_id]))
        sensors = {t.task_id: t for t in dag.tasks if t.task_id.startswith("dbt.") and "producer" not in t.task_id}
        assert len(sensors) >= 20
        followers = 0
        for task_id, task in sensors.items():
            args = task.start_trigger_args
            kwargs = args.trigger_kwargs.get("__var", args.trigger_kwargs)  # as the scheduler stores them
            assert task.start_from_trigger and args.trigger_cls == "retailflow_pipeline.watcher.NodeTrigger", task_id
            if task.upstream_task_ids <= set(sensors):
                followers += 1
                assert task.trigger_rule == "always" and task.execution_timeout is None, task_id
                assert kwargs["upstream_task_ids"] == sorted(task.upstream_task_ids), task_id
            else:
                assert task.trigger_rule == "all_success" and task.execution_timeout is not None, task_id
                assert kwargs["upstream_task_ids"] == [], task_id
        assert followers >= 15, dag_id
    orders = bag.dags["retail_pipeline"].task_dict["dbt.orders.run"]
    assert {"dbt.stg_retail__orders.test", "dbt.stg_retail__customers.test"} <= orders.upstream_task_ids
