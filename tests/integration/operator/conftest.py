"""Stand-ins the operator scenarios run against: a real Airflow API server, the Airbyte fake and the
emulated Kubernetes API (see ``tests/support/``)."""

from collections.abc import Iterator

import pytest

from support.airbyte_fake import AirbyteFake
from support.airflow_server import DEFAULT_AIRFLOW_BIN, AirflowServer
from support.kube_emulator import CRD_PATH, EmulatedKubernetesAPI


@pytest.fixture(scope="session")
def airflow() -> Iterator[AirflowServer]:
    """A real Airflow API server (``airflow api-server`` from ``dags/.venv``, SQLite metadata, Simple auth
    manager with generated credentials), shared by the whole session and stopped at its end."""
    if not DEFAULT_AIRFLOW_BIN.exists():
        pytest.skip(f"{DEFAULT_AIRFLOW_BIN} is missing: run `uv sync --project dags` to get Airflow")
    with AirflowServer() as server:
        yield server


@pytest.fixture
def airbyte() -> Iterator[AirbyteFake]:
    """The Airbyte fake: a stateful stand-in for Airbyte's public API v1 on loopback, fresh per test."""
    with AirbyteFake() as fake:
        yield fake


@pytest.fixture
def kube() -> Iterator[EmulatedKubernetesAPI]:
    """The emulated Kubernetes API (kmock's emulator made realistic for kopf) serving the RetailPipeline
    CRD from the operator chart; ``KUBECONFIG`` points at it for the duration of the test."""
    if not CRD_PATH.exists():
        pytest.fail(f"{CRD_PATH} is missing: the emulated API serves the CRD from the operator chart")
    with EmulatedKubernetesAPI(CRD_PATH) as api:
        yield api
