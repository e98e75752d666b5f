"""Imports, once in the Airflow scheduler and triggerer, what the RetailFlow DAGs' tasks and triggers import.

- **Scheduler.** With the LocalExecutor the scheduler forks its workers and each worker forks a
  process per task, so a module the scheduler has imported is already loaded in every task: dbt
  alone takes about 3.7 s to import, paid once here instead of once per dbt task. With another
  executor (the chart's KubernetesExecutor variant) the scheduler runs no task and preloads nothing.
- **Triggerer.** Its trigger runner is a process it forks; the dbt sensors' trigger
  (``retailflow_pipeline.watcher``, Cosmos's watcher) takes about 3 s of CPU to import, which the
  runner would otherwise spend in its event loop when the first sensor starts, holding up every
  trigger (measured: the first sensors reported 13 s late).

- **Triggerer's execution API.** The triggerer answers its triggers' requests (task states, XComs)
  through an execution API it builds in its own process at the first request: about 3 s of CPU
  (Cadwyn generating the API's versioned routes), which fell on the first run after a start, while
  its ingestion ran (that run's ingestion took 0.5–1.3 s longer than a second run's). It is built as
  the triggerer starts instead (``warm_execution_api``): right after its trigger runner, one request
  in a thread of its own.

- **Triggerer's runner: a trigger's event sent when it fires** (``wake_trigger_runner``). The trigger
  runner passes its triggers' events to the triggerer once per loop, and its loop sleeps 1 s between
  turns; a dbt sensor whose node passed ended in Airflow up to 1 s after its trigger saw the result
  (0.94 s for the last sensors of a demo-scale run, whose downstream tasks waited as long). An event
  now ends that sleep: the runner sends it at once.
- **Triggerer: no callback request the DAG processor ignores** (``drop_ignored_callbacks``). A task
  ended in the triggerer (each dbt sensor whose node passed) had Airflow queue a success callback
  request for the DAG processor, which parsed the DAG file for it, then logged "Task callback
  requested but is not a failure callback" and did nothing: 27 parses a run, 1.65 CPU-s of the DAG
  processor during a 1M-order build, on the cores dbt's queries run on. Those requests are not
  queued; failure and retry ones are, as before.
- **Task supervisors: a task's end seen when its process ends** (``reap_exited_tasks``). A task
  process (LocalExecutor) is watched by a supervisor that waits in ``select()`` on its pipes for up
  to ``[workers] min_heartbeat_interval`` (1 s here), then checks whether it has exited. The pipes
  close as the process exits, a moment before it can be reaped: about one check in two came too
  early and the next one a full second later. A task whose state is reported after it exits
  (skipped, failed) ended 1.0 s after its work (3 of the 6 skipped tasks in three benchmark runs);
  a downstream task waited as long. Once every pipe is closed, the supervisor now waits on the process
  itself (for no longer than its ``select()`` would have). Applied in the scheduler with the
  LocalExecutor, whose forked workers supervise the tasks.

Only these two preload; the api-server, DAG processor and CLI start as usual.

Enabled by ``airflow_local_settings.py`` (Airflow imports it at start-up), which ``hack/airflow.sh``
writes into ``$AIRFLOW_HOME/config`` and the chart sets (``airflow.airflowLocalSettings``):
``from retailflow_pipeline.preload import preload; preload()``.
"""

from __future__ import annotations

import contextlib
import sys
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable, Iterator
from typing import Any

MODULES = ("dbt.cli.main", "dbt.adapters.postgres", "cosmos", "cosmos.operators.local", "cosmos.operators.watcher",
           "airflow.providers.airbyte.operators.airbyte", "psycopg", "pymysql", "connectorx", "pyarrow")
#: what each Airflow command preloads
PRELOADS = {"scheduler": MODULES, "triggerer": ("retailflow_pipeline.watcher",)}


def command(argv: list[str] | None = None) -> str | None:
    argv = sys.argv if argv is None else argv
    return argv[1] if len(argv) > 1 else None


def forks_tasks() -> bool:
    """Whether the scheduler runs tasks in processes it forks (LocalExecutor); with the
    KubernetesExecutor it does not, and dbt preloaded there would only take its pod's memory."""
    from airflow.configuration import conf

    return "LocalExecutor" in conf.get("core", "executor", fallback="LocalExecutor")


