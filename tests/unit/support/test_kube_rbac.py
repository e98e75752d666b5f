"""The emulated API's RBAC (support.kube_rbac) decides as the API server does: verb mapping, rule matching,
bindings; and the emulator enforces it (401, 403 with the API server's message, apply that creates)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import requests

from support.kube_emulator import EmulatedKubernetesAPI
from support.kube_rbac import RBAC, User, request_attributes, rule_allows, service_account_user

SA = service_account_user("shop", "bot")
RP = "/apis/retailflow.io/v1alpha1/namespaces/shop/retailpipelines"


def attrs(method: str, path: str, **query: str):
    return request_attributes(SA, method, path, query)


class TestVerbMapping:
    """requestinfo.go NewRequestInfo."""

    @pytest.mark.parametrize(("method", "path", "query", "verb", "name"), [
        ("GET", f"{RP}/demo", {}, "get", "demo"),
        ("HEAD", f"{RP}/demo", {}, "get", "demo"),
        ("GET", RP, {}, "list", ""),
        ("GET", RP, {"watch": "false"}, "list", ""),
        ("GET", RP, {"watch": "0"}, "list", ""),
        ("GET", RP, {"watch": "true"}, "watch", ""),
        ("GET", RP, {"watch": "1"}, "watch", ""),
        ("GET", RP, {"watch": "true", "fieldSelector": "metadata.name=demo"}, "watch", "demo"),
        ("GET", RP, {"fieldSelector": "metadata.name==demo"}, "list", "demo"),
        ("GET", RP, {"fieldSelector": "metadata.name=demo,status.phase=Ready"}, "list", ""),
        ("GET", "/apis/retailflow.io/v1alpha1/watch/namespaces/shop/retailpipelines", {}, "watch", ""),
        ("POST", RP, {}, "create", ""),
        ("PUT", f"{RP}/demo", {}, "update", "demo"),
        ("PATCH", f"{RP}/demo", {}, "patch", "demo"),
        ("DELETE", f"{RP}/demo", {}, "delete", "demo"),
        ("DELETE", RP, {}, "deletecollection", ""),
    ])
    def test_method_and_path_give_the_verb(self, method, path, query, verb, name):
        a = attrs(method, path, **query)
        assert a.resource_request and (a.verb, a.name) == (verb, name)
        assert (a.api_group, a.resource, a.namespace) == ("retailflow.io", "retailpipelines", "shop")

    def test_status_is_a_subresource(self):
        a = attrs("PATCH", f"{RP}/demo/status")
        assert (a.verb, a.resource, a.subresource, a.name) == ("patch", "retailpipelines", "status", "demo")

    def test_core_group_and_cluster_scope(self):
        a = attrs("GET", "/api/v1/namespaces/shop/secrets/creds")
        assert (a.api_group, a.resource, a.namespace, a.name) == ("", "secrets", "shop", "creds")
        a = attrs("GET", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions", watch="true")
        assert (a.verb, a.namespace, a.resource) == ("watch", "", "customresourcedefinitions")

    def test_namespaces_and_their_own_subresources(self):
        a = attrs("GET", "/api/v1/namespaces/shop")
        assert (a.resource, a.name, a.namespace) == ("namespaces", "shop", "shop")
        a = attrs("PUT", "/api/v1/namespaces/shop/finalize")
        assert (a.resource, a.name, a.subresource) == ("namespaces", "shop", "finalize")

    @pytest.mark.parametrize("path", ["/api", "/api/v1", "/apis", "/apis/retailflow.io/v1alpha1", "/version", "/healthz"])
    def test_short_paths_are_non_resource_requests(self, path):
        a = attrs("GET", path)
        assert not a.resource_request and a.verb == "get" and a.path == path


def allows(rule: dict, method: str, path: str, **query: str) -> bool:
    return rule_allows(attrs(method, path, **query), rule)


class TestRuleMatching:
    """rbac.go RuleAllows and evaluation_helpers.go."""

    RULE = {"apiGroups": ["retailflow.io"], "resources": ["retailpipelines"], "verbs": ["get", "patch"]}

    def test_verb_group_and_resource_must_all_match(self):
        assert allows(self.RULE, "GET", f"{RP}/demo")
        assert not allows(self.RULE, "DELETE", f"{RP}/demo")
        assert not allows({**self.RULE, "apiGroups": [""]}, "GET", f"{RP}/demo")
        assert not allows(self.RULE, "GET", "/api/v1/namespaces/shop/secrets/demo")

    def test_a_resource_rule_does_not_cover_its_status(self):
        assert not allows(self.RULE, "PATCH", f"{RP}/demo/status")
        assert allows({**self.RULE, "resources": ["retailpipelines/status"]}, "PATCH", f"{RP}/demo/status")
        assert not allows({**self.RULE, "resources": ["retailpipelines/status"]}, "PATCH", f"{RP}/demo")

    def test_wildcards(self):
        assert allows({"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]}, "DELETE", f"{RP}/demo/status")
        assert allows({"apiGroups": ["*"], "resources": ["*/status"], "verbs": ["patch"]}, "PATCH", f"{RP}/demo/status")
        assert not allows({"apiGroups": ["*"], "resources": ["*/status"], "verbs": ["patch"]}, "PATCH", f"{RP}/demo")
        assert allows({**self.RULE, "verbs": ["*"]}, "GET", RP, watch="true")

    def test_resource_names_need_a_name_on_the_request(self):
        named = {**self.RULE, "verbs": ["get", "list", "watch", "create", "patch"], "resourceNames": ["retail"]}
        assert allows(named, "GET", f"{RP}/retail")
        assert allows(named, "PATCH", f"{RP}/retail")
        assert not allows(named, "GET", f"{RP}/other")
        assert not allows(named, "GET", RP)  # list: no name
        assert not allows(named, "GET", RP, watch="true")  # watch: no name
        assert not allows(named, "POST", RP)  # create by POST: the name is in the body, not the request
        assert allows(named, "GET", RP, watch="true", fieldSelector="metadata.name=retail")

    def test_non_resource_urls(self):
        rule = {"nonResourceURLs": ["/apis/*", "/version"], "verbs": ["get"]}
        assert allows(rule, "GET", "/apis/retailflow.io/v1alpha1") and allows(rule, "GET", "/version")
        assert not allows(rule, "GET", "/metrics") and not allows(rule, "POST", "/version")
        assert not allows(self.RULE, "GET", "/version")


def role(kind: str, name: str, rules: list[dict], namespace: str | None = None) -> dict:
    return {"kind": kind, "metadata": {"name": name, **({"namespace": namespace} if namespace else {})}, "rules": rules}


def binding(kind: str, name: str, role_kind: str, role_name: str, subjects: list[dict], namespace: str | None = None) -> dict:
    return {"kind": kind, "metadata": {"name": name, **({"namespace": namespace} if namespace else {})},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": role_kind, "name": role_name},
            "subjects": subjects}


READ_RP = [{"apiGroups": ["retailflow.io"], "resources": ["retailpipelines"], "verbs": ["get"]}]
BOT = {"kind": "ServiceAccount", "name": "bot", "namespace": "shop"}


class TestBindings:
    """rule.go VisitRulesFor / appliesToUser."""

    def test_a_role_binding_grants_only_in_its_namespace(self):
        rbac = RBAC([role("Role", "r", READ_RP, "shop"), binding("RoleBinding", "b", "Role", "r", [BOT], "shop")])
        assert rbac.authorize(attrs("GET", f"{RP}/demo")) is None
        denied = rbac.authorize(attrs("GET", "/apis/retailflow.io/v1alpha1/namespaces/other/retailpipelines/demo"))
        assert denied == ('retailpipelines.retailflow.io "demo" is forbidden: User "system:serviceaccount:shop:bot" '
                          'cannot get resource "retailpipelines" in API group "retailflow.io" in the namespace "other"')

    def test_a_role_binding_to_a_cluster_role_grants_in_the_binding_namespace_only(self):
        rbac = RBAC([role("ClusterRole", "cr", READ_RP), binding("RoleBinding", "b", "ClusterRole", "cr", [BOT], "shop")])
        assert rbac.authorize(attrs("GET", f"{RP}/demo")) is None
        assert rbac.authorize(attrs("GET", "/apis/retailflow.io/v1alpha1/namespaces/other/retailpipelines/x"))
        # cluster-wide list needs a ClusterRoleBinding
        assert rbac.authorize(attrs("GET", "/apis/retailflow.io/v1alpha1/retailpipelines")).endswith(
            'cannot list resource "retailpipelines" in API group "retailflow.io" at the cluster scope')

    def test_a_cluster_role_binding_grants_everywhere(self):
        rbac = RBAC([role("ClusterRole", "cr", READ_RP), binding("ClusterRoleBinding", "b", "ClusterRole", "cr", [BOT])])
        assert rbac.authorize(attrs("GET", "/apis/retailflow.io/v1alpha1/namespaces/other/retailpipelines/x")) is None

    def test_subjects(self):
        other = service_account_user("other", "bot")
        docs = [role("Role", "r", READ_RP, "shop"),
                binding("RoleBinding", "b", "Role", "r", [{"kind": "ServiceAccount", "name": "bot"}], "shop")]
        rbac = RBAC(docs)  # a ServiceAccount subject without namespace: the binding's
        assert rbac.authorize(attrs("GET", f"{RP}/x")) is None
        assert rbac.authorize(request_attributes(other, "GET", f"{RP}/x", {}))
        rbac = RBAC([docs[0], binding("RoleBinding", "b", "Role", "r", [{"kind": "Group", "name": "system:serviceaccounts:shop"}], "shop")])
        assert rbac.authorize(attrs("GET", f"{RP}/x")) is None
        rbac = RBAC([docs[0], binding("RoleBinding", "b", "Role", "r", [{"kind": "User", "name": "jane"}], "shop")])
        assert rbac.authorize(attrs("GET", f"{RP}/x")) and rbac.authorize(
            request_attributes(User("jane"), "GET", f"{RP}/x", {})) is None

    def test_masters_bypass_and_discovery_is_open_to_authenticated_users(self):
        rbac = RBAC()
        assert rbac.authorize(request_attributes(User("root", ("system:masters",)), "DELETE", f"{RP}/x", {})) is None
        assert rbac.authorize(attrs("GET", "/apis/retailflow.io/v1alpha1")) is None
        assert rbac.authorize(attrs("GET", "/version")) is None
        assert rbac.authorize(attrs("GET", "/metrics")) == 'forbidden: User "system:serviceaccount:shop:bot" cannot get path "/metrics"'

    def test_records_uses_denials_and_unused_grants(self):
        rules = READ_RP + [{"apiGroups": [""], "resources": ["secrets"], "verbs": ["get", "list"], "resourceNames": ["creds"]}]
        rbac = RBAC([role("Role", "r", rules, "shop"), binding("RoleBinding", "b", "Role", "r", [BOT], "shop")])
        rbac.authorize(attrs("GET", f"{RP}/demo"))
        rbac.authorize(attrs("GET", "/api/v1/namespaces/shop/secrets/creds"))
        rbac.authorize(attrs("DELETE", f"{RP}/demo"))
        assert rbac.used[SA.name] == {("get", "retailflow.io", "retailpipelines", "", "shop", "demo"),
                                      ("get", "", "secrets", "", "shop", "creds")}
        assert [d[0] for d in rbac.denials] == [SA.name]
        assert rbac.unused_grants(SA, ["shop"]) == {("", "secrets", "list", "creds")}


class TestEnforcedByTheEmulator:
    @pytest.fixture
    def api(self, crd_path: Path):
        docs = [role("Role", "apply", [{"apiGroups": ["retailflow.io"], "resources": ["retailpipelines"],
                                         "resourceNames": ["retail"], "verbs": ["get", "patch"]}], "shop"),
                binding("RoleBinding", "apply", "Role", "apply", [BOT], "shop")]
        with EmulatedKubernetesAPI(crd_path, rbac=RBAC(docs)) as api:
            api.ensure_namespace("shop")
            yield api

    @staticmethod
    def apply(api: EmulatedKubernetesAPI, token: str | None, name: str = "retail", manager: str = "chart") -> requests.Response:
        body = {"apiVersion": "retailflow.io/v1alpha1", "kind": "RetailPipeline",
                "metadata": {"name": name, "namespace": "shop"}, "spec": {"schedule": "0 * * * *"}}
        headers = {"Content-Type": "application/apply-patch+yaml"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        return requests.patch(f"{api.url}{RP}/{name}", data=json.dumps(body), headers=headers,
                              params={"fieldManager": manager} if manager else None, timeout=10)

    def test_unknown_token_is_unauthorized(self, api):
        assert self.apply(api, "nope").status_code == 401

    def test_apply_that_creates_needs_create(self, api):
        token = api.rbac.issue_token("shop", "bot")
        resp = self.apply(api, token)
        assert resp.status_code == 403 and resp.json()["reason"] == "Forbidden"
        assert resp.json()["message"] == (
            'retailpipelines.retailflow.io "retail" is forbidden: User "system:serviceaccount:shop:bot" cannot '
            'create resource "retailpipelines" in API group "retailflow.io" in the namespace "shop"')
        assert api.get_rp("shop", "retail") is None

    def test_apply_creates_then_merges_with_create_granted_for_the_name(self, api):
        api.rbac.roles[("shop", "apply")][0]["verbs"].append("create")
        token = api.rbac.issue_token("shop", "bot")
        first = self.apply(api, token)
        assert first.status_code == 201, first.text
        assert self.apply(api, token).status_code == 200
        assert api.get_rp("shop", "retail")["spec"] == {"schedule": "0 * * * *"}
        assert self.apply(api, token, name="other").status_code == 403  # resourceNames hold for create too
        assert self.apply(api, token, manager="").status_code == 422
        used = api.rbac.used["system:serviceaccount:shop:bot"]
        assert {(v, n) for v, _, _, _, _, n in used} == {("patch", "retail"), ("create", "retail")}

    def test_discovery_is_open_to_any_service_account_and_namespaces_and_crds_are_not(self, api):
        """system:discovery (kube_rbac's docstring): a ServiceAccount with no grant of its own may read the
        API's discovery, and needs a rule to list or watch namespaces or CRDs, as kopf's cluster
        observation would."""
        bot = service_account_user("shop", "bot")
        headers = {"Authorization": f"Bearer {api.rbac.issue_token('shop', 'bot')}"}
        for path in ("/api", "/api/v1", "/apis", "/apis/apiextensions.k8s.io/v1", "/apis/retailflow.io/v1alpha1",
                     "/version"):
            resp = requests.get(f"{api.url}{path}", headers=headers, timeout=10)
            assert resp.status_code == 200, (path, resp.text)
        served = requests.get(f"{api.url}/apis/retailflow.io/v1alpha1", headers=headers, timeout=10).json()
        assert "retailpipelines" in {r["name"] for r in served["resources"]}
        for path, watch, resource, group in (
                ("/api/v1/namespaces", False, "namespaces", ""),
                ("/api/v1/namespaces", True, "namespaces", ""),
                ("/apis/apiextensions.k8s.io/v1/customresourcedefinitions", False, "customresourcedefinitions",
                 "apiextensions.k8s.io"),
                ("/apis/apiextensions.k8s.io/v1/customresourcedefinitions", True, "customresourcedefinitions",
                 "apiextensions.k8s.io")):
            resp = requests.get(f"{api.url}{path}", headers=headers, params={"watch": "true"} if watch else None,
                                timeout=10)
            verb = "watch" if watch else "list"
            assert resp.status_code == 403 and resp.json()["reason"] == "Forbidden", (path, verb, resp.text)
            qualified = f"{resource}.{group}" if group else resource
            assert resp.json()["message"] == (
                f'{qualified} is forbidden: User "system:serviceaccount:shop:bot" cannot {verb} resource '
                f'"{resource}" in API group "{group}" at the cluster scope')
        asked = [(a.verb, a.resource or a.path) for a in api.rbac.requests_of(bot)]
        assert ("list", "namespaces") in asked and ("watch", "customresourcedefinitions") in asked  # denied, recorded
        assert ("get", "/apis") in asked

    def test_rbac_is_off_by_default(self, kube):
        kube.ensure_namespace("shop")
        assert self.apply(kube, "anything").status_code == 201
