"""The dbt sensors' trigger (retailflow_pipeline.watcher): a passed or skipped node ends its task in
the triggerer; a failed node resumes it on a worker, in Cosmos's own ``execute_complete``; results are
read only of this run's build; a retry runs dbt for its node only after its upstream sensors passed."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import pytest

pytest.importorskip("cosmos")

from airflow.triggers.base import (  # noqa: E402
    BaseTaskEndEvent, TaskFailedEvent, TaskSkippedEvent, TaskSuccessEvent, TriggerEvent)
from cosmos.listeners.dag_run_listener import EventStatus  # noqa: E402
from cosmos.operators._watcher.triggerer import WatcherEventReason  # noqa: E402

from retailflow_pipeline import watcher  # noqa: E402
from retailflow_pipeline.watcher import NodeTrigger  # noqa: E402

NODE = "model.retailflow.orders"
STARTUP = [{"name": "MainReportVersion", "msg": "Running with dbt"}, {"name": "AdapterRegistered", "msg": "postgres"}]


def events(node_status: str | None, *, producer: str | list[str] = "running", try_number: int = 1,
           upstream: dict[str, list[str | None]] | None = None, stale: str | None = None) -> tuple[list[Any], NodeTrigger]:
    """Run a NodeTrigger against stand-ins of the Task SDK's reads: ``producer`` (a state, or the states
    of successive reads), the node's status XCom (``stale``: the status a cleared run's earlier build
    left, returned until the producer has run), and the upstream sensors' states read after read."""
    trigger = NodeTrigger(model_unique_id=NODE, producer_task_id="dbt.dbt_producer_watcher", dag_id="retail_pipeline",
                          run_id="", map_index=None, poke_interval=0.01, upstream_task_ids=list(upstream or {}))
    trigger.task_instance = SimpleNamespace(task_id="dbt.orders.run", run_id="manual__1", map_index=-1,
                                            try_number=try_number)
    producer_reads = list(producer) if isinstance(producer, list) else [producer]
    upstream_reads = {task: list(states) for task, states in (upstream or {}).items()}
    seen_producer: list[str] = []
    asked: list[tuple[str, str]] = []

    async def get_xcom_val(key: str) -> Any:
        asked.append((trigger.run_id, key))
        status = node_status if "running" in seen_producer or "success" in seen_producer else stale
        xcoms = {"dbt_startup_events": STARTUP,
                 "model__retailflow__orders_status": {"status": status, "outlet_uris": []} if status else None}
        return xcoms.get(key)

    async def task_states(task_ids: list[str]) -> dict[str, str | None]:
        assert trigger.run_id == "manual__1"
        if task_ids == ["dbt.dbt_producer_watcher"]:
            state = producer_reads.pop(0) if len(producer_reads) > 1 else producer_reads[0]
            seen_producer.append(state)
            return {task_ids[0]: state}
        return {t: (upstream_reads[t].pop(0) if len(upstream_reads[t]) > 1 else upstream_reads[t][0]) for t in task_ids}

    trigger.get_xcom_val = get_xcom_val  # type: ignore[method-assign]
    trigger._task_states = task_states  # type: ignore[method-assign]
    watcher._states.clear()

    async def collect() -> list[Any]:
        return [e async for e in trigger.run()]

    out = asyncio.run(asyncio.wait_for(collect(), 10))
    assert all(run_id == "manual__1" for run_id, _ in asked), "the run id must come from the task instance"
    trigger.asked = [key for _, key in asked]  # type: ignore[attr-defined]
    trigger.upstream_reads = upstream_reads  # type: ignore[attr-defined]
    return out, trigger


def test_a_passed_node_ends_its_task_in_the_triggerer():
    out, _ = events("success")
    assert len(out) == 1 and isinstance(out[0], TaskSuccessEvent)


def test_a_failed_node_resumes_on_a_worker_with_cosmos_failure():
    out, _ = events("error")
    assert len(out) == 1 and not isinstance(out[0], BaseTaskEndEvent) and isinstance(out[0], TriggerEvent)
    assert out[0].payload["status"] == EventStatus.FAILED
    assert out[0].payload["reason"] == WatcherEventReason.NODE_FAILED


def test_a_node_dbt_skipped_ends_its_task_skipped_in_the_triggerer():
    out, _ = events("skipped")
    assert len(out) == 1 and isinstance(out[0], TaskSkippedEvent)


