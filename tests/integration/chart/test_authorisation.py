"""Authorisation, proven by running our clients as their rendered ServiceAccounts.

The emulated Kubernetes API (a stand-in: ``support.kube_emulator`` with ``support.kube_rbac``) enforces
the RBAC objects of the rendered release: the Roles, ClusterRoles and bindings of the umbrella chart
and of the operator chart (a real subchart in the render). Then:

- the pipeline Job's script (``charts/retailflow/files/scripts/create_pipeline.py``, taken from the
  rendered ConfigMap) runs as a subprocess with the rendered Job's environment, as the Job's
  ServiceAccount (``in_pod.py`` gives it a kubeconfig with that ServiceAccount's token where the pod
  would read its token file), against the Airbyte fake as Airbyte's API;
- the operator (kopf, ``retailflow_operator``) runs with the rendered Deployment's arguments and
  settings, as the operator's ServiceAccount, through create → Ready → update → delete;
- with Airbyte in its own namespace (the airbyte-namespace variant), the Job that copies
  ``airbyte-auth-secrets`` from there into the release namespace
  (``charts/retailflow/files/scripts/copy_airbyte_auth.py``) runs as its ServiceAccount, and the
  pipeline Job after it reads the copy.

A 403 fails a test, and so does a permission granted and never used, except those in ``JUSTIFIED``
(each with its reason, also given in the charts' READMEs). The operator must also serve without
observing the cluster: no list or watch of namespaces or CRDs (kopf's scanning, which the operator
turns off; the chart grants neither), discovery through ``system:discovery`` alone, and no kopf warning
that it lacks a permission.

What is changed from the pod, and why: the in-cluster service URLs of Airbyte and Airflow in the
rendered RetailPipeline point at the Airbyte fake and a real Airflow API server on loopback, so the
operator's allowed hosts get loopback added; kopf's ``--liveness`` endpoint is left out (no probe
runs here, and its port would be fixed); the operator's backoff and drift timings are shortened so
the run takes seconds; the HMAC key is a temporary file where the pod mounts a Secret.
"""

from __future__ import annotations

import base64
import copy
import json
import logging
import os
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
import yaml
from kopf.testing import KopfRunner

from integration.operator.operator_runner import DRIFT_PASS, is_ready, load_operator
from support.airbyte_fake import AirbyteFake
from support.airflow_server import AirflowServer
from support.helm_render import NAMESPACE, VARIANTS, Rendered, chart_values, containers, pod_spec, render
from support.kopf_log import kopf_object_log
from support.kube_emulator import CRD_PATH, EmulatedKubernetesAPI
from support.kube_rbac import RBAC, service_account_user

IN_POD = Path(__file__).parents[2] / "support" / "in_pod.py"
JOB = "retailflow-pipeline"
PIPELINE = "retail"
AIRBYTE_SECRET = "airbyte-auth-secrets"

#: Granted, never used by the runs below, and kept: (ServiceAccount, (apiGroup, resource, verb,
#: resourceName)) -> why. The same reasons are in charts/retailflow-operator/README.md ("RBAC").
JUSTIFIED: dict[tuple[str, tuple[str, str, str, str]], str] = {
}


#: What kopf's dynamic observation of the cluster lists and watches (kopf _core/reactor/observation.py):
#: (API group, resource), both cluster-scoped. The operator turns it off (handlers.configure).
CLUSTER_OBSERVATION = {("", "namespaces"), ("apiextensions.k8s.io", "customresourcedefinitions")}
#: How kopf's observers begin the warning they log on a 403 (observation.py).
KOPF_LACKS_PERMISSION = "Not enough permissions"


def operator_sa(release: Rendered) -> str:
    return pod_spec(release.get("Deployment", "retailflow-operator"))["serviceAccountName"]


def job_sa(release: Rendered) -> str:
    return pod_spec(release.get("Job", JOB))["serviceAccountName"]


@pytest.fixture
def kube(release: Rendered) -> Iterator[EmulatedKubernetesAPI]:
    """The emulated Kubernetes API enforcing the release's Roles, ClusterRoles and bindings."""
    with EmulatedKubernetesAPI(CRD_PATH, rbac=RBAC(release.docs)) as api:
        api.ensure_namespace(NAMESPACE)
        yield api


