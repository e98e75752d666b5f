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

- it reads its node's result only once the producer runs this run's build, and a shared read sent
  before the trigger saw the producer running is not taken. A cleared producer runs a later try,
  which Cosmos skips (after restoring its XComs from its backup), and a cleared sensor runs a later
  try too, which takes the retry path below and never reads the results XCom; the XComs a cleared
  run left are deleted by the producer's task process once it runs (Airflow 3's task runner), not
  before;
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
``dagrun_timeout`` (8 h), not by the 30 minutes the other dbt tasks have.

All the triggers of a run share their reads, in the triggerer process: at most one request per half
poke for the producer's state, and one for the run's node results. Cosmos's producer pushes each
node's result as an XCom of its own (``<node>_status``, ``<model>_tests_status``), which its trigger
reads once a poke: 27 reads a second through the API server for the whole build, beside the
producer's own requests. :class:`NodeResultsProducer` also pushes them all in one XCom
(:data:`NODE_RESULTS_KEY`), rewritten as nodes finish, and the triggers read that one; a node missing
from it once the producer ended is read from its own XCom (the producer may have pushed it after the
shared read), as Cosmos's trigger reads it.

What a sensor ended in the triggerer does not do: push the node's compiled SQL into its rendered
fields and emit the model's dataset event (nothing in RetailFlow schedules on them); its log (the
trigger's) still names the node and its dbt status.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from functools import cached_property
from typing import Any

from asgiref.sync import sync_to_async
from cosmos.listeners.dag_run_listener import EventStatus
from cosmos.operators._watcher.aggregation import get_tests_status_xcom_key
from cosmos.operators._watcher.base import BaseConsumerSensor
from cosmos.operators._watcher.state import (DbtTestStatus, get_compiled_sql_xcom_key, get_dbt_event_xcom_key,
                                             get_status_xcom_key, is_dbt_node_status_failed,
                                             is_dbt_node_status_success, xcom_set_lock)
from cosmos.operators._watcher.triggerer import WatcherEventReason, WatcherTrigger
from cosmos.operators.watcher import DbtProducerWatcherOperator

log = logging.getLogger(__name__)

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
#: producer states in which its per-node XComs hold all it will push in this try: ended, or waiting for
#: its retry (whose start restores them from Cosmos's backup, then skips); Cosmos's trigger reads a
#: node's own XCom in every state (``_get_node_status``, ``cosmos/operators/_watcher/triggerer.py``)
BUILT = frozenset({"success", "failed", "skipped", "up_for_retry"})
#: the producer's XCom of every node result so far: ``{"<node>_status" | "<model>_tests_status": value}``
NODE_RESULTS_KEY = "retailflow_node_results"


def _is_node_result_key(key: str) -> bool:
    """A node's result as Cosmos pushes it (``get_status_xcom_key``, ``get_tests_status_xcom_key``:
    the node's unique id, dots as ``__``, then ``_status``), not the producer's own ``task_status``."""
    return key.endswith("_status") and "__" in key


class SharedReads:
    """Reads the triggers of a run share in the triggerer's event loop: one request per key at a time,
    its answer reused for ``max_age`` seconds. A caller may refuse an answer whose request started
    before ``not_before`` (monotonic seconds); it then gets a new one, which later callers share.

    Every trigger waiting on a read gets its error, so a request that fails is tried ``attempts``
    times (``retry_seconds`` apart, growing) before it is given to them: one transient error of the
    execution API must not fail every sensor of the run at once (each would then retry on a worker
    and run dbt for its node)."""

    def __init__(self, attempts: int = 3, retry_seconds: float = 0.5) -> None:
        self._reads: dict[Any, tuple[float, asyncio.Future[tuple[float, Any]]]] = {}
        self.attempts, self.retry_seconds = attempts, retry_seconds

    def clear(self) -> None:
        self._reads.clear()

    async def read(self, key: Any, fetch: Callable[[], Awaitable[Any]], max_age: float,
                   not_before: float = float("-inf")) -> tuple[float, Any]:
        """(monotonic time the answer came back, the answer) of ``fetch()``, or of a shared one."""
        now = time.monotonic()
        loop = asyncio.get_running_loop()
        got = self._reads.get(key)
        if got is None or got[0] < not_before or now - got[0] >= max_age or got[1].get_loop() is not loop:

            async def timed() -> tuple[float, Any]:
                for attempt in range(1, self.attempts + 1):
                    try:
                        value = await fetch()
                        return time.monotonic(), value
                    except Exception as exc:
                        if attempt == self.attempts:
                            raise
                        log.warning("shared read %s failed (%s), trying again (%d of %d)", key, exc, attempt + 1,
                                    self.attempts)
                        await asyncio.sleep(self.retry_seconds * attempt)
                raise AssertionError("unreachable")

            got = (now, loop.create_task(timed()))
            self._reads[key] = got
            got[1].add_done_callback(lambda done, key=key, got=got: self._forget_failed(key, got, done))
            for stale in [k for k, (at, read) in self._reads.items() if now - at > 60 and read.done()]:
                del self._reads[stale]
        # shielded: a trigger cancelled while it waits must not cancel the read the others wait on
        return await asyncio.shield(got[1])

    def _forget_failed(self, key: Any, got: tuple[float, Any], done: asyncio.Future[Any]) -> None:
        if (done.cancelled() or done.exception() is not None) and self._reads.get(key) is got:
            del self._reads[key]