def test_results_are_read_only_once_the_producer_runs_this_builds_nodes():
    # A cleared run: the XCom still holds the earlier build's "success" until the producer starts.
    out, _ = events("error", producer=[None, "scheduled", "queued", "running"], stale="success")
    assert out[0].payload["reason"] == WatcherEventReason.NODE_FAILED, out  # not the earlier build's success


def test_a_producer_that_will_not_run_ends_the_sensor_skipped():
    out, _ = events(None, producer=[None, "scheduled", "upstream_failed"])
    assert len(out) == 1 and isinstance(out[0], TaskSkippedEvent)


def test_a_retry_after_the_producer_ended_runs_dbt_on_a_worker_once_its_upstream_passed():
    out, trigger = events("error", producer="failed", try_number=2,
                          upstream={"dbt.stg_retail__orders.test": ["running", "deferred", "success"]})
    assert not isinstance(out[0], BaseTaskEndEvent)
    assert out[0].payload["reason"] == WatcherEventReason.PRODUCER_SKIPPED  # Cosmos's path to its dbt fallback
    assert trigger.asked == [], "a retry must not read the failed build's results"


def test_a_retry_waits_for_the_producer_to_end():
    out, _ = events("success", producer=["running", "running", "failed"], try_number=2)
    assert out[0].payload["reason"] == WatcherEventReason.PRODUCER_SKIPPED


def test_a_waiting_sensor_whose_producer_skipped_its_retry_runs_dbt_only_after_its_upstream():
    # The producer failed mid-build with a retry left and skipped that retry (Cosmos): a sensor
    # already waiting for its node falls back to dbt on a worker, but not before its upstream passed.
    out, trigger = events(None, producer=["running", "up_for_retry", "skipped"],
                          upstream={"dbt.stg_retail__orders.test": ["running", "deferred", "success"]})
    assert len(out) == 1 and out[0].payload["reason"] == WatcherEventReason.PRODUCER_SKIPPED
    assert trigger.upstream_reads["dbt.stg_retail__orders.test"] == ["success"], "it did not wait for its upstream"
    out, _ = events(None, producer=["running", "up_for_retry", "skipped"],
                    upstream={"dbt.stg_retail__orders.test": ["running", "failed"]})
    assert len(out) == 1 and isinstance(out[0], TaskFailedEvent)


def test_a_retry_whose_upstream_failed_fails_without_running_dbt():
    out, _ = events(None, producer="skipped", try_number=2,
                    upstream={"dbt.stg_retail__orders.test": ["success"], "dbt.stg_retail__customers.test": ["failed"]})
    assert len(out) == 1 and isinstance(out[0], TaskFailedEvent)


def test_a_retry_whose_upstream_was_skipped_is_skipped():
    out, _ = events(None, producer="skipped", try_number=2, upstream={"dbt.stg_retail__orders.test": ["skipped"]})
    assert len(out) == 1 and isinstance(out[0], TaskSkippedEvent)


def test_the_triggers_of_a_run_share_their_reads_of_the_producer():
    reads: list[str] = []

    async def both() -> None:
        triggers = []
        for node in ("model.retailflow.orders", "model.retailflow.customers"):
            trigger = NodeTrigger(model_unique_id=node, producer_task_id="dbt.dbt_producer_watcher",
                                  dag_id="retail_pipeline", run_id="manual__1", map_index=None, poke_interval=10)

            async def task_states(task_ids: list[str]) -> dict[str, str | None]:
                reads.append(task_ids[0])
                return {task_ids[0]: "running"}

            trigger._task_states = task_states  # type: ignore[method-assign]
            triggers.append(trigger)
        for trigger in triggers * 3:
            assert await trigger._get_producer_task_status() == "running"

    watcher._states.clear()
    asyncio.run(both())
    assert reads == ["dbt.dbt_producer_watcher"]


def test_it_serialises_as_itself_with_its_upstream():
    _, trigger = events("success", upstream={"dbt.stg_retail__orders.test": ["success"]})
    classpath, kwargs = trigger.serialize()
    assert classpath == "retailflow_pipeline.watcher.NodeTrigger" and kwargs["model_unique_id"] == NODE
    assert kwargs["upstream_task_ids"] == ["dbt.stg_retail__orders.test"]
    assert NodeTrigger(**kwargs).serialize() == (classpath, kwargs)


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
