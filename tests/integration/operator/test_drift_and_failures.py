"""Drift, Secret rotation, no-op resyncs and failures, with the real operator against the emulated
Kubernetes API, the Airbyte fake and a real Airflow API server."""

from __future__ import annotations

import base64
import json

from operator_runner import (
    CREDENTIALS_LABEL,
    DRIFT_PASS,
    NS,
    airflow_variable_writes,
    is_ready,
    make_pipeline,
    operator_run,
    owned_variables,
    phase_is,
    running_operator,
    wait_for,
    wait_for_event,
)
from support.kopf_log import kopf_object_log

__all__ = ["make_pipeline", "operator_run"]  # fixtures


def names(store: dict) -> list[str]:
    return sorted(r["name"] for r in store.values())


def condition(obj: dict, ctype: str) -> dict:
    return next(c for c in obj["status"]["conditions"] if c["type"] == ctype)


def test_out_of_band_changes_are_restored_by_the_timer(kube, airbyte, airflow, operator_run, make_pipeline):
    body = make_pipeline()
    prefix = body["spec"]["airflow"]["variablePrefix"]
    kube.apply_rp(body)
    st = kube.wait_rp(NS, "demo", is_ready, timeout=30)["status"]
    expected_names = names(airbyte.live("connections"))
    deleted = st["airbyte"]["connections"]["mysql-to-warehouse"]
    warehouse = st["airbyte"]["destinations"]["warehouse"]
    good_mysql = json.loads(airflow.get_variable(f"{prefix}mysql"))

    with airbyte._lock:  # as if someone used the Airbyte UI
        airbyte.delete_out_of_band("connections", deleted)
        airbyte.destinations[warehouse]["configuration"]["schema"] = "public"
    airflow.delete_variable(f"{prefix}lake")
    airflow.set_variable(f"{prefix}mysql", json.dumps({"host": "edited-by-hand"}))

    def restored() -> bool:
        return (
            names(airbyte.live("connections")) == expected_names
            and airbyte.destinations[warehouse]["configuration"]["schema"] == "raw"
            and airflow.get_variable(f"{prefix}lake") is not None
            and json.loads(airflow.get_variable(f"{prefix}mysql")) == good_mysql
        )

    wait_for(restored, timeout=20, message="the drift timer to restore Airbyte and Airflow")
    obj = kube.wait_rp(NS, "demo", lambda o: o["status"]["airbyte"]["connections"]["mysql-to-warehouse"] != deleted)
    new_id = obj["status"]["airbyte"]["connections"]["mysql-to-warehouse"]
    assert airbyte.connections[new_id]["name"] == f"rf/{NS}/demo/mysql-to-warehouse"
    wait_for_event(kube, "DriftCorrected")
    # the pass that repaired the drift showed Reconciling while it wrote; it must end Ready again
    kube.wait_rp(NS, "demo", lambda o: o["status"].get("phase") == "Ready", timeout=10)


def test_rotated_secret_content_is_applied(kube, airbyte, airflow, operator_run, make_pipeline):
    kube.apply_rp(make_pipeline())
    st = kube.wait_rp(NS, "demo", is_ready, timeout=30)["status"]
    warehouse = st["airbyte"]["destinations"]["warehouse"]
    airbyte.reset_writes()

    rotated = base64.b64encode(b"rotated-warehouse-password").decode()
    res = kube.request(
        "PATCH",
        f"/api/v1/namespaces/{NS}/secrets/warehouse",
        data=json.dumps({"data": {"password": rotated}}),
        headers={"Content-Type": "application/merge-patch+json"},
    )
    assert res.status_code == 200, res.text

    wait_for(
        lambda: airbyte.destinations[warehouse]["configuration"]["password"] == "rotated-warehouse-password",
        timeout=20,
        message="the rotated password to reach Airbyte",
    )
    assert airbyte.writes == [("PATCH", f"/destinations/{warehouse}")]
    obj = kube.wait_rp(NS, "demo", lambda o: o["status"]["secretHashes"] != st["secretHashes"])
    assert "rotated-warehouse-password" not in json.dumps(obj)


