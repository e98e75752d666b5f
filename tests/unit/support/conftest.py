"""Fixtures for the tests of the stand-ins themselves (the Airbyte fake, the emulated Kubernetes API)."""

from collections.abc import Iterator
from pathlib import Path

import pytest
from airbyte_api import AirbyteAPI, models

from support.airbyte_fake import AirbyteFake
from support.kube_emulator import CRD_PATH, EmulatedKubernetesAPI

# A schema-free CRD of the same names: the emulator's object mechanics are tested without depending
# on the operator's schema; tests/unit/support/test_real_crd.py covers the chart's CRD.
MINIMAL_CRD = """\
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: retailpipelines.retailflow.io
spec:
  group: retailflow.io
  scope: Namespaced
  names: {kind: RetailPipeline, plural: retailpipelines, singular: retailpipeline, shortNames: [rp]}
  versions:
    - name: v1alpha1
      served: true
      storage: true
      subresources: {status: {}}
      schema:
        openAPIV3Schema: {type: object, x-kubernetes-preserve-unknown-fields: true}
"""


@pytest.fixture(scope="session")
def crd_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A schema-free RetailPipeline CRD (any spec is accepted)."""
    path = tmp_path_factory.mktemp("crd") / "retailpipelines.yaml"
    path.write_text(MINIMAL_CRD)
    return path


@pytest.fixture
def kube(crd_path: Path) -> Iterator[EmulatedKubernetesAPI]:
    """The emulated Kubernetes API serving a schema-free RetailPipeline CRD."""
    with EmulatedKubernetesAPI(crd_path) as api:
        yield api


@pytest.fixture
def real_kube() -> Iterator[EmulatedKubernetesAPI]:
    """The emulated Kubernetes API serving the operator chart's RetailPipeline CRD."""
    if not CRD_PATH.exists():
        pytest.fail(f"{CRD_PATH} is missing: the operator chart's CRD is the single source of truth")
    with EmulatedKubernetesAPI(CRD_PATH) as api:
        yield api


@pytest.fixture
def airbyte() -> Iterator[AirbyteFake]:
    """The Airbyte fake, fresh per test."""
    with AirbyteFake() as fake:
        yield fake


@pytest.fixture
def sdk(airbyte: AirbyteFake) -> AirbyteAPI:
    """The real airbyte-api SDK client, configured against the Airbyte fake."""
    return AirbyteAPI(
        server_url=airbyte.server_url,
        security=models.Security(client_credentials=models.SchemeClientCredentials(
            client_id=airbyte.client_id, client_secret=airbyte.client_secret, token_url=airbyte.token_url,
        )),
    )
