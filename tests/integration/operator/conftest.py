"""Stand-ins the operator scenarios run against: a real Airflow API server, the Airbyte fake and the
emulated Kubernetes API (see ``tests/support/``)."""

from collections.abc import Iterator

import pytest

from support.peer_fixtures import airbyte, airflow  # noqa: F401 (fixtures)
from support.kube_emulator import CRD_PATH, EmulatedKubernetesAPI


@pytest.fixture
def kube() -> Iterator[EmulatedKubernetesAPI]:
    """The emulated Kubernetes API (kmock's emulator made realistic for kopf) serving the RetailPipeline
    CRD from the operator chart; ``KUBECONFIG`` points at it for the duration of the test."""
    if not CRD_PATH.exists():
        pytest.fail(f"{CRD_PATH} is missing: the emulated API serves the CRD from the operator chart")
    with EmulatedKubernetesAPI(CRD_PATH) as api:
        yield api
