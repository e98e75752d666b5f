"""The emulated Kubernetes API behaves like a real API server where kopf and the operator rely on it."""

import base64
import json
import os
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import requests

from support.kube_emulator import EmulatedKubernetesAPI

NS = "shop"


def rp(name: str = "demo", **spec: Any) -> dict[str, Any]:
    return {"metadata": {"name": name, "namespace": NS}, "spec": spec or {"schedule": "0 * * * *"}}


def json_patch(kube: EmulatedKubernetesAPI, name: str, ops: list[dict[str, Any]], sub: str = "") -> requests.Response:
    return kube.request("PATCH", kube.rp_path(NS, name) + sub, data=json.dumps(ops),
                        headers={"Content-Type": "application/json-patch+json"})


def merge_patch(kube: EmulatedKubernetesAPI, name: str, patch: dict[str, Any], sub: str = "") -> requests.Response:
    return kube.request("PATCH", kube.rp_path(NS, name) + sub, data=json.dumps(patch),
                        headers={"Content-Type": "application/merge-patch+json"})


def watch(kube: EmulatedKubernetesAPI, **params: str) -> list[dict[str, Any]]:
    resp = kube.request("GET", "/apis/retailflow.io/v1alpha1/retailpipelines",
                        params={"watch": "true", "timeoutSeconds": "1", **params})
    assert resp.status_code == 200
    return [json.loads(line) for line in resp.text.splitlines() if line]


class TestCreate:
    def test_create_answers_201_with_server_set_metadata(self, kube: EmulatedKubernetesAPI) -> None:
        kube.ensure_namespace(NS)
        resp = kube.request("POST", kube.rp_path(NS), json={"metadata": {"name": "demo"}, "spec": {"a": 1}})
        assert resp.status_code == 201
        meta = resp.json()["metadata"]
        assert meta["namespace"] == NS  # from the URL
        assert meta["generation"] == 1
        assert meta["uid"] and meta["creationTimestamp"].endswith("Z")
        assert int(meta["resourceVersion"]) > 0
        assert resp.json()["kind"] == "RetailPipeline" and resp.json()["apiVersion"] == "retailflow.io/v1alpha1"

    def test_duplicate_name_is_409(self, kube: EmulatedKubernetesAPI) -> None:
        kube.apply_rp(rp())
        resp = kube.request("POST", kube.rp_path(NS), json=rp())
        assert resp.status_code == 409 and resp.json()["reason"] == "AlreadyExists"

    def test_missing_namespace_is_404(self, kube: EmulatedKubernetesAPI) -> None:
        resp = kube.request("POST", kube.rp_path("nowhere"), json={"metadata": {"name": "demo"}, "spec": {}})
        assert resp.status_code == 404

    def test_status_is_dropped_on_create(self, kube: EmulatedKubernetesAPI) -> None:
        body = rp()
        body["status"] = {"phase": "Ready"}
        assert "status" not in kube.apply_rp(body)

    def test_unknown_object_and_resource_are_404(self, kube: EmulatedKubernetesAPI) -> None:
        assert kube.get_rp(NS, "absent") is None
        assert kube.request("GET", "/apis/example.com/v1/widgets").status_code == 404


class TestVersions:
    def test_resource_version_increments_on_every_change_only(self, kube: EmulatedKubernetesAPI) -> None:
        rv0 = int(kube.apply_rp(rp())["metadata"]["resourceVersion"])
        rv1 = int(kube.patch_rp(NS, "demo", {"metadata": {"labels": {"team": "data"}}})["metadata"]["resourceVersion"])
        rv2 = int(kube.patch_rp(NS, "demo", {"spec": {"schedule": "@daily"}})["metadata"]["resourceVersion"])
        assert rv0 < rv1 < rv2
        # Re-sending the same values is a no-op: no new version, as on a real API server.
        same = kube.patch_rp(NS, "demo", {"spec": {"schedule": "@daily"}})
        assert int(same["metadata"]["resourceVersion"]) == rv2
        listed = kube.request("GET", "/apis/retailflow.io/v1alpha1/retailpipelines").json()
        assert listed["metadata"]["resourceVersion"] == str(rv2)
        assert [i["metadata"]["name"] for i in listed["items"]] == ["demo"]

    def test_generation_bumps_on_spec_changes_only(self, kube: EmulatedKubernetesAPI) -> None:
        kube.apply_rp(rp())
        assert kube.patch_rp(NS, "demo", {"metadata": {"labels": {"a": "b"}, "annotations": {"x": "y"}}})["metadata"]["generation"] == 1
        assert merge_patch(kube, "demo", {"status": {"phase": "Ready"}}, "/status").json()["metadata"]["generation"] == 1
        assert kube.patch_rp(NS, "demo", {"spec": {"schedule": "@hourly"}})["metadata"]["generation"] == 2
        assert kube.patch_rp(NS, "demo", {"spec": {"extra": True}})["metadata"]["generation"] == 3

    def test_uid_and_creation_timestamp_cannot_be_patched(self, kube: EmulatedKubernetesAPI) -> None:
        created = kube.apply_rp(rp())
        patched = kube.patch_rp(NS, "demo", {"metadata": {"uid": "forged", "creationTimestamp": "2000-01-01T00:00:00Z"}})
        assert patched["metadata"]["uid"] == created["metadata"]["uid"]
        assert patched["metadata"]["creationTimestamp"] == created["metadata"]["creationTimestamp"]


