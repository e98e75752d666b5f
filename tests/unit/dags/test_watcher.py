"""The dbt sensors' trigger (retailflow_pipeline.watcher): a passed or skipped node ends its task in
the triggerer; a failed node resumes it on a worker, in Cosmos's own ``execute_complete``; results are
read only of this run's build; a retry runs dbt for its node only after its upstream sensors passed."""

from __future__ import annotations

import asyncio
import time
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
STATUS_KEY = "model__retailflow__orders_status"
STARTUP = [{"name": "MainReportVersion", "msg": "Running with dbt"}, {"name": "AdapterRegistered", "msg": "postgres"}]


def events(node_status: str | None, *, producer: str | list[str] = "running", try_number: int = 1,
           upstream: dict[str, list[str | None]] | None = None, stale: str | None = None,
           in_results: bool = True) -> tuple[list[Any], NodeTrigger]:
    """Run a NodeTrigger against stand-ins of the Task SDK's reads: ``producer`` (a state, or the states
    of successive reads), the node's status XCom and the producer's results XCom holding it (unless
    ``in_results`` is false: a producer that pushes no results XCom; ``stale``: the status a cleared
    run's earlier build left, returned until the producer has run), and the upstream sensors' states
    read after read."""
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
        result = {"status": status, "outlet_uris": []} if status else None
        xcoms = {"dbt_startup_events": STARTUP, STATUS_KEY: result,
                 watcher.NODE_RESULTS_KEY: {STATUS_KEY: result} if result and in_results else {}}
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
    watcher._results.clear()

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


def test_the_triggers_of_a_run_share_one_read_of_the_node_results():
    """Four sensors waiting at once: one request for the producer's state and one for the results XCom
    serve them all, and each ends as its own node did (a model's and a model's tests' results)."""
    results = {
        "model__retailflow__orders_status": {"status": "success", "outlet_uris": []},
        "model__retailflow__customers_status": {"status": "error", "outlet_uris": []},
        "model__retailflow__orders_tests_status": "pass",
        "model__retailflow__products_status": {"status": "skipped", "outlet_uris": []},
    }
    asked: list[str] = []
    states_read: list[list[str]] = []

    async def get_xcom_val(key: str) -> Any:
        asked.append(key)
        await asyncio.sleep(0.01)  # a request in flight while the other triggers ask
        return {watcher.NODE_RESULTS_KEY: results, "model__retailflow__customers_compiled_sql": "select 1"}.get(key)

    async def task_states(task_ids: list[str]) -> dict[str, str | None]:
        states_read.append(task_ids)
        await asyncio.sleep(0.01)
        return {task_ids[0]: "running"}

    def trigger(node: str, *, tests: bool = False) -> NodeTrigger:
        made = NodeTrigger(model_unique_id=node, producer_task_id="dbt.dbt_producer_watcher", dag_id="retail_pipeline",
                           run_id="", map_index=None, poke_interval=10, is_test_sensor=tests)
        made.task_instance = SimpleNamespace(task_id="dbt.sensor", run_id="manual__1", map_index=-1, try_number=1)
        made.get_xcom_val = get_xcom_val  # type: ignore[method-assign]
        made._task_states = task_states  # type: ignore[method-assign]
        return made

    async def all_four() -> list[list[Any]]:
        triggers = [trigger("model.retailflow.orders"), trigger("model.retailflow.customers"),
                    trigger("model.retailflow.orders", tests=True), trigger("model.retailflow.products")]
        return list(await asyncio.gather(*[asyncio.wait_for(collect(t), 10) for t in triggers]))

    async def collect(t: NodeTrigger) -> list[Any]:
        return [e async for e in t.run()]

    watcher._states.clear()
    watcher._results.clear()
    orders, customers, orders_tests, products = asyncio.run(all_four())
    assert isinstance(orders[0], TaskSuccessEvent) and isinstance(orders_tests[0], TaskSuccessEvent)
    assert customers[0].payload["reason"] == WatcherEventReason.NODE_FAILED
    assert customers[0].payload["compiled_sql"] == "select 1"  # what Cosmos's execute_complete shows
    assert isinstance(products[0], TaskSkippedEvent)
    assert len(states_read) == 1, states_read
    assert asked == [watcher.NODE_RESULTS_KEY, "model__retailflow__customers_compiled_sql"], asked


