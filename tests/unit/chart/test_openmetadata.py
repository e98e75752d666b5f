"""OpenMetadata in the umbrella: its Secret (no default password), the ingestion Job and its workflows."""

from __future__ import annotations

import base64
import re

import pytest
import yaml

from support.helm_render import REAL_SUBCHARTS, UMBRELLA, containers, pod_spec, render

JOB = "retailflow-openmetadata-ingestion"
#: the checks of what the real OpenMetadata chart renders (the stand-in renders nothing)
NEEDS_REAL_CHART = pytest.mark.skipif("openmetadata" not in REAL_SUBCHARTS,
                                      reason="needs the real upstream charts in charts/retailflow/charts/ (openmetadata)")
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


JWT_SECRET = "retailflow-openmetadata-jwt"
JWT_SCRIPT = UMBRELLA / "files" / "scripts" / "openmetadata_jwt_keys.py"
# What OpenMetadata's server does with the two files (JWTTokenGenerator: PKCS8EncodedKeySpec,
# X509EncodedKeySpec, RS256), run by the JDK when one is installed.
JAVA_CHECK = """
import java.nio.file.*; import java.security.*; import java.security.interfaces.*; import java.security.spec.*;
public class KeyCheck {
  public static void main(String[] a) throws Exception {
    KeyFactory kf = KeyFactory.getInstance("RSA");
    RSAPrivateKey priv = (RSAPrivateKey) kf.generatePrivate(new PKCS8EncodedKeySpec(Files.readAllBytes(Paths.get(a[0]))));
    RSAPublicKey pub = (RSAPublicKey) kf.generatePublic(new X509EncodedKeySpec(Files.readAllBytes(Paths.get(a[1]))));
    Signature s = Signature.getInstance("SHA256withRSA"); s.initSign(priv); s.update("jwt".getBytes()); byte[] sig = s.sign();
    Signature v = Signature.getInstance("SHA256withRSA"); v.initVerify(pub); v.update("jwt".getBytes());
    System.out.println(v.verify(sig) ? "verified " + pub.getModulus().bitLength() : "MISMATCH");
  }
}
"""


class TestOpenmetadataHardening:
    """Per-release JWT signing key, self-signup off, no Kubernetes access of its own."""

    def test_the_jwt_key_is_generated_per_release_and_kept(self, defaults):
        secret = defaults.get("Secret", JWT_SECRET)
        pem = _data(secret)["private-key.pem"]
        assert pem.startswith("-----BEGIN RSA PRIVATE KEY-----")
        assert pem != _data(render(values={"jobs": {"ttlSecondsAfterFinished": 60}}).get("Secret", JWT_SECRET))["private-key.pem"]
        # created before the server pod (a pre-install hook, like the passwords) and read back on upgrades
        assert secret["metadata"]["annotations"]["helm.sh/hook"] == "pre-install,pre-upgrade"
        text = (UMBRELLA / "templates" / "openmetadata" / "jwt-keys.yaml").read_text()
        assert f'lookup "v1" "Secret" .Release.Namespace $name' in text and "genPrivateKey" in text

    def test_the_server_reads_the_release_key_not_the_images(self, defaults, values):
        om = values["openmetadata"]
        jwt = om["openmetadata"]["config"]["jwtTokenConfiguration"]
        (init,) = [c for c in om["preMigrateInitContainers"] if c["name"] == "jwt-keys"]
        out_dir = init["command"][-1]
        assert jwt["rsaprivateKeyFilePath"] == f"{out_dir}/private_key.der"
        assert jwt["rsapublicKeyFilePath"] == f"{out_dir}/public_key.der"
        assert jwt["keyId"] != "Gb389a-9f76-gdjs-a92j-0242bk94356"  # the upstream default
        mounts = {m["name"]: m["mountPath"] for m in init["volumeMounts"]}
        assert mounts["jwt-der"] == out_dir and {"name": "jwt-der", "mountPath": out_dir, "readOnly": True} in om["extraVolumeMounts"]
        volumes = {v["name"]: v for v in om["extraVolumes"]}
        assert volumes["jwt-pem"]["secret"]["secretName"] == JWT_SECRET
        script = defaults.get("ConfigMap", volumes["jwt-keys-script"]["configMap"]["name"])["data"]["openmetadata_jwt_keys.py"]
        assert script.strip() == JWT_SCRIPT.read_text().strip()
        assert init["image"] == f'{values["images"]["pipelineJob"]["repository"]}:{values["images"]["pipelineJob"]["tag"]}'

    @NEEDS_REAL_CHART
    def test_the_real_server_runs_the_key_init_and_reads_the_converted_files(self, defaults, values):
        """The real chart's server pod: the jwt-keys init container first, the DER files mounted, and
        the paths in the env the server reads them from."""
        om = values["openmetadata"]
        jwt = om["openmetadata"]["config"]["jwtTokenConfiguration"]
        (init,) = [c for c in om["preMigrateInitContainers"] if c["name"] == "jwt-keys"]
        out_dir = init["command"][-1]
        server = pod_spec(defaults.get("Deployment", "openmetadata"))
        assert server["initContainers"][0]["name"] == "jwt-keys"
        (main,) = server["containers"]
        assert {"name": "jwt-der", "mountPath": out_dir, "readOnly": True} in main["volumeMounts"]
        env = _data(defaults.get("Secret", "openmetadata-jwt-secret"))
        assert env["RSA_PRIVATE_KEY_FILE_PATH"].strip('"') == jwt["rsaprivateKeyFilePath"]
        assert env["RSA_PUBLIC_KEY_FILE_PATH"].strip('"') == jwt["rsapublicKeyFilePath"]

    def test_self_signup_is_off(self, values):
        assert values["openmetadata"]["openmetadata"]["config"]["authentication"]["enableSelfSignup"] is False, \
            "OpenMetadata self-signup is on: anyone who reaches the UI can register"

    @NEEDS_REAL_CHART
    def test_the_real_server_is_told_self_signup_is_off(self, defaults):
        env = _data(defaults.get("Secret", "openmetadata-authentication-secret"))
        assert env["AUTHENTICATION_ENABLE_SELF_SIGNUP"] == '"false"'

    def test_the_conversion_gives_the_files_openmetadata_loads(self, defaults, tmp_path):
        import shutil
        import subprocess
        import sys
        (tmp_path / "key.pem").write_text(_data(defaults.get("Secret", JWT_SECRET))["private-key.pem"])
        subprocess.run([sys.executable, str(JWT_SCRIPT), str(tmp_path / "key.pem"), str(tmp_path)], check=True)
        private, public = tmp_path / "private_key.der", tmp_path / "public_key.der"
        checked = []
        if shutil.which("openssl"):
            derived = subprocess.run(["openssl", "pkey", "-inform", "DER", "-in", str(private), "-pubout", "-outform", "DER"],
                                     capture_output=True, check=True).stdout
            assert derived == public.read_bytes(), "the public key is not the private key's"
            checked.append("openssl")
        if shutil.which("java"):
            (tmp_path / "KeyCheck.java").write_text(JAVA_CHECK)
            proc = subprocess.run(["java", str(tmp_path / "KeyCheck.java"), str(private), str(public)],
                                  capture_output=True, text=True, check=False)
            assert proc.stdout.strip() == "verified 4096", (proc.stdout + proc.stderr)[-600:]
            checked.append("java (PKCS8EncodedKeySpec, X509EncodedKeySpec, SHA256withRSA)")
        if not checked:
            pytest.skip("neither openssl nor java is installed: the DER files were written but not loaded")
        print("loaded by: " + ", ".join(checked))