def warm_execution_api() -> bool:
    """Have the triggerer build its in-process execution API when it starts: its trigger runner's
    supervisor (``TriggerRunnerSupervisor``, ``airflow/jobs/triggerer_job_runner.py``, Airflow 3.3)
    creates it on first use (its ``client``, which serves the runner's requests); here a thread asks
    it for ``/health`` right after the supervisor started. False (and nothing changed) where that
    class is not as expected."""
    try:
        from airflow.jobs.triggerer_job_runner import TriggerRunnerSupervisor
    except ImportError:
        return False
    start = TriggerRunnerSupervisor.__dict__.get("start")
    make_client = TriggerRunnerSupervisor.__dict__.get("make_client")
    if not isinstance(start, classmethod) or not callable(make_client) or not hasattr(TriggerRunnerSupervisor, "client"):
        return False
    started_by = start.__func__
    # ``client`` caches ``make_client()``'s result without a lock (attrs' slotted cached_property): a
    # request served while this thread builds it would build a second API, and the two builds would
    # edit the execution API's shared routes at once. One build per supervisor, the other caller waits.
    lock, made = threading.Lock(), {}

    def make_client_once(self):
        with lock:
            ref, client = made.get(id(self), (None, None))
            if ref is None or ref() is not self:
                client = make_client(self)
                made[id(self)] = (weakref.ref(self), client)
            return client

    TriggerRunnerSupervisor.make_client = make_client_once

    def start_and_warm(cls, *args, **kwargs):
        supervisor = started_by(cls, *args, **kwargs)
        threading.Thread(target=_ask_health, args=(supervisor,), name="retailflow-warm-execution-api",
                         daemon=True).start()
        return supervisor

    TriggerRunnerSupervisor.start = classmethod(start_and_warm)
    return True


def reap_exited_tasks() -> bool:
    """Have each task's supervisor (``ActivitySubprocess``, ``airflow/sdk/execution_time/supervisor.py``,
    Airflow 3.3) wait on the task's process, not in ``select()`` on no pipe, once every pipe of the
    process has closed. False (and nothing changed) where that class is not as expected."""
    try:
        import attrs
        from airflow.sdk.execution_time.supervisor import ActivitySubprocess
    except ImportError:
        return False
    service = getattr(ActivitySubprocess, "_service_subprocess", None)
    fields = attrs.fields_dict(ActivitySubprocess) if attrs.has(ActivitySubprocess) else {}
    if not callable(service) or not callable(getattr(ActivitySubprocess, "_check_subprocess_exit", None)) or not {
            "_open_sockets", "_exit_code", "_process"} <= set(fields):
        return False

    def service_or_wait(self, max_wait_time: float, raise_on_timeout: bool = False, expect_signal: int | None = None):
        if self._exit_code is None and not self._open_sockets:
            # every pipe closed: the process is exiting; its exit, not a timeout, ends the wait
            try:
                self._process.wait(timeout=max(0.01, max_wait_time))
                returned = True
            except Exception:  # noqa: BLE001 - still running (TimeoutExpired) or gone: the check says which
                returned = False
            code = self._check_subprocess_exit(raise_on_timeout=raise_on_timeout, expect_signal=expect_signal)
            if code is not None or not returned:
                return code
            # the wait came back without an exit code (the process reaped elsewhere): waiting again would
            # return at once, so back to Airflow's own select() pace
        return service(self, max_wait_time, raise_on_timeout=raise_on_timeout, expect_signal=expect_signal)

    ActivitySubprocess._service_subprocess = service_or_wait
    return True


def _source(owner: Any, name: str) -> str:
    """The source of ``owner.<name>``, or "" where it cannot be read (the patch that needs it then
    leaves Airflow as it is)."""
    import inspect

    try:
        return inspect.getsource(getattr(owner, name))
    except (AttributeError, OSError, TypeError):
        return ""


def runner_sleeps_as_expected(runner: type) -> bool:
    """Whether the runner's loop sleeps as :func:`wake_trigger_runner` expects: an ``anyio.move_on_after``
    scope around a wait on its stop event."""
    source = _source(runner, "arun")
    return "anyio.move_on_after(" in source and "stop_event.wait()" in source


