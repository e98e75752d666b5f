"""The RetailFlow operator's lifecycle scenarios, with the real operator (kopf) running against the
emulated Kubernetes API, the Airbyte fake and a real Airflow API server."""

from __future__ import annotations

import json

import pytest
from operator_runner import (
    DRIFT_PASS,
    NS,
    PROJECT_STREAMS,
    is_ready,
    make_pipeline,
    operator_run,
    owned_variables,
    phase_is,
    wait_for_event,
)
from support.kopf_log import kopf_object_log

__all__ = ["make_pipeline", "operator_run"]  # fixtures


def test_create_becomes_ready_with_the_connections_and_variables(kube, airbyte, airflow, operator_run, make_pipeline):
    body = make_pipeline()
    kube.apply_rp(body)
    st = kube.wait_rp(NS, "demo", is_ready, timeout=30)["status"]

    assert st["connectionCount"] == 4
    assert sorted(st["airbyte"]["connections"].values()) == sorted(airbyte.live("connections"))
    assert sorted(st["airbyte"]["sources"].values()) == sorted(airbyte.live("sources"))
    assert sorted(st["airbyte"]["destinations"].values()) == sorted(airbyte.live("destinations"))
    conn = airbyte.connections[st["airbyte"]["connections"]["mysql-to-warehouse"]]
    assert conn["sourceId"] == st["airbyte"]["sources"]["mysql"]
    assert conn["destinationId"] == st["airbyte"]["destinations"]["warehouse"]
    streams = {s["name"]: s for s in conn["configurations"]["streams"]}
    assert set(streams) == set(PROJECT_STREAMS)
    for name, pk in PROJECT_STREAMS.items():
        assert streams[name]["syncMode"] == "incremental_deduped_history"
        assert streams[name]["cursorField"] == ["updated_at"]
        assert streams[name]["primaryKey"] == [[pk]]
    warehouse = airbyte.destinations[st["airbyte"]["destinations"]["warehouse"]]["configuration"]
    assert warehouse["schema"] == "raw"
    assert warehouse["password"] not in ("", "**********")  # the Secret's value reached Airbyte

    prefix = body["spec"]["airflow"]["variablePrefix"]
    variables = owned_variables(airflow, prefix)
    assert sorted(variables) == sorted(st["airflowVariables"])
    assert json.loads(variables[f"{prefix}airbyte"])["connections"] == st["airbyte"]["connections"]
    ready = next(c for c in st["conditions"] if c["type"] == "Ready")
    assert ready["status"] == "True"
    wait_for_event(kube, "Reconciled")


def test_spec_change_patches_in_place_without_duplicates(kube, airbyte, airflow, operator_run, make_pipeline):
    body = make_pipeline()
    kube.apply_rp(body)
    before = kube.wait_rp(NS, "demo", is_ready, timeout=30)["status"]["airbyte"]
    airbyte.reset_writes()

    three = [s for s in body["spec"]["mysql"]["streams"] if s["name"] != "products"]
    kube.patch_rp(NS, "demo", {"spec": {"warehouse": {"schema": "raw_v2"}, "mysql": {"streams": three}}})
    obj = kube.wait_rp(NS, "demo", lambda o: is_ready(o) and o["status"]["observedGeneration"] == 2, timeout=30)

    assert obj["status"]["airbyte"] == before
    assert (len(airbyte.live("sources")), len(airbyte.live("destinations")), len(airbyte.live("connections"))) == (2, 2, 4)
    assert {m for m, _ in airbyte.writes} == {"PATCH"}
    assert airbyte.destinations[before["destinations"]["warehouse"]]["configuration"]["schema"] == "raw_v2"
    for role in ("mysql-to-warehouse", "mysql-to-lake"):
        names = {s["name"] for s in airbyte.connections[before["connections"][role]]["configurations"]["streams"]}
        assert names == {"customers", "orders", "order_items"}
    prefix = body["spec"]["airflow"]["variablePrefix"]
    assert json.loads(airflow.get_variable(f"{prefix}warehouse"))["schema"] == "raw_v2"


@pytest.mark.parametrize("policy", ["Delete", "Retain"])
def test_delete_honours_the_deletion_policy(kube, airbyte, airflow, operator_run, make_pipeline, policy):
    body = make_pipeline(deletionPolicy=policy)
    prefix = body["spec"]["airflow"]["variablePrefix"]
    kube.apply_rp(body)
    kube.wait_rp(NS, "demo", is_ready, timeout=30)
    assert len(owned_variables(airflow, prefix)) == 6

    kube.delete_rp(NS, "demo")
    kube.wait_rp_gone(NS, "demo", timeout=30)

    counts = (len(airbyte.live("sources")), len(airbyte.live("destinations")), len(airbyte.live("connections")))
    if policy == "Delete":
        assert counts == (0, 0, 0)
        assert owned_variables(airflow, prefix) == {}
    else:
        assert counts == (2, 2, 4)
        assert len(owned_variables(airflow, prefix)) == 6


