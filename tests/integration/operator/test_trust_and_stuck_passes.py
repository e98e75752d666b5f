"""The Secrets trust model, passes that can never stay stuck, and no secret in what users read: the real
operator against the emulated Kubernetes API, the Airbyte fake and a real Airflow API server."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from operator_runner import (
    CREDENTIALS_LABEL,
    NS,
    is_ready,
    make_pipeline,
    operator_run,
    phase_is,
    wait_for,
    wait_for_event,
)

__all__ = ["make_pipeline", "operator_run"]  # fixtures

ROOT = Path(__file__).resolve().parents[3]


def condition(obj: dict, ctype: str) -> dict:
    return next(c for c in obj["status"]["conditions"] if c["type"] == ctype)


def never_reconciling(kube, name: str = "demo", seconds: float = 1.5) -> dict:
    """The phase stays out of Reconciling for ``seconds`` (passes keep running on the 1 s timer)."""
    deadline = time.monotonic() + seconds
    obj = kube.get_rp(NS, name)
    while time.monotonic() < deadline:
        obj = kube.get_rp(NS, name)
        assert obj["status"]["phase"] != "Reconciling", obj["status"]
        time.sleep(0.05)
    return obj


def secret_values(kube) -> set[str]:
    import base64

    out = set()
    for name in ("mysql", "warehouse", "lake", "airbyte", "airflow"):
        data = kube.request("GET", f"/api/v1/namespaces/{NS}/secrets/{name}").json().get("data") or {}
        out |= {base64.b64decode(v).decode() for k, v in data.items() if "assword" in k or "ecret" in k}
    return out


def test_an_unlabelled_secret_is_not_read(kube, airbyte, airflow, operator_run, make_pipeline):
    kube.create_secret(NS, "warehouse-plain", {"username": "warehouse", "password": "unlabelled-pw"})
    body = make_pipeline()
    body["spec"]["warehouse"]["credentialsSecretRef"]["name"] = "warehouse-plain"
    kube.apply_rp(body)
    obj = kube.wait_rp(NS, "demo", phase_is("Failed"), timeout=30)
    ready = condition(obj, "Ready")
    assert ready["reason"] == "SecretNotLabelled"
    assert "kubectl -n retail label secret warehouse-plain retailflow.io/credentials=true" in ready["message"]
    assert airbyte.calls == []  # nothing was sent anywhere, not even a token request

    res = kube.request("PATCH", f"/api/v1/namespaces/{NS}/secrets/warehouse-plain",
                       data=json.dumps({"metadata": {"labels": CREDENTIALS_LABEL}}),
                       headers={"Content-Type": "application/merge-patch+json"})
    assert res.status_code == 200 and res.json()["metadata"]["labels"] == CREDENTIALS_LABEL, res.text
    kube.wait_rp(NS, "demo", is_ready, timeout=30)


def test_credentials_are_never_sent_to_a_host_the_operator_does_not_allow(kube, airbyte, airflow, operator_run,
                                                                         make_pipeline):
    body = make_pipeline()
    body["spec"]["airflow"]["apiUrl"] = "http://collector.example.net:8080"
    body["spec"]["mysql"]["host"] = "db.example.net"
    kube.apply_rp(body)
    obj = kube.wait_rp(NS, "demo", phase_is("Failed"), timeout=30)
    ready = condition(obj, "Ready")
    assert ready["reason"] == "HostNotAllowed"
    assert "spec.airflow.apiUrl (collector.example.net)" in ready["message"]
    assert "spec.mysql.host (db.example.net)" in ready["message"]
    assert airbyte.calls == []


def test_a_secret_that_is_not_utf8_fails_and_is_never_left_reconciling(kube, airbyte, airflow, operator_run,
                                                                      make_pipeline):
    kube.create_secret(NS, "mysql-binary", {"username": "retail", "password": b"\xff\xfe\x00binary"}, CREDENTIALS_LABEL)
    body = make_pipeline()
    body["spec"]["mysql"]["credentialsSecretRef"]["name"] = "mysql-binary"
    kube.apply_rp(body)
    obj = kube.wait_rp(NS, "demo", phase_is("Failed"), timeout=30)
    assert condition(obj, "Ready")["reason"] == "SecretNotText"
    wait_for_event(kube, "SecretNotText")
    never_reconciling(kube)


def test_an_unexpected_error_in_a_pass_degrades_with_a_condition_and_an_event(kube, airbyte, airflow, operator_run,
                                                                             make_pipeline):
    kube.apply_rp(make_pipeline())
    kube.wait_rp(NS, "demo", is_ready, timeout=30)
    original = airbyte._connection_view

    def odd(connection: dict) -> dict:  # an answer of a shape no Airbyte version has
        return original(connection) | {"schedule": "manual"}

    airbyte._connection_view = odd
    try:
        obj = kube.wait_rp(NS, "demo", phase_is("Degraded"), timeout=30)
        ready = condition(obj, "Ready")
        assert ready["reason"] == "InternalError" and "unexpected" in ready["message"]
        wait_for_event(kube, "InternalError")
        never_reconciling(kube)
    finally:
        airbyte._connection_view = original
    kube.wait_rp(NS, "demo", phase_is("Ready"), timeout=30)


def test_no_secret_value_reaches_status_events_or_conditions(kube, airbyte, airflow, operator_run, make_pipeline):
    body = make_pipeline()
    kube.apply_rp(body)
    kube.wait_rp(NS, "demo", is_ready, timeout=30)
    values = secret_values(kube)
    # An error whose text echoes a password (as a validation message could): it reaches the condition
    # and an Event, redacted.
    # every pass fails until the test has seen it (one failure gave a Failed phase for about a second,
    # until the next drift pass: a poll that missed it waited for Failed on a Ready object)
    airbyte.fail_on("GET", "/sources", 422, times=10**6, detail=f"$.password: {sorted(values)[0]} is not valid")
    failed = kube.wait_rp(NS, "demo", phase_is("Failed"), timeout=30)
    assert "<redacted>" in condition(failed, "Ready")["message"]
    airbyte.clear_failures()
    kube.wait_rp(NS, "demo", is_ready, timeout=30)
    seen = json.dumps(kube.get_rp(NS, "demo")) + json.dumps(kube.events(NS))
    assert values and not [v for v in values if v in seen]


def test_no_secret_value_reaches_the_events_of_a_deletion(kube, airbyte, airflow, operator_run, make_pipeline):
    """The finalizer's errors reach Warning Events too (the cleanup waits, then gives up), and kopf's own
    Events of the handler's failures: an Airbyte answer that echoes a password is redacted there."""
    kube.apply_rp(make_pipeline())
    kube.wait_rp(NS, "demo", is_ready, timeout=30)
    values = secret_values(kube)
    echo = f"$.password: {sorted(values)[0]} is not valid"
    airbyte.fail_on("DELETE", "/connections", 503, detail=echo)  # retried: "cleanup waits"
    airbyte.fail_on("DELETE", "/connections", 422, detail=echo)  # then refused: the cleanup gives up
    kube.delete_rp(NS, "demo")
    kube.wait_rp_gone(NS, "demo", timeout=30)
    wait_for_event(kube, "CleanupFailed")
    events = kube.events(NS)
    assert {"AirbyteUnavailable", "CleanupFailed"} <= {e.get("reason") for e in events}
    assert "<redacted>" in next(e["message"] for e in events if e.get("reason") == "CleanupFailed")
    assert values and not [v for v in values if v in json.dumps(events)]


def test_without_a_reachable_cluster_the_operator_says_so_in_one_line_and_exits(tmp_path):
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        "apiVersion: v1\nkind: Config\ncurrent-context: c\n"
        "clusters: [{name: c, cluster: {server: 'http://127.0.0.1:9'}}]\n"
        "users: [{name: u, user: {token: t}}]\ncontexts: [{name: c, context: {cluster: c, user: u}}]\n"
    )
    key = tmp_path / "key"
    key.write_text("k" * 32)
    env = os.environ | {"KUBECONFIG": str(kubeconfig), "RETAILFLOW_HMAC_KEY_FILE": str(key)}
    proc = subprocess.run(
        [sys.executable, "-m", "kopf", "run", "--standalone", "-A", "-m", "retailflow_operator"],
        env=env, capture_output=True, text=True, timeout=120, cwd=ROOT,
    )
    lines = [line for line in (proc.stdout + proc.stderr).splitlines() if line.strip()]
    assert proc.returncode != 0
    assert len(lines) == 1, lines
    assert str(kubeconfig) in lines[0] and "127.0.0.1:9" in lines[0]