def secret_value(kube: EmulatedKubernetesAPI, name: str, key: str) -> str:
    resp = kube.request("GET", f"/api/v1/namespaces/{NAMESPACE}/secrets/{name}")
    assert resp.status_code == 200, resp.text
    return base64.b64decode(resp.json()["data"][key]).decode()


def bootloader_secret(kube: EmulatedKubernetesAPI, airbyte: AirbyteFake) -> None:
    """The Secret Airbyte's bootloader writes (the instance admin's application), without our label."""
    kube.create_secret(NAMESPACE, AIRBYTE_SECRET, {"instance-admin-client-id": airbyte.client_id,
                                                   "instance-admin-client-secret": airbyte.client_secret})


def release_secrets(kube: EmulatedKubernetesAPI, release: Rendered, airflow: AirflowServer) -> None:
    """The release's Secrets, as Helm would create them; the Airflow admin's holds the test server's login."""
    for doc in release.of_kind("Secret"):
        body = {k: v for k, v in doc.items() if k != "metadata"} | {"metadata": {
            "name": doc["metadata"]["name"], "labels": doc["metadata"].get("labels") or {}}}
        if doc["metadata"]["name"] == "retailflow-airflow-admin":
            body["stringData"] = {**body.get("stringData", {}), "username": airflow.username, "password": airflow.password}
        resp = kube.request("POST", f"/api/v1/namespaces/{NAMESPACE}/secrets", json=body)
        assert resp.status_code == 201, resp.text


def pipeline_files(release: Rendered, workdir: Path, airbyte: AirbyteFake, airflow_url: str | None = None,
                   schedule: str | None = None) -> Path:
    """The rendered ConfigMap's two files, as mounted at /pipeline; Airbyte's (and Airflow's) in-cluster
    URLs replaced by the stand-ins'. ``schedule``: what a `helm upgrade` with another schedule renders."""
    data = release.get("ConfigMap", JOB)["data"]
    body = yaml.safe_load(data["retailpipeline.yaml"])
    body["spec"]["airbyte"]["apiUrl"] = airbyte.server_url
    body["spec"]["airbyte"].pop("tokenUrl", None)
    if airflow_url:
        body["spec"]["airflow"]["apiUrl"] = airflow_url
    if schedule:
        body["spec"]["schedule"] = schedule
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "retailpipeline.yaml").write_text(yaml.safe_dump(body))
    (workdir / "create_pipeline.py").write_text(data["create_pipeline.py"])
    return workdir


def run_job(release: Rendered, kube: EmulatedKubernetesAPI, workdir: Path) -> subprocess.CompletedProcess[str]:
    """The Job's container: its script, its environment (secretKeyRefs read from the API), its ServiceAccount."""
    (container,) = containers(release.get("Job", JOB), init=False)
    assert container["command"] == ["python", "/pipeline/create_pipeline.py"]
    return run_in_pod(kube, container, job_sa(release), workdir / "create_pipeline.py",
                      {"RETAILPIPELINE_FILE": str(workdir / "retailpipeline.yaml"), "AIRBYTE_WAIT_S": "20"})


def run_in_pod(kube: EmulatedKubernetesAPI, container: dict, service_account: str, script: Path,
               extra_env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """A container's script with its rendered environment (secretKeyRefs read from the release
    namespace), as its pod's ServiceAccount (in the release namespace)."""
    env = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "TMPDIR")}
    for item in container["env"]:
        if "value" in item:
            env[item["name"]] = item["value"]
        else:
            ref = item["valueFrom"]["secretKeyRef"]
            env[item["name"]] = secret_value(kube, ref["name"], ref["key"])
    env |= {"KUBECONFIG": kube.kubeconfig_for(NAMESPACE, service_account), "NO_PROXY": "127.0.0.1,localhost",
            **extra_env}
    return subprocess.run([sys.executable, str(IN_POD), str(script)], env=env,
                          capture_output=True, text=True, timeout=120, check=False)


