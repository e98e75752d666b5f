"""The dbt project as an Airflow task group, through Cosmos: each model and its tests are tasks.

- The graph comes from the project's ``manifest.json`` (``LoadMode.DBT_MANIFEST``): a DAG parses in
  a fraction of a second and parsing never runs dbt. ``make dbt-manifest`` (``dbt parse``) writes it
  for local runs; the Airflow image writes it at build time. ``$RETAILFLOW_DBT_MANIFEST`` overrides
  where it is read (default ``<dbt project>/target/manifest.json``).
- The profile comes from the warehouse's Airflow connection (``retailflow_warehouse``, or
  ``$RETAILFLOW_WAREHOUSE_CONN_ID``): Cosmos writes a ``profiles.yml`` whose password is an
  ``env_var``, never plain text.
- Tests whose parents are several models (relationships) get tasks of their own
  (``should_detach_multiple_parents_tests``): otherwise a staging model's test task would also run
  the relationship test on a mart that may not be built yet.
- The raw schema the sources read is templated from the ``load_settings`` task's XCom
  (``RETAILFLOW_RAW_SCHEMA``, read by ``dbt/models/staging/_retail__sources.yml``).
- Execution: ``ExecutionMode.WATCHER`` by default, one ``dbt build`` in a producer task with a
  sensor per model and test reporting each node's result; the sensors start and, when their node
  passed, end in the triggerer (``retailflow_pipeline.watcher``), without a worker process, reading
  the node results from one XCom the producer (``NodeResultsProducer``) rewrites as nodes finish.
  ``$RETAILFLOW_DBT_EXECUTION_MODE=local`` runs one dbt process per node instead. ``dags/README.md``
  has the measurements behind the default.
"""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path
from typing import Any

from retailflow_pipeline import paths
from retailflow_pipeline.catalog import DEFAULT_CONN_IDS
from retailflow_pipeline.dbt import PROFILE, TARGET, project_dir

#: dbt settings every dbt task runs with: no usage statistics, no version check (no internet)
DBT_ENV = {"DBT_SEND_ANONYMOUS_USAGE_STATS": "false", "DBT_VERSION_CHECK": "false"}


def manifest_path() -> Path:
    return paths.dbt_manifest()


def warehouse_conn_id() -> str:
    return os.environ.get("RETAILFLOW_WAREHOUSE_CONN_ID") or DEFAULT_CONN_IDS["warehouse"]


def execution_mode_name() -> str:
    return (os.environ.get("RETAILFLOW_DBT_EXECUTION_MODE") or "watcher").lower()


def profile_config():
    """The dbt profile of every dbt task: Cosmos's ``profiles.yml`` for the warehouse's Airflow
    connection. Its connection settings equal those ``dbt/profiles.yml`` gives the command line
    (``retailflow_pipeline.dbt``) for the same URL, so that a ``dbt parse`` there (``make
    dbt-manifest``) spares the next run's producer a full parse."""
    from cosmos import ProfileConfig
    from cosmos.profiles import PostgresUserPasswordProfileMapping

    return ProfileConfig(
        profile_name=PROFILE,
        target_name=TARGET,
        profile_mapping=PostgresUserPasswordProfileMapping(
            conn_id=warehouse_conn_id(), profile_args={"schema": "analytics", "threads": 4},
        ),
    )


def dbt_task_group(group_id: str = "dbt", *, settings_task_id: str = "load_settings", **kwargs: Any):
    """A Cosmos ``DbtTaskGroup`` of the RetailFlow dbt project (call inside a ``DAG`` context)."""
    from cosmos import DbtTaskGroup, ExecutionConfig, ProjectConfig, RenderConfig
    from cosmos.constants import ExecutionMode, InvocationMode, LoadMode, TestBehavior

    manifest = manifest_path()
    if not manifest.is_file():
        raise FileNotFoundError(f"dbt manifest {manifest} not found: run `make dbt-manifest` (dbt parse) first")
    mode = {"watcher": ExecutionMode.WATCHER, "local": ExecutionMode.LOCAL}[execution_mode_name()]
    raw_schema = "{{ ti.xcom_pull(task_ids='%s')['raw_schema'] }}" % settings_task_id
    group = DbtTaskGroup(
        group_id=group_id,
        project_config=ProjectConfig(dbt_project_path=project_dir(), manifest_path=manifest,
                                     project_name="retailflow", install_dbt_deps=False,
                                     env_vars={**DBT_ENV, "RETAILFLOW_RAW_SCHEMA": raw_schema}),
        profile_config=profile_config(),
        execution_config=ExecutionConfig(execution_mode=mode, invocation_mode=InvocationMode.DBT_RUNNER),
        render_config=RenderConfig(load_method=LoadMode.DBT_MANIFEST, test_behavior=TestBehavior.AFTER_EACH,
                                   should_detach_multiple_parents_tests=True),
        operator_args={
            "retries": 1,
            "retry_delay": timedelta(seconds=30),
            "execution_timeout": timedelta(minutes=30),
        },
        **kwargs,
    )
    if mode == ExecutionMode.WATCHER:
        from retailflow_pipeline.watcher import push_final_node_events_only, start_in_triggerer, use_node_results_producer

        start_in_triggerer(group)
        use_node_results_producer(group)
        push_final_node_events_only()
    return group
