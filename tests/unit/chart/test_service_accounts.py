"""Who may touch Secrets and exec into pods: per ServiceAccount of the release, against a short allowlist.

With the real upstream charts in charts/retailflow/charts/ this reads every Role and binding of the
full render (test ids `[full-render]`). With the stand-ins (CI) the upstream charts render nothing,
so it checks this repository's own RBAC plus the values the umbrella hands the upstream charts that
decide theirs (test ids `[stand-ins]`). What only the real charts render (their pods, Roles and
bindings) is checked by tests of its own (``FULL_RENDER``), reported as skipped with the stand-ins.
"""

from __future__ import annotations

import pytest
import yaml

from support.helm_render import NAMESPACE, REAL_SUBCHARTS, VARIANTS, chart_values, pod_spec, render
from support.kube_rbac import RBAC, Attributes, service_account_user

WATCHED = ("secrets", "pods/exec")
ALL = frozenset({"get", "list", "watch", "create", "update", "patch", "delete"})

#: ServiceAccount -> resource -> (verbs, resourceNames or None for any name), and why.
ALLOWLIST: dict[str, dict[str, tuple[frozenset, frozenset | None]]] = {
    # Reads the Secrets the default RetailPipeline names, by name (operator.rbac.secretNames), and
    # uses them only when labelled retailflow.io/credentials=true (operator/README.md, "Trust model"):
    # the MySQL application user's and the warehouse role's own, never the servers' (test_trust.py).
    "retailflow-operator": {"secrets": (frozenset({"get"}), frozenset({
        "retailflow-mysql-app", "retailflow-warehouse", "retailflow-lake", "retailflow-airflow-admin",
        "airbyte-auth-secrets"}))},
    # Labels airbyte-auth-secrets for the operator once Airbyte's bootloader wrote it.
    "retailflow-pipeline": {"secrets": (frozenset({"patch"}), frozenset({"airbyte-auth-secrets"}))},
    # Airbyte's Role as its chart writes it (README, Security; made by templates/airbyte/ so that an
    # upgrade adding Airbyte creates it): the launcher creates connector pods, and which of the other
    # components need what could not be established here. Only the Airbyte components in
    # AIRBYTE_ADMIN_PODS run as it; connector pods and Temporal do not.
    "airbyte-admin": {"secrets": (ALL, None), "pods/exec": (ALL, None)},
    # The same rules for the bootloader (a hook pod, which runs before release resources exist):
    # it writes airbyte-auth-secrets.
    "retailflow-airbyte-bootloader": {"secrets": (ALL, None), "pods/exec": (ALL, None)},
    # Airbyte in its own namespace only: reads airbyte-auth-secrets there, applies its copy in the
    # release namespace (create and patch of that name), for the operator, Airflow and the pipeline Job.
    "retailflow-airbyte-auth-copy": {"secrets": (frozenset({"get", "create", "patch"}), frozenset({"airbyte-auth-secrets"}))},
}
#: Allowlist entries only the airbyte-namespace variant renders.
SEPARATE_NAMESPACE_ONLY = {"retailflow-airbyte-auth-copy"}
AIRBYTE_ADMIN_PODS = {"retailflow-server", "retailflow-worker", "retailflow-workload-launcher",
                      "retailflow-cron", "retailflow-workload-api-server"}
MODE = "full-render" if {"airbyte", "airflow", "openmetadata"} <= set(REAL_SUBCHARTS) else "stand-ins"
#: the checks of what only the real upstream charts render (their Roles, bindings and pods)
FULL_RENDER = pytest.mark.skipif(MODE != "full-render",
                                 reason="needs the real upstream charts in charts/retailflow/charts/ (airbyte, airflow, openmetadata)")


def _matches(values: list[str], wanted: str) -> bool:
    return "*" in values or wanted in values


def grants(docs: list[dict]) -> dict[str, dict[str, dict[str, set[str] | None]]]:
    """ServiceAccount -> resource in WATCHED -> verb -> resourceNames (None: any)."""
    roles = {(d["kind"], d["metadata"]["name"]): d for d in docs if d["kind"] in ("Role", "ClusterRole")}
    out: dict = {}
    for binding in (d for d in docs if d["kind"] in ("RoleBinding", "ClusterRoleBinding")):
        role = roles.get((binding["roleRef"]["kind"], binding["roleRef"]["name"]))
        for subject in binding.get("subjects") or []:
            if subject["kind"] != "ServiceAccount":
                continue
            for rule in (role or {}).get("rules", []):
                if not _matches(rule.get("apiGroups", []), ""):
                    continue
                for resource in WATCHED:
                    if not _matches(rule.get("resources", []), resource):
                        continue
                    verbs = ALL if "*" in rule["verbs"] else set(rule["verbs"])
                    for verb in verbs:
                        names = out.setdefault(subject["name"], {}).setdefault(resource, {})
                        new = set(rule["resourceNames"]) if rule.get("resourceNames") else None
                        old = names.get(verb, set())
                        names[verb] = None if new is None or old is None else old | new
    return out


