"""templates/jobs: schema + seed, lake buckets, OpenMetadata ingestion (the Superset dashboards Job: test_superset.py)."""

from __future__ import annotations

import ast

from support.helm_render import REPO, UMBRELLA, VARIANTS, containers, pod_spec, render

SCHEMA = REPO / "generator" / "retailflow_generator" / "schema.sql"


def env_of(container: dict) -> dict[str, dict]:
    return {e["name"]: e for e in container.get("env", [])}


def hook(doc: dict) -> tuple[str, int]:
    annotations = doc["metadata"]["annotations"]
    return annotations["helm.sh/hook"], int(annotations.get("helm.sh/hook-weight", 0))


class _Job:
    name: str

    def test_resources_on_every_container(self, defaults):
        for container in containers(defaults.get("Job", self.name)):
            assert container["resources"]["requests"]["memory"] and container["resources"]["limits"]["memory"]

    def test_finished_jobs_are_cleaned_up(self, defaults):
        job = defaults.get("Job", self.name)
        assert job["spec"]["ttlSecondsAfterFinished"] > 0
        assert job["metadata"]["annotations"]["helm.sh/hook-delete-policy"] == "before-hook-creation"


class TestSeedJob(_Job):
    name = "retailflow-seed"

    def test_schema_is_the_generator_file_shipped_through_the_symlink(self, defaults):
        link = UMBRELLA / "files" / "retail-schema.sql"
        assert link.is_symlink() and link.resolve() == SCHEMA.resolve()
        shipped = defaults.get("ConfigMap", "retailflow-retail-schema")["data"]["retail-schema.sql"]
        assert shipped.strip() == SCHEMA.read_text().strip()
        assert "create table if not exists orders" in shipped

    def test_schema_is_applied_before_the_seed(self, defaults):
        spec = pod_spec(defaults.get("Job", self.name))
        wait, init = spec["initContainers"]
        assert wait["name"] == "wait-for" and wait["args"] == [
            "retailflow-mysql=tcp://retailflow-mysql:3306", "retailflow-minio=tcp://retailflow-minio:9000"]
        script = init["command"][-1]
        assert "< /schema/retail-schema.sql" in script
        assert env_of(init)["MYSQL_PWD"]["valueFrom"]["secretKeyRef"]["key"] == "password"
        (seed,) = spec["containers"]
        assert seed["image"] == "retailflow/airflow:0.1.0"
        script = seed["command"][-1]
        assert "retailflow-generator 'seed' '--customers'" in script and "'--truncate'" in script
        # The CSV lands where the default RetailPipeline's storeLocations.s3Key points.
        assert 'retailflow-generator stores --out /tmp/store_locations.csv --lake "$RETAILFLOW_LAKE_ENDPOINT"' in script
        assert "--prefix 'store_locations'" in script

    def test_seed_gets_the_database_url_from_secret_parts(self, defaults):
        env = env_of(containers(defaults.get("Job", self.name))[-1])
        assert env["RETAILFLOW_MYSQL_URL"]["value"] == \
            "mysql://$(RETAILFLOW_MYSQL_USER):$(RETAILFLOW_MYSQL_PASSWORD)@retailflow-mysql:3306/retail"
        names = list(env)
        # Kubernetes expands $(VAR) only from variables defined before it.
        assert names.index("RETAILFLOW_MYSQL_PASSWORD") < names.index("RETAILFLOW_MYSQL_URL")
        assert env["RETAILFLOW_LAKE_SECRET_KEY"]["valueFrom"]["secretKeyRef"]["key"] == "secretAccessKey"

    def test_runs_once_after_install_never_on_upgrade(self, defaults):
        assert hook(defaults.get("Job", self.name))[0] == "post-install"


class TestLakeBucketsJob(_Job):
    name = "retailflow-lake-buckets"

    def test_creates_the_lake_and_airbyte_buckets(self, defaults):
        (buckets,) = pod_spec(defaults.get("Job", self.name))["containers"]
        env = env_of(buckets)
        assert set(env["LAKE_BUCKETS"]["value"].split()) == {"retail-lake", "airbyte-storage"}
        assert "mc mb --ignore-existing" in buckets["command"][-1]

    def test_runs_before_airbyte_when_minio_is_an_early_hook(self, defaults):
        phase, weight = hook(defaults.get("Job", self.name))
        assert phase.startswith("pre-install") and -15 < weight < 0

    def test_runs_after_install_without_airbyte(self):
        job = render(values=VARIANTS["subset-with-workspace"]).get("Job", self.name)
        assert hook(job)[0] == "post-install,post-upgrade"


class TestOpenmetadataIngestionJob(_Job):
    name = "retailflow-openmetadata-ingestion"

    def test_script_is_shipped_and_parses(self, defaults):
        script = defaults.get("ConfigMap", "retailflow-openmetadata-ingest")["data"]["openmetadata_ingest.py"]
        ast.parse(script)
        assert '"metadata", command, "-c"' in script and 'COMMAND = {"postgres-profiler": "profile"}' in script

    def test_credentials_from_secrets(self, defaults):
        (ingest,) = pod_spec(defaults.get("Job", self.name))["containers"]
        env = env_of(ingest)
        for var in ("MYSQL_PASSWORD", "WAREHOUSE_PASSWORD", "OPENMETADATA_ADMIN_PASSWORD", "SUPERSET_PASSWORD",
                    "OPENMETADATA_JWT_TOKEN"):
            assert "secretKeyRef" in env[var]["valueFrom"], var

    def test_workflows_from_a_config_map(self):
        job = render(values={"jobs": {"openmetadataIngestion": {"workflowsConfigMap": "om-workflows"}}}).get("Job", self.name)
        volumes = {v["name"]: v for v in pod_spec(job)["volumes"]}
        assert volumes["workflows"]["configMap"]["name"] == "om-workflows"

    def test_the_chart_ships_its_workflows_by_default(self, defaults):
        volumes = {v["name"]: v for v in pod_spec(defaults.get("Job", self.name))["volumes"]}
        assert volumes["workflows"]["configMap"]["name"] == "retailflow-openmetadata-workflows"
