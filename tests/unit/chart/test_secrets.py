"""templates/secrets.yaml: every password generated into a Secret (or the user's), none inline."""

from __future__ import annotations

import base64
import json
import re

import pytest
import yaml

from support.helm_render import UMBRELLA, VARIANTS, airflow_extra_env, containers, render

PASSWORD_ENV = re.compile(r"(PASSWORD|PWD|PASS|SECRET|SECRET_KEY|SECRET_ACCESS_KEY|TOKEN)$", re.IGNORECASE)
GENERATED = ["retailflow-mysql", "retailflow-postgresql", "retailflow-lake", "retailflow-airflow-admin",
             "retailflow-airflow-metadata", "retailflow-superset-env", "retailflow-openmetadata"]


def secret_data(doc: dict) -> dict[str, str]:
    data = dict(doc.get("stringData") or {})
    data.update({k: base64.b64decode(v).decode() for k, v in (doc.get("data") or {}).items()})
    return data


def password_keys(data: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in data.items() if re.search(r"(?i)(password|secretAccessKey|SECRET_KEY)$", k)}


class TestSecrets:
    def test_all_generated_secrets_exist_by_default(self, defaults):
        assert set(GENERATED) <= defaults.names("Secret")

    def test_generated_passwords_are_long_random_and_distinct(self, defaults):
        seen = []
        for name in GENERATED:
            for key, value in password_keys(secret_data(defaults.get("Secret", name))).items():
                if (name, key) == ("retailflow-openmetadata", "admin-password"):
                    # OpenMetadata's password policy wants a special character: a fixed suffix
                    value = value.removesuffix("-Rf1")
                assert len(value) >= 24 and value.isalnum(), (name, key)
                seen.append(value)
        assert len(seen) == len(set(seen)) >= 10

    def test_each_render_generates_new_passwords(self):
        # Offline there is nothing to look up, so two renders must differ: nothing is a constant.
        first = secret_data(render(values={"jobs": {"ttlSecondsAfterFinished": 1}}).get("Secret", "retailflow-mysql"))
        second = secret_data(render(values={"jobs": {"ttlSecondsAfterFinished": 2}}).get("Secret", "retailflow-mysql"))
        assert first["password"] != second["password"]

    def test_passwords_are_read_back_from_the_cluster(self):
        # lookup is what keeps a password across upgrades; every generated key goes through it.
        text = (UMBRELLA / "templates" / "secrets.yaml").read_text()
        assert 'lookup "v1" "Secret"' in text
        assert text.count("randAlphaNum") == 1, "passwords must be generated only inside retailflow.keep"

    def test_secrets_are_hooks_created_before_airbyte_and_recreated_on_upgrade(self, defaults):
        for name in GENERATED:
            annotations = defaults.get("Secret", name)["metadata"]["annotations"]
            assert annotations["helm.sh/hook"] == "pre-install,pre-upgrade"
            assert int(annotations["helm.sh/hook-weight"]) < -15

    def test_airflow_metadata_uri_uses_the_airflow_role_password(self, defaults):
        pg = secret_data(defaults.get("Secret", "retailflow-postgresql"))
        uri = secret_data(defaults.get("Secret", "retailflow-airflow-metadata"))["connection"]
        assert uri == f"postgresql://airflow:{pg['airflow-password']}@retailflow-postgresql:5432/airflow?sslmode=disable"

    def test_superset_env_carries_its_role_password(self, defaults):
        pg = secret_data(defaults.get("Secret", "retailflow-postgresql"))
        env = secret_data(defaults.get("Secret", "retailflow-superset-env"))
        assert env["SUPERSET_DATABASE_URI"] == \
            f"postgresql+psycopg2://superset:{pg['superset-password']}@retailflow-postgresql:5432/superset?sslmode=disable"

    def test_airflow_passwords_file_matches_the_admin_password(self, defaults):
        data = secret_data(defaults.get("Secret", "retailflow-airflow-admin"))
        assert json.loads(data["passwords.json"]) == {data["username"]: data["password"]}

    def test_openmetadata_fernet_key_is_32_urlsafe_bytes(self, defaults):
        key = secret_data(defaults.get("Secret", "retailflow-openmetadata"))["fernet-key"]
        assert len(base64.urlsafe_b64decode(key)) == 32 and "+" not in key and "/" not in key

    def test_existing_secrets_replace_generated_ones(self):
        rendered = render(values=VARIANTS["existing-secrets"])
        assert not {"retailflow-mysql", "retailflow-postgresql", "retailflow-lake"} & rendered.names("Secret")
        refs = {ref["name"] for ref in _secret_refs(rendered.docs)}
        assert {"my-mysql", "my-postgres", "my-lake"} <= refs
        assert not {"retailflow-mysql", "retailflow-postgresql", "retailflow-lake"} & refs
        extra_env = {ref["secretKeyRef"]["name"] for e in airflow_extra_env(rendered) if "valueFrom" in e
                     for ref in [e["valueFrom"]]}
        assert "my-mysql" in extra_env and "retailflow-mysql" not in extra_env

    @pytest.mark.parametrize("variant", sorted(VARIANTS))
    def test_no_password_is_inline_in_any_workload(self, variant):
        for doc in render(values=VARIANTS[variant]).workloads():
            for container in containers(doc):
                for env in container.get("env", []):
                    if PASSWORD_ENV.search(env["name"]):
                        assert "valueFrom" in env, (doc["metadata"]["name"], env["name"])
                assert not any("password" in str(arg).lower() and "=" in str(arg) and "$" not in str(arg)
                               for arg in container.get("args", [])), container["name"]

    def test_values_hold_no_password(self):
        values = yaml.safe_load((UMBRELLA / "values.yaml").read_text())

        def walk(node, path=""):
            if isinstance(node, dict):
                for key, value in node.items():
                    here = f"{path}.{key}"
                    if re.search(r"(?i)(password|_pass|secret_key)$", key) and isinstance(value, str):
                        # Upstream keys that must be set to avoid a default password hold a marker
                        # saying where the real one is (see Airbyte in the chart README).
                        assert value == "" or value.startswith("unused; "), f"{here} holds a value"
                    walk(value, here)
            elif isinstance(node, list):
                for item in node:
                    walk(item, path)

        walk(values)


def _secret_refs(docs):
    def walk(node):
        if isinstance(node, dict):
            if "secretKeyRef" in node:
                yield node["secretKeyRef"]
            if isinstance(node.get("secretRef"), dict):
                yield node["secretRef"]
            if "secret" in node and isinstance(node["secret"], dict) and "secretName" in node["secret"]:
                yield {"name": node["secret"]["secretName"]}
            for value in node.values():
                yield from walk(value)
        elif isinstance(node, list):
            for item in node:
                yield from walk(item)

    for doc in docs:
        yield from walk(doc)