class TestPatching:
    def test_merge_patch_null_removes_a_key(self, kube: EmulatedKubernetesAPI) -> None:
        kube.apply_rp(rp(schedule="@daily", suspend=True))
        assert kube.patch_rp(NS, "demo", {"spec": {"suspend": None}})["spec"] == {"schedule": "@daily"}

    def test_json_patch_with_a_failing_test_op_is_422_and_changes_nothing(self, kube: EmulatedKubernetesAPI) -> None:
        created = kube.apply_rp(rp())
        resp = json_patch(kube, "demo", [
            {"op": "test", "path": "/metadata/resourceVersion", "value": "999999"},
            {"op": "add", "path": "/metadata/finalizers", "value": ["retailflow.io/finalizer"]},
        ])
        assert resp.status_code == 422
        assert kube.get_rp(NS, "demo") == created

    def test_json_patch_with_a_passing_test_op_applies(self, kube: EmulatedKubernetesAPI) -> None:
        created = kube.apply_rp(rp())
        resp = json_patch(kube, "demo", [
            {"op": "test", "path": "/metadata/resourceVersion", "value": created["metadata"]["resourceVersion"]},
            {"op": "add", "path": "/metadata/finalizers", "value": ["retailflow.io/finalizer"]},
        ])
        assert resp.status_code == 200
        assert kube.get_rp(NS, "demo")["metadata"]["finalizers"] == ["retailflow.io/finalizer"]

    def test_status_subresource_owns_status(self, kube: EmulatedKubernetesAPI) -> None:
        kube.apply_rp(rp())
        # The main endpoint ignores status; the status endpoint ignores everything else.
        assert "status" not in kube.patch_rp(NS, "demo", {"status": {"phase": "Forged"}})
        resp = merge_patch(kube, "demo", {"spec": {"schedule": "forged"}, "status": {"phase": "Ready"}}, "/status")
        assert resp.status_code == 200
        obj = kube.get_rp(NS, "demo")
        assert obj["status"] == {"phase": "Ready"} and obj["spec"] == {"schedule": "0 * * * *"}


class TestDeletion:
    def test_delete_without_finalizers_removes_at_once(self, kube: EmulatedKubernetesAPI) -> None:
        kube.apply_rp(rp())
        kube.delete_rp(NS, "demo")
        assert kube.get_rp(NS, "demo") is None
        assert kube.request("DELETE", kube.rp_path(NS, "demo")).status_code == 404

    def test_finalizers_hold_the_object_until_removed(self, kube: EmulatedKubernetesAPI) -> None:
        kube.apply_rp({**rp(), "metadata": {**rp()["metadata"], "finalizers": ["a/one", "b/two"]}})
        deleting = kube.delete_rp(NS, "demo")
        assert deleting["metadata"]["deletionTimestamp"]
        assert kube.get_rp(NS, "demo")["metadata"]["deletionTimestamp"] == deleting["metadata"]["deletionTimestamp"]
        kube.patch_rp(NS, "demo", {"metadata": {"finalizers": ["b/two"]}})
        assert kube.get_rp(NS, "demo") is not None
        kube.patch_rp(NS, "demo", {"metadata": {"finalizers": None}})
        assert kube.get_rp(NS, "demo") is None
        # A new object of the same name starts a new life, with a new uid.
        assert kube.apply_rp(rp())["metadata"]["uid"] != deleting["metadata"]["uid"]

    def test_deletion_events_end_with_deleted(self, kube: EmulatedKubernetesAPI) -> None:
        created = kube.apply_rp({**rp(), "metadata": {**rp()["metadata"], "finalizers": ["a/one"]}})
        kube.delete_rp(NS, "demo")
        kube.patch_rp(NS, "demo", {"metadata": {"finalizers": []}})
        events = watch(kube, resourceVersion=created["metadata"]["resourceVersion"])
        assert [e["type"] for e in events] == ["MODIFIED", "DELETED"]
        assert events[0]["object"]["metadata"]["deletionTimestamp"]


