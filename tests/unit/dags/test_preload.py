"""The scheduler (with the LocalExecutor) preloads dbt and Cosmos for the task processes it forks, the
triggerer the dbt sensors' trigger; nothing else preloads."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap


def run_as(command: str, executor: str = "LocalExecutor") -> str:
    code = textwrap.dedent(f"""
        import sys
        sys.argv = ["airflow", "{command}"]
        from retailflow_pipeline.preload import preload
        loaded = preload()
        print(sorted(loaded), "dbt.cli.main" in sys.modules, "retailflow_pipeline.watcher" in sys.modules)
    """)
    env = {**os.environ, "AIRFLOW__CORE__EXECUTOR": executor}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, env=env)
    assert out.returncode == 0, out.stderr[-2000:]
    return out.stdout.strip().splitlines()[-1]


def test_the_scheduler_preloads_dbt_and_cosmos():
    line = run_as("scheduler")
    assert line.endswith("True False") and "'cosmos'" in line and "'dbt.cli.main'" in line


def test_a_scheduler_that_forks_no_tasks_preloads_nothing():
    assert run_as("scheduler", executor="KubernetesExecutor") == "[] False False"


def test_the_triggerer_preloads_the_dbt_sensors_trigger_only():
    assert run_as("triggerer") == "['retailflow_pipeline.watcher'] False True"


def test_other_airflow_processes_do_not():
    assert run_as("api-server") == "[] False False"
