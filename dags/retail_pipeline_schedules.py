"""retail_pipeline_schedules: triggers retail_pipeline on each RetailPipeline's spec.schedule.

Every minute it reads the ``pipeline`` variable of each RetailPipeline's prefix (those the operator
lists in the ``retailpipelines`` variable, and ``$RETAILFLOW_PIPELINE_PREFIXES``, default
``retailflow_``) and triggers the run of the latest tick
of that pipeline's cron expression, once (run id ``scheduled__<prefix>__<tick>``, logical date the
tick, conf ``{"variable_prefix": …}``). Two pipelines with their own prefixes get their own runs; a
schedule changed in the spec applies at the next minute, without a DAG reparse. Prefixes without
variables (local mode) schedule nothing.
"""

from datetime import datetime, timedelta, timezone

from airflow.providers.standard.operators.trigger_dagrun import TriggerDagRunOperator
from airflow.sdk import dag, task

from retailflow_pipeline.schedules import PIPELINE_DAG_ID, due_runs


@dag(
    dag_id="retail_pipeline_schedules",
    schedule="* * * * *",
    start_date=datetime(2024, 1, 1),
    catchup=False,
    max_active_runs=1,
    dagrun_timeout=timedelta(minutes=5),
    tags=["retailflow", "schedule"],
    doc_md=__doc__,
    default_args={"owner": "retailflow"},
)
def retail_pipeline_schedules():
    @task(retries=1, retry_delay=timedelta(seconds=10), execution_timeout=timedelta(minutes=1))
    def due(data_interval_end=None) -> list[dict]:
        return due_runs(data_interval_end or datetime.now(timezone.utc))

    TriggerDagRunOperator.partial(
        task_id="trigger", trigger_dag_id=PIPELINE_DAG_ID, skip_when_already_exists=True,
        wait_for_completion=False, execution_timeout=timedelta(minutes=1),
    ).expand_kwargs(due())


retail_pipeline_schedules()
