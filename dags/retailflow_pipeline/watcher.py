"""Cosmos's watcher sensors, started in the triggerer: no worker process unless a node fails.

In ``ExecutionMode.WATCHER`` one producer task runs ``dbt build`` and every model (and every model's
tests) keeps a task of its own in the UI: a sensor that reads the node's result from the producer's
XComs. As Cosmos ships it, each sensor starts in a worker process, finds nothing yet, defers to the
triggerer, and is resumed in a second worker process when its node finishes: two task processes per
node (54 for this project), each parsing the DAG, and on LocalExecutor a race that fails sensors at
random (the first process's late "success" event arrives while the resumed one runs; the scheduler
calls it "state changed externally" and retries the task 30 s later). ``dags/README.md`` has the figures.

:func:`start_in_triggerer` sets Airflow's ``start_from_trigger`` on each sensor: the scheduler hands
it straight to the triggerer (``StartTriggerArgs``), and :class:`NodeTrigger` ends it there with a
``TaskSuccessEvent`` when its node passed. Only the other outcomes resume on a worker, in Cosmos's
own ``execute_complete``: a failed node fails the task with Cosmos's message, a skipped one skips it,
and a retry (try 2 or more, the producer finished) runs dbt for that node as Cosmos's retry does.

What a sensor ended in the triggerer does not do: push the node's compiled SQL into its rendered
fields and emit the model's dataset event (nothing in RetailFlow schedules on them); its log (the
trigger's) still names the node and its dbt status.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from cosmos.listeners.dag_run_listener import EventStatus
from cosmos.operators._watcher.base import BaseConsumerSensor
from cosmos.operators._watcher.state import is_producer_task_terminated
from cosmos.operators._watcher.triggerer import WatcherEventReason, WatcherTrigger

#: seconds between two reads of a node's result by its trigger (Cosmos's default is the sensor's 10 s)
POKE_SECONDS = 1.0
#: dbt events whose JSON the producer pushes as the node's ``<node>_dbt_event`` XCom: the last one and errors
FINAL_NODE_EVENTS = frozenset({"NodeFinished"})


class NodeTrigger(WatcherTrigger):
    """Cosmos's ``WatcherTrigger`` for a sensor started in the triggerer: the run id and map index
    come from the task instance, and a passed node ends the task here (``TaskSuccessEvent``)."""

    def serialize(self) -> tuple[str, dict[str, Any]]:
        _, kwargs = super().serialize()
        return f"{type(self).__module__}.{type(self).__qualname__}", kwargs

    async def _log_startup_events(self) -> None:
        """Not waited for: Cosmos's trigger first polls until the producer has logged dbt's and the
        adapter's versions, only to repeat them here (they are in the producer's log); in the first
        sensors of a run that wait took 10-14 s, longer than their models."""

    async def run(self) -> AsyncIterator[Any]:
        from airflow.triggers.base import TaskSuccessEvent, TriggerEvent

        ti = self.task_instance
        self.run_id = self.run_id or ti.run_id
        self.map_index = ti.map_index if self.map_index is None else self.map_index
        if ti.try_number > 1 and is_producer_task_terminated(await self._get_producer_task_status()):
            # A retry, or a task cleared in the UI, after the producer ended: Cosmos's sensor then runs
            # dbt for its node itself. Resume it on a worker with the event that takes that path.
            self.log.info("try %s of %s: running dbt for it on a worker (Cosmos's retry)", ti.try_number,
                          self.model_unique_id)
            yield TriggerEvent({"status": EventStatus.FAILED, "reason": WatcherEventReason.PRODUCER_SKIPPED})
            return
        async for event in super().run():
            payload = event.payload if isinstance(event.payload, dict) else {}
            if payload.get("status") == EventStatus.SUCCESS:
                self.log.info("%s: %s in the producer's dbt build", self.model_unique_id,
                              "not run" if payload.get("reason") else "success")
                yield TaskSuccessEvent()
            else:
                yield event
            return


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
    """Start every watcher sensor of ``group`` (a Cosmos task group) in the triggerer; returns how many."""
    from airflow.triggers.base import StartTriggerArgs

    count = 0
    for task in group.dag.task_dict.values():
        if not task.task_id.startswith(f"{group.group_id}.") or not isinstance(task, BaseConsumerSensor):
            continue
        if not task.deferrable:
            continue
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
            },
            next_method="execute_complete",
        )
        count += 1
    return count