def violations(found: dict) -> list[str]:
    out = []
    for account, resources in sorted(found.items()):
        for resource, verbs in sorted(resources.items()):
            allowed_verbs, allowed_names = ALLOWLIST.get(account, {}).get(resource, (frozenset(), frozenset()))
            for verb, names in sorted(verbs.items()):
                if verb not in allowed_verbs:
                    out.append(f"{account}: {verb} {resource} (names: {sorted(names) if names else 'any'}) is not in the allowlist")
                elif allowed_names is not None and (names is None or not names <= allowed_names):
                    out.append(f"{account}: {verb} {resource} on {'any name' if names is None else sorted(names)}, "
                               f"allowlist: only {sorted(allowed_names)}")
    return out


def pod_accounts(docs: list[dict]) -> dict[str, str]:
    out = {}
    for doc in docs:
        if doc["kind"] in ("Deployment", "StatefulSet", "Job", "DaemonSet"):
            out[doc["metadata"]["name"]] = pod_spec(doc).get("serviceAccountName", "default")
        elif doc["kind"] == "Pod":
            out[doc["metadata"]["name"]] = doc["spec"].get("serviceAccountName", "default")
    return out


@pytest.fixture(scope="module")
def rendered():
    return render()


class TestServiceAccounts:
    @pytest.mark.parametrize("variant", ["defaults", "airbyte-namespace"])
    @pytest.mark.parametrize("mode", [MODE])
    def test_secret_and_exec_grants_are_in_the_allowlist(self, mode, variant):
        found = grants(render(values=VARIANTS[variant]).docs)
        print(f"[{mode}] [{variant}] Secret and pods/exec grants per ServiceAccount:")
        for account, resources in sorted(found.items()):
            print(f"  {account}: " + "; ".join(f"{r}: {', '.join(sorted(v))}" for r, v in sorted(resources.items())))
        assert not violations(found), "\n".join(violations(found))

    @FULL_RENDER
    @pytest.mark.parametrize("variant", ["defaults", "airbyte-namespace"])
    def test_every_allowlist_entry_is_still_needed(self, variant):
        found = grants(render(values=VARIANTS[variant]).docs)
        expected = set(ALLOWLIST) - (SEPARATE_NAMESPACE_ONLY if variant == "defaults" else set())
        assert set(found) == expected, f"allowlist entries no longer needed: {expected - set(found)}"

    @pytest.mark.parametrize("mode", [MODE])
    def test_only_airbyte_components_that_call_the_api_run_as_airbyte_admin(self, rendered, values, mode):
        airbyte = values["airbyte"]
        jobs_account = airbyte["global"]["serviceAccountName"]
        assert jobs_account != "airbyte-admin", "Airbyte's connector pods and Temporal run as airbyte-admin"
        account = rendered.get("ServiceAccount", jobs_account)
        assert account["automountServiceAccountToken"] is False, f"{jobs_account} mounts a token"
        admins = {k for k, v in airbyte.items() if isinstance(v, dict) and v.get("serviceAccountName") == "airbyte-admin"}
        assert admins == {"server", "worker", "workloadLauncher", "cron", "workloadApiServer"}
        # Airbyte's chart makes its ServiceAccount as a pre-install hook only: ours are made here
        assert airbyte["serviceAccount"]["create"] is False
        for name in ("airbyte-admin", "retailflow-airbyte-jobs"):
            assert not (rendered.get("ServiceAccount", name)["metadata"].get("annotations") or {}).get("helm.sh/hook"), \
                f"{name} is a hook: Helm would recreate it on every upgrade (new UID: running pods' tokens rejected)"

    @FULL_RENDER
    def test_in_the_real_render_only_those_components_run_as_airbyte_admin(self, rendered, values):
        jobs_account = values["airbyte"]["global"]["serviceAccountName"]
        runs_as_admin = {name for name, sa in pod_accounts(rendered.docs).items() if sa == "airbyte-admin"}
        assert runs_as_admin <= AIRBYTE_ADMIN_PODS, runs_as_admin - AIRBYTE_ADMIN_PODS
        (env,) = [d for d in rendered.upstream if d["kind"] == "ConfigMap" and d["metadata"]["name"] == "retailflow-airbyte-env"]
        assert env["data"]["JOB_KUBE_SERVICEACCOUNT"] == jobs_account, "connector pods run as airbyte-admin"
        assert rendered.get("Deployment", "retailflow-temporal")["spec"]["template"]["spec"]["serviceAccountName"] == jobs_account
        assert rendered.get("Pod", "retailflow-bootloader")["spec"]["serviceAccountName"] == "retailflow-airbyte-bootloader"

    @pytest.mark.parametrize("mode", [MODE])
    def test_openmetadata_and_airflow_get_no_pod_or_secret_role(self, rendered, values, mode):
        om = values["openmetadata"]
        assert om["openmetadata"]["config"]["pipelineServiceClientConfig"]["enabled"] is False, \
            "OpenMetadata's pipeline service client is on: its chart gives the server every verb on Secrets"
        assert om["automountServiceAccountToken"] is False, "OpenMetadata's server mounts a token it never uses"
        assert values["airflow"]["allowPodLaunching"] is False, \
            "airflow.allowPodLaunching: the scheduler and triggerer get create on pods and pods/exec"
        assert values["airflow"]["apiServer"]["allowPodLogReading"] is False, "airflow.apiServer.allowPodLogReading is on"

    @FULL_RENDER
    def test_in_the_real_render_openmetadata_and_airflow_have_no_secret_or_exec_grant(self, rendered):
        found = grants(rendered.docs)
        for account in ("openmetadata", "openmetadata-ingestion", "retailflow-airflow-scheduler",
                        "retailflow-airflow-triggerer", "retailflow-airflow-api-server"):
            assert account not in found, (account, found.get(account))
        assert "openmetadata-ingestion" not in rendered.names("ServiceAccount")


