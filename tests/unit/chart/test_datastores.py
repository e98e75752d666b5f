"""templates/mysql, templates/postgresql, templates/minio: the chart's own data stores."""

from __future__ import annotations

import pytest

from support.helm_render import VARIANTS, containers, pod_spec, render

STANDARD_LABELS = ("app.kubernetes.io/name", "app.kubernetes.io/instance", "app.kubernetes.io/component",
                   "app.kubernetes.io/part-of", "app.kubernetes.io/version", "app.kubernetes.io/managed-by",
                   "helm.sh/chart")


def env_of(container: dict) -> dict[str, dict]:
    return {e["name"]: e for e in container.get("env", [])}


class _StatefulStore:
    name: str
    image: str
    port: int

    def test_official_image_pinned(self, defaults):
        (container,) = containers(defaults.get("StatefulSet", self.name))
        repository, tag = container["image"].rsplit(":", 1)
        assert repository == self.image and tag not in ("latest", "")

    def test_probes_and_resources(self, defaults):
        (container,) = containers(defaults.get("StatefulSet", self.name))
        assert container.get("readinessProbe") and container.get("livenessProbe")
        assert container["resources"]["requests"]["memory"] and container["resources"]["limits"]["memory"]

    def test_service_selects_the_pods_on_the_shared_port(self, defaults):
        service = defaults.get("Service", self.name)
        sts = defaults.get("StatefulSet", self.name)
        assert service["spec"]["selector"].items() <= sts["spec"]["template"]["metadata"]["labels"].items()
        assert self.port in [p["port"] for p in service["spec"]["ports"]]

    def test_standard_labels(self, defaults):
        for kind in ("StatefulSet", "Service"):
            labels = defaults.get(kind, self.name)["metadata"]["labels"]
            assert all(k in labels for k in STANDARD_LABELS)
            assert labels["app.kubernetes.io/part-of"] == "retailflow"

    def test_data_on_a_volume_claim(self, defaults):
        claims = defaults.get("StatefulSet", self.name)["spec"]["volumeClaimTemplates"]
        assert claims[0]["spec"]["resources"]["requests"]["storage"]


class TestMysql(_StatefulStore):
    name, image, port = "retailflow-mysql", "mysql", 3306

    def test_credentials_from_the_secret(self, defaults):
        env = env_of(containers(defaults.get("StatefulSet", self.name))[0])
        for var, key in (("MYSQL_ROOT_PASSWORD", "root-password"), ("MYSQL_PASSWORD", "password"),
                         ("MYSQL_USER", "username")):
            assert env[var]["valueFrom"]["secretKeyRef"] == {"name": "retailflow-mysql", "key": key}
        assert env["MYSQL_DATABASE"]["value"] == "retail"

    def test_probes_keep_the_password_off_the_command_line(self, defaults):
        (container,) = containers(defaults.get("StatefulSet", self.name))
        for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
            command = " ".join(container[probe]["exec"]["command"])
            assert "MYSQL_PWD=" in command and "-p" not in command.split()

    def test_disabled_renders_nothing(self):
        rendered = render(values={"mysql": {"enabled": False}})
        assert "retailflow-mysql" not in rendered.names("StatefulSet") | rendered.names("Service")


class TestPostgresql(_StatefulStore):
    name, image, port = "retailflow-postgresql", "postgres", 5432

    def test_init_script_creates_a_role_and_database_per_consumer(self, defaults):
        script = defaults.get("ConfigMap", "retailflow-postgresql-init")["data"]["10-retailflow-roles.sh"]
        assert "for name in warehouse airflow superset airbyte openmetadata; do" in script
        assert 'CREATE ROLE :"name" LOGIN CREATEDB PASSWORD :\'pw\'' in script
        # the password reaches psql in its environment, read with \getenv (psql 15 and later), not as -v pw=
        assert "\\getenv pw ROLE_PASSWORD" in script and "pw=" not in script
        image = containers(defaults.get("StatefulSet", self.name))[0]["image"]
        assert int(image.rsplit(":", 1)[1].split(".")[0]) >= 15, f"{image}: its psql has no \\getenv"
        env = env_of(containers(defaults.get("StatefulSet", self.name))[0])
        for role in ("WAREHOUSE", "AIRFLOW", "SUPERSET", "AIRBYTE", "OPENMETADATA"):
            assert env[f"RETAILFLOW_PW_{role}"]["valueFrom"]["secretKeyRef"]["key"] == f"{role.lower()}-password"

    def test_is_an_early_hook_when_airbyte_is_on(self, defaults):
        # Airbyte's bootloader (a pre-install hook) needs the database before any release resource exists.
        for kind in ("StatefulSet", "Service"):
            annotations = defaults.get(kind, self.name)["metadata"]["annotations"]
            assert annotations["helm.sh/hook"] == "pre-install"
            assert int(annotations["helm.sh/hook-weight"]) < 0

    def test_is_an_ordinary_resource_without_airbyte(self):
        rendered = render(values=VARIANTS["subset-with-workspace"])
        assert "annotations" not in rendered.get("StatefulSet", self.name)["metadata"]


class TestMinio(_StatefulStore):
    name, image, port = "retailflow-minio", "minio/minio", 9000

    def test_root_credentials_are_minios_own_not_the_lake_keys(self, defaults):
        env = env_of(containers(defaults.get("StatefulSet", self.name))[0])
        assert env["MINIO_ROOT_USER"]["valueFrom"]["secretKeyRef"] == {"name": "retailflow-minio-root", "key": "accessKeyId"}
        assert env["MINIO_ROOT_PASSWORD"]["valueFrom"]["secretKeyRef"] == {"name": "retailflow-minio-root",
                                                                            "key": "secretAccessKey"}

    def test_console_port_exposed(self, defaults):
        ports = {p["name"]: p["port"] for p in defaults.get("Service", self.name)["spec"]["ports"]}
        assert ports == {"s3": 9000, "console": 9001}

    def test_runs_unprivileged(self, defaults):
        spec = pod_spec(defaults.get("StatefulSet", self.name))
        assert spec["securityContext"]["runAsNonRoot"] is True

    @pytest.mark.parametrize("variant", ["external-s3"])
    def test_external_endpoint_replaces_minio(self, variant):
        rendered = render(values=VARIANTS[variant])
        assert "retailflow-minio" not in rendered.names("StatefulSet") | rendered.names("Service")
        job = rendered.get("Job", "retailflow-lake-buckets")
        env = env_of(next(c for c in containers(job) if c["name"] == "buckets"))
        assert env["LAKE_ENDPOINT"]["value"] == "https://seaweedfs.storage.svc:8333"
        assert env["LAKE_ACCESS_KEY_ID"]["valueFrom"]["secretKeyRef"]["name"] == "seaweed-keys"
