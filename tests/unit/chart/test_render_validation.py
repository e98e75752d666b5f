"""Every rendered manifest, in every values variant, validated offline against Kubernetes' schemas."""

from __future__ import annotations

import copy

import kubernetes_validate
import pytest
import yaml

from support.helm_render import (CRD_FILE, KUBERNETES_VERSION, UMBRELLA, VARIANTS, RenderError, helm_lint,
                                 merge_values, render)

CUSTOM_KINDS = {"RetailPipeline"}


def validate_strict(doc: dict) -> None:
    kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)


class TestKubernetesValidate:
    def test_validator_rejects_an_unknown_field(self, defaults):
        # The harness itself must be able to fail.
        broken = copy.deepcopy(defaults.get("StatefulSet", "retailflow-mysql"))
        broken["spec"]["template"]["spec"]["containers"][0]["memoryLimit"] = "1Gi"
        with pytest.raises(kubernetes_validate.ValidationError):
            validate_strict(broken)

    @pytest.mark.parametrize("variant", sorted(VARIANTS))
    def test_umbrella_variant_is_valid(self, variant):
        rendered = render(values=VARIANTS[variant])
        assert rendered.workloads(), "nothing rendered"
        for doc in rendered.docs:
            if doc["kind"] in CUSTOM_KINDS:
                continue
            validate_strict(doc)

    @pytest.mark.parametrize("values", [{}, {"watch": {"allNamespaces": True}, "rbac": {"secretNames": ["creds"]}},
                                        {"watch": {"allNamespaces": True}, "rbac": {"allSecrets": True}}],
                             ids=["namespaced", "cluster", "cluster-all-secrets"])
    def test_operator_chart_is_valid(self, values):
        for doc in render("retailflow-operator", values).docs:
            validate_strict(doc)

    def test_crd_is_valid(self):
        validate_strict(yaml.safe_load(CRD_FILE.read_text()))


class TestLint:
    def test_umbrella_lints_strict(self):
        proc = helm_lint("retailflow")
        assert proc.returncode == 0, proc.stdout + proc.stderr

    def test_umbrella_lints_with_remote_subcharts_disabled(self):
        sets = "airbyte.enabled=false,airflow.enabled=false,superset.enabled=false," \
               "openmetadata.enabled=false,opensearch.enabled=false"
        proc = helm_lint("retailflow", "--set", sets)
        assert proc.returncode == 0, proc.stdout + proc.stderr


class TestValuesSchema:
    def test_schema_rejects_a_memory_request_that_is_not_a_quantity(self):
        with pytest.raises(RenderError, match="memory"):
            render(values={"mysql": {"resources": {"requests": {"cpu": "1", "memory": "a lot"},
                                                   "limits": {"cpu": "1", "memory": "1Gi"}}}})

    def test_schema_requires_limits(self):
        with pytest.raises(RenderError, match="limits"):
            render(values={"mysql": {"resources": {"requests": {"cpu": "1", "memory": "1Gi"}, "limits": None}}})

    def test_schema_rejects_misspelt_own_keys(self):
        with pytest.raises(RenderError, match="(?i)additional properties|not allowed"):
            render(values={"pipeline": {"workspaceID": "x"}})

    def test_every_value_is_documented(self):
        text = (UMBRELLA / "values.yaml").read_text()
        documented = {line.split("@param", 1)[1].split()[0] for line in text.splitlines() if "## @param" in line}
        data = yaml.safe_load(text)

        def leaves(node, prefix=""):
            if isinstance(node, dict) and node:
                for key, value in node.items():
                    yield from leaves(value, f"{prefix}.{key}" if prefix else key)
            else:
                yield prefix

        undocumented = [
            path for path in leaves(data)
            if not any(path == d or path.startswith(d + ".") for d in documented)
        ]
        assert not undocumented, f"values without a ## @param line: {undocumented}"


AIRBYTE_NS = VARIANTS["airbyte-namespace"]


class TestValidation:
    @pytest.mark.parametrize(
        ("values", "message"),
        [
            ({"minio": {"enabled": False}}, "global.retailflow.lake.endpoint"),
            ({"global": {"retailflow": {"lake": {"endpoint": "http://other:9000"}}}}, "global.storage.minio.endpoint"),
            ({"global": {"retailflow": {"postgresql": {"existingSecret": "mine"}}}}, "global.database.secretName=mine"),
            ({"global": {"retailflow": {"lake": {"existingSecret": "mine"}}}}, "global.storage.secretName=mine"),
            ({"opensearch": {"enabled": False}}, "elasticsearch.host"),
            ({"operator": {"enabled": False}}, "operator.enabled=true"),
            ({"pipeline": {"workspaceId": "not-a-uuid"}}, "workspaceId"),
            ({"lake": {"buckets": ["retail-lake"]}}, "airbyte-storage"),
            # Airbyte in its own namespace: its chart must render there too, and reach the release's
            # database and lake by qualified names (the values file for it, with one key removed)
            (merge_values(AIRBYTE_NS, {"airbyte": {"namespaceOverride": None}}), "airbyte.namespaceOverride"),
            (merge_values(AIRBYTE_NS, {"global": {"database": {"host": None}}}),
             "global.database.host=retailflow-postgresql.retailflow.svc"),
            (merge_values(AIRBYTE_NS, {"global": {"storage": None}}), "http://retailflow-minio.retailflow.svc:9000"),
            ({"airbyte": {"namespaceOverride": "elsewhere"}}, "global.retailflow.airbyte.namespace"),
        ],
        ids=["minio-off-without-endpoint", "airbyte-endpoint-differs", "pg-existing-secret-half-set",
             "lake-existing-secret-half-set", "no-search-engine", "pipeline-without-operator", "bad-workspace",
             "missing-airbyte-bucket", "airbyte-namespace-without-override", "airbyte-namespace-short-db-host",
             "airbyte-namespace-short-lake", "airbyte-override-alone"],
    )
    def test_inconsistent_values_fail_with_a_clear_message(self, values, message):
        with pytest.raises(RenderError) as error:
            render(values=values)
        assert message in str(error.value)
