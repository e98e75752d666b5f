"""Task groups the RetailFlow DAGs share (``retail_pipeline``, ``airbyte_ingestion``,
``dbt_transformation``): the same tasks, retries and timeouts in each. Call inside a ``DAG`` context.

Retries, retry delays and timeouts fit each task's work: reading variables is quick and retried
fast; an ingestion is crash-safe per stream (a rerun redoes only the unfinished streams) and may take
long at scale; an Airbyte sync can run for hours, so its sensor frees its worker slot between pokes
(``mode="reschedule"``), and a failed or cancelled job fails it at once (Airbyte retries attempts
inside the job; re-poking a finished job cannot change it); an audit mismatch fails at once (no retry:
rerunning cannot fix the data), only a database error is retried. The audit's time limit is the direct
ingestion's (2 h): it reads each source table once (see ``retailflow_pipeline.audit``), as the full
ingestion does, and writes nothing, so data the ingestion can load in time the audit can check in
time; a shorter limit would stop a large run after its data had landed (figures in dags/README.md).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from airflow.sdk import Param, TaskGroup, task

from retailflow_pipeline import tasks
from retailflow_pipeline.catalog import DEFAULT_PREFIX

log = logging.getLogger(__name__)

#: the direct ingestion's time limit; the audit's too (it reads what the ingestion reads, and writes nothing)
INGESTION_TIMEOUT = AUDIT_TIMEOUT = timedelta(hours=2)
#: seconds between two polls of an Airbyte job
AIRBYTE_POKE_SECONDS = int(os.environ.get("RETAILFLOW_AIRBYTE_POKE_SECONDS") or 30)

PARAMS = {
    "variable_prefix": Param(
        os.environ.get("RETAILFLOW_VARIABLE_PREFIX") or DEFAULT_PREFIX, type="string",
        description="prefix of the RetailPipeline's Airflow variables (spec.airflow.variablePrefix)",
    ),
    "full_refresh": Param(False, type="boolean", description="reload every stream (local engine) instead of "
                          "an incremental sync"),
}


def load_settings_task():
    @task(task_id="load_settings", retries=3, retry_delay=timedelta(seconds=10),
          execution_timeout=timedelta(minutes=2))
    def load_settings(prefix: str) -> dict[str, Any]:
        """Read the pipeline's variables (operator/README.md) into its settings."""
        return tasks.load_settings(prefix)

    return load_settings("{{ params.variable_prefix }}")


def ingestion_group(settings) -> TaskGroup:
    """``choose_engine`` → ``direct`` (the local engine) | ``airbyte_syncs`` → trigger → sensor → ``done``."""
    from airflow.providers.airbyte.operators.airbyte import AirbyteTriggerSyncOperator
    from airflow.providers.airbyte.sensors.airbyte import AirbyteJobSensor
    from airflow.providers.standard.operators.empty import EmptyOperator

    with TaskGroup("ingestion", tooltip="MySQL and the store CSV into the warehouse's raw schema") as group:

        @task.branch(task_id="choose_engine", retries=2, retry_delay=timedelta(seconds=10),
                     execution_timeout=timedelta(minutes=2))
        def choose_engine(settings: dict[str, Any]) -> str:
            engine = tasks.choose_engine(settings)
            log.info("engine: %s", engine)
            return "ingestion.direct" if engine == "direct" else "ingestion.airbyte_syncs"

        @task(task_id="direct", retries=2, retry_delay=timedelta(seconds=30), execution_timeout=INGESTION_TIMEOUT)
        def direct(settings: dict[str, Any], params=None) -> dict[str, Any]:
            # From the params themselves: a templated "{{ params.full_refresh }}" would be the string "False".
            return tasks.ingest_direct(settings, full_refresh=bool((params or {}).get("full_refresh")))

        @task(task_id="airbyte_syncs", retries=2, retry_delay=timedelta(seconds=10),
              execution_timeout=timedelta(minutes=2))
        def airbyte_syncs(settings: dict[str, Any]) -> list[dict[str, str]]:
            return tasks.airbyte_syncs(settings)

        @task(task_id="airbyte_jobs", retries=2, retry_delay=timedelta(seconds=10),
              execution_timeout=timedelta(minutes=2))
        def airbyte_jobs(settings: dict[str, Any], job_ids) -> list[dict[str, Any]]:
            return tasks.airbyte_waits(settings, list(job_ids))

        branch = choose_engine(settings)
        loaded = direct(settings)
        syncs = airbyte_syncs(settings)
        trigger = AirbyteTriggerSyncOperator.partial(
            task_id="trigger_sync", asynchronous=True, retries=2, retry_delay=timedelta(seconds=30),
            execution_timeout=timedelta(minutes=5),
        ).expand_kwargs(syncs)
        waits = airbyte_jobs(settings, trigger.output)
        wait = AirbyteJobSensor.partial(
            task_id="wait_for_sync", mode="reschedule", poke_interval=AIRBYTE_POKE_SECONDS,
            timeout=timedelta(hours=6).total_seconds(), retries=0,
        ).expand_kwargs(waits)
        done = EmptyOperator(task_id="done", trigger_rule="none_failed_min_one_success")
        branch >> [loaded, syncs]
        [loaded, syncs, wait] >> done
    return group


