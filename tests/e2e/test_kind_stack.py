"""The whole stack on a real kind cluster: `make up` from an empty cluster (`helm upgrade --install
--wait`, which must complete: see the chart README's install order), the default RetailPipeline
Ready, UIs healthy, a green `retail_pipeline` run with its audit passed, and a `helm upgrade`
with no change completing. In both profiles: `full` (`make up`) and `lite` (`make up PROFILE=lite`:
no Airbyte, OpenMetadata or OpenSearch; the run ingests with the local engine, governance skips, and
the pods' steady memory requests stay within 4 GiB), each on its own cluster.

Needs a Docker engine and kind (and the internet for images and upstream charts); skipped with the
reason otherwise. Takes 20-40 minutes. Each run names its clusters ``retailflow-e2e-<tag>`` and
``retailflow-e2e-<tag>-lite`` (a random tag: two runs on one Docker engine never delete each other's
cluster), or ``$RETAILFLOW_E2E_CLUSTER`` and ``$RETAILFLOW_E2E_CLUSTER-lite`` when that is set.
RETAILFLOW_E2E_KEEP=1 keeps the clusters afterwards (a warning names each; `kind get clusters` lists them).
"""

from __future__ import annotations

import base64
import json
import os
import pathlib
import shutil
import subprocess
import time
import warnings

import pytest
import requests

from support.databases import throwaway_tag

REPO = pathlib.Path(__file__).resolve().parents[2]
#: this run's own cluster name (the lite profile's adds "-lite"): the one the user set, else a new one
CLUSTER = os.environ.get("RETAILFLOW_E2E_CLUSTER") or f"retailflow-e2e-{throwaway_tag(8)}"
NAMESPACE = "retailflow"
RELEASE = "retailflow"


def _docker_engine_answers() -> bool:
    if not shutil.which("docker"):
        return False
    return subprocess.run(["docker", "info"], capture_output=True, check=False).returncode == 0


pytestmark = [
    pytest.mark.e2e,
    pytest.mark.slow,
    pytest.mark.skipif(not _docker_engine_answers(), reason="no Docker engine answers `docker info`: the kind "
                       "end-to-end test needs one (run `make test-e2e` on a machine with Docker and kind)"),
    pytest.mark.skipif(shutil.which("kind") is None, reason="kind is not installed "
                       "(https://kind.sigs.k8s.io/docs/user/quick-start/#installation)"),
]


PROFILES = ("full", "lite")
LITE_STEADY_MI = 4 * 1024
#: status.connectionCount of a Ready pipeline with the chart's spec: full, MySQL and the store-locations
#: CSV (storeLocations.s3Key) each to the warehouse and the lake; lite, engine direct, no Airbyte at all
CONNECTIONS = {"full": 4, "lite": 0}
#: the audit's checks (retailflow_pipeline.audit.compare), each MySQL against the marts
AUDIT_CHECKS = {"orders rows", "order_items rows", "customers rows", "products rows", "revenue"}


def cluster_name(profile: str) -> str:
    return CLUSTER if profile == "full" else f"{CLUSTER}-{profile}"


def make_up(cluster, profile: str) -> None:
    env = {**os.environ, "KIND_CLUSTER": cluster.name, "KUBECONFIG": str(cluster.kubeconfig_path.resolve()),
           "NAMESPACE": NAMESPACE, "RELEASE": RELEASE}
    subprocess.run(["make", "up", f"KIND_CLUSTER={cluster.name}", f"PROFILE={profile}"], cwd=REPO, env=env,
                   check=True, timeout=3600)


@pytest.fixture(scope="module", params=PROFILES)
def profile(request) -> str:
    return request.param


@pytest.fixture(scope="module")
def cluster(profile):
    """A kind cluster from kind-config.yaml (pytest-kind), with the stack installed by `make up PROFILE=…`."""
    from pytest_kind import KindCluster

    kubectl = REPO / ".tools" / "bin" / "kubectl"
    if not kubectl.exists():
        subprocess.run([str(REPO / "hack" / "tools.sh")], check=True)
    kind_cluster = KindCluster(cluster_name(profile), kind_path=pathlib.Path(shutil.which("kind")),
                               kubectl_path=kubectl)
    kind_cluster.create(config_file=REPO / "kind-config.yaml")
    try:
        make_up(kind_cluster, profile)
        yield kind_cluster
    finally:
        if os.environ.get("RETAILFLOW_E2E_KEEP"):
            warnings.warn(f"kind cluster {kind_cluster.name} kept (RETAILFLOW_E2E_KEEP): "
                          f"`kind delete cluster --name {kind_cluster.name}` removes it", stacklevel=1)
        else:
            kind_cluster.delete()


def kubectl_json(cluster, *args: str) -> dict:
    return json.loads(cluster.kubectl("-n", NAMESPACE, *args, "-o", "json"))


def secret_value(cluster, name: str, key: str) -> str:
    return base64.b64decode(kubectl_json(cluster, "get", "secret", name)["data"][key]).decode()