def test_the_checker_catches_a_wide_grant():
    """The checker itself: the upstream OpenMetadata Role under pipelineServiceClientConfig.type k8s."""
    docs = yaml.safe_load_all("""
kind: Role
metadata: {name: openmetadata-server-pipeline-manager}
rules:
  - {apiGroups: [""], resources: [secrets], verbs: [get, list, create, update, patch, delete]}
---
kind: RoleBinding
metadata: {name: b}
roleRef: {kind: Role, name: openmetadata-server-pipeline-manager}
subjects: [{kind: ServiceAccount, name: openmetadata}]
---
kind: Role
metadata: {name: p}
rules:
  - {apiGroups: [""], resources: [secrets], verbs: [patch], resourceNames: [airbyte-auth-secrets, retailflow-mysql]}
---
kind: RoleBinding
metadata: {name: p}
roleRef: {kind: Role, name: p}
subjects: [{kind: ServiceAccount, name: retailflow-pipeline}]
""")
    found = violations(grants(list(docs)))
    assert "openmetadata: get secrets (names: any) is not in the allowlist" in found
    assert any(v.startswith("retailflow-pipeline: patch secrets on ['airbyte-auth-secrets', 'retailflow-mysql']") for v in found)


SECRET_VERBS = ("get", "list", "watch", "create", "update", "patch", "delete")


def _may(rbac: RBAC, user, verb: str, resource: str, namespace: str, name: str = "", subresource: str = "") -> bool:
    return rbac.authorize(Attributes(user, verb, True, api_group="", api_version="v1", resource=resource,
                                     subresource=subresource, namespace=namespace, name=name)) is None


@pytest.fixture(scope="module")
def separate():
    """The airbyte-namespace variant's render, and Airbyte's namespace."""
    values = VARIANTS["airbyte-namespace"]
    namespace = chart_values(values)["global"]["retailflow"]["airbyte"]["namespace"]
    assert namespace and namespace != NAMESPACE
    return render(values=values), namespace


