"""The Airflow parts of the umbrella chart and image: the auth manager through the chart's own
airflow.cfg, no create-user Job, and an image that ships the DAG files (not the package sources)."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[3]
VALUES = yaml.safe_load((REPO / "charts" / "retailflow" / "values.yaml").read_text())["airflow"]


def test_auth_manager_is_set_in_the_charts_config_not_extra_env():
    core = VALUES["config"]["core"]
    assert core["auth_manager"].endswith("simple_auth_manager.SimpleAuthManager")
    assert core["simple_auth_manager_passwords_file"].startswith(VALUES["volumeMounts"][0]["mountPath"])
    assert "AUTH_MANAGER" not in VALUES["extraEnv"]


def test_no_create_user_job():
    assert VALUES["createUserJob"]["enabled"] is False


def test_dags_run_unpaused_and_the_schedules_know_the_pipelines():
    assert VALUES["config"]["core"]["dags_are_paused_at_creation"] == "False"
    found = re.search(r"- name: RETAILFLOW_PIPELINE_PREFIXES\n\s+value: \"([^\"]*)\"", VALUES["extraEnv"])
    assert found and found.group(1) == "retailflow_"


def test_the_image_ships_the_dag_files_and_hides_the_package_from_the_dag_processor():
    dockerfile = (REPO / "Dockerfile").read_text()
    assert "COPY --chown=airflow:0 dags/ /opt/airflow/dags/" in dockerfile
    assert "AIRFLOW__CORE__DAGS_FOLDER=/opt/airflow/dags" in dockerfile
    assert "RETAILFLOW_DBT_MANIFEST=" in dockerfile and "dbt parse" in dockerfile
    ignored = [l.strip() for l in (REPO / ".dockerignore").read_text().splitlines()]
    # only the venv and the packages' links to the catalog (the Dockerfile copies the file there) stay out
    assert not any(l.startswith("dags") and not l.startswith("dags/.venv") and not l.endswith("/catalog.json")
                   for l in ignored)
    airflowignore = [l for l in (REPO / "dags" / ".airflowignore").read_text().splitlines()
                     if l and not l.startswith("#")]
    assert {"retailflow_pipeline/", "retailflow_ingest/"} <= set(airflowignore)
    dag_files = sorted(p.name for p in (REPO / "dags").glob("*.py"))
    assert dag_files == ["airbyte_ingestion.py", "retail_pipeline.py", "retail_pipeline_schedules.py",
                         "transformation.py"]


def test_the_scheduler_and_triggerer_preload_what_tasks_and_sensors_import():
    settings = VALUES["airflowLocalSettings"]
    assert "from retailflow_pipeline.preload import preload" in settings and "preload()" in settings


def test_the_local_airflow_reads_the_charts_overhead_settings():
    """hack/airflow.sh takes the scheduler, DAG processor, worker and Cosmos sections from these values,
    so the local Airflow and the chart's run with the same per-run overhead settings."""
    config = VALUES["config"]
    assert int(config["dag_processor"]["min_file_process_interval"]) >= 300
    assert float(config["workers"]["min_heartbeat_interval"]) <= 1
    assert float(config["scheduler"]["scheduler_idle_sleep_time"]) < 1
    assert config["cosmos"]["enable_watcher_reliable_retry"] == "False"
    script = (REPO / "hack" / "airflow.sh").read_text()
    assert 'for section in ("scheduler", "dag_processor", "workers", "cosmos")' in script and "values.yaml" in script