#: (dag id, run id, producer task id) -> the producer's state
_states = SharedReads()
#: (dag id, run id, producer task id, map index) -> the producer's NODE_RESULTS_KEY XCom
_results = SharedReads()


def _state_name(state: Any) -> str | None:
    return None if state is None else str(getattr(state, "value", state))


class NodeTrigger(WatcherTrigger):
    """Cosmos's ``WatcherTrigger`` for a sensor started in the triggerer: the run id and map index
    come from the task instance, it reads results only of this run's build, through the run's shared
    read of the producer's :data:`NODE_RESULTS_KEY`, a passed node ends the task here
    (``TaskSuccessEvent``), and so does a node dbt skipped (``TaskSkippedEvent``)."""

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

    async def _producer_state(self) -> tuple[float, str | None]:
        """(monotonic time it was read, the producer's state), read at most once per half poke for all
        the triggers of this run."""

        async def fetch() -> str | None:
            return (await self._task_states([self.producer_task_id]))[self.producer_task_id]

        return await _states.read((self.dag_id, self.run_id, self.producer_task_id), fetch, self.poke_interval / 2)

    async def _get_producer_task_status(self) -> str | None:
        return (await self._producer_state())[1]

    async def _producer_in(self, states: frozenset[str]) -> str:
        while True:
            read_at, state = await self._producer_state()
            if state in states:
                # Results are read only by requests sent after this answer: before it, the XComs
                # may still be a cleared run's earlier build's.
                self._results_not_before = read_at
                return state
            await asyncio.sleep(self.poke_interval)

    async def _node_results(self) -> dict[str, Any]:
        """The producer's :data:`NODE_RESULTS_KEY` XCom, read at most once per half poke for all the
        triggers of this run, and only by requests sent once this trigger saw this run's build."""
        _, results = await _results.read(
            (self.dag_id, self.run_id, self.producer_task_id, self.map_index),
            lambda: self.get_xcom_val(NODE_RESULTS_KEY), self.poke_interval / 2,
            not_before=getattr(self, "_results_not_before", float("inf")))
        return results if isinstance(results, dict) else {}

    async def _parse_dbt_node_status_and_compiled_sql(self) -> tuple[str | None, str | None]:
        """Cosmos's ``(status, compiled SQL)`` of the node (``WatcherTrigger``, astronomer-cosmos 1.15.1,
        ``cosmos/operators/_watcher/triggerer.py``), its status from the run's shared read of the node
        results. Cosmos's loop reads the producer's state before this: once the producer ended, a node
        the shared read lacks is read from its own XCom, so that "ended and no result" (Cosmos: not
        run, or the producer failed first) is never concluded from a read older than the end. The
        compiled SQL is read only for a failed node: only that event resumes on a worker with it."""
        key = (get_tests_status_xcom_key(self.model_unique_id) if self.is_test_sensor
               else get_status_xcom_key(self.model_unique_id))
        value = (await self._node_results()).get(key)
        if value is None and await self._get_producer_task_status() in BUILT:
            value = await self.get_xcom_val(key)
        if isinstance(value, dict):
            self._outlet_uris = value.get("outlet_uris", [])
            value = value.get("status")
        compiled_sql = None
        if is_dbt_node_status_failed(value) and not self.is_test_sensor:
            compiled_sql = await self.get_xcom_val(get_compiled_sql_xcom_key(self.model_unique_id))
        return value, compiled_sql

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


