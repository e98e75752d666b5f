"""The lite profile (values-lite.yaml, `make up PROFILE=lite`): what it installs, what it leaves out, and
the RetailPipeline it creates. Its budget is test_budget_lite.py; install order, strict validation and
Secrets run on it as the `lite` variant of support.helm_render.VARIANTS."""

from __future__ import annotations

import json

import jsonschema
import pytest
import yaml

from retailflow_operator import secret_refs, spec_model, trust
from support.helm_render import LITE_VALUES, VARIANTS, RenderError, chart_values, merge_values, pod_spec, render
from support.kube_emulator import cel_violations

LITE = yaml.safe_load(LITE_VALUES.read_text())


@pytest.fixture(scope="module")
def lite():
    return render(values=LITE)


def pipeline(rendered) -> dict:
    return rendered.get("RetailPipeline", "retail")


def is_hook(doc: dict) -> bool:
    return "helm.sh/hook" in (doc["metadata"].get("annotations") or {})


class TestWhatItInstalls:
    def test_the_variant_is_the_values_file(self):
        assert VARIANTS["lite"] == LITE

    def test_no_airbyte_openmetadata_or_opensearch(self, lite):
        values = chart_values(LITE)
        assert not (values["airbyte"]["enabled"] or values["openmetadata"]["enabled"] or values["opensearch"]["enabled"])
        jobs = lite.names("Job")
        assert not jobs & {"retailflow-pipeline", "retailflow-datastores-ready", "retailflow-openmetadata-ingestion"}
        assert not lite.names("Secret") & {"retailflow-airbyte-keycloak", "retailflow-openmetadata"}
        assert "retailflow-openmetadata-workflows" not in lite.names("ConfigMap")
        assert "airbyte-auth-secrets" not in json.dumps(lite.own)  # no own workload reads Airbyte's Secret

    def test_the_rest_of_the_stack(self, lite):
        assert {"retailflow-mysql", "retailflow-postgresql", "retailflow-minio"} <= lite.names("StatefulSet")
        assert {"retailflow-superset", "retailflow-operator"} <= lite.names("Deployment")
        assert {"retailflow-seed", "retailflow-lake-buckets", "retailflow-superset-dashboards"} <= lite.names("Job")
        assert chart_values(LITE)["airflow"]["enabled"]
        # of the upstream charts only Airflow renders (its stand-in, or the real chart when present)
        rendered = [d["metadata"]["labels"]["retailflow.test/stand-in"] for d in lite.stand_ins] + sorted(lite.upstream_charts)
        assert rendered == ["airflow"], rendered

    def test_the_data_stores_are_release_resources(self, lite):
        for kind in ("StatefulSet", "Service"):
            for name in ("retailflow-postgresql", "retailflow-minio"):
                assert not is_hook(lite.get(kind, name)), f"{kind} {name}"
        assert lite.get("Job", "retailflow-lake-buckets")["metadata"]["annotations"]["helm.sh/hook"] == \
            "post-install,post-upgrade"
        assert chart_values(LITE)["lake"]["buckets"] == ["retail-lake"]


class TestTheRetailPipeline:
    def test_engine_direct_without_airbyte_as_an_ordinary_resource(self, lite, crd_schema):
        body = pipeline(lite)
        assert not is_hook(body)
        assert body["spec"]["engine"] == "direct" and "airbyte" not in body["spec"]
        errors = sorted(jsonschema.Draft7Validator(crd_schema).iter_errors(body), key=str)
        assert not errors, [e.message for e in errors]
        spec_only = {k: v for k, v in body.items() if k not in ("apiVersion", "kind", "metadata")}
        assert cel_violations(spec_only, crd_schema) == []

    def test_the_operator_calls_no_airbyte_and_reads_only_labelled_release_secrets(self, lite):
        spec = spec_model.parse(pipeline(lite)["spec"])
        assert not secret_refs.uses_airbyte(spec, {})
        (container,) = pod_spec(lite.get("Deployment", "retailflow-operator"))["containers"]
        allowed = next(e["value"] for e in container["env"] if e["name"] == "RETAILFLOW_ALLOWED_HOSTS").split(",")
        assert not [h for h in allowed if "airbyte" in h]
        trust.check_hosts(spec, allowed)  # raises HostNotAllowed otherwise
        secrets = {d["metadata"]["name"]: d for d in lite.of_kind("Secret")}
        refs = secret_refs.secret_refs(spec, secret_refs.uses_airbyte(spec, {}))
        # engine direct without Airbyte: only the Airflow admin Secret is read (secret_refs' docstring)
        assert [ref.role for ref in refs] == ["airflow"], refs
        for ref in refs:
            assert ref.name in secrets, ref
            assert secrets[ref.name]["metadata"]["labels"].get("retailflow.io/credentials") == "true", ref.name
            assert set(ref.keys.values()) <= set(secrets[ref.name].get("stringData") or secrets[ref.name].get("data"))


class TestValidation:
    def test_engine_airbyte_without_an_airbyte_block_is_refused(self):
        values = merge_values(LITE, {"pipeline": {"spec": {"engine": "airbyte"}}})
        with pytest.raises(RenderError, match="set pipeline.spec.engine=direct"):
            render(values=values)

    def test_no_airbyte_in_the_release_but_an_airbyte_block_without_a_workspace_is_refused(self):
        values = merge_values(LITE, {"pipeline": {"spec": {"airbyte": {"apiUrl": "http://elsewhere:8001/api/public/v1"}}}})
        with pytest.raises(RenderError, match="airbyte.enabled=false: set pipeline.spec.engine=direct"):
            render(values=values)
