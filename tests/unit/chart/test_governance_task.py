"""The retail_pipeline DAG's governance task in the cluster, proven from the rendered chart and the image.

The task runs ``retailflow_pipeline.governance.run`` in the Airflow pods (the image's Dockerfile):
the ``metadata`` CLI of an OpenMetadata environment built into the image, the workflow files from
the chart's ConfigMap mounted where the image says, the server and credentials from values and
Secrets. The Airflow chart itself is a stand-in here (it renders only ``extraEnv``), so its
``volumes``/``volumeMounts`` are checked as the values handed to it. No cluster runs here.
"""

from __future__ import annotations

import importlib
import re
import sys

import pytest
import yaml

from support.helm_render import (REPO, UMBRELLA, VARIANTS, RenderError, airflow_extra_env, airflow_volumes_with,
                                 chart_values, render)

DOCKERFILE = (REPO / "Dockerfile").read_text()
WORKFLOWS = UMBRELLA / "files" / "openmetadata"


def _governance():
    """retailflow_pipeline.governance from the checkout's dags/ (it and the modules of the package it
    imports, catalog, errors and paths, use the standard library only; the dags venv is not this one)."""
    dags = str(REPO / "dags")
    sys.path.insert(0, dags)
    try:
        return importlib.import_module("retailflow_pipeline.governance")
    finally:
        sys.path.remove(dags)


def _image_env() -> dict[str, str]:
    env: dict[str, str] = {}
    for block in re.findall(r"^ENV (.+?)(?<!\\)$", DOCKERFILE, flags=re.M | re.S):
        for key, value in re.findall(r"([A-Z_][A-Z0-9_]*)=(\S+)", block):
            env[key] = value
    return env


def _airflow_env(rendered) -> list[dict]:
    return airflow_extra_env(rendered)


def _task_env(rendered, secrets_present: bool = True) -> dict[str, str]:
    """The environment a task sees: the image's ENV plus Airflow's extraEnv, each Secret value a
    placeholder (an optional reference to a missing Secret sets nothing, as the kubelet does), each
    ConfigMap value the rendered one (an optional reference to a ConfigMap not rendered sets nothing)."""
    env = dict(_image_env())
    config_maps = {d["metadata"]["name"]: d.get("data") or {} for d in rendered.of_kind("ConfigMap")}
    for item in _airflow_env(rendered):
        if "value" in item:
            env[item["name"]] = re.sub(r"\$\((\w+)\)", lambda m: env.get(m.group(1), "x"), item["value"])
        elif "configMapKeyRef" in item["valueFrom"]:
            ref = item["valueFrom"]["configMapKeyRef"]
            if ref["key"] in config_maps.get(ref["name"], {}):
                env[item["name"]] = config_maps[ref["name"]][ref["key"]]
        elif secrets_present or not item["valueFrom"]["secretKeyRef"].get("optional"):
            env[item["name"]] = f"<{item['valueFrom']['secretKeyRef']['key']}>"
    return env


@pytest.fixture(scope="module")
def airflow_values():
    return yaml.safe_load((UMBRELLA / "values.yaml").read_text())["airflow"]


class TestImage:
    def test_the_image_builds_the_openmetadata_environment_from_the_tested_lock(self):
        assert "COPY --chown=airflow:0 hack/envs/openmetadata/pyproject.toml hack/envs/openmetadata/uv.lock" in DOCKERFILE
        assert re.search(r"UV_PROJECT_ENVIRONMENT=/opt/openmetadata .*\n\s+python -m uv sync --locked", DOCKERFILE)
        assert _image_env()["RETAILFLOW_OPENMETADATA_METADATA_BIN"] == "/opt/openmetadata/bin/metadata"
        ignored = (REPO / ".dockerignore").read_text().splitlines()
        assert {"!hack/envs/openmetadata/pyproject.toml", "!hack/envs/openmetadata/uv.lock",
                "!charts/retailflow/files/openmetadata"} <= set(ignored)

    def test_the_dbt_artifacts_the_dbt_workflow_reads_are_in_the_image(self):
        env = _image_env()
        assert env["RETAILFLOW_DBT_TARGET_DIR"] == "/opt/retailflow/dbt/target"
        assert env["RETAILFLOW_DBT_MANIFEST"] == f"{env['RETAILFLOW_DBT_TARGET_DIR']}/manifest.json"