def test_a_results_read_sent_before_the_producer_ran_this_build_is_not_shared():
    """A read of the results XCom made for this run just before its producer started (by a trigger of
    the run before it was cleared) holds the earlier build's results: a trigger that then sees the
    producer running does not take it, even while it is fresh."""
    earlier = {"model__retailflow__orders_status": {"status": "success", "outlet_uris": []}}
    now = {"model__retailflow__orders_status": {"status": "error", "outlet_uris": []}}

    async def cleared_then_run() -> list[Any]:
        async def earlier_build() -> Any:
            return {watcher.NODE_RESULTS_KEY: earlier}.get(watcher.NODE_RESULTS_KEY)

        key = ("retail_pipeline", "manual__1", "dbt.dbt_producer_watcher", -1)
        await watcher._results.read(key, earlier_build, max_age=5)
        trigger = NodeTrigger(model_unique_id=NODE, producer_task_id="dbt.dbt_producer_watcher",
                              dag_id="retail_pipeline", run_id="", map_index=None, poke_interval=10)
        trigger.task_instance = SimpleNamespace(task_id="dbt.orders.run", run_id="manual__1", map_index=-1,
                                                try_number=1)

        async def get_xcom_val(key: str) -> Any:
            return {watcher.NODE_RESULTS_KEY: now}.get(key)

        async def task_states(task_ids: list[str]) -> dict[str, str | None]:
            return {task_ids[0]: "running"}

        trigger.get_xcom_val = get_xcom_val  # type: ignore[method-assign]
        trigger._task_states = task_states  # type: ignore[method-assign]
        return [e async for e in trigger.run()]

    watcher._states.clear()
    watcher._results.clear()
    out = asyncio.run(asyncio.wait_for(cleared_then_run(), 10))
    assert len(out) == 1 and out[0].payload["reason"] == WatcherEventReason.NODE_FAILED, out


def test_a_node_the_shared_read_lacks_is_read_itself_only_once_the_producer_ended():
    """The results XCom may miss a node the producer pushed after the shared read (or a producer may
    push none): once the producer ended, the node's own XCom decides, not "ended without a result"
    (Cosmos's "not run" success); while the producer runs, only the shared read is made."""
    out, trigger = events("error", producer=["running", "running", "running", "success"], in_results=False)
    assert out[0].payload["reason"] == WatcherEventReason.NODE_FAILED, out
    assert trigger.asked.count(STATUS_KEY) == 1, trigger.asked
    assert trigger.asked.count(watcher.NODE_RESULTS_KEY) >= 2, trigger.asked
    out, _ = events("error", producer=["running", "failed"], in_results=False)
    assert out[0].payload["reason"] == WatcherEventReason.NODE_FAILED, out  # not "the producer failed first"


def test_a_passed_node_is_read_from_the_shared_results_only():
    out, trigger = events("success")
    assert isinstance(out[0], TaskSuccessEvent)
    assert trigger.asked == [watcher.NODE_RESULTS_KEY], trigger.asked


