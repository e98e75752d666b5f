"""The retail_pipeline DAG's dashboards task in the cluster, proven from the rendered chart.

The task runs ``retailflow_pipeline.dashboards.refresh`` in the Airflow pods, the import the chart's
Job runs: Superset's URL (the bundle ConfigMap's ``superset-url``, written by the helper that writes
the Job's), the admin from Superset's Secret, the bundle mounted from the same ConfigMap as the
Job's. Without that ConfigMap (no Superset, or jobs.supersetDashboards off) nothing is set and the
task skips. The Airflow chart itself is a stand-in here (it renders only ``extraEnv``), so its
``volumes``/``volumeMounts`` are checked as the values handed to it. No cluster runs here.
"""

from __future__ import annotations

import importlib
import re
import sys

import pytest
import yaml

from support.helm_render import (REPO, UMBRELLA, VARIANTS, RenderError, airflow_extra_env, airflow_volumes_with,
                                 chart_values, pod_spec, render)

BUNDLE = UMBRELLA / "files" / "superset" / "bundle"
CONFIG_MAP = "retailflow-superset-bundle"
SECRET = "retailflow-superset-env"
JOB = "retailflow-superset-dashboards"
#: extraEnv entry -> (Secret key the Job reads it from as well)
CREDENTIALS = {"RETAILFLOW_SUPERSET_USERNAME": "ADMIN_USERNAME", "RETAILFLOW_SUPERSET_PASSWORD": "ADMIN_PASSWORD"}


def _dashboards():
    """retailflow_pipeline.dashboards from the checkout's dags/ (requests and PyYAML besides the standard
    library; the dags venv is not this one)."""
    dags = str(REPO / "dags")
    sys.path.insert(0, dags)
    try:
        return importlib.import_module("retailflow_pipeline.dashboards")
    finally:
        sys.path.remove(dags)


def _extra_env(rendered) -> dict[str, dict]:
    return {e["name"]: e for e in airflow_extra_env(rendered)}


def _job_env(rendered, job: str = JOB) -> dict[str, dict]:
    (container,) = pod_spec(rendered.get("Job", job))["containers"]
    return {e["name"]: e for e in container["env"]}


def _secret_keys(rendered, name: str) -> set[str]:
    doc = rendered.get("Secret", name)
    return set(doc.get("stringData") or {}) | set(doc.get("data") or {})


def _task_env(rendered) -> dict[str, str]:
    """What the task reads: Airflow's extraEnv as the kubelet resolves it against the rendered objects.
    A Secret value is a placeholder naming its key, a ConfigMap value the rendered one; an optional
    reference to an object or key not rendered sets nothing, a required one to a Secret not rendered
    is the user's (existingSecret) and counts as present."""
    rendered_secrets = {d["metadata"]["name"] for d in rendered.of_kind("Secret")}
    config_maps = {d["metadata"]["name"]: d.get("data") or {} for d in rendered.of_kind("ConfigMap")}
    env: dict[str, str] = {}
    for item in airflow_extra_env(rendered):
        if "value" in item:
            env[item["name"]] = re.sub(r"\$\((\w+)\)", lambda m: env.get(m.group(1), "x"), item["value"])
            continue
        ((kind, ref),) = item["valueFrom"].items()
        if kind == "secretKeyRef":
            if ref["name"] in rendered_secrets:
                present = ref["key"] in _secret_keys(rendered, ref["name"])
            else:
                present = not ref.get("optional")
            value = f"<{ref['key']}>" if present else None
        else:
            value = config_maps.get(ref["name"], {}).get(ref["key"])
        if value is not None:
            env[item["name"]] = value
        else:
            assert ref.get("optional"), f"{item['name']}: {ref['name']}/{ref['key']} is not rendered"
    return env


@pytest.fixture(scope="module")
def airflow_values():
    return yaml.safe_load((UMBRELLA / "values.yaml").read_text())["airflow"]


class TestUrlAndCredentials:
    def test_the_airflow_pods_get_the_url_the_import_job_uses(self, defaults):
        env = _extra_env(defaults)
        assert env["RETAILFLOW_SUPERSET_URL"]["valueFrom"] == \
            {"configMapKeyRef": {"name": CONFIG_MAP, "key": "superset-url", "optional": True}}
        url = defaults.get("ConfigMap", CONFIG_MAP)["data"]["superset-url"]
        assert url == _job_env(defaults)["RETAILFLOW_SUPERSET_URL"]["value"] == "http://retailflow-superset:8088"

    def test_the_admin_comes_from_the_secret_the_job_reads(self, defaults):
        env, job = _extra_env(defaults), _job_env(defaults)
        for name, key in CREDENTIALS.items():
            assert env[name]["valueFrom"] == {"secretKeyRef": {"name": SECRET, "key": key, "optional": True}}, name
            assert job[name]["valueFrom"]["secretKeyRef"] == {"name": SECRET, "key": key}, name
        assert set(CREDENTIALS.values()) <= _secret_keys(defaults, SECRET)

    def test_another_port_and_release_name_reach_the_pods(self):
        rendered = render(release="shop", values={"superset": {"port": 9000}})
        assert rendered.get("Service", "shop-superset")["spec"]["ports"][0]["port"] == 9000
        url = rendered.get("ConfigMap", CONFIG_MAP)["data"]["superset-url"]
        assert url == _job_env(rendered, "shop-retailflow-superset-dashboards")["RETAILFLOW_SUPERSET_URL"]["value"] \
            == "http://shop-superset:9000"
        assert _task_env(rendered)["RETAILFLOW_SUPERSET_URL"] == "http://shop-superset:9000"