class TestWorkflowsMount:
    def test_airflow_mounts_the_rendered_workflows_config_map_where_the_image_reads_it(self, defaults, airflow_values):
        configmaps = {d["metadata"]["name"]: d for d in defaults.of_kind("ConfigMap")}
        (volume,) = [v for v in airflow_values["volumes"] if v["name"] == "retailflow-openmetadata-workflows"]
        rendered = configmaps[volume["configMap"]["name"]]
        assert set(rendered["data"]) == {p.name for p in WORKFLOWS.glob("*.yaml")}
        # not a hook: it exists before the Airflow pods start (a hook would come after `helm --wait`)
        assert "helm.sh/hook" not in (rendered["metadata"].get("annotations") or {})
        (mount,) = [m for m in airflow_values["volumeMounts"] if m["name"] == volume["name"]]
        assert mount["mountPath"] == _image_env()["RETAILFLOW_OPENMETADATA_WORKFLOWS"] and mount["readOnly"]
        # optional: without OpenMetadata there is no ConfigMap and the pods still start
        assert volume["configMap"]["optional"] is True

    def test_the_job_mounts_the_same_config_map(self, defaults, airflow_values):
        (volume,) = [v for v in airflow_values["volumes"] if v["name"] == "retailflow-openmetadata-workflows"]
        job = defaults.get("Job", "retailflow-openmetadata-ingestion")
        volumes = {v["name"]: v for v in job["spec"]["template"]["spec"]["volumes"]}
        assert volumes["workflows"]["configMap"]["name"] == volume["configMap"]["name"]


WORKFLOWS_VOLUME = "retailflow-openmetadata-workflows"


class TestRenamedWorkflows:
    """global.retailflow.openmetadata.workflowsConfigMap renames the ConfigMap; airflow.volumes names it
    through a YAML anchor, fixed when values.yaml is read, so an override alone would leave Airflow's
    optional volume an empty folder (the task failing on every run): the chart refuses to render that."""

    RENAMED = {"global": {"retailflow": {"openmetadata": {"workflowsConfigMap": "shop-workflows"}}}}

    def test_the_default_renders_with_the_volume_naming_the_rendered_config_map(self, defaults, airflow_values):
        (volume,) = [v for v in airflow_values["volumes"] if v["name"] == "retailflow-openmetadata-workflows"]
        assert volume["configMap"]["name"] in defaults.names("ConfigMap")

    def test_an_override_alone_is_refused_naming_the_volume_and_the_name(self):
        with pytest.raises(RenderError, match='airflow.volumes: the retailflow-openmetadata-workflows volume mounts '
                                              'ConfigMap "retailflow-openmetadata-workflows", but the chart renders '
                                              'it as "shop-workflows" '
                                              '\\(global.retailflow.openmetadata.workflowsConfigMap\\).*'
                                              'set that entry\'s configMap.name to "shop-workflows"'):
            render(values=self.RENAMED)

    def test_an_override_with_the_same_name_in_airflow_volumes_renders(self):
        volumes = airflow_volumes_with(WORKFLOWS_VOLUME, "shop-workflows")
        rendered = render(values=self.RENAMED | {"airflow": {"volumes": volumes}})
        assert "shop-workflows" in rendered.names("ConfigMap")
        assert "retailflow-openmetadata-workflows" not in rendered.names("ConfigMap")

    def test_the_jobs_own_workflows_may_be_mounted_as_the_readme_asks(self):
        render(values={"jobs": {"openmetadataIngestion": {"workflowsConfigMap": "my-workflows"}},
                       "airflow": {"volumes": airflow_volumes_with(WORKFLOWS_VOLUME, "my-workflows")}})

    def test_a_volume_naming_another_config_map_is_refused(self):
        with pytest.raises(RenderError, match='mounts ConfigMap "elsewhere", but the chart renders it as '
                                              '"retailflow-openmetadata-workflows"'):
            render(values={"airflow": {"volumes": airflow_volumes_with(WORKFLOWS_VOLUME, "elsewhere")}})


