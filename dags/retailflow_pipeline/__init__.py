"""RetailFlow pipeline task logic: local ingestion engine, dbt runner, reports."""
