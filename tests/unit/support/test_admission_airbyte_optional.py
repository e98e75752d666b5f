"""Admission of a RetailPipeline without ``spec.airbyte``: allowed with ``engine: direct`` (the lite
profile installs no Airbyte), refused with ``engine: airbyte``, saying what to change. Evaluated by the
emulated API server (a stand-in: ``support.kube_emulator``, CEL by cel-python) on the operator
chart's CRD."""

from __future__ import annotations

import copy
from typing import Any

import pytest
import yaml

from support.kube_emulator import CRD_PATH, REPO_ROOT, EmulatedKubernetesAPI

EXAMPLE = REPO_ROOT / "operator" / "examples" / "retailpipeline.yaml"


def example() -> dict[str, Any]:
    docs = [d for d in yaml.safe_load_all(EXAMPLE.read_text()) if d]
    return copy.deepcopy(next(d for d in docs if d.get("kind") == "RetailPipeline"))


@pytest.fixture(scope="module")
def kube() -> Any:
    """The emulated Kubernetes API serving the operator chart's CRD."""
    with EmulatedKubernetesAPI(CRD_PATH, set_env=False) as api:
        yield api


def without_airbyte(name: str, engine: str | None) -> dict[str, Any]:
    body = example()
    del body["spec"]["airbyte"]
    body["spec"].pop("engine", None)
    if engine:
        body["spec"]["engine"] = engine
    body["metadata"] = {"name": name, "namespace": "admission"}
    return body


def test_engine_direct_needs_no_airbyte_block(kube: EmulatedKubernetesAPI) -> None:
    resp = kube.post_rp(without_airbyte("direct-no-airbyte", "direct"))
    assert resp.status_code == 201, resp.text
    assert "airbyte" not in kube.get_rp("admission", "direct-no-airbyte")["spec"]


@pytest.mark.parametrize("engine", ["airbyte", None], ids=["engine-airbyte", "engine-defaulted"])
def test_engine_airbyte_without_an_airbyte_block_is_refused(kube: EmulatedKubernetesAPI, engine: str | None) -> None:
    body = without_airbyte(f"no-airbyte-{engine or 'default'}", engine)
    body["spec"]["schedule"] = "0 2 1 * 1"  # both day fields: the Quartz rule reads spec.airbyte too
    resp = kube.post_rp(body)
    assert resp.status_code == 422, resp.text
    message = resp.json()["message"]
    assert "engine airbyte needs spec.airbyte" in message, message
    # one cause only: the syncTrigger rules must not fail on the missing block too
    assert message.count("Invalid value") == 1, message
