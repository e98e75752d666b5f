"""templates/pipeline: the default RetailPipeline, valid against the CRD, and the Job that applies it."""

from __future__ import annotations

import ast
import copy

import jsonschema
import pytest
import yaml

from support.kube_emulator import cel_violations
from support.helm_render import UUID, VARIANTS, containers, pod_spec, render


def validator(schema: dict) -> jsonschema.Draft7Validator:
    return jsonschema.Draft7Validator(schema)


def shipped_pipeline(rendered) -> dict:
    config = rendered.get("ConfigMap", "retailflow-pipeline")
    return yaml.safe_load(config["data"]["retailpipeline.yaml"])


class TestRetailPipeline:
    def test_default_pipeline_is_valid_once_the_workspace_is_known(self, defaults, crd_schema):
        body = shipped_pipeline(defaults)
        assert body["apiVersion"] == "retailflow.io/v1alpha1" and body["kind"] == "RetailPipeline"
        body["spec"]["airbyte"]["workspaceId"] = UUID  # what the Job fills in from Airbyte's API
        errors = sorted(validator(crd_schema).iter_errors(body), key=str)
        assert not errors, [e.message for e in errors]

    def test_without_the_workspace_the_crd_rejects_it(self, defaults, crd_schema):
        # Why the Job exists; also proves the validation can fail.
        errors = list(validator(crd_schema).iter_errors(shipped_pipeline(defaults)))
        assert any("workspaceId" in e.message for e in errors)

    def test_default_pipeline_names_this_release_services_and_secrets(self, defaults):
        spec = shipped_pipeline(defaults)["spec"]
        assert spec["mysql"]["host"] == "retailflow-mysql" and spec["mysql"]["port"] == 3306
        assert [s["name"] for s in spec["mysql"]["streams"]] == ["customers", "products", "orders", "order_items"]
        # the MySQL application user's and the warehouse role's own Secrets, not the servers' (test_trust.py)
        assert spec["mysql"]["credentialsSecretRef"] == {
            "name": "retailflow-mysql-app", "usernameKey": "username", "passwordKey": "password"}
        assert spec["warehouse"]["credentialsSecretRef"] == {
            "name": "retailflow-warehouse", "usernameKey": "username", "passwordKey": "password"}
        assert spec["lake"]["endpoint"] == "http://retailflow-minio:9000"
        assert spec["airbyte"]["apiUrl"] == "http://retailflow-airbyte-server-svc:8001/api/public/v1"
        assert spec["airflow"]["apiUrl"] == "http://retailflow-api-server:8080"
        assert spec["airflow"]["credentialsSecretRef"]["name"] == "retailflow-airflow-admin"

    def test_secret_keys_it_names_exist_in_the_rendered_secrets(self, defaults):
        spec = shipped_pipeline(defaults)["spec"]
        secrets = {s["metadata"]["name"]: s["stringData"] for s in defaults.own_of_kind("Secret")}
        for section, keys in (("mysql", ("usernameKey", "passwordKey")), ("warehouse", ("usernameKey", "passwordKey")),
                              ("lake", ("accessKeyIdKey", "secretAccessKeyKey")), ("airflow", ("usernameKey", "passwordKey"))):
            ref = spec[section]["credentialsSecretRef"]
            for key in keys:
                assert ref[key] in secrets[ref["name"]], (section, key)

    def test_known_workspace_renders_the_resource_directly(self, crd_schema):
        rendered = render(values=VARIANTS["subset-with-workspace"])
        (body,) = rendered.of_kind("RetailPipeline")
        assert body["metadata"]["namespace"] == "retailflow"
        assert body["spec"]["airbyte"]["workspaceId"] == UUID and body["spec"]["engine"] == "direct"
        assert not list(validator(crd_schema).iter_errors(body))
        assert "retailflow-pipeline" not in rendered.names("Job")

    def test_values_override_reaches_the_resource(self, crd_schema):
        values = copy.deepcopy(VARIANTS["subset-with-workspace"])
        values["pipeline"]["spec"]["schedule"] = "*/15 * * * *"
        (body,) = render(values=values).of_kind("RetailPipeline")
        assert body["spec"]["schedule"] == "*/15 * * * *"
        assert not list(validator(crd_schema).iter_errors(body))

    def test_an_invalid_spec_in_values_is_caught(self, crd_schema):
        values = copy.deepcopy(VARIANTS["subset-with-workspace"])
        values["pipeline"]["spec"]["schedule"] = "every night"
        (body,) = render(values=values).of_kind("RetailPipeline")
        # The schedule is checked by a CEL rule, as the API server evaluates it.
        spec_only = {k: v for k, v in body.items() if k != "metadata"}
        assert list(validator(crd_schema).iter_errors(body)) or cel_violations(spec_only, crd_schema)

    def test_disabled(self):
        rendered = render(values={"pipeline": {"enabled": False}})
        assert not rendered.of_kind("RetailPipeline") and "retailflow-pipeline" not in rendered.names("Job")


