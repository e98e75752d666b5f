"""Imports, once in the Airflow scheduler and triggerer, what the RetailFlow DAGs' tasks and triggers import.

- **Scheduler.** With the LocalExecutor the scheduler forks its workers and each worker forks a
  process per task, so a module the scheduler has imported is already loaded in every task: dbt
  alone takes about 3.7 s to import, paid once here instead of once per dbt task. With another
  executor (the chart's KubernetesExecutor variant) the scheduler runs no task and preloads nothing.
- **Triggerer.** Its trigger runner is a process it forks; the dbt sensors' trigger
  (``retailflow_pipeline.watcher``, Cosmos's watcher) takes about 3 s of CPU to import, which the
  runner would otherwise spend in its event loop when the first sensor starts, holding up every
  trigger (measured: the first sensors reported 13 s late).

Only these two preload; the api-server, DAG processor and CLI start as usual.

Enabled by ``airflow_local_settings.py`` (Airflow imports it at start-up), which ``hack/airflow.sh``
writes into ``$AIRFLOW_HOME/config`` and the chart sets (``airflow.airflowLocalSettings``):
``from retailflow_pipeline.preload import preload; preload()``.
"""

from __future__ import annotations

import sys
import time

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


def preload(argv: list[str] | None = None) -> list[str]:
    name = command(argv)
    modules = PRELOADS.get(name or "", ())
    if not modules or (name == "scheduler" and not forks_tasks()):
        return []
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