def wait_ready(cluster, name: str, timeout_s: int) -> dict:
    deadline = time.monotonic() + timeout_s
    while True:
        body = kubectl_json(cluster, "get", "retailpipeline", name)
        conditions = {c["type"]: c["status"] for c in body.get("status", {}).get("conditions", [])}
        if conditions.get("Ready") == "True":
            return body
        assert time.monotonic() < deadline, f"{name} not Ready: {body.get('status')}"
        time.sleep(10)


def test_default_pipeline_is_ready(cluster, profile):
    body = wait_ready(cluster, "retail", 1200)
    assert body["status"]["phase"] == "Ready"
    if profile == "full":
        assert body["spec"]["airbyte"]["workspaceId"]
    else:
        assert body["spec"]["engine"] == "direct" and "airbyte" not in body["spec"]
    assert body["status"]["connectionCount"] == CONNECTIONS[profile]


def test_lite_installs_no_airbyte_openmetadata_or_opensearch_within_its_budget(cluster, profile):
    if profile != "lite":
        pytest.skip("the lite profile's own checks")
    pods = kubectl_json(cluster, "get", "pods")["items"]
    names = " ".join(p["metadata"]["name"] for p in pods)
    assert "airbyte" not in names and "openmetadata" not in names and "opensearch" not in names, names
    assert kubectl_json(cluster, "get", "secrets", "--field-selector", "metadata.name=airbyte-auth-secrets")["items"] == []
    steady = [p for p in pods if p["status"].get("phase") == "Running"
              and not any(o["kind"] == "Job" for o in p["metadata"].get("ownerReferences", []))]
    requested = 0.0
    for pod in steady:
        for c in pod["spec"]["containers"]:
            assert c["resources"].get("limits", {}).get("memory"), f"{pod['metadata']['name']}/{c['name']}: no limit"
            quantity = c["resources"]["requests"]["memory"]
            requested += float(quantity[:-2]) * {"Mi": 1, "Gi": 1024}[quantity[-2:]]
    assert requested <= LITE_STEADY_MI, f"{requested} Mi requested by the running pods"


def test_an_applied_pipeline_becomes_ready(cluster, profile, tmp_path):
    default = kubectl_json(cluster, "get", "retailpipeline", "retail")
    spec = default["spec"]
    spec["airflow"]["variablePrefix"] = "e2e_"
    spec["schedule"] = "30 3 * * *"
    manifest = {"apiVersion": "retailflow.io/v1alpha1", "kind": "RetailPipeline",
                "metadata": {"name": "retail-e2e", "namespace": NAMESPACE}, "spec": spec}
    path = tmp_path / "pipeline.json"
    path.write_text(json.dumps(manifest))
    cluster.kubectl("apply", "-f", str(path))
    body = wait_ready(cluster, "retail-e2e", 900)
    assert body["status"]["connectionCount"] == CONNECTIONS[profile]


def test_superset_health_through_port_forward(cluster):
    with cluster.port_forward(f"svc/{RELEASE}-superset", 8088, "-n", NAMESPACE) as port:
        answer = requests.get(f"http://127.0.0.1:{port}/health", timeout=30)
        assert answer.status_code == 200 and answer.text.strip() == "OK"


def test_airflow_health_and_generated_login(cluster):
    password = secret_value(cluster, "retailflow-airflow-admin", "password")
    with cluster.port_forward(f"svc/{RELEASE}-api-server", 8080, "-n", NAMESPACE) as port:
        health = requests.get(f"http://127.0.0.1:{port}/api/v2/monitor/health", timeout=30).json()
        assert health["metadatabase"]["status"] == "healthy"
        assert health["scheduler"]["status"] == "healthy"
        token = requests.post(f"http://127.0.0.1:{port}/auth/token",
                              json={"username": "admin", "password": password}, timeout=30)
        assert token.status_code == 201 and token.json()["access_token"]


