"""Real kopf against the emulated Kubernetes API: handlers fire exactly once, finalizers and status work.

The operator here is a minimal probe (``support/kopf_probe.py``), not the RetailFlow operator: this
proves the stand-in, so that operator scenarios failing on it point at the operator.
"""

import time
from pathlib import Path

import kopf.testing

from support import kopf_probe
from support.kube_emulator import EmulatedKubernetesAPI

NS = "shop"
FINALIZER = "retailflow.io/probe-finalizer"


def test_kopf_runs_create_update_delete_once_each(kube: EmulatedKubernetesAPI, crd_path: Path) -> None:
    kopf_probe.CALLS.clear()
    args = ["run", "--standalone", "-A", "--verbose", "-m", "support.kopf_probe"]
    with kopf.testing.KopfRunner(args, timeout=60) as runner:
        kube.apply_rp({"metadata": {"name": "p1", "namespace": NS}, "spec": {"schedule": "@hourly"}})
        ready = kube.wait_rp(NS, "p1", lambda o: o.get("status", {}).get("phase") == "Ready")
        assert ready["metadata"]["finalizers"] == [FINALIZER]
        assert ready["status"]["observedSpec"] == {"schedule": "@hourly"}
        assert ready["status"]["reconcile"] == {"created": True}  # the handler's return value

        # The probe's watch times out server-side after 2 s; kopf must resume without replays.
        time.sleep(2.5)
        kube.patch_rp(NS, "p1", {"metadata": {"labels": {"team": "data"}}})  # not a spec change
        kube.patch_rp(NS, "p1", {"spec": {"schedule": "@daily"}})
        updated = kube.wait_rp(NS, "p1", lambda o: o.get("status", {}).get("phase") == "Updated")
        assert updated["status"]["observedSpec"] == {"schedule": "@daily"}

        kube.delete_rp(NS, "p1")
        kube.wait_rp_gone(NS, "p1")
        time.sleep(1)  # room for any duplicate handler call to show up

    assert runner.exit_code == 0, runner.output
    assert runner.exception is None
    assert kopf_probe.CALLS == [
        ("create", "p1", {"schedule": "@hourly"}),
        ("update", "p1", {"schedule": "@daily"}),
        ("delete", "p1", None),
    ]
    events = kube.events(NS)
    reconciled = [e for e in events if e["reason"] == "Reconciled"]
    assert [e["message"] for e in reconciled] == ["created p1"]
    assert reconciled[0]["involvedObject"]["name"] == "p1"
    assert "Traceback" not in runner.output
    assert "Patching failed" not in runner.output
    assert "Restarting the watch-stream" not in runner.output  # no 410 Gone: resumes worked


def test_kopf_resumes_existing_objects_without_calling_create_again(kube: EmulatedKubernetesAPI) -> None:
    kopf_probe.CALLS.clear()
    args = ["run", "--standalone", "-A", "-m", "support.kopf_probe"]
    with kopf.testing.KopfRunner(args, timeout=60):
        kube.apply_rp({"metadata": {"name": "p2", "namespace": NS}, "spec": {"schedule": "@hourly"}})
        kube.wait_rp(NS, "p2", lambda o: o.get("status", {}).get("phase") == "Ready")
    # A restarted operator sees its own last-handled state stored on the object: nothing to do.
    with kopf.testing.KopfRunner(args, timeout=60) as runner:
        time.sleep(1.5)
    assert runner.exit_code == 0, runner.output
    assert kopf_probe.CALLS == [("create", "p2", {"schedule": "@hourly"})]
