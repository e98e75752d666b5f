"""retail_pipeline: the whole RetailFlow pipeline, one run per schedule tick of a RetailPipeline.

ingestion (the local engine, or Airbyte syncs triggered and awaited) → dbt build (Cosmos: a task per
model and test) → two branches side by side: dashboards refresh → governance (OpenMetadata reads the
dashboards), and the audit (row counts and revenue, MySQL against the marts: it needs the marts
only). A failed dbt node leaves all three not run (``upstream_failed``). Dashboards and governance
skip, with the reason logged, where they are not configured.

Which pipeline a run serves comes from its ``variable_prefix`` param: the operator's Airflow
variables under that prefix (operator/README.md), or the local defaults when there are none. It has
no schedule of its own: ``retail_pipeline_schedules`` triggers it on each RetailPipeline's
``spec.schedule`` (see dags/README.md); ``make demo`` triggers it directly.
"""

from datetime import datetime, timedelta

from airflow.sdk import dag

from retailflow_pipeline.dbt_group import dbt_task_group
from retailflow_pipeline.wiring import (PARAMS, audit_task, dashboards_task, governance_task, ingestion_group,
                                        load_settings_task)


@dag(
    dag_id="retail_pipeline",
    schedule=None,
    start_date=datetime(2024, 1, 1),
    catchup=False,
    max_active_runs=1,
    dagrun_timeout=timedelta(hours=8),
    params=PARAMS,
    tags=["retailflow", "pipeline"],
    doc_md=__doc__,
    default_args={"owner": "retailflow"},
)
def retail_pipeline():
    settings = load_settings_task()
    ingested = ingestion_group(settings)
    dbt = dbt_task_group("dbt")
    dashboards = dashboards_task()
    governance = governance_task()
    audited = audit_task(settings)
    settings >> ingested >> dbt >> [dashboards, audited]
    dashboards >> governance


retail_pipeline()
