"""Scale-out from the lite profile: every values snippet of the chart README's "Scale-out from lite",
rendered on top of values-lite.yaml as `helm upgrade` renders it, and the upgrade played from the lite
install through the install-order model (support.helm_install).

The snippets are read from the README, so what users copy is what is tested.
"""

from __future__ import annotations

import re

import jsonschema
import pytest
import yaml

from support.helm_install import play
from support.helm_render import (LITE_VALUES, airflow_extra_env, RELEASE, UMBRELLA, UUID, RenderError, chart_values, merge_values,
                                 pod_spec, render)

README = UMBRELLA / "README.md"
LITE = yaml.safe_load(LITE_VALUES.read_text())
UPSTREAM_CHARTS = ("airbyte", "airflow", "openmetadata", "opensearch")


def snippets() -> dict[str, dict]:
    text = README.read_text()
    found = re.findall(r"<!-- scale-out: ([a-z-]+) -->\s*```yaml\n(.*?)```", text, re.S)
    return {name: yaml.safe_load(body) for name, body in found}


def enabled_upstream(values: dict) -> set[str]:
    return {c for c in UPSTREAM_CHARTS if values[c]["enabled"]}


def upgraded(name: str):
    """The release after `helm upgrade -f values-lite.yaml -f <snippet>`."""
    return render(values=merge_values(LITE, snippets()[name]), is_upgrade=True)


def is_hook(doc: dict) -> bool:
    return "helm.sh/hook" in (doc["metadata"].get("annotations") or {})