class TestBundleMount:
    def test_airflow_mounts_every_bundle_file_at_its_path_as_the_job_does(self, defaults, airflow_values):
        (volume,) = [v for v in airflow_values["volumes"] if v["name"] == CONFIG_MAP]
        assert volume["configMap"]["name"] == CONFIG_MAP
        # optional: without Superset there is no ConfigMap and the pods still start
        assert volume["configMap"]["optional"] is True
        (job_volume,) = [v for v in pod_spec(defaults.get("Job", JOB))["volumes"] if v["name"] == "bundle"]
        assert job_volume["configMap"]["name"] == CONFIG_MAP
        items = {i["path"]: i["key"] for i in volume["configMap"]["items"]}
        assert items == {i["path"]: i["key"] for i in job_volume["configMap"]["items"]}
        assert set(items) == {p.relative_to(BUNDLE).as_posix() for p in BUNDLE.rglob("*.yaml")}
        rendered = defaults.get("ConfigMap", CONFIG_MAP)
        assert set(items.values()) <= set(rendered["data"])
        # not a hook: it exists before the Airflow pods start
        assert "helm.sh/hook" not in (rendered["metadata"].get("annotations") or {})
        (mount,) = [m for m in airflow_values["volumeMounts"] if m["name"] == volume["name"]]
        assert mount["readOnly"] and mount["mountPath"] == _task_env(defaults)["RETAILFLOW_SUPERSET_BUNDLE"]

    def test_the_default_airflow_volume_mounts_the_config_map_the_chart_renders(self, defaults, airflow_values):
        (volume,) = [v for v in airflow_values["volumes"] if v["name"] == CONFIG_MAP]
        assert volume["configMap"]["name"] in defaults.names("ConfigMap")


class TestRenamedBundle:
    """global.retailflow.superset.bundleConfigMap renames the ConfigMap; airflow.volumes names it through a
    YAML anchor, fixed when values.yaml is read, so an override alone would leave Airflow's optional
    volume an empty folder (the task failing on every run): the chart refuses to render that."""

    RENAMED = {"global": {"retailflow": {"superset": {"bundleConfigMap": "shop-bundle"}}}}

    def test_an_override_alone_is_refused_naming_the_volume_and_the_name(self):
        with pytest.raises(RenderError, match='airflow.volumes: the retailflow-superset-bundle volume mounts '
                                              'ConfigMap "retailflow-superset-bundle", but the chart renders it as '
                                              '"shop-bundle" \\(global.retailflow.superset.bundleConfigMap\\).*'
                                              'set that entry\'s configMap.name to "shop-bundle"'):
            render(values=self.RENAMED)

    def test_an_override_with_the_same_name_in_airflow_volumes_renders(self):
        volumes = airflow_volumes_with(CONFIG_MAP, "shop-bundle")
        rendered = render(values=self.RENAMED | {"airflow": {"volumes": volumes}})
        assert "shop-bundle" in rendered.names("ConfigMap") and CONFIG_MAP not in rendered.names("ConfigMap")
        assert _extra_env(rendered)["RETAILFLOW_SUPERSET_URL"]["valueFrom"]["configMapKeyRef"]["name"] == "shop-bundle"

    def test_a_volume_naming_another_config_map_is_refused_with_the_default_name(self):
        with pytest.raises(RenderError, match='mounts ConfigMap "elsewhere", but the chart renders it as '
                                              '"retailflow-superset-bundle"'):
            render(values={"airflow": {"volumes": airflow_volumes_with(CONFIG_MAP, "elsewhere")}})

    @pytest.mark.parametrize("values", [{"superset": {"enabled": False}},
                                        {"jobs": {"supersetDashboards": {"enabled": False}}}],
                             ids=["no-superset", "no-import"])
    def test_without_the_config_map_there_is_nothing_to_match(self, values):
        render(values=values | self.RENAMED)


class TestTaskSettings:
    @pytest.mark.parametrize("variant", ["defaults", "lite", "existing-secrets", "airbyte-namespace"])
    def test_the_task_is_configured(self, variant):
        dashboards = _dashboards()
        env = _task_env(render(values=VARIANTS[variant]))
        # the bundle at its mount path is the chart's files (TestBundleMount)
        settings = dashboards.SupersetSettings.from_env(env | {"RETAILFLOW_SUPERSET_BUNDLE": str(BUNDLE)})
        assert settings.superset_url == "http://retailflow-superset:8088"
        assert (settings.username, settings.password) == ("<ADMIN_USERNAME>", "<ADMIN_PASSWORD>")
        assert settings.warehouse_url.endswith("@retailflow-postgresql:5432/warehouse")

    @pytest.mark.parametrize("values", [
        {"superset": {"enabled": False}},
        VARIANTS["subset-with-workspace"],
        {"jobs": {"supersetDashboards": {"enabled": False}}},
    ], ids=["no-superset", "subset-without-superset", "no-import"])
    def test_without_the_import_the_task_skips(self, values):
        dashboards = _dashboards()
        rendered = render(values=values)
        assert CONFIG_MAP not in rendered.names("ConfigMap")
        env = _task_env(rendered)
        assert "RETAILFLOW_SUPERSET_URL" not in env
        with pytest.raises(dashboards.NotConfigured, match="RETAILFLOW_SUPERSET_URL is not set"):
            dashboards.SupersetSettings.from_env(env)
