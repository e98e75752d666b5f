# Not named dbt_*.py: dbt imports every top-level module named dbt_* it finds on sys.path as a plugin.
"""dbt_transformation: the dbt step of retail_pipeline on its own (staging views, marts, tests).

Cosmos renders the dbt project's manifest as tasks, one per model with its tests; the profile comes
from the warehouse's Airflow connection and the raw schema from the pipeline's variables.
"""

from datetime import datetime, timedelta

from airflow.sdk import dag

from retailflow_pipeline.dbt_group import dbt_task_group
from retailflow_pipeline.wiring import PARAMS, load_settings_task


@dag(
    dag_id="dbt_transformation",
    schedule=None,
    start_date=datetime(2024, 1, 1),
    catchup=False,
    max_active_runs=1,
    dagrun_timeout=timedelta(hours=2),
    params=PARAMS,
    tags=["retailflow", "dbt"],
    doc_md=__doc__,
    default_args={"owner": "retailflow"},
)
def dbt_transformation():
    load_settings_task() >> dbt_task_group("dbt")


dbt_transformation()
