"""Pytest fixtures for the operator's peers, shared by the suites that run the operator
(tests/integration/operator, tests/integration/chart, tests/integration/workloads): import them into a conftest.py."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from support.airbyte_fake import AirbyteFake
from support.airflow_server import DEFAULT_AIRFLOW_BIN, AirflowServer


@pytest.fixture(scope="session")
def airflow() -> Iterator[AirflowServer]:
    """A real Airflow API server (``airflow api-server`` from ``dags/.venv``, SQLite metadata, Simple auth
    manager with generated credentials), shared by the whole session and stopped at its end."""
    if not DEFAULT_AIRFLOW_BIN.exists():
        pytest.fail(f"{DEFAULT_AIRFLOW_BIN} is missing: run `make sync` (uv sync --project dags) to get Airflow")
    with AirflowServer() as server:
        yield server


@pytest.fixture
def airbyte() -> Iterator[AirbyteFake]:
    """The Airbyte fake: a stateful stand-in for Airbyte's public API v1 on loopback, fresh per test."""
    with AirbyteFake() as fake:
        yield fake