class TestWatch:
    def test_watch_without_version_starts_with_current_objects(self, kube: EmulatedKubernetesAPI) -> None:
        kube.apply_rp(rp("one"))
        kube.apply_rp(rp("two"))
        kube.delete_rp(NS, "two")
        events = watch(kube)
        assert [(e["type"], e["object"]["metadata"]["name"]) for e in events] == [("ADDED", "one")]

    def test_watch_resumes_after_a_version_without_losing_events(self, kube: EmulatedKubernetesAPI) -> None:
        first = kube.apply_rp(rp("one"))
        kube.patch_rp(NS, "one", {"spec": {"schedule": "@daily"}})
        kube.apply_rp(rp("two"))
        kube.delete_rp(NS, "one")
        events = watch(kube, resourceVersion=first["metadata"]["resourceVersion"])
        assert [(e["type"], e["object"]["metadata"]["name"]) for e in events] == [
            ("MODIFIED", "one"), ("ADDED", "two"), ("DELETED", "one")]
        versions = [int(e["object"]["metadata"]["resourceVersion"]) for e in events]
        assert versions == sorted(versions) and versions[0] > int(first["metadata"]["resourceVersion"])

    def test_a_live_watch_sees_changes_made_while_it_is_open(self, kube: EmulatedKubernetesAPI) -> None:
        since = kube.request("GET", "/apis/retailflow.io/v1alpha1/retailpipelines").json()["metadata"]["resourceVersion"]
        result: list[dict[str, Any]] = []

        def until_the_end() -> None:  # read as they come, up to the last change's event
            with kube.request("GET", "/apis/retailflow.io/v1alpha1/retailpipelines", stream=True,
                              params={"watch": "true", "timeoutSeconds": "30", "resourceVersion": since}) as resp:
                for line in resp.iter_lines():
                    if line:
                        result.append(json.loads(line))
                        if result[-1]["object"]["metadata"]["name"] == "end":
                            return

        watcher = threading.Thread(target=until_the_end)
        watcher.start()
        deadline = time.monotonic() + 10  # subscribed: what follows arrives live, not replayed from the log
        while not kube.watching("retailpipelines"):
            assert time.monotonic() < deadline, "the watch never opened"
            time.sleep(0.01)
        kube.apply_rp(rp("live"))
        kube.patch_rp(NS, "live", {"spec": {"schedule": "@weekly"}})
        kube.apply_rp(rp("end"))  # whatever came between is in the list too
        watcher.join(timeout=30)
        assert [(e["type"], e["object"]["metadata"]["name"], e["object"]["spec"]["schedule"]) for e in result] == [
            ("ADDED", "live", "0 * * * *"), ("MODIFIED", "live", "@weekly"), ("ADDED", "end", "0 * * * *")]

    def test_watch_in_a_namespace_and_by_label(self, kube: EmulatedKubernetesAPI) -> None:
        kube.apply_rp({"metadata": {"name": "a", "namespace": NS, "labels": {"tier": "gold"}}, "spec": {}})
        kube.apply_rp({"metadata": {"name": "b", "namespace": NS}, "spec": {}})
        kube.apply_rp({"metadata": {"name": "c", "namespace": "other"}, "spec": {}})
        resp = kube.request("GET", kube.rp_path(NS), params={"watch": "true", "timeoutSeconds": "1"})
        assert sorted(json.loads(line)["object"]["metadata"]["name"] for line in resp.text.splitlines()) == ["a", "b"]
        assert [e["object"]["metadata"]["name"] for e in watch(kube, labelSelector="tier=gold")] == ["a"]

    def test_initial_events_end_with_a_bookmark(self, kube: EmulatedKubernetesAPI) -> None:
        kube.apply_rp(rp())
        events = watch(kube, sendInitialEvents="true", resourceVersionMatch="NotOlderThan")
        assert [e["type"] for e in events] == ["ADDED", "BOOKMARK"]
        assert events[-1]["object"]["metadata"]["annotations"]["k8s.io/initial-events-end"] == "true"