def assert_least_privilege(kube: EmulatedKubernetesAPI, sa: str) -> None:
    assert kube.rbac is not None
    user = service_account_user(NAMESPACE, sa)
    unused = kube.rbac.unused_grants(user, [NAMESPACE])
    justified = {grant for (who, grant) in JUSTIFIED if who == sa}
    assert unused - justified == set(), (
        f"{user.name} is granted permissions its code never used (remove them, or justify them in JUSTIFIED "
        f"and the README): {sorted(unused - justified)}; used: {sorted(kube.rbac.used[user.name])}")
    assert justified <= unused, f"JUSTIFIED lists permissions that were used or are not granted: {sorted(justified - unused)}"


def assert_no_denials(kube: EmulatedKubernetesAPI) -> None:
    assert kube.rbac is not None
    assert kube.rbac.denials == [], "\n".join(msg for _, msg in kube.rbac.denials)


class TestPipelineJob:
    def test_first_run_creates_the_pipeline_and_an_upgrade_patches_it(self, release, kube, airbyte, tmp_path):
        bootloader_secret(kube, airbyte)
        first = run_job(release, kube, pipeline_files(release, tmp_path / "install", airbyte))
        assert first.returncode == 0, first.stdout + first.stderr
        assert_no_denials(kube)
        created = kube.get_rp(NAMESPACE, PIPELINE)
        assert created is not None and created["spec"]["airbyte"]["workspaceId"] == airbyte.workspace_id
        labels = kube.request("GET", f"/api/v1/namespaces/{NAMESPACE}/secrets/{AIRBYTE_SECRET}").json()["metadata"]["labels"]
        key, _, value = next(e["value"] for e in containers(release.get("Job", JOB))[0]["env"]
                             if e["name"] == "CREDENTIALS_LABEL").partition("=")
        assert labels == {key: value}

        # `helm upgrade` runs the hook again, here with another schedule rendered: the apply patches.
        second = run_job(release, kube, pipeline_files(release, tmp_path / "upgrade", airbyte, schedule="0 4 * * *"))
        assert second.returncode == 0, second.stdout + second.stderr
        updated = kube.get_rp(NAMESPACE, PIPELINE)
        assert updated["metadata"]["uid"] == created["metadata"]["uid"]
        assert updated["spec"]["schedule"] == "0 4 * * *" and updated["metadata"]["generation"] == 2
        assert_no_denials(kube)
        used = kube.rbac.used[service_account_user(NAMESPACE, job_sa(release)).name]
        assert ("create", "retailflow.io", "retailpipelines", "", NAMESPACE, PIPELINE) in used
        assert ("patch", "retailflow.io", "retailpipelines", "", NAMESPACE, PIPELINE) in used
        assert_least_privilege(kube, job_sa(release))


@contextmanager
def as_service_account(kubeconfig: str) -> Iterator[None]:
    """KUBECONFIG (and the kubernetes client's default, read at import) pointing at a ServiceAccount's kubeconfig."""
    import kubernetes.config.kube_config as kube_config

    with mock.patch.dict(os.environ, {"KUBECONFIG": kubeconfig}), \
            mock.patch.object(kube_config, "KUBE_CONFIG_DEFAULT_LOCATION", kubeconfig):
        yield


@contextmanager
def rendered_operator(release: Rendered, kube: EmulatedKubernetesAPI) -> Iterator[KopfRunner]:
    """The operator as the rendered Deployment runs it (see the module docstring for what differs)."""
    (container,) = containers(release.get("Deployment", "retailflow-operator"), init=False)
    assert container["command"][:2] == ["kopf", "run"]
    args = [a for a in container["command"][1:] if not a.startswith("--liveness")]
    env = dict(release.get("ConfigMap", "retailflow-operator")["data"])
    env |= {e["name"]: e["value"] for e in container["env"] if "value" in e}
    env["POD_NAMESPACE"] = NAMESPACE
    env["RETAILFLOW_ALLOWED_HOSTS"] += ",127.0.0.1,localhost"
    key_file = Path(tempfile.mkdtemp(prefix="rf-hmac-")) / "key"
    key_file.write_text(uuid.uuid4().hex)
    key_file.chmod(0o600)
    env["RETAILFLOW_HMAC_KEY_FILE"] = str(key_file)
    env |= {"RETAILFLOW_DRIFT_INTERVAL_S": "1", "RETAILFLOW_DRIFT_IDLE_S": "0.3", "RETAILFLOW_BACKOFF_S": "0.5",
            "RETAILFLOW_BACKOFF_MAX_S": "2", "RETAILFLOW_HTTP_TIMEOUT_S": "5"}
    # load_operator puts env into os.environ; patch.dict restores the environment afterwards
    with mock.patch.dict(os.environ), as_service_account(kube.kubeconfig_for(NAMESPACE, operator_sa(release))):
        registry = load_operator(env)
        with KopfRunner(args, registry=registry, timeout=60) as runner:
            yield runner
    assert runner.exception is None, runner.output[-4000:]
    assert runner.exit_code == 0, runner.output[-4000:]