class TestAirbyteInItsOwnNamespace:
    """global.retailflow.airbyte.namespace: airbyte-admin's rules (every verb on Secrets and pods/exec)
    reach Airbyte's namespace only. Decided by Kubernetes' RBAC rules on the rendered Roles and
    bindings (support.kube_rbac, the emulation written from the API server's authoriser)."""

    def test_airbyte_service_accounts_reach_no_secret_of_the_release_namespace(self, separate):
        rendered, airbyte_ns = separate
        rbac = RBAC(rendered.docs)
        accounts = {d["metadata"]["name"] for d in rendered.of_kind("ServiceAccount")
                    if d["metadata"].get("namespace") == airbyte_ns}
        # Airbyte's pods run as these (the chart's three, plus any the real chart's pods name)
        accounts |= {sa for name, sa in pod_accounts([d for d in rendered.docs
                                                      if d["metadata"].get("namespace") == airbyte_ns]).items()}
        assert {"airbyte-admin", "retailflow-airbyte-bootloader", "retailflow-airbyte-jobs"} <= accounts
        release_secrets = {d["metadata"]["name"] for d in rendered.of_kind("Secret")
                           if d["metadata"].get("namespace") == NAMESPACE}
        assert {"retailflow-postgresql", "retailflow-mysql", "retailflow-lake"} <= release_secrets
        release_secrets |= {"airbyte-auth-secrets", ""}  # its copy, and requests without a name (list, create)
        reachable = [f"{sa}: {verb} secrets/{name or '*'}" for sa in sorted(accounts) for name in sorted(release_secrets)
                     for verb in SECRET_VERBS if _may(rbac, service_account_user(airbyte_ns, sa), verb, "secrets", NAMESPACE, name)]
        reachable += [f"{sa}: {verb} pods/exec" for sa in sorted(accounts) for verb in ("create", "get")
                      if _may(rbac, service_account_user(airbyte_ns, sa), verb, "pods", NAMESPACE, "retailflow-mysql-0", "exec")]
        assert not reachable, "an Airbyte ServiceAccount reaches the release namespace:\n" + "\n".join(reachable)
        # ...while airbyte-admin keeps its upstream rules in Airbyte's namespace (what the Role is for)
        admin = service_account_user(airbyte_ns, "airbyte-admin")
        assert _may(rbac, admin, "get", "secrets", airbyte_ns, "airbyte-auth-secrets")
        assert _may(rbac, admin, "create", "pods", airbyte_ns, "connector", "exec")

    def test_airbyte_namespace_holds_only_airbytes_own_credentials(self, separate):
        rendered, airbyte_ns = separate
        # this chart's Secrets (Airbyte's chart adds its own there, <release>-airbyte-secrets, with no password)
        theirs = {d["metadata"]["name"]: d for d in rendered.own_of_kind("Secret") if d["metadata"].get("namespace") == airbyte_ns}
        ours = {d["metadata"]["name"]: d for d in rendered.own_of_kind("Secret") if d["metadata"].get("namespace") == NAMESPACE}
        database = theirs[chart_values(VARIANTS["airbyte-namespace"])["global"]["database"]["secretName"]]
        assert set(database["stringData"]) == {"airbyte-username", "airbyte-password"}, \
            "Airbyte's namespace gets other components' database passwords"
        assert database["stringData"]["airbyte-password"] == ours["retailflow-postgresql"]["stringData"]["airbyte-password"]
        lake = theirs[chart_values(VARIANTS["airbyte-namespace"])["global"]["storage"]["secretName"]]
        assert lake["stringData"] == ours["retailflow-lake"]["stringData"]
        assert set(theirs) == {database["metadata"]["name"], lake["metadata"]["name"], "retailflow-airbyte-keycloak"}

    def test_the_copy_job_reads_one_secret_of_airbytes_namespace_and_writes_its_copy(self, separate):
        rendered, airbyte_ns = separate
        rbac = RBAC(rendered.docs)
        job = rendered.get("Job", "retailflow-airbyte-auth-copy")
        user = service_account_user(NAMESPACE, pod_spec(job)["serviceAccountName"])
        assert _may(rbac, user, "get", "secrets", airbyte_ns, "airbyte-auth-secrets")
        assert not _may(rbac, user, "get", "secrets", airbyte_ns, "retailflow-postgresql")
        assert not _may(rbac, user, "list", "secrets", airbyte_ns)
        assert _may(rbac, user, "create", "secrets", NAMESPACE, "airbyte-auth-secrets")
        assert _may(rbac, user, "patch", "secrets", NAMESPACE, "airbyte-auth-secrets")
        assert not _may(rbac, user, "get", "secrets", NAMESPACE, "retailflow-postgresql")
        assert not _may(rbac, user, "patch", "secrets", NAMESPACE, "retailflow-postgresql")
