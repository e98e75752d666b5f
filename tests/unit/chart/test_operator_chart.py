"""charts/retailflow-operator rendered on its own: Deployment, RBAC, config and values schema."""

from __future__ import annotations

import pytest

from support.helm_render import REPO, RenderError, containers, helm_lint, pod_spec, render

#: What cluster-wide mode needs: the Secrets its RetailPipelines name (or the explicit rbac.allSecrets opt-in).
ALL_NAMESPACES = {"watch": {"allNamespaces": True}, "rbac": {"secretNames": ["mysql-creds", "warehouse-creds"]}}

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
        deploy = operator(ALL_NAMESPACES).get("Deployment", "rf-retailflow-operator")
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
        for values in ({}, ALL_NAMESPACES, {"watch": {"allNamespaces": True}, "rbac": {"allSecrets": True}}):
            for doc in operator(values).of_kind("Role") + operator(values).of_kind("ClusterRole"):
                for rule in doc["rules"]:
                    assert "*" not in rule["verbs"] and "*" not in rule["resources"]
                    assert not {"create", "update", "delete", "deletecollection"} & set(rule["verbs"]) or \
                        rule["resources"] == ["events"], rule

    def test_nothing_cluster_scoped_in_namespaced_mode(self):
        # The operator turns kopf's scanning off (handlers.configure): it never lists or watches
        # namespaces or CRDs, and discovery is every authenticated user's (system:discovery).
        rendered = operator(namespace="shop")
        assert not rendered.of_kind("ClusterRole") and not rendered.of_kind("ClusterRoleBinding")

    def test_all_namespaces_mode_moves_the_same_rules_to_one_cluster_role(self):
        rendered = operator(ALL_NAMESPACES)
        assert not rendered.of_kind("Role")
        (cluster_role,) = rendered.of_kind("ClusterRole")
        assert self.verbs(cluster_role["rules"]) == {
            "retailpipelines": {"list", "watch", "patch"},
            "retailpipelines/status": {"patch"},
            "secrets": {"get"},
            "events": {"create"},
        }
        (binding,) = rendered.of_kind("ClusterRoleBinding")
        assert binding["roleRef"]["name"] == cluster_role["metadata"]["name"]

    @staticmethod
    def readme_permissions() -> set[tuple[str, str, str]]:
        """(API group, resource, verb) of operator/README.md's table "Kubernetes permissions it needs"."""
        text = (REPO / "operator" / "README.md").read_text()
        table = text[text.index("Kubernetes permissions it needs"):].split("\n\n")[1]
        rows = [line for line in table.splitlines() if line.startswith("| `")]
        out = set()
        for row in rows:
            group, resource, verbs = (cell.strip() for cell in row.strip("|").split("|")[:3])
            group = group.split("`")[1].strip('"')
            for verb in verbs.split(","):
                out.add((group, resource.strip("`"), verb.strip()))
        assert rows and out
        return out

    @pytest.mark.parametrize("values", [{}, ALL_NAMESPACES], ids=["one-namespace", "all-namespaces"])
    def test_the_operator_readme_table_is_what_the_chart_grants(self, values):
        rendered = operator(values)
        granted = {(group, resource, verb)
                   for role in rendered.of_kind("Role") + rendered.of_kind("ClusterRole") for rule in role["rules"]
                   for group in rule["apiGroups"] for resource in rule["resources"] for verb in rule["verbs"]}
        assert granted == self.readme_permissions()

    @staticmethod
    def secret_rules(rendered) -> list[dict]:
        return [rule for role in rendered.of_kind("Role") + rendered.of_kind("ClusterRole") for rule in role["rules"]
                if "secrets" in rule["resources"]]

    def test_cluster_wide_secret_get_is_limited_to_the_named_secrets(self):
        (rule,) = self.secret_rules(operator(ALL_NAMESPACES))
        assert rule["verbs"] == ["get"] and rule["resourceNames"] == ["mysql-creds", "warehouse-creds"]

    def test_cluster_wide_without_secret_names_refuses_to_render_and_says_what_to_set(self):
        # A ClusterRole with `get` on every Secret would reach kube-system's too.
        for values in ({"watch": {"allNamespaces": True}},
                       {"watch": {"allNamespaces": True}, "rbac": {"secretNames": [], "allSecrets": False}}):
            with pytest.raises(RenderError, match=r"every Secret of every namespace.*rbac\.secretNames.*rbac\.allSecrets=true"):
                operator(values)

    def test_cluster_wide_grant_on_every_secret_only_with_the_explicit_opt_in(self):
        rendered = operator({"watch": {"allNamespaces": True}, "rbac": {"allSecrets": True}})
        (rule,) = self.secret_rules(rendered)
        assert rule["verbs"] == ["get"] and "resourceNames" not in rule
        assert [r["kind"] for r in rendered.of_kind("ClusterRole") if rule in r["rules"]] == ["ClusterRole"]

    def test_secret_names_and_all_secrets_are_exclusive(self):
        with pytest.raises(RenderError, match="not both"):
            operator({"rbac": {"secretNames": ["a"], "allSecrets": True}})

    def test_namespaced_default_grants_every_secret_of_that_namespace_only(self):
        # The default of this chart alone: a Role (never a ClusterRole) over the namespace's Secrets; the
        # operator's label check is what narrows it (README, "RBAC").
        rendered = operator(namespace="shop")
        (rule,) = self.secret_rules(rendered)
        assert rule["verbs"] == ["get"] and "resourceNames" not in rule
        assert all("secrets" not in r["resources"] for c in rendered.of_kind("ClusterRole") for r in c["rules"])
        (role,) = rendered.of_kind("Role")
        assert role["metadata"]["namespace"] == "shop" and rule in role["rules"]

    def test_rbac_left_to_the_admin_needs_no_secret_names_cluster_wide(self):
        rendered = operator({"watch": {"allNamespaces": True}, "rbac": {"create": False}})
        assert not (rendered.of_kind("Role") or rendered.of_kind("ClusterRole"))

    def test_rbac_can_be_left_to_the_cluster_admin(self):
        rendered = operator({"rbac": {"create": False}})
        assert not (rendered.of_kind("Role") or rendered.of_kind("ClusterRole"))

    def test_the_namespace_watched_is_a_name_never_a_pattern(self):
        # The operator serves exactly the namespaces given (kopf's scanning is off) and refuses a pattern.
        for pattern in ("retail-*", "!kube-system", "a,b"):
            with pytest.raises(RenderError, match="watch.namespace"):
                operator({"watch": {"namespace": pattern}})

    def test_watch_modes_are_exclusive(self):
        with pytest.raises(RenderError, match="not both"):
            operator({"watch": {"allNamespaces": True, "namespace": "x"}})
