"""The Airflow workflow, run for real against the OpenMetadata stand-in (the Superset workflow runs in
the dashboards suite, see below).

- Airflow: a real Airflow 3.3 API server (``support.airflow_server``, SQLite metadata) serving the
  repository's DAGs, serialized by ``airflow dags reserialize``; OpenMetadata's Airflow connector
  reads them over the REST API (v2); without ``retail_pipeline`` among the DAGs there is nothing to
  register, and the fixture fails. ``RETAILFLOW_GOVERNANCE_DAGS_DIR`` and ``RETAILFLOW_AIRFLOW_BIN``
  point it at other DAG files and another Airflow environment.
- Superset: the workflow needs a running Superset with RetailFlow's dashboards imported; starting one
  costs minutes, so it runs in the dashboards suite against that suite's Superset
  (``tests/integration/dashboards/test_governance_superset.py``, ``make test-dashboards``).
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from retailflow_pipeline import governance
from support.airflow_server import AirflowServer
from support.openmetadata_standin import OpenMetadataStandIn

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[3]
DAGS_DIR = Path(os.environ.get("RETAILFLOW_GOVERNANCE_DAGS_DIR") or REPO / "dags")


def _run(standin: OpenMetadataStandIn, env: dict, workflows: list[str]) -> dict:
    summary = governance.run(env, workflows, log=lambda _line: None)
    print(f"stand-in after {'+'.join(workflows)}: {standin.counts()}")  # shown with -s, and on failures
    assert not standin.unhandled, f"the workflows called endpoints the stand-in does not serve: {standin.unhandled}"
    return summary


@pytest.fixture(scope="module")
def airflow_catalog(metadata_bin):
    server = AirflowServer(username="admin").start()
    standin = OpenMetadataStandIn()
    url = standin.start()
    try:
        dags = server.home / "dags"
        for item in DAGS_DIR.iterdir():
            if item.suffix == ".py" or item.name == "retailflow_pipeline":
                (dags / item.name).symlink_to(item)
        # No DAG processor runs beside the API server: serialize the DAGs into its database once.
        env = server.env() | {"RETAILFLOW_DBT_PROJECT_DIR": str(REPO / "dbt")}
        done = subprocess.run([str(server.airflow_bin), "dags", "reserialize"], env=env, cwd=server.home,
                              capture_output=True, text=True, timeout=600, check=False)
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
        listed = server.api("GET", "/dags").json()
        assert "retail_pipeline" in {d["dag_id"] for d in listed["dags"]}, listed
        env = {
            "RETAILFLOW_OPENMETADATA_URL": url, "RETAILFLOW_OPENMETADATA_TOKEN": "stand-in.jwt",
            "RETAILFLOW_OPENMETADATA_METADATA_BIN": str(metadata_bin), "RETAILFLOW_AIRFLOW_URL": server.url,
            "RETAILFLOW_AIRFLOW_USERNAME": server.username, "RETAILFLOW_AIRFLOW_PASSWORD": server.password,
        }
        yield standin, _run(standin, env, ["airflow"])
    finally:
        standin.stop()
        server.stop()


class TestAirflowWorkflow:
    def test_the_retail_pipeline_dag_is_registered_with_its_tasks(self, airflow_catalog):
        standin, _ = airflow_catalog
        pipeline = standin.of_type("pipeline")["retailflow_airflow.retail_pipeline"]
        tasks = {t["name"] for t in pipeline["tasks"]}
        assert {"load_settings", "governance", "audit"} <= tasks
        assert any(t.startswith("dbt.") and t.endswith(".run") for t in tasks), sorted(tasks)
        assert any(t.startswith("ingestion.") for t in tasks), sorted(tasks)
        downstream = {t["name"]: set(t.get("downstreamTasks") or []) for t in pipeline["tasks"]}
        assert "governance" in downstream["refresh_dashboards"]
        assert downstream["governance"] == set() and downstream["audit"] == set()

    def test_the_service_points_at_the_airflow_ui(self, airflow_catalog):
        standin, _ = airflow_catalog
        status, service = standin.handle("GET", "/api/v1/services/pipelineServices/name/retailflow_airflow", b"")
        assert status == 200 and service["serviceType"] == "Airflow"
        # as the server answers it: the Airflow password masked, never in any recorded request
        assert service["connection"]["config"]["connection"]["authConfig"]["password"] == "*********"
        put = next(r for r in standin.requests if r.method == "PUT" and r.path.endswith("/services/pipelineServices"))
        assert put.body["connection"]["config"]["connection"]["authConfig"]["password"] == "<redacted>"
        assert "retail_pipeline" in standin.of_type("pipeline")["retailflow_airflow.retail_pipeline"]["sourceUrl"]