class _NodeResultsBuffer(dict):
    """Cosmos's backup buffer of the producer's XComs (``ti._cosmos_xcom_backup_buffer``), which also
    pushes the node results among them as one XCom, :data:`NODE_RESULTS_KEY`, from a thread of its own.

    Cosmos's ``safe_xcom_push`` (astronomer-cosmos 1.15.1, ``cosmos/operators/_watcher/state.py``)
    pushes every XCom of the producer, each node's result included (``store_dbt_resource_status_from_log``
    in ``base.py``, ``push_test_result_or_aggregate`` in ``aggregation.py``), then sets it in this
    buffer, both under ``xcom_set_lock``, the lock every dbt thread takes to push. Pushing the results
    there, once per result, would hold dbt's threads another request each (about 50 per build); the
    thread here pushes them when they changed, at most once per ``every`` seconds, under the same lock
    (Cosmos serialises the producer's pushes on Airflow 3), and :meth:`close` pushes the last ones.
    The results XCom is also kept in the buffer: the buffer is what Cosmos writes to its backup
    Variable (``xcom.py``) and restores when the producer's retry starts, so the results come back
    with the per-node XComs."""

    #: attempts of the last push, when dbt has ended
    final_attempts = 3
    #: seconds the producer waits for the last push when dbt has ended
    join_seconds = 60.0

    def __init__(self, ti: Any, pushed: dict[str, Any], every: float, unread: _UnreadXComs | None = None):
        super().__init__(pushed)
        self._ti = ti
        self._every = every
        self._unread = unread or _UnreadXComs(None)
        self._results = {key: value for key, value in pushed.items() if _is_node_result_key(key)}
        self._version = 0  # results set so far (under xcom_set_lock, as Cosmos sets them)
        self._pushed = 0  # the version the last push that went through carried
        self._changed = threading.Event()
        self._closing = threading.Event()
        self._thread = threading.Thread(target=self._push_changes, name="node-results", daemon=True)
        self._thread.start()

    def __setitem__(self, key: str, value: Any) -> None:
        if self._unread(key, value):  # an XCom no one reads: not pushed, so not backed up nor restored either
            return
        super().__setitem__(key, value)
        if _is_node_result_key(key):
            self._add_result(key, value)
        elif (self._unread.watched_test_event(key) and isinstance(value, dict)
              and is_dbt_node_status_success(value.get("status"))):
            # A test a sensor of its own watches (a relationship test, detached from its two models):
            # Cosmos counts its result only in its models' aggregates (``tests_per_model``), so the key
            # its sensor reads (``get_tests_status_xcom_key`` of the test: like the event's key, the
            # test's id with its dots as ``__``, then a suffix) is never pushed, and the sensor would
            # report "not run" only once the producer ended. A passing result goes in the results XCom
            # under that key; a failed one does not: the producer fails, and so does the sensor.
            self._add_result(key.removesuffix("_dbt_event") + "_tests_status", DbtTestStatus.PASS.value)

    def _add_result(self, key: str, value: Any) -> None:
        self._results[key] = value
        self._version += 1
        self._changed.set()

    def _push(self) -> None:
        """Push the results if they changed since the last push that went through."""
        with xcom_set_lock:
            version, results = self._version, dict(self._results)
            if version != self._pushed:
                self._ti.xcom_push(key=NODE_RESULTS_KEY, value=results)
                super().__setitem__(NODE_RESULTS_KEY, results)
                self._pushed = version

    def _push_changes(self) -> None:
        """Push at most once per ``every`` seconds while dbt runs, and once more when it ended. A push
        that fails is tried again at the next tick (the results only grow, so the next push carries
        them all); it never fails the build: each node's own XComs, which Cosmos pushes, are what the
        sensors read once the producer ended."""
        failing = False
        while True:
            self._changed.wait()
            self._changed.clear()
            closing = self._closing.is_set()
            for attempt in range(1, (self.final_attempts if closing else 1) + 1):
                try:
                    self._push()
                    if failing:
                        log.info("pushing %s works again", NODE_RESULTS_KEY)
                    failing = False
                    break
                except Exception as exc:
                    if not failing or closing:
                        log.warning("pushing %s failed (%s)%s", NODE_RESULTS_KEY, exc,
                                    f", attempt {attempt} of {self.final_attempts}" if closing
                                    else "; trying again at the next tick")
                    failing = True
                    self._changed.set()  # not pushed: still to push
                    if closing and attempt < self.final_attempts:
                        time.sleep(self._every * attempt)
            if closing:
                return
            self._closing.wait(self._every)

    def close(self) -> None:
        """Push the results not pushed yet and stop (the pushing thread logs a push that failed); a push
        stuck on the task's connection is not waited for beyond ``join_seconds``."""
        self._closing.set()
        self._changed.set()
        self._thread.join(self.join_seconds)
        if self._thread.is_alive():
            log.warning("the last push of %s did not end within %.0f s; not waiting for it", NODE_RESULTS_KEY,
                        self.join_seconds)


