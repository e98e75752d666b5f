"""OpenMetadata in the umbrella: its Secret (no default password), the ingestion Job and its workflows."""

from __future__ import annotations

import base64
import re

import pytest
import yaml

from support.helm_render import UMBRELLA, containers, pod_spec, render

JOB = "retailflow-openmetadata-ingestion"
WORKFLOWS = UMBRELLA / "files" / "openmetadata"
VARIABLE = re.compile(r"\$\{?([A-Z][A-Z0-9_]*)\}?")
EXISTING = {
    "global": {"retailflow": {"openmetadata": {"existingSecret": "my-openmetadata"}}},
    "openmetadata": {"openmetadata": {"config": {"fernetkey": {"secretRef": "my-openmetadata"}}}},
}


def _data(doc: dict) -> dict[str, str]:
    data = dict(doc.get("stringData") or {})
    data.update({k: base64.b64decode(v).decode() for k, v in (doc.get("data") or {}).items()})
    return data


def _env(rendered) -> dict[str, dict]:
    (ingest,) = pod_spec(rendered.get("Job", JOB))["containers"]
    return {e["name"]: e for e in ingest["env"]}


class TestOpenmetadataSecret:
    def test_the_admin_password_is_generated_not_the_builtin_default(self, defaults):
        password = _data(defaults.get("Secret", "retailflow-openmetadata"))["admin-password"]
        assert password != "admin" and len(password) >= 32
        # OpenMetadata's password policy: upper and lower case, a digit and a special character
        assert all(re.search(p, password) for p in ("[A-Z]", "[a-z]", "[0-9]", "[^A-Za-z0-9]"))

    def test_each_install_gets_its_own_admin_password(self, defaults):
        again = render(values={"jobs": {"ttlSecondsAfterFinished": 7}})
        assert _data(again.get("Secret", "retailflow-openmetadata"))["admin-password"] \
            != _data(defaults.get("Secret", "retailflow-openmetadata"))["admin-password"]

    def test_an_existing_secret_replaces_the_generated_one_everywhere(self):
        rendered = render(values=EXISTING)
        assert "retailflow-openmetadata" not in rendered.names("Secret")
        env = _env(rendered)
        assert env["OPENMETADATA_ADMIN_PASSWORD"]["valueFrom"]["secretKeyRef"]["name"] == "my-openmetadata"
        assert env["OPENMETADATA_JWT_TOKEN"]["valueFrom"]["secretKeyRef"] == \
            {"name": "my-openmetadata", "key": "jwt-token", "optional": True}

    def test_an_existing_secret_without_the_fernet_reference_fails_clearly(self):
        with pytest.raises(Exception, match="fernetkey.secretRef=my-openmetadata"):
            render(values={"global": EXISTING["global"]})

    def test_the_job_replaces_the_builtin_password_on_first_login(self, defaults):
        script = defaults.get("ConfigMap", "retailflow-openmetadata-ingest")["data"]["openmetadata_ingest.py"]
        assert "/api/v1/users/changePassword" in script and 'BUILT_IN_PASSWORD = "admin"' in script


class TestIngestionJob:
    def test_every_workflow_file_is_shipped_in_the_workflows_config_map(self, defaults):
        data = defaults.get("ConfigMap", "retailflow-openmetadata-workflows")["data"]
        assert set(data) == {p.name for p in WORKFLOWS.glob("*.yaml")}
        for name, text in data.items():
            assert yaml.safe_load(text)["workflowConfig"]["openMetadataServerConfig"]["hostPort"] == "${OPENMETADATA_HOST_PORT}", name

    def test_the_job_sets_every_variable_its_workflows_read(self, defaults):
        env = _env(defaults)
        names = env["OPENMETADATA_WORKFLOWS"]["value"].split(",")
        assert names == ["mysql", "postgres", "superset"]
        for name in names:
            settings = "\n".join(l for l in (WORKFLOWS / f"{name}.yaml").read_text().splitlines() if not l.lstrip().startswith("#"))
            assert set(VARIABLE.findall(settings)) <= set(env), name

    def test_service_hosts_come_from_the_values(self):
        rendered = render(values={"global": {"retailflow": {"mysql": {"host": "orders-db"}}}})
        assert _env(rendered)["MYSQL_HOST"]["value"] == "orders-db"

    def test_without_superset_its_workflow_is_not_run(self):
        env = _env(render(values={"superset": {"enabled": False}}))
        assert env["OPENMETADATA_WORKFLOWS"]["value"] == "mysql,postgres"
        assert "SUPERSET_PASSWORD" not in env

    def test_the_ingestion_image_matches_the_servers_release(self, values):
        chart = yaml.safe_load((UMBRELLA / "Chart.yaml").read_text())
        (om,) = [d for d in chart["dependencies"] if d["name"] == "openmetadata"]
        server = om["version"].split(".")[:2]
        assert values["jobs"]["openmetadataIngestion"]["image"]["tag"].split(".")[:2] == server
        # OpenMetadata launches no ingestion image of its own: its pipeline service client is off
        assert values["openmetadata"]["openmetadata"]["config"]["pipelineServiceClientConfig"]["enabled"] is False
        lock = (UMBRELLA.parents[1] / "hack" / "envs" / "openmetadata" / "pyproject.toml").read_text()
        assert f"openmetadata-ingestion[" in lock and "==" + ".".join(server) in lock

    def test_no_workflow_file_is_written_with_secrets(self, defaults):
        script = defaults.get("ConfigMap", "retailflow-openmetadata-ingest")["data"]["openmetadata_ingest.py"]
        assert "expandvars" not in script and "NamedTemporaryFile" not in script
        (ingest,) = pod_spec(defaults.get("Job", JOB))["containers"]
        mounts = {m["name"]: m for m in ingest["volumeMounts"]}
        assert mounts["workflows"]["readOnly"] is True
        assert pod_spec(defaults.get("Job", JOB))["restartPolicy"] == "Never"
