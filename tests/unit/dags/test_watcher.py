"""The dbt sensors' trigger (retailflow_pipeline.watcher): a passed node ends its task in the
triggerer; every other outcome resumes the task on a worker, in Cosmos's own ``execute_complete``."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import pytest

pytest.importorskip("cosmos")

from airflow.triggers.base import TaskSuccessEvent, TriggerEvent  # noqa: E402
from cosmos.listeners.dag_run_listener import EventStatus  # noqa: E402
from cosmos.operators._watcher.triggerer import WatcherEventReason  # noqa: E402

from retailflow_pipeline.watcher import NodeTrigger  # noqa: E402

NODE = "model.retailflow.orders"
STARTUP = [{"name": "MainReportVersion", "msg": "Running with dbt"}, {"name": "AdapterRegistered", "msg": "postgres"}]


def events(node_status: str | None, *, producer: str = "running", try_number: int = 1) -> tuple[list[Any], NodeTrigger]:
    trigger = NodeTrigger(model_unique_id=NODE, producer_task_id="dbt.dbt_producer_watcher", dag_id="retail_pipeline",
                          run_id="", map_index=None, poke_interval=0.01)
    trigger.task_instance = SimpleNamespace(task_id="dbt.orders.run", run_id="manual__1", map_index=-1,
                                            try_number=try_number)
    xcoms = {"dbt_startup_events": STARTUP, "model__retailflow__orders_status": (
        {"status": node_status, "outlet_uris": []} if node_status else None)}
    asked: list[tuple[str, str]] = []

    async def get_xcom_val(key: str) -> Any:
        asked.append((trigger.run_id, key))
        return xcoms.get(key)

    async def producer_state() -> str:
        return producer

    trigger.get_xcom_val = get_xcom_val  # type: ignore[method-assign]
    trigger._get_producer_task_status = producer_state  # type: ignore[method-assign]

    async def collect() -> list[Any]:
        return [e async for e in trigger.run()]

    out = asyncio.run(collect())
    assert all(run_id == "manual__1" for run_id, _ in asked), "the run id must come from the task instance"
    return out, trigger


def test_a_passed_node_ends_its_task_in_the_triggerer():
    out, _ = events("success")
    assert len(out) == 1 and isinstance(out[0], TaskSuccessEvent)


def test_a_failed_node_resumes_on_a_worker_with_cosmos_failure():
    out, _ = events("error")
    assert len(out) == 1 and not isinstance(out[0], TaskSuccessEvent) and isinstance(out[0], TriggerEvent)
    assert out[0].payload["status"] == EventStatus.FAILED
    assert out[0].payload["reason"] == WatcherEventReason.NODE_FAILED


def test_a_skipped_node_resumes_on_a_worker_to_be_skipped():
    out, _ = events("skipped")
    assert not isinstance(out[0], TaskSuccessEvent) and out[0].payload["status"] == EventStatus.SKIPPED


def test_a_retry_after_the_producer_ended_runs_dbt_on_a_worker():
    out, _ = events("error", producer="failed", try_number=2)
    assert not isinstance(out[0], TaskSuccessEvent)
    assert out[0].payload["reason"] == WatcherEventReason.PRODUCER_SKIPPED  # Cosmos's path to its dbt fallback


def test_it_serialises_as_itself():
    _, trigger = events("success")
    classpath, kwargs = trigger.serialize()
    assert classpath == "retailflow_pipeline.watcher.NodeTrigger" and kwargs["model_unique_id"] == NODE


def test_the_producer_pushes_a_nodes_dbt_event_once_when_it_finishes():
    import json

    from cosmos.operators._watcher import base

    from retailflow_pipeline.watcher import push_final_node_events_only

    pushed: list[str] = []
    ti = SimpleNamespace(xcom_push=lambda key, value: pushed.append(key))
    node = {"unique_id": NODE, "node_status": "started", "node_started_at": "2026-12-05T11:00:00"}

    def event(name: str) -> None:
        base._process_dbt_log_event(ti, json.loads(json.dumps({"info": {"name": name}, "data": {"node_info": node}})))

    saved = base._DBT_EVENT_ALLOWLIST
    try:
        push_final_node_events_only()
        for name in ("NodeStart", "NodeCompiling", "NodeExecuting"):
            event(name)
        assert pushed == []
        event("NodeFinished")
        event("RunResultError")
        assert pushed == ["model__retailflow__orders_dbt_event"] * 2
    finally:
        base._DBT_EVENT_ALLOWLIST = saved
