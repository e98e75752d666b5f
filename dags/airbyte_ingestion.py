"""airbyte_ingestion: the ingestion step of retail_pipeline on its own.

The engine is chosen at run time from the pipeline's variables: ``airbyte`` triggers each Airbyte
connection the operator recorded (asynchronously) and waits for its job with a sensor; ``direct``
(and local mode) runs the local ingestion engine. Same tasks as in retail_pipeline.
"""

from datetime import datetime, timedelta

from airflow.sdk import dag

from retailflow_pipeline.wiring import PARAMS, ingestion_group, load_settings_task


@dag(
    dag_id="airbyte_ingestion",
    schedule=None,
    start_date=datetime(2024, 1, 1),
    catchup=False,
    max_active_runs=1,
    dagrun_timeout=timedelta(hours=7),
    params=PARAMS,
    tags=["retailflow", "ingestion", "airbyte"],
    doc_md=__doc__,
    default_args={"owner": "retailflow"},
)
def airbyte_ingestion():
    settings = load_settings_task()
    settings >> ingestion_group(settings)


airbyte_ingestion()
