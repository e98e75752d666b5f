"""templates/superset and the dashboards Job: Superset from this chart's own templates on the
official image (the upstream chart is deprecated; see the chart README)."""

from __future__ import annotations

import ast
import re

import pytest
import yaml

from support.helm_render import UMBRELLA, containers, pod_spec, render

FILES = UMBRELLA / "files" / "superset"
BUNDLE = FILES / "bundle"
SECRET = "retailflow-superset-env"


def env_of(container: dict) -> dict[str, dict]:
    return {e["name"]: e for e in container.get("env", [])}


def secret_ref(env: dict, name: str) -> dict:
    return env[name]["valueFrom"]["secretKeyRef"]


def hook(doc: dict) -> tuple[str, int]:
    annotations = doc["metadata"]["annotations"]
    return annotations["helm.sh/hook"], int(annotations.get("helm.sh/hook-weight", 0))


def bundle_files() -> set[str]:
    return {p.relative_to(BUNDLE).as_posix() for p in BUNDLE.rglob("*.yaml")}


def test_the_upstream_superset_chart_is_no_dependency_any_more():
    chart = yaml.safe_load((UMBRELLA / "Chart.yaml").read_text())
    assert "superset" not in {d["name"] for d in chart["dependencies"]}


class TestConfig:
    def test_ships_the_files_the_local_superset_runs(self, defaults):
        data = defaults.get("ConfigMap", "retailflow-superset-config")["data"]
        assert data["superset_config.py"].strip() == (FILES / "superset_config.py").read_text().strip()
        assert data["superset_setup.py"].strip() == (FILES / "superset_setup.py").read_text().strip()

    def test_every_cache_is_shared_through_the_metadata_database(self):
        tree = ast.parse((FILES / "superset_config.py").read_text())
        assigned = {t.id: node.value for node in tree.body if isinstance(node, ast.Assign)
                    for t in node.targets if isinstance(t, ast.Name)}
        metastore = ast.literal_eval(assigned["_METASTORE"])
        assert metastore == "superset.extensions.metastore_cache.SupersetMetastoreCache"
        for name in ("CACHE_CONFIG", "FILTER_STATE_CACHE_CONFIG", "EXPLORE_FORM_DATA_CACHE_CONFIG"):
            (cache_type,) = [v for k, v in zip(assigned[name].keys, assigned[name].values) if ast.literal_eval(k) == "CACHE_TYPE"]
            assert isinstance(cache_type, ast.Name) and cache_type.id == "_METASTORE", name

    def test_secret_key_and_database_come_from_the_environment(self):
        text = (FILES / "superset_config.py").read_text()
        assert 'SECRET_KEY = _required("SUPERSET_SECRET_KEY")' in text
        assert 'SQLALCHEMY_DATABASE_URI = _required("SUPERSET_DATABASE_URI")' in text


class TestSecret:
    def test_metadata_database_is_the_umbrellas_postgresql_without_tls(self, defaults, values):
        from test_secrets import secret_data

        env = secret_data(defaults.get("Secret", SECRET))
        pg = secret_data(defaults.get("Secret", "retailflow-postgresql"))
        assert "superset" in values["postgresql"]["databases"]
        assert env["SUPERSET_DATABASE_URI"] == (
            f"postgresql+psycopg2://superset:{pg['superset-password']}@retailflow-postgresql:5432/superset?sslmode=disable")
        assert len(env["SUPERSET_SECRET_KEY"]) == 48
        assert env["ADMIN_USERNAME"] == "admin" and len(env["ADMIN_PASSWORD"]) >= 32


