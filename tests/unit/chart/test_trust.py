"""The Secrets trust model as the charts install it, and no upstream default password handed to Airbyte."""

from __future__ import annotations

import base64
import json
import re

import pytest
import yaml

from retailflow_operator.secret_refs import secret_refs, uses_airbyte
from retailflow_operator.spec_model import parse
from retailflow_operator.trust import credential_hosts, host_allowed
from support.helm_render import (NAMESPACE, UMBRELLA, VARIANTS, RenderError, airflow_extra_env, chart_values, containers,
                                 pod_spec, render)
from unit.chart.test_service_accounts import grants

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
        assert labelled == {"retailflow-mysql-app", "retailflow-warehouse", "retailflow-lake", "retailflow-airflow-admin"}


#: What the servers are started with as their superuser: (StatefulSet, container variable).
SUPERUSERS = {("retailflow-mysql", "MYSQL_ROOT_PASSWORD"), ("retailflow-postgresql", "POSTGRES_PASSWORD"),
              ("retailflow-minio", "MINIO_ROOT_PASSWORD")}
#: A key whose value is a secret (a password, a secret key, a client secret, a passwords file), not a name.
SECRET_KEY = re.compile(r"(?i)(password|secret|token|fernet|private|(^|-)key$|\.json$)")


def release_secrets(rendered) -> dict[str, dict[str, str]]:
    """name -> key -> value of the Secrets rendered into the release namespace (the operator's)."""
    out = {}
    for doc in rendered.of_kind("Secret"):
        if doc["metadata"].get("namespace", NAMESPACE) == NAMESPACE:
            data = dict(doc.get("stringData") or {})
            data.update({k: base64.b64decode(v).decode() for k, v in (doc.get("data") or {}).items()})
            out[doc["metadata"]["name"]] = data
    return out


def env_secret(rendered, secrets, statefulset: str, var: str) -> str | None:
    """The value a data store's container gets in ``var`` from a rendered Secret (None: no such store)."""
    docs = [d for d in rendered.of_kind("StatefulSet") if d["metadata"]["name"] == statefulset]
    for container in (containers(docs[0]) if docs else []):
        for env in container.get("env", []):
            if env["name"] == var:
                ref = env["valueFrom"]["secretKeyRef"]
                return secrets[ref["name"]][ref["key"]]
    return None


def others_passwords(rendered, secrets) -> dict[str, str]:
    """what -> value: the servers' superusers, and every PostgreSQL role the pipeline does not use (as
    the server creates them: RETAILFLOW_PW_<ROLE>, tests/unit/chart/test_datastores.py)."""
    out = {f"{sts} {var}": env_secret(rendered, secrets, sts, var) for sts, var in SUPERUSERS}
    (pg,) = [d for d in rendered.of_kind("StatefulSet") if d["metadata"]["name"] == "retailflow-postgresql"]
    for env in containers(pg)[0]["env"]:
        if env["name"].startswith("RETAILFLOW_PW_") and env["name"] != "RETAILFLOW_PW_WAREHOUSE":
            out[f"PostgreSQL role {env['name'].removeprefix('RETAILFLOW_PW_').lower()}"] = \
                env_secret(rendered, secrets, "retailflow-postgresql", env["name"])
    return {what: value for what, value in out.items() if value}


def handed_out(value: str, allowed: set[str]) -> bool:
    """A value the pipeline hands to Airbyte or Airflow, or a file of only such (Airflow's passwords.json)."""
    if value in allowed:
        return True
    try:
        parsed = json.loads(value)
    except ValueError:
        return False
    return isinstance(parsed, dict) and bool(parsed) and set(map(str, parsed.values())) <= allowed


def shipped_spec(rendered) -> dict:
    bodies = rendered.of_kind("RetailPipeline")
    return bodies[0]["spec"] if bodies else shipped_pipeline(rendered)["spec"]