def _optional_task(task_id: str, run: Callable[[], dict[str, Any]], what: str, doc: str, **task_args: Any):
    """A task that calls ``run()``, skipped (with the reason logged) where its step is not configured
    (``run`` raises ``tasks.StepSkipped``)."""
    from airflow.sdk.exceptions import AirflowSkipException

    def step() -> dict[str, Any]:
        try:
            return run()
        except tasks.StepSkipped as exc:
            log.info("%s skipped: %s", what, exc)
            raise AirflowSkipException(str(exc)) from None

    step.__doc__ = doc
    return task(task_id=task_id, **task_args)(step)()


def dashboards_task():
    return _optional_task(
        "refresh_dashboards", tasks.refresh_dashboards, "dashboards refresh",
        "Import the dashboards bundle into Superset (retailflow_pipeline.dashboards), if configured.",
        retries=2, retry_delay=timedelta(minutes=1), execution_timeout=timedelta(minutes=10),
    )


def governance_task():
    return _optional_task(
        "governance", tasks.run_governance, "governance",
        "Run the OpenMetadata workflows (retailflow_pipeline.governance), if configured.",
        retries=1, retry_delay=timedelta(minutes=2), execution_timeout=timedelta(minutes=30),
        trigger_rule="none_failed",
    )


def audit_task(settings, trigger_rule: str = "none_failed"):
    """The audit (call it downstream of the dbt group): ``none_failed`` runs it when every dbt node
    passed or was skipped by dbt for its own reasons, not when one failed or the build did not run."""
    from airflow.sdk.exceptions import AirflowFailException

    from retailflow_pipeline.audit import AuditFailed, NoIngestionState

    @task(task_id="audit", retries=1, retry_delay=timedelta(seconds=30), execution_timeout=AUDIT_TIMEOUT,
          trigger_rule=trigger_rule)
    def audit(settings: dict[str, Any]) -> dict[str, Any]:
        """Row counts and revenue, MySQL against the marts, at the ingestion's high-water mark."""
        settle = os.environ.get("RETAILFLOW_AUDIT_SETTLE_SECONDS")
        try:
            seconds = float(settle) if settle else None
        except ValueError:
            raise AirflowFailException(f"RETAILFLOW_AUDIT_SETTLE_SECONDS={settle!r} is not a number of seconds") from None
        try:
            return tasks.run_audit(settings, seconds)
        except (AuditFailed, NoIngestionState) as exc:  # a retry would find the same: fail at once
            raise AirflowFailException(str(exc)) from None

    return audit(settings)