class KopfWarnings(logging.Handler):
    """kopf's own warnings (its ``kopf`` loggers), e.g. an observer's "Not enough permissions to ..."."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@contextmanager
def kopf_warnings() -> Iterator[KopfWarnings]:
    handler = KopfWarnings()
    logger = logging.getLogger("kopf")
    logger.addHandler(handler)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)


def assert_serves_without_observing_the_cluster(kube: EmulatedKubernetesAPI, release: Rendered,
                                                warnings: KopfWarnings) -> None:
    """The operator asked for no list or watch of namespaces or CRDs (allowed or not), read the API's
    discovery as any authenticated user may (system:discovery), and kopf logged no missing permission.
    Serving one namespace, its ServiceAccount holds no cluster-scoped rule but that default one."""
    assert kube.rbac is not None
    user = service_account_user(NAMESPACE, operator_sa(release))
    asked = kube.rbac.requests_of(user)
    observed = sorted({(a.verb, a.api_group, a.resource) for a in asked if a.resource_request
                       and a.verb in ("list", "watch") and (a.api_group, a.resource) in CLUSTER_OBSERVATION})
    assert observed == [], f"the operator observed the cluster (kopf's scanning is on?): {observed}"
    discovery = {a.path for a in asked if not a.resource_request}
    assert {"/api", "/apis", "/apis/retailflow.io/v1alpha1"} <= discovery, sorted(discovery)
    lacking = [m for m in warnings.messages if KOPF_LACKS_PERMISSION in m]
    assert lacking == [], lacking
    (container,) = containers(release.get("Deployment", "retailflow-operator"), init=False)
    cluster_rules = kube.rbac.rules_for(user, "")
    if "--all-namespaces" in container["command"]:
        # serving every namespace: its own ClusterRole too, which names neither namespaces nor CRDs
        expected = {"system:discovery", "ClusterRoleBinding retailflow-operator-retailflow"}
        named = {r for source, rule in cluster_rules if source != "system:discovery" for r in rule.get("resources", [])}
        assert named and not named & {"namespaces", "customresourcedefinitions"}, sorted(named)
    else:
        expected = {"system:discovery"}
    cluster_scope = {source for source, _ in cluster_rules}
    assert cluster_scope == expected, cluster_scope


def wait_pipeline(kube: EmulatedKubernetesAPI, predicate: Any, what: str, timeout: float = 60) -> dict[str, Any] | None:
    """Poll the RetailPipeline until ``predicate(obj or None)``; fail at once, with the API server's
    messages, when a request was denied (kopf only logs a 403 and retries)."""
    deadline = time.monotonic() + timeout
    while True:
        assert_no_denials(kube)
        obj = kube.get_rp(NAMESPACE, PIPELINE)
        if predicate(obj):
            return obj
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}; last seen: {obj}")
        time.sleep(0.1)


#: The operator's two watch modes: a Role in the release namespace (the default), or ClusterRoles with -A.
#: Both keep the umbrella's operator.rbac.secretNames (the Secret `get` is by name): the operator chart
#: refuses -A without it (or rbac.allSecrets=true).
WATCH_MODES = {"one-namespace": {}, "all-namespaces": {"operator": {"watch": {"allNamespaces": True}}}}


class TestOperator:
    @pytest.fixture(params=list(WATCH_MODES))
    def release(self, request) -> Rendered:
        return render(values=WATCH_MODES[request.param])

    def test_lifecycle_as_its_service_account(self, release, kube, airbyte, airflow, tmp_path):
        bootloader_secret(kube, airbyte)
        release_secrets(kube, release, airflow)
        job = run_job(release, kube, pipeline_files(release, tmp_path / "job", airbyte, airflow_url=airflow.url))
        assert job.returncode == 0, job.stdout + job.stderr
        with kopf_object_log() as kopf_log, kopf_warnings() as warnings, rendered_operator(release, kube) as runner:
            ready = wait_pipeline(kube, lambda o: o and is_ready(o), "Ready")
            assert_serves_without_observing_the_cluster(kube, release, warnings)
            assert airbyte.live("connections") and airbyte.live("sources") and airbyte.live("destinations")
            assert any(k.startswith("retailflow_") for k in airflow.variables())
            try:
                kopf_log.wait(DRIFT_PASS, times=2)  # the drift timer's passes (every 1 s), as the service account
            except AssertionError:
                assert_no_denials(kube)  # the API server's reason, if a pass was denied
                raise

            kube.patch_rp(NAMESPACE, PIPELINE, {"spec": {"schedule": "0 5 * * *"}})
            wait_pipeline(kube, lambda o: o and is_ready(o) and o["status"]["observedGeneration"] == 2,
                          "Ready at generation 2")

            kube.delete_rp(NAMESPACE, PIPELINE)
            wait_pipeline(kube, lambda o: o is None, "deletion (the finalizer removed)")
            assert airbyte.live("connections") == {} and airbyte.live("sources") == {}
        assert ready["status"]["phase"] == "Ready"
        assert_no_denials(kube)
        assert '" 403 ' not in runner.output and "Forbidden" not in runner.output, runner.output[-4000:]
        assert_serves_without_observing_the_cluster(kube, release, warnings)
        assert_least_privilege(kube, operator_sa(release))


class TestOperatorLite:
    """The lite profile (values-lite.yaml): no Airbyte in the release, so no pipeline Job and no
    ``airbyte-auth-secrets``; the RetailPipeline is a release resource that Helm applies (here: as the
    API's admin, the installing user), and the operator runs it as its ServiceAccount."""

    @pytest.fixture
    def release(self) -> Rendered:
        return render(values=VARIANTS["lite"])

    def test_lifecycle_as_its_service_account(self, release, kube, airflow):
        assert JOB not in release.names("Job")
        release_secrets(kube, release, airflow)
        assert AIRBYTE_SECRET not in {d["metadata"]["name"] for d in release.of_kind("Secret")}
        body = copy.deepcopy(release.get("RetailPipeline", PIPELINE))
        body["spec"]["airflow"]["apiUrl"] = airflow.url  # the in-cluster API server's URL, replaced
        kube.apply_rp(body)
        with kopf_warnings() as warnings, rendered_operator(release, kube) as runner:
            ready = wait_pipeline(kube, lambda o: o and is_ready(o), "Ready")
            variables = json.loads(airflow.get_variable("retailflow_pipeline"))
            assert variables["engine"] == "direct"
            kube.patch_rp(NAMESPACE, PIPELINE, {"spec": {"schedule": "0 5 * * *"}})
            wait_pipeline(kube, lambda o: o and is_ready(o) and o["status"]["observedGeneration"] == 2,
                          "Ready at generation 2")
            kube.delete_rp(NAMESPACE, PIPELINE)
            wait_pipeline(kube, lambda o: o is None, "deletion (the finalizer removed)")
            assert not [k for k in airflow.variables() if k.startswith("retailflow_")]
        assert ready["status"]["connectionCount"] == 0
        assert_no_denials(kube)
        assert '" 403 ' not in runner.output and "Forbidden" not in runner.output, runner.output[-4000:]
        assert_serves_without_observing_the_cluster(kube, release, warnings)
        assert_least_privilege(kube, operator_sa(release))


class TestAirbyteInItsOwnNamespace:
    """global.retailflow.airbyte.namespace: Airbyte's bootloader writes airbyte-auth-secrets in Airbyte's
    namespace; the copy Job brings it into the release namespace, as its own ServiceAccount (a `get`
    of that one Secret there, a server-side apply of its copy here), and the pipeline Job reads it."""

    COPY_JOB = "retailflow-airbyte-auth-copy"

    @pytest.fixture
    def release(self) -> Rendered:
        return render(values=VARIANTS["airbyte-namespace"])

    def run_copy(self, release: Rendered, kube: EmulatedKubernetesAPI, workdir: Path) -> subprocess.CompletedProcess[str]:
        job = release.get("Job", self.COPY_JOB)
        (container,) = containers(job, init=False)
        assert container["command"] == ["python", "/scripts/copy_airbyte_auth.py"]
        workdir.mkdir(parents=True, exist_ok=True)
        script = workdir / "copy_airbyte_auth.py"
        script.write_text(release.get("ConfigMap", self.COPY_JOB)["data"]["copy_airbyte_auth.py"])
        return run_in_pod(kube, container, pod_spec(job)["serviceAccountName"], script, {})

    def test_the_copy_follows_the_bootloaders_secret_and_the_pipeline_job_reads_it(self, release, kube, airbyte, tmp_path):
        airbyte_ns = chart_values(VARIANTS["airbyte-namespace"])["global"]["retailflow"]["airbyte"]["namespace"]
        written = {"instance-admin-client-id": airbyte.client_id, "instance-admin-client-secret": airbyte.client_secret,
                   "instance-admin-password": uuid.uuid4().hex}
        kube.create_secret(airbyte_ns, AIRBYTE_SECRET, written)  # what the bootloader writes there
        kube.create_secret(airbyte_ns, "retailflow-postgresql", {"airbyte-password": uuid.uuid4().hex})
        first = self.run_copy(release, kube, tmp_path / "install")
        assert first.returncode == 0, first.stdout + first.stderr
        copy_ = kube.request("GET", f"/api/v1/namespaces/{NAMESPACE}/secrets/{AIRBYTE_SECRET}").json()
        assert {k: base64.b64decode(v).decode() for k, v in copy_["data"].items()} == written
        label = next(e["value"] for e in containers(release.get("Job", self.COPY_JOB))[0]["env"]
                     if e["name"] == "CREDENTIALS_LABEL")
        key, _, value = label.partition("=")
        assert copy_["metadata"]["labels"][key] == value, "the operator would refuse the copy"

        # an upgrade reruns the hook: the copy follows the bootloader's Secret
        written["instance-admin-client-secret"] = airbyte.client_secret
        written["instance-admin-password"] = uuid.uuid4().hex
        resp = kube.request("PATCH", f"/api/v1/namespaces/{airbyte_ns}/secrets/{AIRBYTE_SECRET}",
                            json={"data": {"instance-admin-password": base64.b64encode(written["instance-admin-password"].encode()).decode()}},
                            headers={"Content-Type": "application/merge-patch+json"})
        assert resp.status_code == 200, resp.text
        second = self.run_copy(release, kube, tmp_path / "upgrade")
        assert second.returncode == 0, second.stdout + second.stderr
        assert secret_value(kube, AIRBYTE_SECRET, "instance-admin-password") == written["instance-admin-password"]
        assert_no_denials(kube)

        # its ServiceAccount used every grant it has, in both namespaces, and nothing else
        user = service_account_user(NAMESPACE, pod_spec(release.get("Job", self.COPY_JOB))["serviceAccountName"])
        assert kube.rbac.unused_grants(user, [NAMESPACE, airbyte_ns]) == set()
        assert kube.rbac.used[user.name] == {
            ("get", "", "secrets", "", airbyte_ns, AIRBYTE_SECRET),
            ("create", "", "secrets", "", NAMESPACE, AIRBYTE_SECRET),
            ("patch", "", "secrets", "", NAMESPACE, AIRBYTE_SECRET)}

        # the pipeline Job (post-install) reads the copy in the release namespace
        job = run_job(release, kube, pipeline_files(release, tmp_path / "job", airbyte))
        assert job.returncode == 0, job.stdout + job.stderr
        assert kube.get_rp(NAMESPACE, PIPELINE)["spec"]["airbyte"]["workspaceId"] == airbyte.workspace_id
        assert_no_denials(kube)
