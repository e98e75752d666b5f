"""The Airflow fixture: a real Airflow API server whose variable helpers the operator tests rely on."""

import os
import time
from pathlib import Path

import pytest
import requests

from support.airflow_server import DEFAULT_AIRFLOW_BIN, AirflowServer

pytestmark = pytest.mark.integration


@pytest.mark.skipif(not DEFAULT_AIRFLOW_BIN.exists(),
                    reason=f"{DEFAULT_AIRFLOW_BIN} is missing: run `uv sync --project dags` to get Airflow")
def test_variable_helpers_against_a_real_api_server() -> None:
    began = time.monotonic()
    with AirflowServer() as af:
        print(f"airflow api-server ready in {af.start_seconds:.1f} s")
        assert af.url.startswith("http://127.0.0.1:") and not af.url.endswith("/api/v2")
        assert af.get_variable("retailflow_missing") is None
        af.set_variable("retailflow_schedule", "@hourly")
        af.set_variable("retailflow_schedule", "@daily")  # overwrite, not 409
        af.set_variable("retailflow_tables", '["orders", "customers"]')
        assert af.get_variable("retailflow_schedule") == "@daily"
        assert af.variables() == {"retailflow_schedule": "@daily", "retailflow_tables": '["orders", "customers"]'}
        af.delete_variable("retailflow_schedule")
        af.delete_variable("retailflow_schedule")  # deleting a missing variable is not an error
        assert af.variables() == {"retailflow_tables": '["orders", "customers"]'}

        # The REST API itself: bearer tokens from the fixed credentials, nothing without one.
        headers = {"Authorization": f"Bearer {af.token()}"}
        listed = requests.get(f"{af.url}/api/v2/variables", headers=headers, timeout=10).json()
        assert listed["total_entries"] == 1
        assert requests.get(f"{af.url}/api/v2/variables", timeout=10).status_code == 401
        bad = requests.post(f"{af.url}/auth/token", json={"username": af.username, "password": "wrong"}, timeout=10)
        assert bad.status_code == 401
        pgid = af._proc.pid if af._proc else None
    print(f"airflow fixture start+stop in {time.monotonic() - began:.1f} s")

    # The whole process group (server and uvicorn workers) is gone.
    assert pgid is not None
    with pytest.raises(ProcessLookupError):
        os.killpg(pgid, 0)


def test_a_failed_start_leaves_nothing_behind(tmp_path: Path) -> None:
    server = AirflowServer(airflow_bin=tmp_path / "no-airflow")
    with pytest.raises(FileNotFoundError):
        server.start()
    assert server.home is None
