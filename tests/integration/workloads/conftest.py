"""A real Airflow API server (``airflow api-server`` from ``dags/.venv``, SQLite metadata), the peer the
operator writes its variables to, started by the test session itself (as in ``integration/chart``)."""

from collections.abc import Iterator

import pytest

from support.airflow_server import DEFAULT_AIRFLOW_BIN, AirflowServer


@pytest.fixture(scope="session")
def airflow() -> Iterator[AirflowServer]:
    if not DEFAULT_AIRFLOW_BIN.exists():
        pytest.fail(f"{DEFAULT_AIRFLOW_BIN} is missing: run `make sync` (uv sync --project dags) to get Airflow")
    with AirflowServer() as server:
        yield server
