"""Real kopf against the emulated Kubernetes API: handlers fire exactly once, finalizers and status work.

The operator here is a minimal probe (``support/kopf_probe.py``), not the RetailFlow operator: this
proves the stand-in, so that operator scenarios failing on it point at the operator.
"""

import importlib
import sys
import time
from collections.abc import Iterator
from types import ModuleType

import kopf
import kopf.testing
import pytest
import yaml

from support.kopf_log import kopf_object_log
from support.kube_emulator import REPO_ROOT, EmulatedKubernetesAPI

NS = "shop"
FINALIZER = "retailflow.io/probe-finalizer"
PROBE = "support.kopf_probe"
EXAMPLE = REPO_ROOT / "operator" / "examples" / "retailpipeline.yaml"


@pytest.fixture
def probe() -> Iterator[tuple[kopf.OperatorRegistry, ModuleType]]:
    """The probe operator imported into a registry of its own, so no other operator's handlers run."""
    previous = kopf.get_default_registry()
    registry = kopf.OperatorRegistry()
    kopf.on.login(registry=registry)(kopf.login_via_client)
    kopf.set_default_registry(registry)
    sys.modules.pop(PROBE, None)
    try:
        yield registry, importlib.import_module(PROBE)
    finally:
        kopf.set_default_registry(previous)


def test_kopf_runs_create_update_delete_once_each(real_kube: EmulatedKubernetesAPI,
                                                  probe: tuple[kopf.OperatorRegistry, ModuleType]) -> None:
    """Against the operator chart's CRD, with the operator's own example pipeline."""
    kube = real_kube
    registry, kopf_probe = probe
    body = yaml.safe_load(EXAMPLE.read_text())
    body["metadata"] = {"name": "p1", "namespace": NS}
    args = ["run", "--standalone", "-A", "--verbose", "-m", PROBE]
    with kopf.testing.KopfRunner(args, registry=registry, timeout=60) as runner:
        created = kube.apply_rp(body)
        ready = kube.wait_rp(NS, "p1", lambda o: o.get("status", {}).get("phase") == "Ready")
        assert ready["metadata"]["finalizers"] == [FINALIZER]
        assert ready["status"]["observedGeneration"] == 1

        # The probe's watch times out server-side after 2 s; kopf must resume without replays.
        watches = kube.watches_opened("retailpipelines")
        kube.wait_watches_opened("retailpipelines", watches + 1)
        kube.patch_rp(NS, "p1", {"spec": {"mysql": {"host": "mariadb-replica"}}})
        updated = kube.wait_rp(NS, "p1", lambda o: o.get("status", {}).get("phase") == "Reconciling")
        assert updated["metadata"]["generation"] == 2 and updated["status"]["observedGeneration"] == 2

        kube.delete_rp(NS, "p1")
        kube.wait_rp_gone(NS, "p1")
        time.sleep(1)  # room for any duplicate handler call to show up

    assert runner.exit_code == 0, runner.output
    assert runner.exception is None
    assert [(kind, name) for kind, name, _ in kopf_probe.CALLS] == [("create", "p1"), ("update", "p1"), ("delete", "p1")]
    assert kopf_probe.CALLS[0][2] == created["spec"]
    assert kopf_probe.CALLS[1][2] == updated["spec"] and updated["spec"]["mysql"]["host"] == "mariadb-replica"
    reconciled = [e for e in kube.events(NS) if e["reason"] == "Reconciled"]
    assert [e["message"] for e in reconciled] == ["created p1"]
    assert reconciled[0]["involvedObject"]["name"] == "p1"
    assert "Traceback" not in runner.output
    assert "Patching failed" not in runner.output
    assert "APIUnprocessableEntityError" not in runner.output  # every write passed admission
    assert "Restarting the watch-stream" not in runner.output  # no 410 Gone: resumes worked


def test_kopf_resumes_existing_objects_without_calling_create_again(
        kube: EmulatedKubernetesAPI, probe: tuple[kopf.OperatorRegistry, ModuleType]) -> None:
    """With a schema-free CRD, where the status keeps whatever the handlers return."""
    registry, kopf_probe = probe
    args = ["run", "--standalone", "-A", "-m", PROBE]
    with kopf.testing.KopfRunner(args, registry=registry, timeout=60):
        kube.apply_rp({"metadata": {"name": "p2", "namespace": NS}, "spec": {"schedule": "@hourly"}})
        ready = kube.wait_rp(NS, "p2", lambda o: o.get("status", {}).get("phase") == "Ready")
        assert ready["status"]["reconcile"] == {"created": True}  # the handler's return value
        assert ready["status"]["observedGeneration"] == 1
    # A restarted operator sees its own last-handled state stored on the object: nothing to do.
    with kopf_object_log() as kopf_log, \
            kopf.testing.KopfRunner([*args, "--verbose"], registry=registry, timeout=60) as runner:
        kopf_log.wait("Handling cycle is finished, waiting for new changes.")  # p2's resume, looked at
    assert runner.exit_code == 0, runner.output
    assert kopf_probe.CALLS == [("create", "p2", {"schedule": "@hourly"})]