def test_a_resync_with_nothing_changed_makes_no_writes(kube, airbyte, airflow, make_pipeline):
    body = make_pipeline()
    with kopf_object_log() as kopf_log, running_operator():
        kube.apply_rp(body)
        first = kube.wait_rp(NS, "demo", is_ready, timeout=30)
        airbyte.reset_writes()
        airflow_writes = airflow_variable_writes(airflow)
        kopf_log.wait(DRIFT_PASS, times=2)
    assert airbyte.writes == []
    assert airflow_variable_writes(airflow) == airflow_writes

    with running_operator():  # a restart: kopf resumes the pipeline and reconciles it again
        kube.wait_rp(
            NS, "demo", lambda o: o["status"]["lastReconciledAt"] != first["status"]["lastReconciledAt"], timeout=30
        )
    assert airbyte.writes == []
    assert airflow_variable_writes(airflow) == airflow_writes
    assert len(airbyte.live("connections")) == 4


def test_airbyte_down_degrades_then_recovers_without_duplicates(kube, airbyte, airflow, operator_run, make_pipeline):
    airbyte.down = True
    kube.apply_rp(make_pipeline())
    obj = kube.wait_rp(NS, "demo", phase_is("Degraded"), timeout=30)
    assert condition(obj, "Ready")["reason"] == "AirbyteUnavailable"
    assert "503" in condition(obj, "AirbyteSynced")["message"]
    wait_for_event(kube, "AirbyteUnavailable")  # posted from kopf's queue, after the status patch seen above
    warnings = [e for e in kube.events(NS) if e.get("type") == "Warning"]
    assert "AirbyteUnavailable" in {e.get("reason") for e in warnings}

    airbyte.down = False
    kube.wait_rp(NS, "demo", is_ready, timeout=30)
    assert len(airbyte.live("sources")) == 2 and len(airbyte.live("destinations")) == 2
    assert len(set(names(airbyte.live("connections")))) == len(airbyte.live("connections")) == 4


def test_503_in_the_middle_of_a_pass_is_retried_without_duplicates(kube, airbyte, airflow, operator_run, make_pipeline):
    kube.apply_rp(make_pipeline())
    kube.wait_rp(NS, "demo", is_ready, timeout=30)
    with kopf_object_log() as kopf_log:
        with airbyte._lock:  # several resources missing at once, then Airbyte fails part-way through restoring them
            [airbyte.delete_out_of_band("connections", c) for c in list(airbyte.live("connections"))]
        airbyte.fail_next(6)
        wait_for(lambda: len(airbyte.live("connections")) == 4, timeout=20, message="connections restored")
        kopf_log.wait(DRIFT_PASS, times=2)  # the passes after the restoring one find nothing more to create
    assert len(set(names(airbyte.live("connections")))) == len(airbyte.live("connections")) == 4
    kube.wait_rp(NS, "demo", is_ready, timeout=20)


def test_missing_secret_fails_with_the_fix_then_heals(kube, airbyte, airflow, operator_run, make_pipeline):
    body = make_pipeline()
    body["spec"]["warehouse"]["credentialsSecretRef"]["name"] = "warehouse-late"
    kube.apply_rp(body)
    obj = kube.wait_rp(NS, "demo", phase_is("Failed"), timeout=30)
    message = condition(obj, "Ready")["message"]
    assert condition(obj, "Ready")["reason"] == "SecretNotFound"
    assert f"Secret {NS}/warehouse-late" in message and "kubectl" in message
    # the fix it gives keeps the values off kubectl's command line, and names the keys and the label
    assert "--from-env-file=/dev/stdin" in message and "--from-literal=" not in message, message
    assert "username=..., password=..." in message and "retailflow.io/credentials=true" in message, message
    assert airbyte.writes == []

    kube.create_secret(NS, "warehouse-late", {"username": "warehouse", "password": "late-password"}, CREDENTIALS_LABEL)
    kube.wait_rp(NS, "demo", is_ready, timeout=30)
    assert len(airbyte.live("connections")) == 4
    # the timer's pass applied this spec for the first time: that is a reconcile, not a drift repaired
    wait_for_event(kube, "Reconciled")
    assert "DriftCorrected" not in {e.get("reason") for e in kube.events(NS)}


def test_unknown_stream_is_refused_at_admission_naming_it(kube, airbyte, airflow, operator_run, make_pipeline):
    body = make_pipeline()
    body["spec"]["mysql"]["streams"].append({"name": "invoices"})
    resp = kube.post_rp(body)
    assert resp.status_code == 422 and "invoices" in resp.json()["message"]
    assert kube.get_rp(NS, "demo") is None
    assert airbyte.calls == [] and owned_variables(airflow, body["spec"]["airflow"]["variablePrefix"]) == {}