class TestDeployment:
    name = "retailflow-superset"

    @pytest.fixture(scope="class")
    @classmethod
    def deployment(cls) -> dict:
        return render().get("Deployment", cls.name)

    def test_official_image_and_two_gunicorn_workers(self, deployment):
        (web,) = pod_spec(deployment)["containers"]
        assert web["image"] == "apache/superset:6.1.0"
        assert web["command"][0] == "gunicorn" and "--workers=2" in web["command"]
        assert web["command"][-1] == "superset.app:create_app()"

    def test_secrets_only_by_reference(self, deployment):
        # every container but the driver install and the wait, which run no Superset code
        for container in [c for c in containers(deployment) if c["name"] not in ("drivers", "wait-for")]:
            env = env_of(container)
            assert secret_ref(env, "SUPERSET_SECRET_KEY") == {"name": SECRET, "key": "SUPERSET_SECRET_KEY"}
            assert secret_ref(env, "SUPERSET_DATABASE_URI") == {"name": SECRET, "key": "SUPERSET_DATABASE_URI"}
            assert env["SUPERSET_CONFIG_PATH"]["value"] == "/app/retailflow/superset_config.py"
            assert all("value" not in e or "PASSWORD" not in e["name"] for e in env.values())

    def test_installs_the_driver_waits_for_postgresql_then_migrates_itself(self, deployment):
        drivers, wait, setup = pod_spec(deployment)["initContainers"]
        assert "--target /app/drivers 'psycopg2-binary==2.9.10'" in drivers["args"][0]
        assert wait["args"] == ["retailflow-postgresql=pg://retailflow-postgresql:5432"]
        assert deployment["metadata"]["annotations"]["retailflow.io/waits-for"] == "service/retailflow-postgresql"
        assert setup["command"] == ["python", "/app/retailflow/superset_setup.py", "setup"]
        (web,) = pod_spec(deployment)["containers"]
        assert env_of(web)["PYTHONPATH"]["value"] == "/app/drivers"
        assert env_of(setup)["PYTHONPATH"]["value"] == "/app/drivers"

    def test_the_setup_creates_the_admin_from_the_secret_in_turn(self, deployment, values):
        (setup,) = [c for c in pod_spec(deployment)["initContainers"] if c["name"] == "setup"]
        assert "--password" not in " ".join(setup["command"]) and "create-admin" not in " ".join(setup["command"])
        script = (FILES / "superset_setup.py").read_text()
        body = script[script.index("def setup()"):script.index("def ensure_admin")]
        # what `superset db upgrade` and `superset init` run, then the admin, under the lock
        assert body.index("pg_advisory_lock") < body.index("_setup(app)") < body.index("ensure_admin(app)")
        assert body.index("upgrade()") < body.index("sync_role_definitions()")
        env = env_of(setup)
        assert secret_ref(env, "RETAILFLOW_SUPERSET_USERNAME") == {"name": SECRET, "key": "ADMIN_USERNAME"}
        assert secret_ref(env, "RETAILFLOW_SUPERSET_PASSWORD") == {"name": SECRET, "key": "ADMIN_PASSWORD"}
        assert setup["resources"] == values["superset"]["init"]["resources"]

    def test_no_hook_is_left_for_superset_to_wait_on(self, defaults):
        assert not [d for d in defaults.of_kind("Job") if "superset-init" in d["metadata"]["name"]]

    def test_probes_on_health(self, deployment):
        (web,) = pod_spec(deployment)["containers"]
        for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
            assert web[probe]["httpGet"] == {"path": "/health", "port": "http"}

    def test_runs_as_non_root_without_privileges(self, deployment):
        spec = pod_spec(deployment)
        assert spec["securityContext"]["runAsNonRoot"] is True
        (web,) = spec["containers"]
        assert web["securityContext"] == {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}}

    def test_requests_and_limits_from_values(self, deployment, values):
        (web,) = pod_spec(deployment)["containers"]
        assert web["resources"] == values["superset"]["web"]["resources"]

    def test_a_config_change_rolls_the_pods(self, deployment):
        assert re.fullmatch(r"[0-9a-f]{64}", deployment["spec"]["template"]["metadata"]["annotations"]["checksum/config"])

    def test_an_image_with_drivers_needs_no_install(self):
        deployment = render(values={"superset": {"drivers": []}}).get("Deployment", self.name)
        assert [c["name"] for c in pod_spec(deployment)["initContainers"]] == ["wait-for", "setup"]
        assert "PYTHONPATH" not in env_of(pod_spec(deployment)["containers"][0])


class TestService:
    def test_selects_the_web_pods_on_8088(self, defaults):
        service = defaults.get("Service", "retailflow-superset")
        deployment = defaults.get("Deployment", "retailflow-superset")
        assert service["spec"]["ports"] == [{"name": "http", "port": 8088, "targetPort": "http"}]
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        assert service["spec"]["selector"].items() <= labels.items()


