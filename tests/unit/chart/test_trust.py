"""The Secrets trust model as the charts install it, and no upstream default password handed to Airbyte."""

from __future__ import annotations

import yaml

from retailflow_operator.spec_model import parse
from retailflow_operator.trust import credential_hosts, host_allowed
from support.helm_render import NAMESPACE, UMBRELLA, VARIANTS, airflow_extra_env, chart_values, containers, pod_spec, render

LABEL = ("retailflow.io/credentials", "true")


def operator_env(rendered) -> dict[str, dict]:
    deploy = rendered.get("Deployment", "retailflow-operator")
    return {e["name"]: e for e in containers(deploy)[0]["env"]}


def shipped_pipeline(rendered) -> dict:
    return yaml.safe_load(rendered.get("ConfigMap", "retailflow-pipeline")["data"]["retailpipeline.yaml"])


class TestAllowedHosts:
    def test_the_umbrella_allows_exactly_its_own_services(self, defaults):
        hosts = operator_env(defaults)["RETAILFLOW_ALLOWED_HOSTS"]["value"].split(",")
        assert hosts == ["retailflow-mysql", "retailflow-postgresql", "retailflow-minio",
                         "retailflow-airbyte-server-svc", "retailflow-api-server"]

    def test_every_host_the_shipped_pipeline_sends_credentials_to_is_allowed(self, defaults):
        allowed = operator_env(defaults)["RETAILFLOW_ALLOWED_HOSTS"]["value"].split(",")
        spec = shipped_pipeline(defaults)["spec"]
        targets = credential_hosts(parse(spec))
        assert set(targets) >= {"spec.airbyte.apiUrl", "spec.airflow.apiUrl", "spec.mysql.host",
                                "spec.warehouse.host", "spec.lake.endpoint"}
        assert [f for f, h in targets.items() if not host_allowed(h, allowed)] == []

    def test_with_airbyte_in_its_own_namespace_hosts_cross_it_qualified(self):
        """Airbyte's connectors run in Airbyte's namespace: the hosts the operator hands them name the
        release namespace; everything in the release namespace names Airbyte's API in Airbyte's."""
        values = VARIANTS["airbyte-namespace"]
        rendered = render(values=values)
        airbyte_ns = chart_values(values)["global"]["retailflow"]["airbyte"]["namespace"]
        server = f"retailflow-airbyte-server-svc.{airbyte_ns}.svc"
        allowed = operator_env(rendered)["RETAILFLOW_ALLOWED_HOSTS"]["value"].split(",")
        assert allowed == [f"retailflow-mysql.{NAMESPACE}.svc", f"retailflow-postgresql.{NAMESPACE}.svc",
                           f"retailflow-minio.{NAMESPACE}.svc", server, "retailflow-api-server"]
        targets = credential_hosts(parse(shipped_pipeline(rendered)["spec"]))
        assert {f: h for f, h in targets.items() if f != "spec.airflow.apiUrl"} == {
            "spec.airbyte.apiUrl": server, "spec.mysql.host": f"retailflow-mysql.{NAMESPACE}.svc",
            "spec.warehouse.host": f"retailflow-postgresql.{NAMESPACE}.svc",
            "spec.lake.endpoint": f"retailflow-minio.{NAMESPACE}.svc"}
        assert [f for f, h in targets.items() if not host_allowed(h, allowed)] == []
        (conn,) = [e["value"] for e in airflow_extra_env(rendered) if e["name"] == "AIRFLOW_CONN_RETAILFLOW_AIRBYTE"]
        assert f"http://{server}:8001/api/public/v1" in conn, conn
        job = rendered.get("Job", "retailflow-pipeline")
        assert f"service/{server}" in job["metadata"]["annotations"]["retailflow.io/waits-for"]

    def test_the_operator_chart_alone_allows_nothing_but_what_it_is_given(self):
        rendered = render("retailflow-operator", {"allowedHosts": ["airbyte.data.svc", "*.shop.internal"]},
                          release="rf", namespace="retailflow")
        env = operator_env_of(rendered, "rf-retailflow-operator")
        assert env["RETAILFLOW_ALLOWED_HOSTS"]["value"] == "airbyte.data.svc,*.shop.internal"
        assert env["RETAILFLOW_SECRET_LABEL"]["value"] == "retailflow.io/credentials=true"
        empty = operator_env_of(render("retailflow-operator", release="rf", namespace="retailflow"),
                                "rf-retailflow-operator")
        assert empty["RETAILFLOW_ALLOWED_HOSTS"]["value"] == ""