def allowed_hosts(rendered) -> set[str]:
    (container,) = pod_spec(rendered.get("Deployment", "retailflow-operator"))["containers"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    return set(env["RETAILFLOW_ALLOWED_HOSTS"].split(","))


def test_the_readme_documents_each_path():
    assert set(snippets()) == {"add-airbyte", "add-openmetadata", "kubernetes-executor"}


@pytest.mark.parametrize("name", ["add-airbyte", "add-openmetadata", "kubernetes-executor"])
@pytest.mark.parametrize("wait_for_jobs", [False, True], ids=["wait", "wait-for-jobs"])
def test_the_upgrade_from_lite_completes(name, wait_for_jobs):
    lite_values, after_values = chart_values(LITE), chart_values(LITE, snippets()[name])
    outcome = play(upgraded(name).docs, release=RELEASE, upstream=enabled_upstream(after_values), action="upgrade",
                   wait_for_jobs=wait_for_jobs, installed=(render(values=LITE).docs, enabled_upstream(lite_values)))
    assert not outcome.problems, "\n".join(outcome.problems + ["", "sequence:"] + outcome.steps)


class TestAddAirbyte:
    def test_airbyte_comes_with_its_bucket_and_the_operator_may_reach_it(self):
        rendered, values = upgraded("add-airbyte"), chart_values(LITE, snippets()["add-airbyte"])
        assert values["airbyte"]["enabled"] and "airbyte-storage" in values["lake"]["buckets"]
        assert "retailflow-airbyte-server-svc" in allowed_hosts(rendered)
        # MinIO stays a release resource, which the upgrade may restart (with another root): the Job runs after
        # it, and before the pipeline Job, so that no Airbyte sync runs before Airbyte's bucket exists
        annotations = rendered.get("Job", "retailflow-lake-buckets")["metadata"]["annotations"]
        assert annotations["helm.sh/hook"] == "post-install,post-upgrade"
        pipeline = rendered.get("Job", "retailflow-pipeline")["metadata"]["annotations"]
        assert int(annotations["helm.sh/hook-weight"]) < int(pipeline["helm.sh/hook-weight"])

    def test_the_data_stores_stay_release_resources(self):
        rendered = upgraded("add-airbyte")
        for kind, name in [("StatefulSet", "retailflow-postgresql"), ("StatefulSet", "retailflow-minio"),
                           ("Service", "retailflow-postgresql"), ("Service", "retailflow-minio"),
                           ("ConfigMap", "retailflow-postgresql-init")]:
            assert not is_hook(rendered.get(kind, name)), f"{kind} {name} would leave the release and be deleted"
        ready = rendered.get("Job", "retailflow-datastores-ready")
        assert ready["metadata"]["annotations"]["helm.sh/hook"] == "pre-install,pre-upgrade"

    def test_the_pipeline_job_applies_it_with_engine_airbyte(self, crd_schema):
        rendered = upgraded("add-airbyte")
        assert "retail" not in rendered.names("RetailPipeline")  # Helm deletes the lite one; the Job applies it
        body = yaml.safe_load(rendered.get("ConfigMap", "retailflow-pipeline")["data"]["retailpipeline.yaml"])
        assert body["spec"]["engine"] == "airbyte"
        assert body["spec"]["airbyte"]["credentialsSecretRef"]["name"] == "airbyte-auth-secrets"
        body["spec"]["airbyte"]["workspaceId"] = UUID  # what the Job reads from Airbyte's API
        errors = sorted(jsonschema.Draft7Validator(crd_schema).iter_errors(body), key=str)
        assert not errors, [e.message for e in errors]

    def test_a_first_install_with_these_values_is_refused(self):
        """Airbyte's pre-install bootloader needs the data stores as hooks on a first install."""
        with pytest.raises(RenderError, match="datastores.hooksWithAirbyte=false"):
            render(values=merge_values(LITE, snippets()["add-airbyte"]))


class TestAddOpenMetadata:
    def test_the_server_its_secret_and_the_ingestion_job(self):
        rendered = upgraded("add-openmetadata")
        values = chart_values(LITE, snippets()["add-openmetadata"])
        assert values["openmetadata"]["enabled"] and values["opensearch"]["enabled"]
        assert "retailflow-openmetadata" in rendered.names("Secret")
        assert "retailflow-openmetadata-workflows" in rendered.names("ConfigMap")
        job = rendered.get("Job", "retailflow-openmetadata-ingestion")
        env = {e["name"]: e.get("value") for c in pod_spec(job)["containers"] for e in c.get("env", [])}
        assert env["OPENMETADATA_SERVER"] == "http://openmetadata:8585"

    def test_the_airflow_pods_are_told_the_server(self):
        env = {e["name"]: e.get("value") for e in airflow_extra_env(upgraded("add-openmetadata"))}
        assert env["RETAILFLOW_OPENMETADATA_URL"] == "http://openmetadata:8585"

    def test_without_its_url_openmetadata_is_refused(self):
        values = merge_values(LITE, snippets()["add-openmetadata"], {"global": {"retailflow": {"openmetadata": {"url": ""}}}})
        with pytest.raises(RenderError, match="set global.retailflow.openmetadata.url"):
            render(values=values, is_upgrade=True)


class TestKubernetesExecutor:
    def test_each_task_pod_has_requests_and_limits(self):
        airflow = chart_values(LITE, snippets()["kubernetes-executor"])["airflow"]
        assert airflow["executor"] == "KubernetesExecutor"
        resources = airflow["workers"]["resources"]
        assert resources["requests"]["memory"] and resources["limits"]["memory"] and resources["limits"]["cpu"]

    def test_task_pods_get_the_environment_and_volumes_of_the_other_airflow_pods(self):
        """The Airflow chart's pod template reads extraEnv, volumes and volumeMounts (see the README):
        the snippet must leave them as they are."""
        lite, scaled = chart_values(LITE)["airflow"], chart_values(LITE, snippets()["kubernetes-executor"])["airflow"]
        for key in ("extraEnv", "volumes", "volumeMounts", "config"):
            assert scaled[key] == lite[key], key
        rendered = render(values=merge_values(LITE, snippets()["kubernetes-executor"]), is_upgrade=True)
        assert rendered.names("Deployment") == render(values=LITE).names("Deployment")