def test_retail_pipeline_run_fills_the_marts_and_passes_the_audit(cluster, profile):
    """Past Ready: trigger retail_pipeline through Airflow's REST API, wait, check marts and the audit."""
    password = secret_value(cluster, "retailflow-airflow-admin", "password")
    with cluster.port_forward(f"svc/{RELEASE}-api-server", 8080, "-n", NAMESPACE) as port:
        base = f"http://127.0.0.1:{port}"
        token = requests.post(f"{base}/auth/token", json={"username": "admin", "password": password},
                              timeout=30).json()["access_token"]
        api = requests.Session()
        api.headers["Authorization"] = f"Bearer {token}"
        deadline = time.monotonic() + 600
        while api.get(f"{base}/api/v2/dags/retail_pipeline", timeout=30).status_code != 200:
            assert time.monotonic() < deadline, "retail_pipeline was never parsed by the DAG processor"
            time.sleep(10)
        api.patch(f"{base}/api/v2/dags/retail_pipeline", json={"is_paused": False}, timeout=30).raise_for_status()
        run = api.post(f"{base}/api/v2/dags/retail_pipeline/dagRuns",
                       json={"logical_date": None, "conf": {"full_refresh": True}}, timeout=30)
        assert run.status_code == 200, run.text
        run_id = run.json()["dag_run_id"]
        deadline = time.monotonic() + 1800
        while True:
            state = api.get(f"{base}/api/v2/dags/retail_pipeline/dagRuns/{run_id}", timeout=30).json()["state"]
            if state in ("success", "failed"):
                break
            assert time.monotonic() < deadline, f"run {run_id} still {state} after 30 minutes"
            time.sleep(15)
        tis = api.get(f"{base}/api/v2/dags/retail_pipeline/dagRuns/{run_id}/taskInstances",
                      params={"limit": 200}, timeout=30).json()["task_instances"]
        states = {t["task_id"]: t["state"] for t in tis}
        assert state == "success", {k: v for k, v in states.items() if v != "success"}
        assert states["audit"] == "success"
        if profile == "lite":
            # the local engine ingested, in an Airflow task; without OpenMetadata, governance skipped
            assert states["ingestion.direct"] == "success" and states["governance"] == "skipped"
        else:
            # Airbyte ingested: one sync triggered and awaited per connection (syncTrigger: airflow),
            # and the local engine's task skipped
            assert states["ingestion.direct"] == "skipped" and states["ingestion.airbyte_syncs"] == "success"
            for mapped in ("ingestion.trigger_sync", "ingestion.wait_for_sync"):
                runs = [t["state"] for t in tis if t["task_id"] == mapped]
                assert runs == ["success"] * CONNECTIONS[profile], (mapped, runs)
        report = api.get(f"{base}/api/v2/dags/retail_pipeline/dagRuns/{run_id}/taskInstances/audit/xcomEntries/"
                         "return_value", params={"deserialize": "true"}, timeout=30).json()["value"]
        report = json.loads(report) if isinstance(report, str) else report
        assert {c["name"] for c in report["checks"]} == AUDIT_CHECKS, report["checks"]
        assert report["ok"] is True and all(c["ok"] for c in report["checks"]), report["checks"]
    user = secret_value(cluster, "retailflow-postgresql", "warehouse-username")
    rows = cluster.kubectl("-n", NAMESPACE, "exec", f"statefulset/{RELEASE}-postgresql", "--", "psql", "-U", user,
                           "-d", "warehouse", "-qAtc", "select count(*) from marts.orders")
    assert int(rows.strip()) > 0


#: the controllers of the release's long-running pods (not Jobs' hooks, Airbyte's or Airflow's task pods)
SERVING = {"ReplicaSet", "StatefulSet", "DaemonSet"}


def serving_pods(cluster) -> tuple[list[str], list[str]]:
    """The names of the pods that Deployments, StatefulSets and DaemonSets run: (Ready, not Ready or
    terminating, with their phase)."""
    ready, waiting = [], []
    for pod in kubectl_json(cluster, "get", "pods")["items"]:
        if not any(o["kind"] in SERVING for o in pod["metadata"].get("ownerReferences", [])):
            continue
        conditions = {c["type"]: c["status"] for c in pod["status"].get("conditions", [])}
        if conditions.get("Ready") == "True" and not pod["metadata"].get("deletionTimestamp"):
            ready.append(pod["metadata"]["name"])
        else:
            waiting.append(f"{pod['metadata']['name']} ({pod['status'].get('phase')})")
    return ready, waiting


def test_helm_upgrade_without_change_completes(cluster, profile):
    """`make up` again on the installed release: the same `helm upgrade --install --wait`, now an
    upgrade; its pre-upgrade and post-upgrade hooks rerun, and afterwards the default pipeline and
    every pod of the release's Deployments, StatefulSets and DaemonSets are Ready (checked after the
    upgrade, not throughout it)."""
    env = {**os.environ, "KIND_CLUSTER": cluster.name, "KUBECONFIG": str(cluster.kubeconfig_path.resolve()),
           "NAMESPACE": NAMESPACE, "RELEASE": RELEASE}
    before = json.loads(subprocess.run(
        [str(REPO / ".tools" / "bin" / "helm"), "status", RELEASE, "-n", NAMESPACE, "-o", "json"],
        env=env, capture_output=True, text=True, check=True).stdout)["version"]
    make_up(cluster, profile)
    status = json.loads(subprocess.run(
        [str(REPO / ".tools" / "bin" / "helm"), "status", RELEASE, "-n", NAMESPACE, "-o", "json"],
        env=env, capture_output=True, text=True, check=True).stdout)
    assert status["version"] == before + 1 and status["info"]["status"] == "deployed"
    assert wait_ready(cluster, "retail", 600)["status"]["phase"] == "Ready"
    deadline = time.monotonic() + 300  # a pod the upgrade replaced may still be starting or terminating
    ready, waiting = serving_pods(cluster)
    while waiting:
        assert time.monotonic() < deadline, f"not Ready 5 minutes after the upgrade: {waiting}"
        time.sleep(10)
        ready, waiting = serving_pods(cluster)
    assert ready, "no pod of a Deployment, StatefulSet or DaemonSet in the namespace"