class TestCoreResourcesAndDiscovery:
    def test_discovery_lists_what_kopf_needs(self, kube: EmulatedKubernetesAPI) -> None:
        core = {r["name"]: r for r in kube.request("GET", "/api/v1").json()["resources"]}
        assert {"namespaces", "secrets", "events"} <= set(core)
        assert core["namespaces"]["namespaced"] is False and core["secrets"]["namespaced"] is True
        crds = kube.request("GET", "/apis/apiextensions.k8s.io/v1").json()["resources"]
        assert "customresourcedefinitions" in {r["name"] for r in crds}
        groups = {g["name"] for g in kube.request("GET", "/apis").json()["groups"]}
        assert {"retailflow.io", "apiextensions.k8s.io"} <= groups
        rps = {r["name"]: r for r in kube.request("GET", "/apis/retailflow.io/v1alpha1").json()["resources"]}
        assert rps["retailpipelines"]["kind"] == "RetailPipeline" and "rp" in rps["retailpipelines"]["shortNames"]
        assert "retailpipelines/status" in rps
        assert {"list", "watch", "patch"} <= set(rps["retailpipelines"]["verbs"])

    def test_the_crd_itself_is_served(self, kube: EmulatedKubernetesAPI, crd_path: Path) -> None:
        crd = kube.request("GET", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/retailpipelines.retailflow.io")
        assert crd.status_code == 200 and crd.json()["spec"]["names"]["kind"] == "RetailPipeline"

    def test_secrets_store_base64_and_fold_string_data(self, kube: EmulatedKubernetesAPI) -> None:
        kube.create_secret(NS, "mysql", {"password": "s3cr3t"})
        got = kube.request("GET", f"/api/v1/namespaces/{NS}/secrets/mysql").json()
        assert base64.b64decode(got["data"]["password"]).decode() == "s3cr3t"
        resp = kube.request("POST", f"/api/v1/namespaces/{NS}/secrets",
                            json={"metadata": {"name": "plain"}, "stringData": {"user": "retail"}})
        assert resp.status_code == 201
        assert "stringData" not in resp.json() and base64.b64decode(resp.json()["data"]["user"]) == b"retail"

    def test_events_are_stored_with_generated_names(self, kube: EmulatedKubernetesAPI) -> None:
        kube.ensure_namespace(NS)
        resp = kube.request("POST", f"/api/v1/namespaces/{NS}/events", json={
            "metadata": {"generateName": "demo."}, "reason": "Reconciled", "message": "ok", "type": "Normal",
            "involvedObject": {"kind": "RetailPipeline", "name": "demo", "namespace": NS}})
        assert resp.status_code == 201 and resp.json()["metadata"]["name"].startswith("demo.")
        assert [e["reason"] for e in kube.events(NS)] == ["Reconciled"]
        by_field = kube.request("GET", f"/api/v1/namespaces/{NS}/events",
                                params={"fieldSelector": "involvedObject.name=other"}).json()["items"]
        assert by_field == []

    def test_the_kubernetes_client_reads_a_secret_through_the_kubeconfig(self, kube: EmulatedKubernetesAPI) -> None:
        kubernetes = pytest.importorskip("kubernetes")
        kube.create_secret(NS, "warehouse", {"password": "pg"})
        client = kubernetes.config.new_client_from_config(config_file=kube.kubeconfig)
        secret = kubernetes.client.CoreV1Api(client).read_namespaced_secret("warehouse", NS)
        assert base64.b64decode(secret.data["password"]) == b"pg"
        kube.apply_rp(rp())
        custom = kubernetes.client.CustomObjectsApi(client)
        custom.patch_namespaced_custom_object_status("retailflow.io", "v1alpha1", NS, "retailpipelines", "demo",
                                                     {"status": {"phase": "Reconciling"}})
        assert kube.get_rp(NS, "demo")["status"] == {"phase": "Reconciling"}


class TestHelpers:
    def test_kubeconfig_is_exported_and_restored(self, crd_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("KUBECONFIG", "/elsewhere")
        with EmulatedKubernetesAPI(crd_path) as api:
            assert os.environ["KUBECONFIG"] == api.kubeconfig
            assert api.url in Path(api.kubeconfig).read_text()
        assert os.environ["KUBECONFIG"] == "/elsewhere"

    def test_wait_rp_fails_with_the_last_object(self, kube: EmulatedKubernetesAPI) -> None:
        kube.apply_rp(rp())
        with pytest.raises(AssertionError, match='"schedule": "0 \\* \\* \\* \\*"'):
            kube.wait_rp(NS, "demo", lambda o: o.get("status", {}).get("phase") == "Ready", timeout=0.3)

    def test_wait_rp_gone_fails_while_the_object_stays(self, kube: EmulatedKubernetesAPI) -> None:
        kube.apply_rp(rp())
        with pytest.raises(AssertionError, match="still exists"):
            kube.wait_rp_gone(NS, "demo", timeout=0.3)

    def test_object_history_is_kept_for_assertions(self, kube: EmulatedKubernetesAPI) -> None:
        kube.apply_rp(rp())
        kube.patch_rp(NS, "demo", {"spec": {"schedule": "@daily"}})
        assert kube.emulator is not None
        history = kube.emulator.objects["retailflow.io/v1alpha1/retailpipelines", NS, "demo"].history
        assert [v["spec"]["schedule"] for v in history] == ["0 * * * *", "@daily"]