def test_the_producer_pushes_every_node_result_so_far_in_one_xcom(monkeypatch):
    """Through Cosmos's own parser and push: each result a node's XCom gets is also in the results XCom,
    rewritten as nodes finish but not once per result (results set within the push interval go in one
    push, and the last ones are pushed when dbt ends, without waiting for the interval); the producer's
    other XComs are not in it; it is in Cosmos's backup buffer, which Cosmos restores when the
    producer's retry starts."""
    import json

    from cosmos.operators._watcher.base import store_dbt_resource_status_from_log
    from cosmos.operators._watcher.state import safe_xcom_push
    from cosmos.operators.watcher import DbtProducerWatcherOperator

    test_id = "test.retailflow.not_null_orders_order_id.1a"
    pushed: list[tuple[str, Any]] = []
    ti = SimpleNamespace(xcom_push=lambda key, value: pushed.append((key, value)), xcom_pull=lambda **_: None,
                         _cosmos_xcom_backup_buffer={"dbt_producer_cmd_flags": []})  # as Cosmos's execute leaves it

    def finished(unique_id: str, status: str, resource_type: str) -> str:
        node = {"unique_id": unique_id, "node_status": status, "resource_type": resource_type}
        return json.dumps({"info": {"name": "NodeFinished"}, "data": {"node_info": node}})

    def dbt_build(self: Any, cmd: list[str], env: Any, context: Any, *args: Any, **kwargs: Any) -> None:
        lines = (finished(NODE, "success", "model"), finished("model.retailflow.customers", "success", "model"),
                 finished(test_id, "pass", "test"))
        for line in lines:
            store_dbt_resource_status_from_log(line, {"context": context}, tests_per_model={NODE: [test_id]},
                                               test_results_per_model={})
            deadline = time.monotonic() + 5
            while line == lines[0] and watcher.NODE_RESULTS_KEY not in dict(pushed) and time.monotonic() < deadline:
                time.sleep(0.01)  # the first result is pushed at once; the next ones wait for the interval
        safe_xcom_push(task_instance=context["ti"], key="task_status", value="completed")

    monkeypatch.setattr(DbtProducerWatcherOperator, "run_command", dbt_build)
    monkeypatch.setattr(watcher.NodeResultsProducer, "results_push_seconds", 30)
    producer = object.__new__(watcher.NodeResultsProducer)
    started = time.monotonic()
    producer.run_command(["dbt", "build"], {}, {"ti": ti})
    assert time.monotonic() - started < 10

    results = [value for key, value in pushed if key == watcher.NODE_RESULTS_KEY]
    model = {"status": "success", "outlet_uris": []}
    assert len(results) == 2 and results[0] == {STATUS_KEY: {"status": "success", "outlet_uris": []}}, results
    assert results[-1] == {STATUS_KEY: model, "model__retailflow__customers_status": model,
                           "model__retailflow__orders_tests_status": "pass"}
    assert {key for key, _ in pushed} >= {STATUS_KEY, "model__retailflow__orders_tests_status", "task_status"}
    assert ti._cosmos_xcom_backup_buffer[watcher.NODE_RESULTS_KEY] == results[-1]
    assert ti._cosmos_xcom_backup_buffer["dbt_producer_cmd_flags"] == []


def test_the_producer_pushes_dbt_events_only_for_the_nodes_its_sensors_watch():
    """A sensor reads its own node's dbt event (a model's, or a detached test's); the events of the
    tests a model's test sensor aggregates are read by none, and are not pushed. Results still are."""
    import json

    child_test = "test.retailflow.not_null_orders_order_id.1a"
    detached = "test.retailflow.relationships_orders_customer_id.2b"
    pushed: list[str] = []
    ti = SimpleNamespace(xcom_push=lambda key, value: pushed.append(key), xcom_pull=lambda **_: None)
    producer = object.__new__(watcher.NodeResultsProducer)
    state = {"tests_per_model": {NODE: [child_test]}, "test_results_per_model": {}, "_model_outlet_uris": {},
             "_dataset_namespace": None, "_should_generate_model_uris": False,
             "_upstream_failure_skipped_ids": set(), "event_nodes": frozenset({NODE, detached})}
    for name, value in state.items():  # what Cosmos's __init__ and use_node_results_producer set
        object.__setattr__(producer, name, value)
    parse = producer._make_parse_callable()
    context = {"ti": ti}
    for unique_id, status, resource_type in ((NODE, "success", "model"), (child_test, "pass", "test"),
                                             (detached, "pass", "test")):
        node = {"unique_id": unique_id, "node_status": status, "resource_type": resource_type}
        parse(json.dumps({"info": {"name": "NodeFinished"}, "data": {"node_info": node}}), {"context": context})
    assert [key for key in pushed if key.endswith("_dbt_event")] == [
        "model__retailflow__orders_dbt_event", "test__retailflow__relationships_orders_customer_id__2b_dbt_event"]
    assert {STATUS_KEY, "model__retailflow__orders_tests_status"} <= set(pushed)


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


def test_a_shared_read_tries_a_failed_request_again_before_failing_its_waiters():
    """One transient error of the execution API must not reach every trigger waiting on the read;
    an error that stays is given to each of them."""
    calls: list[int] = []

    async def flaky() -> str:
        calls.append(1)
        await asyncio.sleep(0.01)
        if len(calls) == 1:
            raise ConnectionError("execution API: 503")
        return "running"

    async def always_failing() -> str:
        calls.append(1)
        raise ConnectionError("execution API: 503")

    async def waiters(fetch: Any) -> list[Any]:
        reads = watcher.SharedReads(retry_seconds=0.01)
        return list(await asyncio.gather(*[reads.read("key", fetch, max_age=10) for _ in range(4)],
                                         return_exceptions=True))

    answers = asyncio.run(waiters(flaky))
    assert [value for _, value in answers] == ["running"] * 4
    assert len(calls) == 2  # one failed request, one that served all four
    calls.clear()
    failures = asyncio.run(waiters(always_failing))
    assert all(isinstance(f, ConnectionError) for f in failures), failures
    assert len(calls) == 3


