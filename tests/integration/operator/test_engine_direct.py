"""Engine direct without Airbyte: what the lite profile runs (no Airbyte in the release, so no
``spec.airbyte``, no ``airbyte-auth-secrets`` and no Airbyte API), and the switch from engine airbyte.

The real operator (kopf) runs against the emulated Kubernetes API, a real Airflow API server and the
Airbyte fake (stand-ins: see ``conftest.py``); the fake records every call made to it.
"""

from __future__ import annotations

import json

from operator_runner import NS, is_ready, make_pipeline, operator_run, owned_variables

__all__ = ["make_pipeline", "operator_run"]  # fixtures


def condition(obj: dict, kind: str) -> dict:
    return next(c for c in obj["status"]["conditions"] if c["type"] == kind)


def drop_airbyte_secret(kube) -> None:
    """No Airbyte in the release: the Secret its bootloader would write does not exist."""
    resp = kube.request("DELETE", f"/api/v1/namespaces/{NS}/secrets/airbyte")
    assert resp.status_code == 200, resp.text


def at_generation(generation: int):
    return lambda o: is_ready(o) and o["status"]["observedGeneration"] == generation


def test_engine_direct_without_airbyte_is_ready_and_writes_the_variables(kube, airbyte, airflow, operator_run,
                                                                       make_pipeline):
    body = make_pipeline(engine="direct")
    del body["spec"]["airbyte"]
    drop_airbyte_secret(kube)
    prefix = body["spec"]["airflow"]["variablePrefix"]
    kube.apply_rp(body)
    obj = kube.wait_rp(NS, "demo", is_ready, timeout=30)

    variables = owned_variables(airflow, prefix)
    assert sorted(variables) == sorted(f"{prefix}{v}" for v in ("pipeline", "mysql", "warehouse", "lake",
                                                                "store_locations"))
    assert sorted(obj["status"]["airflowVariables"]) == sorted(variables)
    assert json.loads(variables[f"{prefix}pipeline"])["engine"] == "direct"
    assert obj["status"]["connectionCount"] == 0
    assert condition(obj, "AirbyteSynced")["status"] == "True"
    assert airbyte.calls == [], "the operator called Airbyte for a pipeline without spec.airbyte"

    kube.patch_rp(NS, "demo", {"spec": {"schedule": "0 3 * * *"}})
    kube.wait_rp(NS, "demo", at_generation(2), timeout=30)
    assert json.loads(airflow.get_variable(f"{prefix}pipeline"))["schedule"] == "0 3 * * *"

    kube.delete_rp(NS, "demo")
    kube.wait_rp_gone(NS, "demo", timeout=30)
    assert owned_variables(airflow, prefix) == {}
    assert airbyte.calls == []


def test_engine_direct_needs_only_the_airflow_secret(kube, airbyte, airflow, operator_run, make_pipeline):
    """With engine direct the MySQL, warehouse and lake credentials go to no Airbyte: the operator reads
    only Airflow's Secret, so a namespace without the others (the lite profile grants it no other)
    reconciles, and the deletion pass needs none of them either."""
    for name in ("mysql", "warehouse", "lake", "airbyte"):
        resp = kube.request("DELETE", f"/api/v1/namespaces/{NS}/secrets/{name}")
        assert resp.status_code == 200, resp.text
    assert [s["metadata"]["name"] for s in kube.request("GET", f"/api/v1/namespaces/{NS}/secrets").json()["items"]] \
        == ["airflow"]
    body = make_pipeline(engine="direct")
    del body["spec"]["airbyte"]
    prefix = body["spec"]["airflow"]["variablePrefix"]
    kube.apply_rp(body)
    obj = kube.wait_rp(NS, "demo", lambda o: (o.get("status") or {}).get("phase") in ("Ready", "Failed"), timeout=30)
    assert obj["status"]["phase"] == "Ready", obj["status"]
    assert json.loads(owned_variables(airflow, prefix)[f"{prefix}pipeline"])["engine"] == "direct"
    assert airbyte.calls == []

    kube.delete_rp(NS, "demo")
    kube.wait_rp_gone(NS, "demo", timeout=30)
    assert owned_variables(airflow, prefix) == {}


def test_a_switch_from_airbyte_to_direct_removes_what_it_owned_then_leaves_airbyte_alone(
        kube, airbyte, airflow, operator_run, make_pipeline):
    body = make_pipeline()
    prefix = body["spec"]["airflow"]["variablePrefix"]
    kube.apply_rp(body)
    assert kube.wait_rp(NS, "demo", is_ready, timeout=30)["status"]["connectionCount"] == 4

    kube.patch_rp(NS, "demo", {"spec": {"engine": "direct"}})
    obj = kube.wait_rp(NS, "demo", at_generation(2), timeout=30)
    assert (airbyte.live("sources"), airbyte.live("destinations"), airbyte.live("connections")) == ({}, {}, {})
    assert obj["status"]["connectionCount"] == 0
    assert not any((obj["status"].get("airbyte") or {}).values())
    assert f"{prefix}airbyte" not in owned_variables(airflow, prefix)

    # Nothing left in Airbyte: the block and the Secret can go, and Airbyte is never called again.
    drop_airbyte_secret(kube)
    calls = len(airbyte.calls)
    kube.patch_rp(NS, "demo", {"spec": {"airbyte": None, "schedule": "0 4 * * *"}})
    obj = kube.wait_rp(NS, "demo", at_generation(3), timeout=30)
    assert "airbyte" not in obj["spec"]
    assert json.loads(airflow.get_variable(f"{prefix}pipeline"))["schedule"] == "0 4 * * *"
    assert airbyte.calls[calls:] == []


def test_removing_the_airbyte_block_too_early_is_reported_and_undone_by_adding_it_back(
        kube, airbyte, airflow, operator_run, make_pipeline):
    body = make_pipeline()
    kube.apply_rp(body)
    owned = kube.wait_rp(NS, "demo", is_ready, timeout=30)["status"]["airbyte"]

    # engine direct and no spec.airbyte in one step: the operator has no Airbyte to remove them from
    kube.patch_rp(NS, "demo", {"spec": {"engine": "direct", "airbyte": None}})
    obj = kube.wait_rp(NS, "demo", at_generation(2), timeout=30)
    left = condition(obj, "AirbyteSynced")
    assert (left["status"], left["reason"]) == ("False", "AirbyteResourcesLeft")
    assert "add spec.airbyte back" in left["message"]
    assert obj["status"]["airbyte"] == owned  # kept, so that they can still be removed
    assert len(airbyte.live("connections")) == 4

    kube.patch_rp(NS, "demo", {"spec": {"airbyte": body["spec"]["airbyte"]}})
    obj = kube.wait_rp(NS, "demo", at_generation(3), timeout=30)
    assert (airbyte.live("sources"), airbyte.live("destinations"), airbyte.live("connections")) == ({}, {}, {})
    assert condition(obj, "AirbyteSynced")["status"] == "True"
    assert not any((obj["status"].get("airbyte") or {}).values())