class TestTaskEnvironment:
    def test_server_and_credentials_come_from_values_and_secrets(self, defaults, values):
        env = {e["name"]: e for e in _airflow_env(defaults)}
        assert env["RETAILFLOW_OPENMETADATA_URL"]["value"] == values["global"]["retailflow"]["openmetadata"]["url"]
        om_secret = values["global"]["retailflow"]["openmetadata"]["secretName"]
        assert env["RETAILFLOW_OPENMETADATA_ADMIN_PASSWORD"]["valueFrom"]["secretKeyRef"] == \
            {"name": om_secret, "key": "admin-password", "optional": True}
        assert env["RETAILFLOW_OPENMETADATA_TOKEN"]["valueFrom"]["secretKeyRef"] == \
            {"name": om_secret, "key": "jwt-token", "optional": True}
        secret = defaults.get("Secret", om_secret)
        assert "admin-password" in (secret.get("stringData") or secret.get("data"))
        admin = values["global"]["retailflow"]["airflow"]["adminSecretName"]
        assert env["RETAILFLOW_AIRFLOW_PASSWORD"]["valueFrom"]["secretKeyRef"] == {"name": admin, "key": "password"}
        assert env["RETAILFLOW_AIRFLOW_URL"]["value"] == "http://retailflow-api-server:8080"
        assert not [e for e in _airflow_env(defaults) if "PASSWORD" in e["name"] and "value" in e]

    def test_an_existing_openmetadata_secret_is_what_the_task_reads(self):
        rendered = render(values={
            "global": {"retailflow": {"openmetadata": {"existingSecret": "my-openmetadata"}}},
            "openmetadata": {"openmetadata": {"config": {"fernetkey": {"secretRef": "my-openmetadata"}}}},
        })
        env = {e["name"]: e for e in _airflow_env(rendered)}
        assert env["RETAILFLOW_OPENMETADATA_TOKEN"]["valueFrom"]["secretKeyRef"]["name"] == "my-openmetadata"

    def test_every_variable_of_the_tasks_workflows_is_set_in_the_cluster(self, defaults):
        governance = _governance()
        env = _task_env(defaults) | {"RETAILFLOW_OPENMETADATA_WORKFLOWS": str(WORKFLOWS)}  # the ConfigMap's files
        chosen = governance.selected(env)
        assert [w.name for w in chosen] == ["postgres", "dbt", "airflow"]
        provided = set(governance.workflow_env(env, token="<jwt>"))
        assert governance.workflow_env(env, token="<jwt>")["OPENMETADATA_HOST_PORT"] == "http://openmetadata:8585/api"
        for workflow in chosen:
            text = "\n".join(l for l in workflow.path.read_text().splitlines() if not l.lstrip().startswith("#"))
            assert set(re.findall(r"\$\{([A-Z][A-Z0-9_]*)\}", text)) <= provided, workflow.name

    def test_in_the_lite_profile_the_task_skips_saying_no_server_is_configured(self):
        governance = _governance()
        rendered = render(values=VARIANTS["lite"])
        assert "retailflow-openmetadata" not in rendered.names("Secret")
        with pytest.raises(governance.NotConfigured, match="RETAILFLOW_OPENMETADATA_URL is not set"):
            governance.run(_task_env(rendered, secrets_present=False))

    def test_without_openmetadata_the_task_skips(self):
        governance = _governance()
        rendered = render(values={"openmetadata": {"enabled": False}, "opensearch": {"enabled": False}})
        assert "retailflow-openmetadata" not in rendered.names("Secret")
        assert "retailflow-openmetadata-workflows" not in rendered.names("ConfigMap")
        env = _task_env(rendered, secrets_present=False)
        with pytest.raises(governance.NotConfigured, match="no credentials"):
            governance.run(env)
