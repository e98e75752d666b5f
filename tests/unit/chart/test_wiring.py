"""How the umbrella wires its subcharts: hosts, Secrets and keys handed over from global.retailflow.

The upstream charts are stand-ins here (see support.helm_render): these checks assert that what
the umbrella hands each of them names a Service or Secret key the umbrella actually renders.
"""

from __future__ import annotations

import json
import re
from urllib.parse import urlparse

import pytest
import yaml

from support.helm_render import REAL_SUBCHARTS, airflow_extra_env, notes, render


def secrets(rendered) -> dict[str, dict]:
    return {s["metadata"]["name"]: s["stringData"] for s in rendered.own_of_kind("Secret")}


class TestAirbyteWiring:
    def test_database_is_the_umbrella_postgresql(self, defaults, values):
        database = values["global"]["database"]
        assert database["type"] == "external" and database["host"] in defaults.names("Service")
        data = secrets(defaults)[database["secretName"]]
        for key in (database["userSecretKey"], database["passwordSecretKey"],
                    database["replica"]["userSecretKey"], database["replica"]["passwordSecretKey"]):
            assert key in data
        assert data[database["userSecretKey"]] == database["name"] == "airbyte"
        assert values["airbyte"]["postgresql"]["enabled"] is False

    def test_storage_is_the_umbrella_lake(self, defaults, values):
        storage = values["global"]["storage"]
        assert urlparse(storage["minio"]["endpoint"]).hostname in defaults.names("Service")
        data = secrets(defaults)[storage["secretName"]]
        assert {storage["minio"]["accessKeyIdSecretKey"], storage["minio"]["secretAccessKeySecretKey"]} <= set(data)
        assert set(storage["bucket"].values()) <= set(values["lake"]["buckets"])
        assert values["airbyte"]["minio"]["enabled"] is False


class TestAirflowWiring:
    @pytest.fixture(scope="class")
    @classmethod
    def extra_env(cls, defaults) -> list[dict]:
        return airflow_extra_env(defaults)

    def test_metadata_and_admin_secrets_are_rendered(self, defaults, values):
        rendered = secrets(defaults)
        assert "connection" in rendered[values["airflow"]["data"]["metadataSecretName"]]
        (volume,) = [v for v in values["airflow"]["volumes"] if "secret" in v]
        assert "passwords.json" in rendered[volume["secret"]["secretName"]]
        assert values["airflow"]["postgresql"]["enabled"] is False

    def test_every_secret_reference_resolves(self, defaults, extra_env):
        rendered = secrets(defaults)
        for env in extra_env:
            ref = env.get("valueFrom", {}).get("secretKeyRef")
            if ref and not ref.get("optional"):
                assert ref["key"] in rendered[ref["name"]], env["name"]

    def test_expansions_only_use_variables_defined_before(self, extra_env):
        defined: set[str] = set()
        for env in extra_env:
            for used in re.findall(r"\$\(([A-Z0-9_]+)\)", env.get("value", "")):
                assert used in defined, f"{env['name']} uses $({used}) before it is defined"
            defined.add(env["name"])

    def test_connections_are_json_with_the_ids_the_crd_defaults_to(self, extra_env):
        connections = {e["name"]: json.loads(e["value"]) for e in extra_env if e["name"].startswith("AIRFLOW_CONN_")}
        assert set(connections) == {f"AIRFLOW_CONN_RETAILFLOW_{c}" for c in ("MYSQL", "WAREHOUSE", "LAKE", "AIRBYTE")}
        assert connections["AIRFLOW_CONN_RETAILFLOW_MYSQL"]["host"] == "retailflow-mysql"
        airbyte = connections["AIRFLOW_CONN_RETAILFLOW_AIRBYTE"]
        assert airbyte["host"].endswith("/api/public/v1") and airbyte["schema"] == airbyte["host"] + "/applications/token"
        assert connections["AIRFLOW_CONN_RETAILFLOW_LAKE"]["extra"]["endpoint_url"] == "http://retailflow-minio:9000"

    def test_pipeline_urls_for_the_dags(self, extra_env):
        env = {e["name"]: e.get("value") for e in extra_env}
        assert env["RETAILFLOW_WAREHOUSE_URL"].endswith("@retailflow-postgresql:5432/warehouse")
        assert env["RETAILFLOW_MYSQL_URL"].endswith("@retailflow-mysql:3306/retail")

    def test_dags_see_the_lake_where_the_pipeline_writes(self, defaults, extra_env):
        env = {e["name"]: e.get("value") for e in extra_env}
        lake = yaml.safe_load(defaults.get("ConfigMap", "retailflow-pipeline")["data"]["retailpipeline.yaml"])["spec"]["lake"]
        assert (env["RETAILFLOW_LAKE_ENDPOINT"], env["RETAILFLOW_LAKE_BUCKET"], env["RETAILFLOW_LAKE_PREFIX"]) == \
            (lake["endpoint"], lake["bucket"], lake["prefix"])
        names = [e["name"] for e in extra_env]
        assert {"RETAILFLOW_LAKE_ACCESS_KEY", "RETAILFLOW_LAKE_SECRET_KEY"} <= set(names)

    def test_runs_the_image_built_here_without_bitnami_or_redis(self, values):
        airflow = values["airflow"]
        assert airflow["defaultAirflowRepository"] == values["images"]["airflow"]["repository"]
        assert str(airflow["defaultAirflowTag"]) == str(values["images"]["airflow"]["tag"])
        assert airflow["executor"] == "LocalExecutor" and airflow["redis"]["enabled"] is False