class TestPipelineBootstrapJob:
    def test_script_parses_and_applies_server_side(self, defaults):
        script = defaults.get("ConfigMap", "retailflow-pipeline")["data"]["create_pipeline.py"]
        ast.parse(script)
        assert "application/apply-patch+yaml" in script and "/applications/token" in script

    def test_script_sends_no_client_secret_after_a_redirect(self, defaults):
        """An Airbyte URL that redirects would take the client secret to a host nobody named: the Job's
        script stops at the redirect, saying so, and the other host receives nothing."""
        import types

        from support.http_stand_ins import redirect_and_record

        script = types.ModuleType("create_pipeline")
        exec(defaults.get("ConfigMap", "retailflow-pipeline")["data"]["create_pipeline.py"], script.__dict__)
        with redirect_and_record() as (url, received):
            with pytest.raises(SystemExit) as stopped:
                script.workspace_id(f"{url}/api/public/v1", f"{url}/api/public/v1/applications/token", "id",
                                    "client-secret-5e1f")
        assert "redirect (HTTP 307)" in str(stopped.value.code) and "client-secret" not in str(stopped.value.code)
        assert received == []

    def test_role_is_limited_to_the_one_pipeline_and_airbytes_secret(self, defaults):
        rule, secret_rule = defaults.get("Role", "retailflow-pipeline")["rules"]
        # A server-side apply that creates the object is authorised as `create` (apiserver handlers/patch.go),
        # with the object's name; what the script uses is proven by running it as this Role
        # (tests/integration/chart/test_authorisation.py).
        assert rule == {"apiGroups": ["retailflow.io"], "resources": ["retailpipelines"],
                        "resourceNames": ["retail"], "verbs": ["create", "patch"]}
        # Only to add the label the operator requires to the Secret Airbyte's bootloader writes.
        assert secret_rule == {"apiGroups": [""], "resources": ["secrets"],
                               "resourceNames": ["airbyte-auth-secrets"], "verbs": ["patch"]}
        env = {e["name"]: e.get("value") for e in containers(defaults.get("Job", "retailflow-pipeline"))[0]["env"]}
        assert env["CREDENTIALS_SECRET_NAME"] == "airbyte-auth-secrets"
        assert env["CREDENTIALS_LABEL"] == "retailflow.io/credentials=true"
        binding = defaults.get("RoleBinding", "retailflow-pipeline")
        assert binding["subjects"][0]["name"] == pod_spec(defaults.get("Job", "retailflow-pipeline"))["serviceAccountName"]

    def test_reads_airbyte_credentials_from_airbytes_secret(self, defaults):
        env = {e["name"]: e for e in containers(defaults.get("Job", "retailflow-pipeline"))[0]["env"]}
        assert env["AIRBYTE_CLIENT_ID"]["valueFrom"]["secretKeyRef"] == {
            "name": "airbyte-auth-secrets", "key": "instance-admin-client-id"}

    def test_runs_last(self, defaults):
        weights = {d["metadata"]["name"]: int(d["metadata"]["annotations"].get("helm.sh/hook-weight", 0))
                   for d in defaults.own_of_kind("Job") if "post-install" in d["metadata"]["annotations"]["helm.sh/hook"]}
        assert weights["retailflow-pipeline"] == max(weights.values())

    @pytest.mark.parametrize("field, hardened", [("readOnlyRootFilesystem", True), ("allowPrivilegeEscalation", False)])
    def test_hardened(self, defaults, field, hardened):
        (container,) = containers(defaults.get("Job", "retailflow-pipeline"))
        assert container["securityContext"][field] is hardened
