"""charts/retailflow-operator rendered on its own: Deployment, RBAC, config and values schema."""

from __future__ import annotations

import pytest

from support.helm_render import RenderError, containers, helm_lint, pod_spec, render

STANDARD_LABELS = ("app.kubernetes.io/name", "app.kubernetes.io/instance", "app.kubernetes.io/version",
                   "app.kubernetes.io/managed-by", "helm.sh/chart")


def operator(values: dict | None = None, namespace: str = "retailflow"):
    return render("retailflow-operator", values, release="rf", namespace=namespace)


class TestOperatorLint:
    def test_lint_strict_passes(self):
        proc = helm_lint("retailflow-operator")
        assert proc.returncode == 0, proc.stdout + proc.stderr

    def test_schema_rejects_unknown_key_and_bad_memory(self):
        with pytest.raises(RenderError, match="(?i)additional properties|not allowed"):
            operator({"replicas": 3})
        with pytest.raises(RenderError, match="memory"):
            operator({"resources": {"requests": {"cpu": "50m", "memory": "lots"}, "limits": {"cpu": "1", "memory": "1Gi"}}})

    def test_config_keys_must_be_retailflow_settings(self):
        with pytest.raises(RenderError):
            operator({"config": {"PATH": "/tmp"}})


class TestOperatorDeployment:
    def test_runs_kopf_standalone_on_the_release_namespace(self):
        deploy = operator(namespace="shop").get("Deployment", "rf-retailflow-operator")
        (container,) = pod_spec(deploy)["containers"]
        cmd = container["command"]
        assert cmd[:3] == ["kopf", "run", "--standalone"]
        assert "--namespace=shop" in cmd and "--all-namespaces" not in cmd
        assert cmd[-2:] == ["-m", "retailflow_operator"]

    def test_all_namespaces_mode(self):
        deploy = operator({"watch": {"allNamespaces": True}}).get("Deployment", "rf-retailflow-operator")
        cmd = pod_spec(deploy)["containers"][0]["command"]
        assert "--all-namespaces" in cmd and not any(c.startswith("--namespace") for c in cmd)

    def test_single_replica_replaced_not_surged(self):
        # Two kopf --standalone instances would both reconcile the same pipelines.
        deploy = operator().get("Deployment", "rf-retailflow-operator")
        assert deploy["spec"]["replicas"] == 1
        assert deploy["spec"]["strategy"]["type"] == "Recreate"

    def test_probes_resources_and_hardening(self):
        deploy = operator().get("Deployment", "rf-retailflow-operator")
        (container,) = containers(deploy)
        assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
        assert container["readinessProbe"]["httpGet"]["path"] == "/healthz"
        assert any(a.startswith("--liveness=http://0.0.0.0:8080/healthz") for a in container["command"])
        assert set(container["resources"]) == {"requests", "limits"}
        assert container["securityContext"]["readOnlyRootFilesystem"] is True
        assert container["securityContext"]["allowPrivilegeEscalation"] is False
        assert pod_spec(deploy)["securityContext"]["runAsNonRoot"] is True

    def test_settings_reach_the_container_as_retailflow_env(self):
        rendered = operator({"config": {"RETAILFLOW_DRIFT_INTERVAL_S": 42}})
        config = rendered.get("ConfigMap", "rf-retailflow-operator")
        assert config["data"]["RETAILFLOW_DRIFT_INTERVAL_S"] == "42"
        deploy = rendered.get("Deployment", "rf-retailflow-operator")
        assert {"configMapRef": {"name": "rf-retailflow-operator"}} in pod_spec(deploy)["containers"][0]["envFrom"]
        # A config change rolls the pod.
        assert "checksum/config" in deploy["spec"]["template"]["metadata"]["annotations"]

    def test_standard_labels(self):
        for doc in operator().docs:
            labels = doc["metadata"]["labels"]
            assert all(k in labels for k in STANDARD_LABELS), (doc["kind"], labels)


class TestOperatorRbac:
    @staticmethod
    def verbs(rules: list[dict]) -> dict[str, set[str]]:
        out: dict[str, set[str]] = {}
        for rule in rules:
            for resource in rule["resources"]:
                out.setdefault(resource, set()).update(rule["verbs"])
        return out

    def test_namespaced_mode_uses_a_role_with_minimal_verbs(self):
        # Exactly what the operator used when run as this Role (tests/integration/chart/test_authorisation.py).
        rendered = operator(namespace="shop")
        (role,) = rendered.of_kind("Role")
        assert role["metadata"]["namespace"] == "shop"
        assert self.verbs(role["rules"]) == {
            "retailpipelines": {"list", "watch", "patch"},
            "retailpipelines/status": {"patch"},
            "secrets": {"get"},
            "events": {"create"},
        }
        assert {g for rule in role["rules"] for g in rule["apiGroups"]} == {"retailflow.io", ""}
        (binding,) = rendered.of_kind("RoleBinding")
        assert binding["subjects"][0]["name"] == rendered.of_kind("ServiceAccount")[0]["metadata"]["name"]

    def test_no_write_verbs_beyond_patch_and_no_wildcards(self):
        for values in ({}, {"watch": {"allNamespaces": True}}):
            for doc in operator(values).of_kind("Role") + operator(values).of_kind("ClusterRole"):
                for rule in doc["rules"]:
                    assert "*" not in rule["verbs"] and "*" not in rule["resources"]
                    assert not {"create", "update", "delete", "deletecollection"} & set(rule["verbs"]) or \
                        rule["resources"] == ["events"], rule

    def test_cluster_scope_only_for_kopfs_observation_in_namespaced_mode(self):
        # kopf serving named namespaces observes CRDs and namespaces (kopf _core/reactor/observation.py).
        (cluster_role,) = operator().of_kind("ClusterRole")
        assert self.verbs(cluster_role["rules"]) == {"customresourcedefinitions": {"list", "watch"},
                                                     "namespaces": {"list", "watch"}}

    def test_all_namespaces_mode_moves_rules_to_a_cluster_role(self):
        rendered = operator({"watch": {"allNamespaces": True}})
        assert not rendered.of_kind("Role")
        merged = {}
        for role in rendered.of_kind("ClusterRole"):
            for k, v in self.verbs(role["rules"]).items():
                merged.setdefault(k, set()).update(v)
        assert "namespaces" not in merged  # kopf -A never lists namespaces
        assert merged["customresourcedefinitions"] == {"list", "watch"}
        assert merged["secrets"] == {"get"}
        assert len(rendered.of_kind("ClusterRoleBinding")) == 2

    def test_rbac_can_be_left_to_the_cluster_admin(self):
        rendered = operator({"rbac": {"create": False}})
        assert not (rendered.of_kind("Role") or rendered.of_kind("ClusterRole"))

    def test_watch_modes_are_exclusive(self):
        with pytest.raises(RenderError, match="not both"):
            operator({"watch": {"allNamespaces": True, "namespace": "x"}})
