"""Imports, once in the Airflow scheduler and triggerer, what the RetailFlow DAGs' tasks and triggers import.

- **Scheduler.** With the LocalExecutor the scheduler forks its workers and each worker forks a
  process per task, so a module the scheduler has imported is already loaded in every task: dbt
  alone takes about 3.7 s to import, paid once here instead of once per dbt task. With another
  executor (the chart's KubernetesExecutor variant) the scheduler runs no task and preloads nothing.
- **Triggerer.** Its trigger runner is a process it forks; the dbt sensors' trigger
  (``retailflow_pipeline.watcher``, Cosmos's watcher) takes about 3 s of CPU to import, which the
  runner would otherwise spend in its event loop when the first sensor starts, holding up every
  trigger (measured: the first sensors reported 13 s late).
- **DAG processor.** It parses each DAG file in a process it forks, and not only every
  ``min_file_process_interval``: Airflow 3.3 sends it a task callback request for every task that
  ends in the triggerer (``handle_event_submit`` in ``airflow/models/trigger.py``), each of the dbt
  sensors included, and it parses ``retail_pipeline.py`` for each batch of them (about 14 times a
  run), only to find no failure callback to run. The third-party modules the DAG files import
  (Cosmos, the providers, what they pull in) are imported here once, through the project's
  DAG-building modules, which are then dropped again: each parse still imports the project's own
  code from disk, so an edit to it shows at the next parse. A parse of ``retail_pipeline.py`` then
  takes about 0.2 s of CPU instead of 0.38 s.

Only these three preload; the api-server and CLI start as usual.

Enabled by ``airflow_local_settings.py`` (Airflow imports it at start-up), which ``hack/airflow.sh``
writes into ``$AIRFLOW_HOME/config`` and the chart sets (``airflow.airflowLocalSettings``):
``from retailflow_pipeline.preload import preload; preload()``.
"""

from __future__ import annotations

import sys
import time

MODULES = ("dbt.cli.main", "dbt.adapters.postgres", "cosmos", "cosmos.operators.local", "cosmos.operators.watcher",
           "airflow.providers.airbyte.operators.airbyte", "psycopg", "pymysql", "connectorx", "pyarrow")
#: what the DAG files import: third-party modules, and the project's DAG-building modules, which the DAG
#: processor imports for the third-party modules they import and then drops (:data:`FRESH`)
DAG_MODULES = ("cosmos", "airflow.providers.airbyte.operators.airbyte", "airflow.providers.airbyte.sensors.airbyte",
               "airflow.providers.standard.operators.empty", "airflow.providers.standard.operators.trigger_dagrun",
               "retailflow_pipeline.wiring", "retailflow_pipeline.dbt_group", "retailflow_pipeline.watcher",
               "retailflow_pipeline.schedules")
#: what each Airflow command preloads
PRELOADS = {"scheduler": MODULES, "triggerer": ("retailflow_pipeline.watcher",), "dag-processor": DAG_MODULES}
#: the commands that keep none of the project's own modules loaded (its package is imported anew by each parse)
FRESH = frozenset({"dag-processor"})


def _own(module: str) -> bool:
    return module == "retailflow_pipeline" or module.startswith("retailflow_pipeline.")


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
    if name in FRESH:
        loaded = [module for module in loaded if not _own(module)]
        for module in [module for module in sys.modules if _own(module)]:
            del sys.modules[module]
    # Logging is not configured yet this early in Airflow's start-up: stderr reaches the server log.
    print(f"preload: {len(loaded)} modules in {time.monotonic() - started:.1f} s, shared with every process the"
          f" {name} forks", file=sys.stderr)
    return loaded
