"""Cosmos's watcher sensors, started in the triggerer, each reporting as soon as its node finishes.

In ``ExecutionMode.WATCHER`` one producer task runs ``dbt build`` and every model (and every model's
tests) keeps a task of its own in the UI: a sensor that reads the node's result from the producer's
XComs. As Cosmos ships it, each sensor starts in a worker process, finds nothing yet, defers to the
triggerer, and is resumed in a second worker process when its node finishes: two task processes per
node (54 for this project), each parsing the DAG, and on LocalExecutor a race that fails sensors at
random (the first process's late "success" event arrives while the resumed one runs; the scheduler
calls it "state changed externally" and retries the task 30 s later). ``dags/README.md`` has the figures.

:func:`start_in_triggerer` sets Airflow's ``start_from_trigger`` on each sensor: the scheduler hands
it straight to the triggerer (``StartTriggerArgs``), and :class:`NodeTrigger` ends it there with a
``TaskSuccessEvent`` when its node passed, or a ``TaskSkippedEvent`` when dbt skipped it. Only a
failed node resumes on a worker, in Cosmos's own ``execute_complete`` (its message), and so does a
retry (try 2 or more, or the producer skipped), which runs dbt for that node as Cosmos's retry does.

The sensors' edges among themselves stay, so the UI's graph is dbt's, but they do not hold the
sensors back: a sensor whose upstream tasks are all sensors of the group gets
``trigger_rule="always"``. The scheduler defers it when the run starts, and its trigger reports its
node within a poke of the producer finishing it. Held back by the edges, the sensors walked the
graph's ten steps one trigger hop (2-3 s of the scheduler's and the triggerer's loops) at a time,
well after the build had ended. What the edges also meant moves into :class:`NodeTrigger`:

- it reads its node's result only once the producer runs this run's build (the results of a
  cleared run's earlier build are never read: Airflow clears them when the producer starts);
- the producer will not run (its upstream failed, or it was removed): the sensor ends skipped; the
  run fails through the producer's upstream;
- a node dbt skipped because a node it depends on failed is reported failed by Cosmos, as a failed
  node is (a node skipped for another reason ends skipped, in the triggerer);
- a retry, or a skipped producer (Cosmos's producer skips its own retries; a sensor already waiting
  sees it too), runs dbt for the node on a worker only after the sensor's upstream sensors passed, in
  the graph's order as the edges would have kept it; when one of them failed, the sensor fails and
  names it (skipped when one was skipped).

Those sensors have no ``execution_timeout``: they wait from the run's start, through the ingestion
(hours with Airbyte), and Airflow turns a deferred task's ``execution_timeout`` into its trigger's
timeout. A producer that failed for good fails every sensor still waiting; one that failed with a
retry left skips that retry (Cosmos), and the waiting sensors then run Cosmos's per-node fallback on
workers, in the graph's order, which for these sensors is bounded only by the DAG's
``dagrun_timeout`` (8 h), not by the 30 minutes the other dbt tasks have. All the triggers of a run read the producer's state
through one cache in the triggerer process (at most one request per half poke), not one each.

What a sensor ended in the triggerer does not do: push the node's compiled SQL into its rendered
fields and emit the model's dataset event (nothing in RetailFlow schedules on them); its log (the
trigger's) still names the node and its dbt status.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterable
from typing import Any

from asgiref.sync import sync_to_async
from cosmos.listeners.dag_run_listener import EventStatus
from cosmos.operators._watcher.base import BaseConsumerSensor
from cosmos.operators._watcher.triggerer import WatcherEventReason, WatcherTrigger

#: seconds between two reads of a node's result by its trigger (Cosmos's default is the sensor's 10 s)
POKE_SECONDS = 1.0
#: dbt events whose JSON the producer pushes as the node's ``<node>_dbt_event`` XCom: the last one and errors
FINAL_NODE_EVENTS = frozenset({"NodeFinished"})

#: task states after which a task instance does nothing more in this try
ENDED = frozenset({"success", "failed", "skipped", "upstream_failed", "removed"})
#: producer states in which this run's build is under way or done: its XComs are this build's
BUILDING = frozenset({"running", "success", "failed"})
#: producer states in which it will not run this run's build
NOT_RUN = frozenset({"upstream_failed", "removed"})

#: (dag id, run id, task id) -> (monotonic time read, state): the triggers of one run share the reads
_states: dict[tuple[str, str, str], tuple[float, str | None]] = {}


def _state_name(state: Any) -> str | None:
    return None if state is None else str(getattr(state, "value", state))


class NodeTrigger(WatcherTrigger):
    """Cosmos's ``WatcherTrigger`` for a sensor started in the triggerer: the run id and map index
    come from the task instance, it reads results only of this run's build, a passed node ends the
    task here (``TaskSuccessEvent``), and so does a node dbt skipped (``TaskSkippedEvent``)."""

    def __init__(self, *args: Any, upstream_task_ids: Iterable[str] = (), **kwargs: Any):
        super().__init__(*args, **kwargs)
        #: the sensor's upstream sensors: a retry runs dbt for the node only once they passed
        self.upstream_task_ids = sorted(upstream_task_ids)

    def serialize(self) -> tuple[str, dict[str, Any]]:
        _, kwargs = super().serialize()
        return (f"{type(self).__module__}.{type(self).__qualname__}",
                {**kwargs, "upstream_task_ids": self.upstream_task_ids})

    async def _log_startup_events(self) -> None:
        """Not waited for: Cosmos's trigger first polls until the producer has logged dbt's and the
        adapter's versions, only to repeat them here (they are in the producer's log); in the first
        sensors of a run that wait took 10-14 s, longer than their models."""

    async def _task_states(self, task_ids: list[str]) -> dict[str, str | None]:
        """The states of ``task_ids`` in this run, through the Task SDK (as Cosmos reads its producer's)."""
        from airflow.sdk.execution_time.task_runner import RuntimeTaskInstance

        states = await sync_to_async(RuntimeTaskInstance.get_task_states)(
            dag_id=self.dag_id, task_ids=task_ids, run_ids=[self.run_id])
        got = states.get(self.run_id, {})
        return {task_id: _state_name(got.get(task_id)) for task_id in task_ids}

    async def _get_producer_task_status(self) -> str | None:
        """The producer's state, read at most once per half poke for all the triggers of this run."""
        key = (self.dag_id, self.run_id, self.producer_task_id)
        now = time.monotonic()
        cached = _states.get(key)
        if cached is not None and now - cached[0] < self.poke_interval / 2:
            return cached[1]
        state = (await self._task_states([self.producer_task_id]))[self.producer_task_id]
        for stale in [k for k, (at, _) in _states.items() if now - at > 60]:
            del _states[stale]
        _states[key] = (time.monotonic(), state)
        return state

    async def _producer_in(self, states: frozenset[str]) -> str:
        while (state := await self._get_producer_task_status()) not in states:
            await asyncio.sleep(self.poke_interval)
        return state

    async def _upstream_not_passed(self) -> dict[str, str]:
        """Wait until the upstream sensors ended; those that did not pass, with their states."""
        if not self.upstream_task_ids:
            return {}
        while True:
            states = await self._task_states(self.upstream_task_ids)
            if all(state in ENDED for state in states.values()):
                return {task_id: state for task_id, state in states.items() if state != "success"}
            await asyncio.sleep(self.poke_interval)

    async def run(self) -> AsyncIterator[Any]:
        from airflow.triggers.base import TaskSkippedEvent, TaskSuccessEvent

        ti = self.task_instance
        self.run_id = self.run_id or ti.run_id
        self.map_index = ti.map_index if self.map_index is None else self.map_index
        retry = ti.try_number > 1
        producer = await self._producer_in(ENDED if retry else ENDED | BUILDING)
        if producer in NOT_RUN:
            self.log.info("%s: the producer %s is %s, this run builds nothing", self.model_unique_id,
                          self.producer_task_id, producer)
            yield TaskSkippedEvent()
            return
        if retry or producer == "skipped":
            # A retry, a task cleared in the UI, or a producer that skipped its own retry: Cosmos's
            # sensor then runs dbt for its node itself, on a worker; first its upstream sensors must pass.
            yield await self._fallback(ti.try_number)
            return
        async for event in super().run():
            payload = event.payload if isinstance(event.payload, dict) else {}
            if payload.get("status") == EventStatus.SUCCESS:
                self.log.info("%s: %s in the producer's dbt build", self.model_unique_id,
                              "not run" if payload.get("reason") else "success")
                yield TaskSuccessEvent()
            elif payload.get("status") == EventStatus.SKIPPED:
                self.log.info("%s: skipped by the producer's dbt build", self.model_unique_id)
                yield TaskSkippedEvent()
            elif payload.get("reason") == WatcherEventReason.PRODUCER_SKIPPED:
                # The producer failed before this node's result and skipped its retry, while this
                # sensor waited: the same fallback as a retry's, in the graph's order.
                yield await self._fallback(ti.try_number)
            else:
                yield event
            return

    async def _fallback(self, try_number: int) -> Any:
        """The event of Cosmos's fallback (dbt for this node, on a worker), once the upstream sensors
        passed; one that fails the task when one of them failed, skips it when one was skipped."""
        from airflow.triggers.base import TaskFailedEvent, TaskSkippedEvent, TriggerEvent

        not_passed = await self._upstream_not_passed()
        failed = {t: s for t, s in not_passed.items() if s != "skipped"}
        if failed:
            self.log.error("%s: not run, upstream %s", self.model_unique_id,
                           ", ".join(f"{t} is {s}" for t, s in sorted(failed.items())))
            return TaskFailedEvent()
        if not_passed:
            self.log.info("%s: not run, upstream %s skipped", self.model_unique_id, ", ".join(sorted(not_passed)))
            return TaskSkippedEvent()
        self.log.info("try %s of %s: running dbt for it on a worker (Cosmos's retry)", try_number,
                      self.model_unique_id)
        return TriggerEvent({"status": EventStatus.FAILED, "reason": WatcherEventReason.PRODUCER_SKIPPED})


def push_final_node_events_only() -> None:
    """Make the producer push a node's dbt event once, when the node finishes (and on errors).

    Cosmos pushes the ``<node>_dbt_event`` XCom on each of a node's lifecycle events (``NodeStart``,
    ``NodeCompiling``, ``NodeExecuting``, ``NodeFinished``), each overwriting the last, under one lock
    that every dbt thread waits on: 752 of the producer's 942 XCom pushes in a demo-scale run, about
    21 s of API-server time. A sensor reads the event once, after the node finished, for its start and
    finish times. Cosmos has no setting for it: this narrows its module-level allow-list
    (``cosmos.operators._watcher.base._DBT_EVENT_ALLOWLIST``, read on every event).
    """
    from cosmos.operators._watcher import base

    base._DBT_EVENT_ALLOWLIST = base._DBT_ERROR_EVENTS_TYPES | FINAL_NODE_EVENTS


def start_in_triggerer(group: Any, poke_seconds: float = POKE_SECONDS) -> int:
    """Start every watcher sensor of ``group`` (a Cosmos task group) in the triggerer, reporting as its
    node finishes (the module's docstring); returns how many."""
    from airflow.triggers.base import StartTriggerArgs
    from airflow.task.trigger_rule import TriggerRule

    sensors = {task.task_id: task for task in group.dag.task_dict.values()
               if task.task_id.startswith(f"{group.group_id}.") and isinstance(task, BaseConsumerSensor)
               and task.deferrable}
    for task in sensors.values():
        upstream = sorted(task.upstream_task_ids)
        if upstream and all(task_id in sensors for task_id in upstream):
            task.trigger_rule = TriggerRule.ALWAYS
            task.execution_timeout = None
        task.start_from_trigger = True
        task.start_trigger_args = StartTriggerArgs(
            trigger_cls=f"{NodeTrigger.__module__}.{NodeTrigger.__qualname__}",
            trigger_kwargs={
                "model_unique_id": task.model_unique_id,
                "producer_task_id": task.producer_task_id,
                "dag_id": task.dag_id,
                "run_id": "",  # the task instance's, in NodeTrigger.run
                "map_index": None,
                "poke_interval": poke_seconds,
                "is_test_sensor": task.is_test_sensor,
                "upstream_task_ids": [task_id for task_id in upstream if task_id in sensors],
            },
            next_method="execute_complete",
        )
    return len(sensors)
