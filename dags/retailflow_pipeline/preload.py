"""Imports, once in the Airflow scheduler, what every task of the RetailFlow DAGs imports.

With the LocalExecutor the scheduler forks its workers and each worker forks a process per task, so
a module the scheduler has imported is already loaded in every task: dbt alone takes about 3.7 s to
import, paid once here instead of once per dbt task (a retail_pipeline run has about 30). Only the
scheduler preloads; the api-server, DAG processor and CLI start as usual.

Enabled by ``airflow_local_settings.py`` (Airflow imports it at start-up), which ``hack/airflow.sh``
writes into ``$AIRFLOW_HOME/config``: ``from retailflow_pipeline.preload import preload; preload()``.
"""

from __future__ import annotations

import sys
import time

MODULES = ("dbt.cli.main", "dbt.adapters.postgres", "cosmos", "cosmos.operators.local", "cosmos.operators.watcher",
           "airflow.providers.airbyte.operators.airbyte", "psycopg", "pymysql", "connectorx", "pyarrow")


def is_scheduler(argv: list[str] | None = None) -> bool:
    argv = sys.argv if argv is None else argv
    return len(argv) > 1 and argv[1] == "scheduler"


def preload(argv: list[str] | None = None) -> list[str]:
    if not is_scheduler(argv):
        return []
    import importlib

    started, loaded = time.monotonic(), []
    for name in MODULES:
        try:
            importlib.import_module(name)
            loaded.append(name)
        except ImportError as exc:  # an optional piece missing must not stop the scheduler
            print(f"preload: {name} not imported ({exc})", file=sys.stderr)
    # Logging is not configured yet this early in Airflow's start-up: stderr reaches the server log.
    print(f"preload: {len(loaded)} modules in {time.monotonic() - started:.1f} s, shared with every task the"
          " scheduler forks", file=sys.stderr)
    return loaded