def test_a_failed_results_push_is_tried_again_and_never_fails_the_build():
    """A push of the results XCom that fails (a transient API error) is made again at the next tick
    with every result so far, and the producer's close does not raise it: a build dbt finished
    must not fail, nor send its sensors to Cosmos's per-node fallback, over this XCom."""
    pushed: list[dict[str, Any]] = []
    failures = [ConnectionError("execution API: 503")]

    def xcom_push(key: str, value: Any) -> None:
        if failures:
            raise failures.pop()
        pushed.append(dict(value))

    buffer = watcher._NodeResultsBuffer(SimpleNamespace(xcom_push=xcom_push), {}, every=0.02)
    model = {"status": "success", "outlet_uris": []}
    buffer[STATUS_KEY] = model  # the first push fails
    deadline = time.monotonic() + 5
    while not pushed and time.monotonic() < deadline:
        time.sleep(0.01)
    assert pushed == [{STATUS_KEY: model}]  # tried again at the next tick
    buffer["model__retailflow__customers_status"] = model
    failures.append(ConnectionError("execution API: 503"))  # the last push fails once too
    buffer.close()
    assert pushed[-1] == {STATUS_KEY: model, "model__retailflow__customers_status": model}


@pytest.mark.parametrize("ended", ["skipped", "up_for_retry"])
def test_a_node_whose_producer_waits_for_or_skipped_its_retry_is_read_from_its_own_xcom(ended):
    """The results XCom can lag the node's own XCom (a push that failed, a producer killed); a
    producer's retry restores the per-node XComs and skips: a node that passed ends as success, as
    Cosmos's trigger would end it, instead of running dbt again on a worker."""
    out, trigger = events("success", producer=["running", ended], in_results=False)
    assert isinstance(out[0], TaskSuccessEvent), out
    assert STATUS_KEY in trigger.asked


def test_the_backup_buffer_keeps_no_dbt_event_the_producer_does_not_push():
    """Cosmos sets every pushed XCom in its backup buffer, which a producer retry pushes back: the
    events of nodes no sensor watches stay out of it, the watched ones and every result stay in."""
    detached = "test.retailflow.relationships_orders_customer_id.2b"
    producer = object.__new__(watcher.NodeResultsProducer)
    object.__setattr__(producer, "event_nodes", frozenset({NODE, detached}))
    buffer = watcher._NodeResultsBuffer(SimpleNamespace(xcom_push=lambda key, value: None), {}, every=0.02,
                                        unread=producer._unread_xcoms)
    keys = ["model__retailflow__orders_dbt_event", "test__retailflow__not_null_orders_order_id__1a_dbt_event",
            "test__retailflow__relationships_orders_customer_id__2b_dbt_event", STATUS_KEY]
    for key in keys:
        buffer[key] = {}
    buffer.close()
    assert set(buffer) >= {keys[0], keys[2], STATUS_KEY}
    assert keys[1] not in buffer


