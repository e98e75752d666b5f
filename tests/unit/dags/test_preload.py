"""The scheduler (with the LocalExecutor) preloads dbt and Cosmos for the task processes it forks and has
their supervisors see a task's exit when it happens, the triggerer the dbt sensors' trigger, has its
runner send a trigger's event when it fires and queues no callback request the DAG processor ignores;
nothing else preloads."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap


def python_lines(code: str, env: dict[str, str] | None = None, timeout: int = 120) -> list[str]:
    """The lines ``code`` prints, run in a Python of its own (the patches change Airflow's classes)."""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=timeout, env=env)
    assert out.returncode == 0, out.stderr[-2000:]
    return out.stdout.strip().splitlines()


def run_as(command: str, executor: str = "LocalExecutor") -> str:
    code = textwrap.dedent(f"""
        import sys
        sys.argv = ["airflow", "{command}"]
        from retailflow_pipeline.preload import preload
        loaded = preload()
        supervisor = sys.modules.get("airflow.sdk.execution_time.supervisor")
        service = supervisor and supervisor.ActivitySubprocess.__dict__.get("_service_subprocess")
        runner = sys.modules.get("airflow.jobs.triggerer_job_runner")
        print(sorted(loaded), "dbt.cli.main" in sys.modules, "retailflow_pipeline.watcher" in sys.modules,
              getattr(service, "__name__", None) == "service_or_wait",
              type(getattr(runner, "anyio", None)).__name__ == "WakeableAnyio",
              getattr(getattr(getattr(sys.modules.get("airflow.callbacks.database_callback_sink"),
                                      "DatabaseCallbackSink", None), "send", None), "__name__", None)
              == "send_unless_ignored")
    """)
    env = {**os.environ, "AIRFLOW__CORE__EXECUTOR": executor}
    return python_lines(code, env=env, timeout=300)[-1]


def test_the_scheduler_preloads_dbt_and_cosmos_and_patches_task_supervisors():
    line = run_as("scheduler")
    assert line.endswith("True False True False False") and "'cosmos'" in line and "'dbt.cli.main'" in line


def test_a_scheduler_that_forks_no_tasks_preloads_nothing():
    assert run_as("scheduler", executor="KubernetesExecutor") == "[] False False False False False"


def test_the_triggerer_preloads_the_dbt_sensors_trigger_and_patches_its_runner_and_callbacks():
    assert run_as("triggerer") == "['retailflow_pipeline.watcher'] False True False True True"


def test_other_airflow_processes_do_not():
    assert run_as("api-server") == "[] False False False False False"


def supervised_exit(patched: bool) -> tuple[bool, int, float]:
    """Airflow's own task supervisor (``ActivitySubprocess``) watching a real process whose pipes are
    all closed already, as when a task's process is exiting: (patch applied, exit code, seconds until
    the supervisor saw the exit, its select() allowed 2 s)."""
    code = textwrap.dedent(f"""
        import socket, subprocess, time, uuid
        import psutil, structlog
        from airflow.sdk.execution_time.supervisor import ActivitySubprocess, PsutilTracker
        from retailflow_pipeline.preload import reap_exited_tasks
        patched = reap_exited_tasks() if {patched} else False
        child = subprocess.Popen(["sleep", "0.2"])
        ours, theirs = socket.socketpair()
        watched = ActivitySubprocess(id=uuid.uuid4(), pid=child.pid, stdin=ours, client=None,
                                     process=PsutilTracker(psutil.Process(child.pid)),
                                     process_log=structlog.get_logger())
        began = time.monotonic()
        exit_code = watched._service_subprocess(max_wait_time=2.0)
        print(patched, exit_code, round(time.monotonic() - began, 2))
    """)
    patched_, exit_code, seconds = python_lines(code)[-1].split()
    return patched_ == "True", int(exit_code), float(seconds)


def test_a_supervisor_whose_process_was_reaped_elsewhere_keeps_its_pace():
    """If the task's process was reaped by someone else, the wait on it returns at once with no exit
    code; the supervisor then goes back to its select() timeout instead of spinning on the wait."""
    code = textwrap.dedent("""
        import os, socket, subprocess, time, uuid
        import psutil, structlog
        from airflow.sdk.execution_time.supervisor import ActivitySubprocess, PsutilTracker
        from retailflow_pipeline.preload import reap_exited_tasks
        assert reap_exited_tasks()
        child = subprocess.Popen(["sleep", "0.1"])
        tracker = PsutilTracker(psutil.Process(child.pid))
        os.waitpid(child.pid, 0)
        ours, theirs = socket.socketpair()
        watched = ActivitySubprocess(id=uuid.uuid4(), pid=child.pid, stdin=ours, client=None, process=tracker,
                                     process_log=structlog.get_logger())
        for _ in range(3):
            began = time.monotonic()
            watched._service_subprocess(max_wait_time=0.5)
            print(round(time.monotonic() - began, 2))
    """)
    lines = python_lines(code)
    assert all(float(seconds) >= 0.45 for seconds in lines), lines


def test_a_task_supervisor_sees_its_process_exit_when_it_happens():
    """A task reported skipped or failed ends in Airflow when its supervisor has seen the process exit;
    without the scheduler's patch that came up to one select() timeout (2 s here) after it."""
    patched, exit_code, seconds = supervised_exit(patched=True)
    assert patched and exit_code == 0
    # the process lived 0.2 s; without the patch the wait lasts 1.9 s or more, and a loaded machine may
    # stall the check's own process for a fraction of a second
    assert seconds < 1.5, f"the exit was seen {seconds} s after the wait began (the process lived 0.2 s)"
    # the same supervisor without the patch waits out its select() timeout: this check can fail
    unpatched, exit_code, seconds = supervised_exit(patched=False)
    assert not unpatched and exit_code == 0 and seconds >= 1.9


def runner_sleeps(patched: bool) -> tuple[bool, float, float, float]:
    """Airflow's own trigger runner module and ``TriggerRunner``, the runner loop's sleep as ``arun``
    writes it (``with anyio.move_on_after(1): await stop_event.wait()``, here 2 s): (patch applied,
    seconds of a sleep during which a trigger fired an event after 0.2 s, of the sleep after an event
    fired between two sleeps, of a sleep with no event)."""
    code = textwrap.dedent(f"""
        import asyncio, time
        from retailflow_pipeline.preload import wake_trigger_runner
        patched = wake_trigger_runner() if {patched} else False
        from airflow.jobs import triggerer_job_runner as module
        runner = module.TriggerRunner()

        async def sleep(stop):
            began = time.monotonic()
            with module.anyio.move_on_after(2):
                await stop.wait()
            return time.monotonic() - began

        async def main():
            stop = module.anyio.Event()

            async def fire():
                await asyncio.sleep(0.2)
                runner.events.append("an event")

            firing = asyncio.get_running_loop().create_task(fire())
            during = await sleep(stop)
            await firing
            runner.events.append("an event during the loop's turn")
            after = await sleep(stop)
            quiet = await sleep(stop)
            print(patched, round(during, 2), round(after, 2), round(quiet, 2), len(runner.events))

        asyncio.run(main())
    """)
    patched_, during, after, quiet, events = python_lines(code)[-1].split()
    assert events == "2"  # every event stays queued for the runner to send
    return patched_ == "True", float(during), float(after), float(quiet)


def test_the_trigger_runner_loop_sleeps_as_the_patch_expects():
    """The patch only pays off while ``TriggerRunner.arun`` sleeps in an ``anyio.move_on_after`` scope
    (the test below writes that sleep itself); a runner that sleeps otherwise is left unpatched."""
    from airflow.jobs.triggerer_job_runner import TriggerRunner

    from retailflow_pipeline.preload import runner_sleeps_as_expected

    class SleepsOtherwise:
        async def arun(self):
            import asyncio

            await asyncio.sleep(1)

    assert runner_sleeps_as_expected(TriggerRunner)
    assert not runner_sleeps_as_expected(SleepsOtherwise)


def test_the_trigger_runner_sends_an_event_when_its_trigger_fires():
    """A dbt sensor ends when the triggerer has its trigger's event; the runner sent events once a turn
    of its loop, which sleeps 1 s between turns: the sensors and what waits on them ended up to 1 s
    late. An event ends the sleep (or the next one, if fired during a turn); without one it lasts."""
    patched, during, after, quiet = runner_sleeps(patched=True)
    assert patched
    assert during < 1.5 and after < 1.5, (during, after)  # unpatched: 1.9 s or more (below)
    assert quiet >= 1.9
    # the same loop without the patch sleeps its full time whatever fires: this check can fail
    unpatched, during, after, quiet = runner_sleeps(patched=False)
    assert not unpatched and min(during, after, quiet) >= 1.9


def test_a_task_ended_in_the_triggerer_queues_no_callback_the_dag_processor_ignores():
    """Each dbt sensor ended in the triggerer queued a success callback request; the DAG processor
    parsed the DAG file for it and ignored it (Airflow's own ``_execute_task_callbacks``, run here on
    such a request: it returns before it would need the parsed DAG). Those are dropped; a failure or
    retry request is still queued."""
    code = textwrap.dedent("""
        import json
        from types import SimpleNamespace
        import structlog
        from airflow.callbacks.callback_requests import TaskCallbackRequest
        from airflow.callbacks.database_callback_sink import DatabaseCallbackSink
        from airflow.dag_processing.processor import _execute_task_callbacks
        from airflow.utils.state import TaskInstanceState
        from retailflow_pipeline.preload import drop_ignored_callbacks

        class Session:
            def __init__(self):
                self.added = []

            def add(self, row):  # the DAG processor's queue row: the request's class and its JSON
                self.added.append(json.loads(row.data["req_data"])["task_callback_type"])

        ti = SimpleNamespace(dag_id="retail_pipeline", task_id="dbt.orders.run", run_id="r", id="i")

        def request(state):
            return TaskCallbackRequest.model_construct(filepath="retail_pipeline.py", bundle_name="dags-folder",
                                                       bundle_version=None, ti=ti, task_callback_type=state)

        # what the DAG processor does with a success request: nothing (no DAG needed to find that out)
        _execute_task_callbacks(None, request(TaskInstanceState.SUCCESS), structlog.get_logger())

        def queued():
            session = Session()
            for state in (TaskInstanceState.SUCCESS, TaskInstanceState.FAILED, TaskInstanceState.UP_FOR_RETRY):
                DatabaseCallbackSink().send(callback=request(state), session=session)
            return ",".join(session.added)

        before = queued()
        patched = drop_ignored_callbacks()
        print(patched, before, queued())
    """)
    assert python_lines(code)[-1] == "True success,failed,up_for_retry failed,up_for_retry"