class TestOpenmetadataWiring:
    def test_database_and_fernet_key_from_secrets(self, defaults, values):
        config = values["openmetadata"]["openmetadata"]["config"]
        rendered = secrets(defaults)
        assert config["database"]["host"] in defaults.names("Service")
        password = config["database"]["auth"]["password"]
        assert password["secretKey"] in rendered[password["secretRef"]]
        assert config["database"]["auth"]["username"] in values["postgresql"]["databases"]
        assert config["fernetkey"]["value"] == ""
        assert config["fernetkey"]["secretKey"] in rendered[config["fernetkey"]["secretRef"]]

    def test_search_engine_is_the_opensearch_subchart(self, values):
        assert values["openmetadata"]["openmetadata"]["config"]["elasticsearch"]["host"] == "opensearch-cluster-master"
        assert values["opensearch"]["singleNode"] is True and values["opensearch"]["replicas"] == 1

    @pytest.mark.skipif("opensearch" not in REAL_SUBCHARTS,
                        reason="needs the real upstream charts in charts/retailflow/charts/ (opensearch): "
                               "the stand-in renders no Service")
    def test_the_search_host_is_the_service_of_the_opensearch_pods(self, defaults, values):
        """OpenMetadata's search host and port are a Service of the release, in front of OpenSearch's pods."""
        search = values["openmetadata"]["openmetadata"]["config"]["elasticsearch"]
        service = defaults.get("Service", search["host"])
        (port,) = [p for p in service["spec"]["ports"] if p["port"] == search["port"]]
        selector = service["spec"]["selector"].items()
        selected = [d for d in defaults.of_kind("StatefulSet") if selector <= d["spec"]["template"]["metadata"]["labels"].items()]
        assert [d["metadata"]["labels"]["app.kubernetes.io/name"] for d in selected] == ["opensearch"], selected
        listening = {q.get(k) for c in selected[0]["spec"]["template"]["spec"]["containers"]
                     for q in c.get("ports", []) for k in ("containerPort", "name")}
        assert port.get("targetPort", port["port"]) in listening, (port, listening)


class TestNotes:
    @pytest.fixture(scope="class")
    @classmethod
    def text(cls) -> str:
        return notes()

    @pytest.mark.parametrize("service,ports", [
        ("retailflow-superset", "8088:8088"), ("retailflow-api-server", "8080:8080"),
        ("retailflow-airbyte-server-svc", "8000:8001"), ("openmetadata", "8585:8585"),
        ("retailflow-minio", "9001:9001"),
    ])
    def test_port_forward_for_each_ui(self, text, service, ports):
        assert f"kubectl -n retailflow port-forward svc/{service} {ports}" in text

    def test_how_to_read_each_password(self, text):
        for secret, key in (("retailflow-superset-env", "ADMIN_PASSWORD"), ("retailflow-airflow-admin", "password"),
                            ("airbyte-auth-secrets", "instance-admin-password"), ("retailflow-lake", "secretAccessKey")):
            assert f"get secret {secret} -o jsonpath='{{.data.{key}}}' | base64 -d" in text

    def test_only_enabled_uis_are_listed(self):
        text = notes({"superset": {"enabled": False}, "openmetadata": {"enabled": False},
                      "opensearch": {"enabled": False}})
        assert "svc/retailflow-superset" not in text and "svc/openmetadata" not in text
        assert "svc/retailflow-api-server" in text


def test_one_release_name_everywhere_in_the_pipeline():
    rendered = render(release="shop", values={})
    body = yaml.safe_load(rendered.get("ConfigMap", "shop-retailflow-pipeline")["data"]["retailpipeline.yaml"])
    assert body["spec"]["airflow"]["apiUrl"] == "http://shop-api-server:8080"
    assert body["spec"]["airbyte"]["apiUrl"].startswith("http://shop-airbyte-server-svc:8001")
