"""The Airbyte path of the ingestion (``airbyte_ingestion``, the same tasks as in ``retail_pipeline``)
against the Airbyte fake (``tests/support/airbyte_fake.py``: Airbyte's public API on loopback, a
stand-in for a real Airbyte, which cannot run here).

The variables are the ones the operator's own builder writes for ``engine: airbyte``, with the
connection ids the fake handed out; the Airflow ``airbyte`` connection points at the fake. Each
connection gets one ``AirbyteTriggerSyncOperator(asynchronous=True)`` and one ``AirbyteJobSensor``.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
import requests
from conftest import REPO_ROOT
from support.airbyte_fake import AirbyteFake

pytestmark = pytest.mark.integration

OPERATOR_PYTHON = REPO_ROOT / "operator" / ".venv" / "bin" / "python"
HELPER = Path(__file__).with_name("operator_variables.py")
EXAMPLE = REPO_ROOT / "operator" / "examples" / "retailpipeline.yaml"
ROLES = ("mysql-to-warehouse", "store-locations-to-lake")


class RecordingAirbyteFake(AirbyteFake):
    """The Airbyte fake, recording the status each read of a job answered (the sensor's view).

    With ``steps`` set, each job walks through them one read at a time: a read of a job
    (``GET /jobs/{id}``, the sensor's) answers the job's next status and the last one is kept, so a
    job moves on only once its status was read, however slowly the sensor polls."""

    def __init__(self) -> None:
        super().__init__()
        self.answered: dict[int, list[str]] = {}
        self.steps: list[str] = []

    def _route_jobs(self, method, item, query, data):
        if method == "GET" and item is not None and self.steps and item.isdigit() and int(item) in self.jobs:
            read = len(self.answered.get(int(item), []))
            self.jobs[int(item)].update(status=self.steps[min(read, len(self.steps) - 1)])
        return super()._route_jobs(method, item, query, data)

    def _job_view(self, job):
        view = super()._job_view(job)
        self.answered.setdefault(job["jobId"], []).append(view["status"])
        return view


@pytest.fixture
def airbyte(monkeypatch, tmp_path):
    """The Airbyte fake with two connections, the operator's variables for them, and the connection."""
    if not OPERATOR_PYTHON.exists():
        pytest.skip("the operator's venv is missing: run `make sync`")
    fake = RecordingAirbyteFake().start()
    try:
        token = requests.post(fake.token_url, json={"client_id": fake.client_id, "client_secret": fake.client_secret,
                                                    "grant-type": "client_credentials"}, timeout=10).json()["access_token"]
        api = requests.Session()
        api.headers["Authorization"] = f"Bearer {token}"

        def post(path, body):
            resp = api.post(f"{fake.server_url}{path}", json=body, timeout=10)
            assert resp.status_code == 200, resp.text
            return resp.json()

        # Configurations the fake validates against the connectors' specs (required keys only).
        src = post("/sources", {"name": "mysql", "workspaceId": fake.workspace_id, "configuration": {
            "sourceType": "mysql", "host": "mysql", "port": 3306, "database": "retail", "username": "retail",
            "replication_method": {"method": "STANDARD"}}})["sourceId"]
        dst = post("/destinations", {"name": "warehouse", "workspaceId": fake.workspace_id, "configuration": {
            "destinationType": "postgres", "host": "postgresql", "port": 5432, "username": "warehouse",
            "database": "warehouse", "schema": "raw"}})["destinationId"]
        connections = {role: post("/connections", {"name": role, "sourceId": src, "destinationId": dst})["connectionId"]
                       for role in ROLES}
        ids = tmp_path / "ids.json"
        ids.write_text(json.dumps({"connections": connections, "sources": {"mysql": src},
                                   "destinations": {"warehouse": dst}}))
        out = subprocess.run(
            [str(OPERATOR_PYTHON), str(HELPER), str(EXAMPLE), "--engine", "airbyte", "--ids", str(ids),
             "--set", f"airbyte.apiUrl={fake.server_url}", "--set", f"airbyte.workspaceId={fake.workspace_id}"],
            capture_output=True, text=True, timeout=120, check=True)
        for key, value in json.loads(out.stdout).items():
            monkeypatch.setenv(f"AIRFLOW_VAR_{key.upper()}", json.dumps(value))
        monkeypatch.setenv("AIRFLOW_CONN_RETAILFLOW_AIRBYTE", json.dumps({
            "conn_type": "airbyte", "host": fake.server_url, "login": fake.client_id,
            "password": fake.client_secret, "schema": fake.token_url}))
        fake.connection_ids = connections
        yield fake
    finally:
        fake.stop()


def states(run) -> dict[str, str]:
    return {ti.task_id + (f"[{ti.map_index}]" if ti.map_index >= 0 else ""): ti.state for ti in run.get_task_instances()}


def test_syncs_are_triggered_and_awaited_through_pending_running_succeeded(airbyte, dagbag):
    airbyte.job_seconds = 3600  # the sensor's reads move the jobs on, not the clock
    airbyte.steps = ["pending", "running", "succeeded"]
    run = dagbag.dags["airbyte_ingestion"].test()
    got = states(run)
    assert run.state == "success", got
    assert got["ingestion.direct"] == "skipped"
    assert [got[f"ingestion.trigger_sync[{i}]"] for i in range(len(ROLES))] == ["success"] * len(ROLES)
    assert [got[f"ingestion.wait_for_sync[{i}]"] for i in range(len(ROLES))] == ["success"] * len(ROLES)
    triggered = sorted(j["connectionId"] for j in airbyte.jobs.values())
    assert triggered == sorted(airbyte.connection_ids.values())
    assert all(j["jobType"] == "sync" for j in airbyte.jobs.values())
    # Every job started was polled: while pending, while running, and no more once it had succeeded.
    assert airbyte.answered == {job_id: ["pending", "running", "succeeded"] for job_id in airbyte.jobs}, airbyte.answered


@pytest.mark.parametrize("outcome, message", [("failed", "Job failed"), ("cancelled", "Job was cancelled")])
def test_a_failed_or_cancelled_job_fails_the_sensor_with_airbytes_answer(airbyte, dagbag, capfd, outcome, message):
    airbyte.job_result = outcome  # jobs read as this outcome once older than job_seconds
    airbyte.job_seconds = 1.0
    run = dagbag.dags["airbyte_ingestion"].test()
    got = states(run)
    assert run.state == "failed"
    assert {got[f"ingestion.wait_for_sync[{i}]"] for i in range(len(ROLES))} == {"failed"}
    assert got["ingestion.done"] == "upstream_failed"
    log = "".join(capfd.readouterr())
    assert message in log
    # Airbyte's job document is in the error: its id, connection and status.
    job = next(iter(airbyte.jobs.values()))
    assert f"job_id={job['jobId']}" in log and job["connectionId"] in log and outcome.upper() in log


def test_with_airbyte_scheduling_its_own_syncs_nothing_is_triggered(airbyte, dagbag, monkeypatch):
    variable = json.loads(os.environ["AIRFLOW_VAR_RETAILFLOW_PIPELINE"])
    monkeypatch.setenv("AIRFLOW_VAR_RETAILFLOW_PIPELINE", json.dumps({**variable, "sync_trigger": "airbyte"}))
    run = dagbag.dags["airbyte_ingestion"].test()
    got = states(run)
    assert run.state == "success", got
    assert airbyte.jobs == {}
    assert got["ingestion.airbyte_syncs"] == "success" and got["ingestion.done"] == "success"
