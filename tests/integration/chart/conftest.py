"""Stand-ins the chart's clients run against: the emulated Kubernetes API enforcing the rendered release's
RBAC, the Airbyte fake and a real Airflow API server (see ``tests/support/``)."""

from collections.abc import Iterator

import pytest

from support.airbyte_fake import AirbyteFake
from support.airflow_server import DEFAULT_AIRFLOW_BIN, AirflowServer
from support.helm_render import Rendered, render


@pytest.fixture(scope="session")
def release() -> Rendered:
    """The umbrella chart rendered with its defaults (the operator chart is a real subchart in it)."""
    return render()


@pytest.fixture(scope="session")
def airflow() -> Iterator[AirflowServer]:
    """A real Airflow API server (``airflow api-server`` from ``dags/.venv``, SQLite metadata), started by
    the test session itself."""
    if not DEFAULT_AIRFLOW_BIN.exists():
        pytest.fail(f"{DEFAULT_AIRFLOW_BIN} is missing: run `make sync` (uv sync --project dags) to get Airflow")
    with AirflowServer() as server:
        yield server


@pytest.fixture
def airbyte() -> Iterator[AirbyteFake]:
    """The Airbyte fake: a stateful stand-in for Airbyte's public API v1 on loopback, fresh per test."""
    with AirbyteFake() as fake:
        yield fake