class TestDashboardsJob:
    name = "retailflow-superset-dashboards"

    def test_runs_the_pipelines_refresh_from_the_airflow_image(self, defaults):
        (job,) = pod_spec(defaults.get("Job", self.name))["containers"]
        assert job["image"] == "retailflow/airflow:0.1.0"
        assert job["command"] == ["python", "-m", "retailflow_pipeline.dashboards"]
        env = env_of(job)
        assert env["RETAILFLOW_SUPERSET_URL"]["value"] == "http://retailflow-superset:8088"
        assert env["RETAILFLOW_SUPERSET_BUNDLE"]["value"] == "/bundle"

    def test_credentials_from_secrets_and_the_url_after_its_parts(self, defaults):
        (job,) = pod_spec(defaults.get("Job", self.name))["containers"]
        env = env_of(job)
        assert secret_ref(env, "RETAILFLOW_SUPERSET_PASSWORD") == {"name": SECRET, "key": "ADMIN_PASSWORD"}
        assert secret_ref(env, "RETAILFLOW_WAREHOUSE_PASSWORD") == {"name": "retailflow-postgresql", "key": "warehouse-password"}
        assert env["RETAILFLOW_WAREHOUSE_URL"]["value"] == \
            "postgresql://$(RETAILFLOW_WAREHOUSE_USER):$(RETAILFLOW_WAREHOUSE_PASSWORD)@retailflow-postgresql:5432/warehouse"
        names = list(env)
        # Kubernetes expands $(VAR) only from variables defined before it.
        assert names.index("RETAILFLOW_WAREHOUSE_PASSWORD") < names.index("RETAILFLOW_WAREHOUSE_URL")

    def test_mounts_every_bundle_file_at_its_path(self, defaults):
        config_map = defaults.get("ConfigMap", "retailflow-superset-bundle")
        (volume,) = [v for v in pod_spec(defaults.get("Job", self.name))["volumes"] if v["name"] == "bundle"]
        assert volume["configMap"]["name"] == "retailflow-superset-bundle"
        items = {i["path"]: i["key"] for i in volume["configMap"]["items"]}
        assert set(items) == bundle_files() and "metadata.yaml" in items
        for path, key in items.items():
            assert config_map["data"][key].strip() == (BUNDLE / path).read_text().strip()

    def test_the_bundle_holds_no_password(self, defaults):
        data = defaults.get("ConfigMap", "retailflow-superset-bundle")["data"]
        (database,) = [yaml.safe_load(v) for k, v in data.items() if k.startswith("databases__")]
        assert ":XXXXXXXXXX@" in database["sqlalchemy_uri"] and "password" not in database

    def test_small_requests_and_limits(self, defaults):
        (job,) = pod_spec(defaults.get("Job", self.name))["containers"]
        assert job["resources"]["requests"]["memory"] == "128Mi" and job["resources"]["limits"]["memory"] == "256Mi"

    def test_cleaned_up_and_rerun_on_upgrade(self, defaults):
        job = defaults.get("Job", self.name)
        assert job["spec"]["ttlSecondsAfterFinished"] > 0
        assert job["metadata"]["annotations"]["helm.sh/hook-delete-policy"] == "before-hook-creation"

    def test_off_with_the_switch(self):
        rendered = render(values={"jobs": {"supersetDashboards": {"enabled": False}}})
        assert self.name not in rendered.names("Job")
        assert "retailflow-superset-bundle" not in rendered.names("ConfigMap")
        assert "retailflow-superset" in rendered.names("Deployment")


def test_every_reference_to_superset_finds_its_service_under_another_release_name():
    rendered = render(release="shop")
    assert "shop-superset" in rendered.names("Service")
    (job,) = pod_spec(rendered.get("Job", "shop-retailflow-superset-dashboards"))["containers"]
    assert env_of(job)["RETAILFLOW_SUPERSET_URL"]["value"] == "http://shop-superset:8088"
    (om,) = [c for c in containers(rendered.get("Job", "shop-retailflow-openmetadata-ingestion")) if "SUPERSET_URL" in env_of(c)]
    assert env_of(om)["SUPERSET_URL"]["value"] == "http://shop-superset:8088"
    # NOTES.txt (not rendered under another release by the harness) names it the same way
    assert '(printf "%s-superset" .Release.Name)' in (UMBRELLA / "templates" / "NOTES.txt").read_text()


def test_nothing_of_superset_without_superset():
    rendered = render(values={"superset": {"enabled": False}})
    names = {d["metadata"]["name"] for d in rendered.docs}
    assert not {n for n in names if "superset" in n}


def test_bad_values_are_refused_by_the_schema():
    from support.helm_render import RenderError

    with pytest.raises(RenderError, match="webWorkers"):
        render(values={"superset": {"webWorkers": 0}})
