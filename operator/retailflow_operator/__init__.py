"""RetailFlow operator: RetailPipeline -> Airbyte connections + Airflow variables."""