class TestTheOperatorReadsNoOtherPassword:
    """README, Security: compromising one pod must not hand out the other components' passwords. The
    operator pod may `get` (its Role's resourceNames) only Secrets whose every secret value is one the
    RetailPipeline hands to Airbyte or Airflow: no superuser's, and no other component's role."""

    @pytest.mark.parametrize("variant", ["defaults", "lite", "airbyte-namespace", "external-s3"])
    def test_no_granted_secret_holds_a_superusers_or_another_components_password(self, variant):
        rendered = render(values=VARIANTS[variant])
        granted = grants(rendered.docs)["retailflow-operator"]["secrets"]["get"]
        secrets = release_secrets(rendered)
        model = parse(shipped_spec(rendered))
        refs = secret_refs(model, uses_airbyte(model, {}))
        # the grant is what the operator reads (else it could not work, or the check below is empty)
        assert {ref.name for ref in refs} <= granted <= {ref.name for ref in refs} | {"airbyte-auth-secrets"}
        allowed = {secrets[ref.name][key] for ref in refs if ref.name in secrets for key in ref.keys.values()}
        forbidden = others_passwords(rendered, secrets)
        assert {"retailflow-mysql MYSQL_ROOT_PASSWORD", "retailflow-postgresql POSTGRES_PASSWORD",
                "PostgreSQL role airflow"} <= set(forbidden)
        found = []
        for name in sorted(granted & set(secrets)):
            for key, value in sorted(secrets[name].items()):
                found += [f"{name}/{key} is {what}" for what, other in forbidden.items() if other in value]
                if SECRET_KEY.search(key) and not handed_out(value, allowed):
                    found.append(f"{name}/{key} is a secret the pipeline does not hand out")
        assert not found, "the operator may read:\n" + "\n".join(found)

    def test_with_existing_secrets_the_grant_names_none_of_the_servers(self):
        values = VARIANTS["existing-secrets"]
        rendered = render(values=values)
        granted = grants(rendered.docs)["retailflow-operator"]["secrets"]["get"]
        g = chart_values(values)["global"]["retailflow"]
        assert not granted & {g["mysql"]["existingSecret"], g["postgresql"]["existingSecret"]}
        assert {"retailflow-mysql-app", "retailflow-warehouse"} <= granted
        # the user's to create (README, Passwords): the chart has no value to write them with
        assert not {"retailflow-mysql-app", "retailflow-warehouse"} & rendered.names("Secret")

    @pytest.mark.parametrize(("values", "names"), [
        ({"pipeline": {"spec": {"mysql": {"credentialsSecretRef": {"name": "retailflow-mysql"}}}}},
         "pipeline.spec.mysql.credentialsSecretRef.name names retailflow-mysql, MySQL's Secret"),
        ({"pipeline": {"spec": {"warehouse": {"credentialsSecretRef": {
            "name": "retailflow-postgresql", "usernameKey": "warehouse-username", "passwordKey": "warehouse-password"}}}}},
         "pipeline.spec.warehouse.credentialsSecretRef.name names retailflow-postgresql, PostgreSQL's Secret"),
        ({"operator": {"rbac": {"secretNames": ['{{ include "retailflow.mysql.secretName" . }}']}}},
         "operator.rbac.secretNames names retailflow-mysql"),
        ({"global": {"retailflow": {"postgresql": {"existingSecret": "my-postgres", "warehouseSecretName": "my-postgres"}},
                     "database": {"secretName": "my-postgres"}},
          "openmetadata": {"openmetadata": {"config": {"database": {"auth": {"password": {"secretRef": "my-postgres"}}}}}}},
         "names my-postgres, PostgreSQL's Secret"),
    ], ids=["spec-mysql", "spec-warehouse", "rbac", "existing-secret-as-the-copy"])
    def test_naming_a_servers_secret_for_the_operator_is_refused(self, values, names):
        """As a values file from before the operator's own Secrets, or `helm upgrade --reuse-values`, would."""
        with pytest.raises(RenderError, match=re.escape(names)):
            render(values=values)


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
