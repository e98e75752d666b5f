"""The emulated Kubernetes API admits custom resources like an API server: prune, default, validate."""

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from support.kube_emulator import REPO_ROOT, EmulatedKubernetesAPI

WIDGET_CRD = """\
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: widgets.example.com}
spec:
  group: example.com
  scope: Namespaced
  names: {kind: Widget, plural: widgets, singular: widget}
  versions:
    - name: v1
      served: true
      storage: true
      subresources: {status: {}}
      schema:
        openAPIV3Schema:
          type: object
          required: [spec]
          properties:
            spec:
              type: object
              required: [size]
              properties:
                size: {type: integer, minimum: 1}
                color: {type: string, enum: [red, blue], default: red}
                parts:
                  type: array
                  items:
                    type: object
                    properties:
                      name: {type: string}
                      count: {type: integer, default: 1}
                extra:
                  type: object
                  x-kubernetes-preserve-unknown-fields: true
            status:
              type: object
              properties:
                phase: {type: string}
"""
WIDGETS = "/apis/example.com/v1/namespaces/default/widgets"


@pytest.fixture
def widgets(tmp_path: Path) -> Iterator[EmulatedKubernetesAPI]:
    path = tmp_path / "widgets.yaml"
    path.write_text(WIDGET_CRD)
    with EmulatedKubernetesAPI(path, set_env=False) as api:
        yield api


def create(api: EmulatedKubernetesAPI, spec: Any, name: str = "w") -> Any:
    return api.request("POST", WIDGETS, json={"apiVersion": "example.com/v1", "kind": "Widget",
                                              "metadata": {"name": name}, "spec": spec})


def test_unknown_fields_are_pruned_and_defaults_filled(widgets: EmulatedKubernetesAPI) -> None:
    resp = create(widgets, {"size": 2, "typo": True, "parts": [{"name": "bolt"}], "extra": {"free": {"form": 1}}})
    assert resp.status_code == 201
    assert resp.json()["spec"] == {"size": 2, "color": "red", "parts": [{"name": "bolt", "count": 1}],
                                   "extra": {"free": {"form": 1}}}
    assert widgets.request("GET", f"{WIDGETS}/w").json()["spec"] == resp.json()["spec"]


@pytest.mark.parametrize("spec", [{"size": 0}, {"size": "big"}, {"size": 1, "color": "green"}, {"color": "red"}])
def test_invalid_specs_are_refused_with_422(widgets: EmulatedKubernetesAPI, spec: dict[str, Any]) -> None:
    resp = create(widgets, spec)
    assert resp.status_code == 422
    assert resp.json()["reason"] == "Invalid" and 'Widget "w" is invalid' in resp.json()["message"]
    assert widgets.request("GET", f"{WIDGETS}/w").status_code == 404


def test_invalid_patches_are_refused_and_change_nothing(widgets: EmulatedKubernetesAPI) -> None:
    created = create(widgets, {"size": 2}).json()
    resp = widgets.request("PATCH", f"{WIDGETS}/w", json={"spec": {"size": -1}},
                           headers={"Content-Type": "application/merge-patch+json"})
    assert resp.status_code == 422
    assert widgets.request("GET", f"{WIDGETS}/w").json() == created


def test_status_writes_are_validated_too(widgets: EmulatedKubernetesAPI) -> None:
    create(widgets, {"size": 2})
    resp = widgets.request("PATCH", f"{WIDGETS}/w/status", json={"status": {"phase": 3}},
                           headers={"Content-Type": "application/merge-patch+json"})
    assert resp.status_code == 422
    ok = widgets.request("PATCH", f"{WIDGETS}/w/status", json={"status": {"phase": "Ready", "junk": 1}},
                         headers={"Content-Type": "application/merge-patch+json"})
    assert ok.status_code == 200 and ok.json()["status"] == {"phase": "Ready"}


def test_the_chart_crd_is_served(real_kube: EmulatedKubernetesAPI) -> None:
    resources = {r["name"]: r for r in real_kube.request("GET", "/apis/retailflow.io/v1alpha1").json()["resources"]}
    assert resources["retailpipelines"]["kind"] == "RetailPipeline"
    assert resources["retailpipelines"]["namespaced"] is True
    assert "rp" in resources["retailpipelines"]["shortNames"]
    assert "retailpipelines/status" in resources
    bad = real_kube.request("POST", real_kube.rp_path("default"), json={
        "apiVersion": "retailflow.io/v1alpha1", "kind": "RetailPipeline", "metadata": {"name": "bad"},
        "spec": "not-an-object"})
    assert bad.status_code == 422


@pytest.mark.parametrize("example", sorted((REPO_ROOT / "operator" / "examples").glob("*.yaml")), ids=lambda p: p.name)
def test_the_operator_examples_are_admitted(real_kube: EmulatedKubernetesAPI, example: Path) -> None:
    body = yaml.safe_load(example.read_text())
    stored = real_kube.apply_rp(body)
    assert stored["metadata"]["generation"] == 1

    def declared(sent: Any, kept: Any) -> None:  # everything the example sets survives admission
        if isinstance(sent, dict):
            for key, value in sent.items():
                assert key in kept, f"{example.name}: {key} was pruned"
                declared(value, kept[key])
        elif isinstance(sent, list):
            for a, b in zip(sent, kept, strict=True):
                declared(a, b)
        else:
            assert sent == kept

    declared(body["spec"], stored["spec"])