def test_suspended_pipeline_makes_no_external_writes(kube, airbyte, airflow, operator_run, make_pipeline):
    body = make_pipeline(suspend=True)
    prefix = body["spec"]["airflow"]["variablePrefix"]
    kube.apply_rp(body)
    kube.wait_rp(NS, "demo", phase_is("Suspended"), timeout=30)
    kube.patch_rp(NS, "demo", {"spec": {"warehouse": {"schema": "elsewhere"}}})
    with kopf_object_log() as kopf_log:
        kube.wait_rp(NS, "demo", lambda o: o["status"].get("observedGeneration") == 2, timeout=30)
        kopf_log.wait(DRIFT_PASS, times=2)
    assert airbyte.writes == []
    assert owned_variables(airflow, prefix) == {}

    kube.patch_rp(NS, "demo", {"spec": {"suspend": False}})
    kube.wait_rp(NS, "demo", is_ready, timeout=30)
    assert len(airbyte.live("connections")) == 4
    assert json.loads(airflow.get_variable(f"{prefix}warehouse"))["schema"] == "elsewhere"


def test_plan_mode_reports_changes_and_applies_nothing(kube, airbyte, airflow, operator_run, make_pipeline):
    body = make_pipeline()
    body["metadata"]["annotations"] = {"retailflow.io/plan": "true"}
    prefix = body["spec"]["airflow"]["variablePrefix"]
    kube.apply_rp(body)
    obj = kube.wait_rp(NS, "demo", lambda o: (o.get("status") or {}).get("plan"), timeout=30)

    assert obj["status"]["phase"] == "Pending"
    plan = obj["status"]["plan"]["changes"]
    creates = sorted((c["target"], c["name"].rsplit("/", 1)[1]) for c in plan if c["action"] == "create")
    assert creates == sorted(
        [("source", "mysql"), ("source", "store-locations"), ("destination", "warehouse"), ("destination", "lake")]
        + [
            ("connection", r)
            for r in ("mysql-to-warehouse", "mysql-to-lake", "store-locations-to-warehouse", "store-locations-to-lake")
        ]
    )
    upserts = {c["name"] for c in plan if c["target"] == "variable" and c["action"] == "upsert"}
    assert len(upserts - {"retailpipelines"}) == 6 and "retailpipelines" in upserts  # and its registry entry
    assert airbyte.writes == []
    assert owned_variables(airflow, prefix) == {}

    kube.patch_rp(NS, "demo", {"metadata": {"annotations": {"retailflow.io/plan": None}}})
    obj = kube.wait_rp(NS, "demo", lambda o: is_ready(o) and not o["status"].get("plan"), timeout=30)
    assert len(airbyte.live("connections")) == 4 and len(owned_variables(airflow, prefix)) == 6

    airbyte.reset_writes()
    kube.patch_rp(
        NS, "demo", {"metadata": {"annotations": {"retailflow.io/plan": "true"}}, "spec": {"lake": {"format": "jsonl"}}}
    )
    obj = kube.wait_rp(NS, "demo", lambda o: (o["status"].get("plan") or {}).get("generation") == 2, timeout=30)
    changes = {(c["action"], c["target"], c["name"].rsplit("/", 1)[-1]) for c in obj["status"]["plan"]["changes"]}
    assert changes == {("patch", "destination", "lake"), ("upsert", "variable", f"{prefix}lake")}
    assert airbyte.writes == []
    lake_id = obj["status"]["airbyte"]["destinations"]["lake"]
    assert airbyte.destinations[lake_id]["configuration"]["format"]["format_type"] == "Parquet"


def test_every_pipeline_is_listed_for_the_schedules_until_it_is_deleted(kube, airbyte, airflow, operator_run,
                                                                        make_pipeline):
    """The ``retailpipelines`` variable (what ``retail_pipeline_schedules`` reads) names each pipeline's
    prefix, so a second RetailPipeline is scheduled without touching Airflow's environment."""
    a, b = make_pipeline("shop-a"), make_pipeline("shop-b")
    kube.apply_rp(a)
    kube.apply_rp(b)
    kube.wait_rp(NS, "shop-a", is_ready, timeout=30)
    kube.wait_rp(NS, "shop-b", is_ready, timeout=30)
    registry = json.loads(airflow.get_variable("retailpipelines"))
    mine = {p: o for p, o in registry.items() if o in (f"{NS}/shop-a", f"{NS}/shop-b")}
    assert mine == {a["spec"]["airflow"]["variablePrefix"]: f"{NS}/shop-a",
                    b["spec"]["airflow"]["variablePrefix"]: f"{NS}/shop-b"}

    kube.delete_rp(NS, "shop-a")
    kube.wait_rp_gone(NS, "shop-a", timeout=30)
    registry = json.loads(airflow.get_variable("retailpipelines"))
    assert f"{NS}/shop-a" not in registry.values()
    assert registry[b["spec"]["airflow"]["variablePrefix"]] == f"{NS}/shop-b"