def wake_trigger_runner() -> bool:
    """End the trigger runner's 1 s sleep between its loop's turns when a trigger fires an event
    (``TriggerRunner.arun``, ``airflow/jobs/triggerer_job_runner.py``, Airflow 3.3: ``with
    anyio.move_on_after(1): await stop_event.wait()``, then the next turn sends ``self.events``). The
    runner is a process the triggerer forks, so it inherits this. False (and nothing changed) where
    that module is not as expected."""
    try:
        import anyio
        from airflow.jobs import triggerer_job_runner as runner_module
        from airflow.jobs.triggerer_job_runner import TriggerRunner
    except ImportError:
        return False
    init = TriggerRunner.__dict__.get("__init__")
    if getattr(runner_module, "anyio", None) is not anyio or not callable(init) or "events" not in getattr(
            TriggerRunner, "__annotations__", {}) or not runner_sleeps_as_expected(TriggerRunner):
        return False

    class WakeableAnyio:
        """The runner module's ``anyio``, whose ``move_on_after`` (the loop's sleep) an event ends: the
        sleep under way, or, for an event appended during the loop's turn (after it sent the events),
        the next one, at once."""

        sleeping: Any = None
        woken = False

        def __getattr__(self, name: str) -> Any:
            return getattr(anyio, name)

        @contextlib.contextmanager
        def move_on_after(self, delay: float, *args: Any, **kwargs: Any) -> Iterator[Any]:
            if self.woken:
                self.woken, delay = False, 0
            with anyio.move_on_after(delay, *args, **kwargs) as scope:
                self.sleeping = scope
                try:
                    yield scope
                finally:
                    self.sleeping = None

        def wake(self) -> None:
            if self.sleeping is not None:
                self.sleeping.cancel()
            else:
                self.woken = True

    wakeable = WakeableAnyio()

    class WakingEvents(deque):
        """The runner's outbound events; each one appended ends the loop's sleep (in the event loop's
        thread: triggers append from their coroutines)."""

        def append(self, entry: Any) -> None:
            super().append(entry)
            wakeable.wake()

    def init_with_waking_events(self, *args: Any, **kwargs: Any) -> None:
        init(self, *args, **kwargs)
        self.events = WakingEvents(self.events)

    runner_module.anyio = wakeable
    TriggerRunner.__init__ = init_with_waking_events
    return True


def drop_ignored_callbacks() -> bool:
    """Queue no task callback request the DAG processor ignores. A task ended from the triggerer
    queues one for its end state (``handle_event_submit`` in ``airflow/models/trigger.py``, Airflow
    3.3), and the DAG processor parses the DAG's file for each, then returns without calling anything
    when it is not a failure callback (``_execute_task_callbacks``,
    ``airflow/dag_processing/processor.py``). False (and nothing changed) where the processor's check
    is not that one: then it may run them."""
    try:
        from airflow.callbacks.callback_requests import TaskCallbackRequest
        from airflow.callbacks.database_callback_sink import DatabaseCallbackSink
        from airflow.dag_processing import processor
    except ImportError:
        return False
    source = _source(processor, "_execute_task_callbacks")
    ignores_success = "if not request.is_failure_callback:" in source and "return" in source.split(
        "if not request.is_failure_callback:", 1)[1].split("dag, task", 1)[0]
    send = DatabaseCallbackSink.__dict__.get("send")
    if not ignores_success or not callable(send) or not isinstance(
            getattr(TaskCallbackRequest, "is_failure_callback", None), property):
        return False

    def send_unless_ignored(self, callback: Any, *args: Any, **kwargs: Any) -> None:
        if isinstance(callback, TaskCallbackRequest) and not callback.is_failure_callback:
            return
        send(self, callback, *args, **kwargs)

    DatabaseCallbackSink.send = send_unless_ignored
    return True


def _ask_health(supervisor) -> None:
    began = time.monotonic()
    try:
        status = supervisor.client.get("health").status_code
    except Exception as exc:  # a warm-up only: the first real request builds the API as before
        print(f"preload: the triggerer's execution API not warmed up ({exc})", file=sys.stderr)
        return
    print(f"preload: the triggerer's execution API built in {time.monotonic() - began:.1f} s (/health: {status})",
          file=sys.stderr)


#: what each Airflow command patches (each patch returns False, changing nothing, where Airflow's code is
#: not as it expects), and what stays as Airflow does it then
PATCHES: dict[str, tuple[tuple[Callable[[], bool], str], ...]] = {
    "scheduler": ((reap_exited_tasks, "task supervisors check for their task's exit once per select() timeout"),),
    "triggerer": ((warm_execution_api, "the triggerer's execution API is built at its first request"),
                  (wake_trigger_runner, "the trigger runner sends its triggers' events once a second"),
                  (drop_ignored_callbacks, "tasks ended in the triggerer queue every callback request")),
}


def preload(argv: list[str] | None = None) -> list[str]:
    name = command(argv)
    modules = PRELOADS.get(name or "", ())
    if not modules or (name == "scheduler" and not forks_tasks()):
        return []
    for patch, otherwise in PATCHES.get(name, ()):
        if not patch():
            print(f"preload: {otherwise}", file=sys.stderr)
    import importlib

    started, loaded = time.monotonic(), []
    for module in modules:
        try:
            importlib.import_module(module)
            loaded.append(module)
        except ImportError as exc:  # an optional piece missing must not stop the scheduler
            print(f"preload: {module} not imported ({exc})", file=sys.stderr)
    # Logging is not configured yet this early in Airflow's start-up: stderr reaches the server log.
    print(f"preload: {len(loaded)} modules in {time.monotonic() - started:.1f} s, shared with every process the"
          f" {name} forks", file=sys.stderr)
    return loaded