class _UnreadXComs:
    """Which of the producer's XComs no one reads, for one build: the ``<node>_dbt_event`` of a node no
    sensor watches, and the ``<model>_compiled_sql`` of a model that did not fail.

    A sensor reads a model's compiled SQL only when the model failed: its trigger hands it to the
    worker the failed sensor resumes on (:meth:`NodeTrigger._parse_dbt_node_status_and_compiled_sql`);
    a sensor whose model passed ends in the triggerer, and a retry runs dbt itself. Cosmos pushes a
    model's result and then its compiled SQL, in one call under ``xcom_set_lock``
    (``store_dbt_resource_status_from_log`` in ``cosmos/operators/_watcher/base.py``, 1.15.1): this
    is fed every key in that order, by the log parser's task instance and by the backup buffer, and
    remembers the failed models. ``watched_nodes`` None: nothing is dropped."""

    def __init__(self, watched_nodes: frozenset[str] | None):
        self._everything = watched_nodes is None
        self._watched_events = frozenset(get_dbt_event_xcom_key(node) for node in watched_nodes or ())
        self._failed_sql: set[str] = set()  # the compiled-SQL keys of the models that failed

    def watched_test_event(self, key: str) -> bool:
        """Whether ``key`` is the dbt event of a test a sensor of its own watches."""
        return key.startswith("test__") and key in self._watched_events

    def __call__(self, key: str, value: Any) -> bool:
        if self._everything:
            return False
        if _is_node_result_key(key):
            if is_dbt_node_status_failed(value.get("status") if isinstance(value, dict) else value):
                self._failed_sql.add(key.removesuffix("_status") + "_compiled_sql")
            return False
        if key.endswith("_compiled_sql"):
            return key not in self._failed_sql
        return key.endswith("_dbt_event") and key not in self._watched_events


class _SensorNodeEvents:
    """The producer's task instance as Cosmos's log parser sees it, pushing only the XComs a sensor
    reads (:class:`_UnreadXComs`): everything else goes to the task instance itself."""

    def __init__(self, ti: Any, unread: Callable[[str, Any], bool]):
        object.__setattr__(self, "_ti", ti)
        object.__setattr__(self, "_unread", unread)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._ti, name)

    def __setattr__(self, name: str, value: Any) -> None:
        setattr(self._ti, name, value)

    def xcom_push(self, key: str, value: Any, **kwargs: Any) -> Any:
        if self._unread(key, value):
            return None
        return self._ti.xcom_push(key=key, value=value, **kwargs)