def test_the_producer_pushes_a_models_compiled_sql_only_when_the_model_failed(tmp_path):
    """Through Cosmos's own parser: a sensor reads a model's compiled SQL only when the model failed
    (to show it on the worker the sensor resumes on). A passed model's is neither pushed nor kept in
    the backup buffer a retry pushes back; a failed model's is both, and every result still is."""
    import json

    failed = "model.retailflow.customers"
    for name in ("orders", "customers"):
        path = tmp_path / "target" / "compiled" / "retailflow" / "models" / f"{name}.sql"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"select * from raw.{name}")
    pushed: list[str] = []
    producer = object.__new__(watcher.NodeResultsProducer)
    state = {"tests_per_model": {}, "test_results_per_model": {}, "_model_outlet_uris": {},
             "_dataset_namespace": None, "_should_generate_model_uris": False,
             "_upstream_failure_skipped_ids": set(), "event_nodes": frozenset({NODE, failed})}
    for name, value in state.items():  # what Cosmos's __init__ and use_node_results_producer set
        object.__setattr__(producer, name, value)
    ti = SimpleNamespace(xcom_push=lambda key, value: pushed.append(key), xcom_pull=lambda **_: None)
    ti._cosmos_xcom_backup_buffer = watcher._NodeResultsBuffer(ti, {}, every=30, unread=producer._unread_xcoms)
    parse = producer._make_parse_callable()
    for unique_id, status, path in ((NODE, "success", "orders.sql"), (failed, "error", "customers.sql")):
        node = {"unique_id": unique_id, "node_status": status, "resource_type": "model", "node_path": path}
        parse(json.dumps({"info": {"name": "NodeFinished"}, "data": {"node_info": node}}),
              {"context": {"ti": ti}, "project_dir": str(tmp_path)})
    ti._cosmos_xcom_backup_buffer.close()
    compiled = [key for key in pushed if key.endswith("_compiled_sql")]
    assert compiled == ["model__retailflow__customers_compiled_sql"], pushed
    assert {STATUS_KEY, "model__retailflow__customers_status"} <= set(pushed)
    buffer = ti._cosmos_xcom_backup_buffer
    assert "model__retailflow__customers_compiled_sql" in buffer and "model__retailflow__orders_compiled_sql" not in buffer
    assert {STATUS_KEY, "model__retailflow__customers_status"} <= set(buffer)


def test_a_detached_tests_passing_result_is_in_the_results_xcom_while_dbt_runs():
    """A relationship test has a sensor of its own, but Cosmos counts its result only in its two
    models' test aggregates: the key its sensor reads is never pushed, and the sensor would end, as
    "not run", only after the producer. Its passing result is in the results XCom as soon as dbt
    reports it; a failed one is not (the sensor then fails with the producer, as Cosmos has it)."""
    import json

    passed = "test.retailflow.relationships_orders_customer_id__customer_id__ref_customers_.2b"
    failed = "test.retailflow.relationships_orders_store_id__store_id__ref_stores_.3c"
    pushed: list[tuple[str, Any]] = []
    producer = object.__new__(watcher.NodeResultsProducer)
    state = {"tests_per_model": {NODE: [passed, failed], "model.retailflow.customers": [passed]},
             "test_results_per_model": {}, "_model_outlet_uris": {}, "_dataset_namespace": None,
             "_should_generate_model_uris": False, "_upstream_failure_skipped_ids": set(),
             "event_nodes": frozenset({NODE, passed, failed})}
    for name, value in state.items():  # what Cosmos's __init__ and use_node_results_producer set
        object.__setattr__(producer, name, value)
    ti = SimpleNamespace(xcom_push=lambda key, value: pushed.append((key, value)), xcom_pull=lambda **_: None)
    ti._cosmos_xcom_backup_buffer = watcher._NodeResultsBuffer(ti, {}, every=30, unread=producer._unread_xcoms)
    parse = producer._make_parse_callable()
    for unique_id, status in ((passed, "pass"), (failed, "fail")):
        node = {"unique_id": unique_id, "node_status": status, "resource_type": "test"}
        parse(json.dumps({"info": {"name": "NodeFinished"}, "data": {"node_info": node}}), {"context": {"ti": ti}})
    ti._cosmos_xcom_backup_buffer.close()
    results = [value for key, value in pushed if key == watcher.NODE_RESULTS_KEY][-1]
    passed_key = "test__retailflow__relationships_orders_customer_id__customer_id__ref_customers___2b_tests_status"
    assert results[passed_key] == "pass", results
    assert not any(key.startswith("test__") for key in results if key != passed_key), results
    assert results["model__retailflow__orders_tests_status"] == "fail"  # Cosmos's aggregates, unchanged
    # the key the test's own sensor reads (Cosmos's DbtTestWatcherOperator: a test sensor of that id)
    from cosmos.operators._watcher.aggregation import get_tests_status_xcom_key
    assert get_tests_status_xcom_key(passed) == passed_key
    # what Cosmos pushes is unchanged: no per-node XCom of a test's result, its models' aggregates
    assert not any(key.startswith("test__") and key.endswith("_status") for key, _ in pushed)
    assert ("model__retailflow__customers_tests_status", "pass") in pushed
