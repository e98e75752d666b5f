"""A field the operator does not know reaches it when the installed CRD keeps unknown fields (a CRD newer
than the operator, or one edited by hand): the operator names it in the KnownFields condition."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import yaml

from operator_runner import NS, is_ready, make_pipeline, operator_run
from support.kube_emulator import CRD_PATH, EmulatedKubernetesAPI

__all__ = ["make_pipeline", "operator_run"]  # fixtures


@pytest.fixture
def kube(tmp_path) -> Iterator[EmulatedKubernetesAPI]:
    """The emulated Kubernetes API serving the chart's CRD with ``spec`` preserving unknown fields."""
    crd = yaml.safe_load(CRD_PATH.read_text())
    crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"][
        "x-kubernetes-preserve-unknown-fields"] = True
    path = tmp_path / "crd.yaml"
    path.write_text(yaml.safe_dump(crd))
    with EmulatedKubernetesAPI(path) as api:
        yield api


def test_a_typo_in_a_key_is_reported_as_a_condition(kube, airbyte, airflow, operator_run, make_pipeline):
    body = make_pipeline()
    body["spec"]["deletionPolicyy"] = "Retain"
    kube.apply_rp(body)
    obj = kube.wait_rp(NS, "demo", is_ready, timeout=60)
    known = next(c for c in obj["status"]["conditions"] if c["type"] == "KnownFields")
    assert known["status"] == "False" and known["reason"] == "UnknownFields"
    assert "spec.deletionPolicyy" in known["message"]

    kube.patch_rp(NS, "demo", {"spec": {"deletionPolicyy": None, "deletionPolicy": "Retain"}})
    kube.wait_rp(NS, "demo", lambda o: next(c for c in o["status"]["conditions"] if c["type"] == "KnownFields")[
        "status"] == "True", timeout=60)