class NodeResultsProducer(DbtProducerWatcherOperator):
    """Cosmos's watcher producer (``DbtProducerWatcherOperator``, astronomer-cosmos 1.15.1,
    ``cosmos/operators/watcher.py``) that also pushes every node result so far as one XCom,
    :data:`NODE_RESULTS_KEY`, which the run's sensors' triggers read once per poke between them, and
    pushes only the per-node XComs a sensor reads (:class:`_UnreadXComs`): a node's dbt event only when
    a sensor watches the node (:attr:`event_nodes`), a model's compiled SQL only when it failed.

    Cosmos pushes a ``<node>_dbt_event`` for every node dbt runs, each test included, and only a
    sensor reads one, its own node's (``get_dbt_event_xcom_key(self.model_unique_id)`` in
    ``base.py``, to log the node's times when it resumes on a worker): 74 of the 94 event pushes of a
    build of this project were for tests no sensor watches, each a request inside the lock every dbt thread
    takes to push (4.8-7.5 s of API-server time in a 1M-order build). The log parser gets the task
    instance through the context Cosmos hands it (``run_dbt_runner``, ``store_dbt_resource_status_from_log``);
    :meth:`_make_parse_callable` hands it one that drops the other nodes' events, and the backup buffer
    (:class:`_NodeResultsBuffer`) drops them too, so a retry's restore does not push them back. The
    same goes for the models' compiled SQL, of which a build that passes reads none.

    Everything else is Cosmos's: the per-node XComs its own sensors, retries and fallbacks read
    (``<node>_status``, ``<model>_tests_status``, a watched node's ``<node>_dbt_event``, a failed
    model's ``<node>_compiled_sql``), the backup Variable and its restore, the skipped retry. Cosmos
    sets up its backup buffer in ``execute`` before running dbt (``_init_xcom_backup``); this wraps it
    while dbt runs."""

    #: seconds between two pushes of the results while dbt runs; the last ones are pushed when it ends.
    #: A sensor turns green in the UI up to this long after its node: a push costs the API server a
    #: request, and holds dbt's threads (under ``xcom_set_lock``); the run's end waits only on the last
    results_push_seconds = 2.0
    #: the unique ids of the nodes the group's sensors watch (None: every XCom Cosmos pushes is pushed)
    event_nodes: frozenset[str] | None = None

    def _make_parse_callable(self) -> Callable[[str, Any], None]:
        parse = super()._make_parse_callable()
        if self.event_nodes is None:
            return parse
        unread = self._unread_xcoms
        contexts: dict[int, tuple[Any, dict[str, Any]]] = {}

        def parse_for_sensors(line: str, extra_kwargs: Any) -> None:
            context = extra_kwargs.get("context") if extra_kwargs else None
            if context is None or context.get("ti") is None:
                return parse(line, extra_kwargs)
            # one wrapped context per context Cosmos hands over (one per dbt command), not per line
            wrapped = contexts.get(id(context))
            if wrapped is None or wrapped[0] is not context:
                wrapped = (context, {**context, "ti": _SensorNodeEvents(context["ti"], unread)})
                contexts[id(context)] = wrapped
            return parse(line, {**extra_kwargs, "context": wrapped[1]})

        return parse_for_sensors

    def run_command(self, cmd: list[str], env: Any, context: Any, *args: Any, **kwargs: Any) -> Any:
        ti = context["ti"]
        buffer = _NodeResultsBuffer(ti, getattr(ti, "_cosmos_xcom_backup_buffer", None) or {},
                                    self.results_push_seconds, self._unread_xcoms)
        ti._cosmos_xcom_backup_buffer = buffer
        try:
            return super().run_command(cmd, env, context, *args, **kwargs)
        finally:
            buffer.close()

    @cached_property
    def _unread_xcoms(self) -> _UnreadXComs:
        """The XComs of this build no one reads (:class:`_UnreadXComs`): neither pushed (the log parser's
        task instance) nor backed up (the buffer). One instance for both."""
        return _UnreadXComs(self.event_nodes)


def use_node_results_producer(group: Any) -> int:
    """Make the watcher producer of ``group`` (a Cosmos task group) a :class:`NodeResultsProducer`;
    returns how many producers. Cosmos picks the producer's class by name from its execution mode
    (``calculate_operator_class`` in ``cosmos/airflow/graph.py``, 1.15.1), with no setting for it: the
    built task's class is swapped for the subclass, which adds no state of its own but the nodes the
    group's sensors watch (:attr:`NodeResultsProducer.event_nodes`)."""
    tasks = [task for task in group.dag.task_dict.values() if task.task_id.startswith(f"{group.group_id}.")]
    producers = [task for task in tasks if type(task) is DbtProducerWatcherOperator]
    watched = frozenset(task.model_unique_id for task in tasks if isinstance(task, BaseConsumerSensor))
    for task in producers:
        task.__class__ = NodeResultsProducer
        task.event_nodes = watched
    return len(producers)


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