def operator_env_of(rendered, name: str) -> dict[str, dict]:
    return {e["name"]: e for e in containers(rendered.get("Deployment", name))[0]["env"]}


class TestSecretLabels:
    def test_the_secrets_the_pipeline_reads_carry_the_label(self, defaults):
        spec = shipped_pipeline(defaults)["spec"]
        secrets = {s["metadata"]["name"]: s for s in defaults.of_kind("Secret")}
        for section in ("mysql", "warehouse", "lake", "airflow"):
            secret = secrets[spec[section]["credentialsSecretRef"]["name"]]
            assert secret["metadata"]["labels"].get(LABEL[0]) == LABEL[1], section
        # Airbyte's bootloader writes the fifth; the bootstrap Job labels it (see test_pipeline.py).
        assert spec["airbyte"]["credentialsSecretRef"]["name"] not in secrets

    def test_no_other_secret_is_opened_to_the_operator(self, defaults):
        labelled = {s["metadata"]["name"] for s in defaults.of_kind("Secret")
                    if (s["metadata"].get("labels") or {}).get(LABEL[0]) == LABEL[1]}
        assert labelled == {"retailflow-mysql", "retailflow-postgresql", "retailflow-lake", "retailflow-airflow-admin"}


class TestHmacKey:
    def test_a_generated_key_only_the_operator_mounts(self, defaults):
        secret = defaults.get("Secret", "retailflow-operator-hmac")
        assert len(secret["stringData"]["key"]) == 48
        assert (secret["metadata"].get("labels") or {}).get(LABEL[0]) is None  # never readable as credentials
        deploy = defaults.get("Deployment", "retailflow-operator")
        env = operator_env(defaults)
        assert env["RETAILFLOW_HMAC_KEY_FILE"]["value"] == "/etc/retailflow/hmac/key"
        (volume,) = [v for v in pod_spec(deploy)["volumes"] if v["name"] == "hmac-key"]
        assert volume["secret"]["secretName"] == "retailflow-operator-hmac"
        readers = [d["metadata"]["name"] for d in defaults.workloads()
                   if any((v.get("secret") or {}).get("secretName") == "retailflow-operator-hmac"
                          for v in pod_spec(d).get("volumes") or [])]
        assert readers == ["retailflow-operator"]

    def test_an_existing_secret_replaces_the_generated_one(self):
        rendered = render("retailflow-operator", {"hmacKey": {"existingSecret": "my-hmac"}},
                          release="rf", namespace="retailflow")
        assert "rf-retailflow-operator-hmac" not in rendered.names("Secret")
        deploy = rendered.get("Deployment", "rf-retailflow-operator")
        (volume,) = [v for v in pod_spec(deploy)["volumes"] if v["name"] == "hmac-key"]
        assert volume["secret"]["secretName"] == "my-hmac"


class TestAirbyteGetsNoUpstreamDefaultPassword:
    """Airbyte 2.2.0's chart renders global.database.password (default `airbyte`), the MinIO keys
    (`minio` / `minio123`) and Keycloak's (`airbyte123`, `airbyte`) into its own Secret; the umbrella
    replaces each with a marker, and Airbyte's pods read the umbrella's generated Secrets instead."""

    UPSTREAM_DEFAULTS = {"airbyte", "minio", "minio123", "airbyte123"}

    def test_values_override_every_upstream_default(self):
        values = yaml.safe_load((UMBRELLA / "values.yaml").read_text())
        g, kc = values["global"], values["airbyte"]["keycloak"]
        given = [g["database"]["password"], g["storage"]["minio"]["accessKeyId"],
                 g["storage"]["minio"]["secretAccessKey"], kc["auth"]["adminPassword"], kc["database"]["password"]]
        assert not set(given) & self.UPSTREAM_DEFAULTS
        assert all(v == "" or v.startswith("unused; ") for v in given)
        assert g["database"]["secretName"] and g["storage"]["secretName"]

    def test_keycloak_passwords_are_generated(self, defaults):
        secret = defaults.get("Secret", "retailflow-airbyte-keycloak")["stringData"]
        for key in ("KEYCLOAK_ADMIN_PASSWORD", "KEYCLOAK_DATABASE_PASSWORD"):
            assert len(secret[key]) == 32 and secret[key] not in self.UPSTREAM_DEFAULTS
