"""The release's own workloads, run from their rendered manifests (``support.workloads``).

Each of our containers (the chart's Jobs, their init containers, the Superset pod's init containers
and web server, the operator) runs as a local process with its rendered command, environment, Secret
keys and mounted files, against local peers answering for the release's Services:

- ``retailflow-mysql`` / ``retailflow-postgresql``: the machine's real MariaDB and PostgreSQL, in
  throwaway databases with a throwaway user (the render is given the databases' names:
  ``global.retailflow.mysql.database``, ``global.retailflow.postgresql.warehouseDatabase``; and
  smaller ``jobs.seed.args``);
- ``retailflow-minio``: moto's S3 server, a stand-in for MinIO;
- ``retailflow-airbyte-server-svc``: the Airbyte fake (``support.airbyte_fake``), a stand-in;
- ``openmetadata``: the OpenMetadata stand-in (``support.openmetadata_standin``);
- ``retailflow-api-server``: a real Airflow API server (``support.airflow_server``);
- ``retailflow-superset``: the Superset this suite starts *from the Deployment's own containers*;
- the Kubernetes API: the emulated API (a stand-in) enforcing the release's RBAC; the generated
  Secrets are created there with exactly the keys the rendered ``secrets.yaml`` has, their values the
  local peers' credentials, and Airbyte's ``airbyte-auth-secrets`` as its bootloader writes it.

Each test asserts what a user would see (rows in MySQL, a CSV in the lake, an admin who can log in,
three dashboards, the catalogue in OpenMetadata, a RetailPipeline that goes Ready, raw tables and lake
files after an ingestion, the warehouse and Airflow registered by the governance task; in the lite
profile, the release's RetailPipeline Ready without Airbyte and the governance task skipping).

What it cannot show: kubelet semantics (restarts, backoff, init-container retries, writes under
``readOnlyRootFilesystem``; the container's user is modelled only for reading mounted ConfigMap and
Secret files, the processes run as the test's user), probes, resource limits, image pulls and builds
(an image's contents are ``image-paths.yaml``'s mapping, checked against the Dockerfiles' COPY lines),
DNS (Service names are rewritten, see ``support.workloads``), and the upstream charts' own containers
(Airbyte, Airflow's pods beyond the environment this chart gives them, OpenMetadata's server, the
data stores' images). The lake-buckets Job's ``mc`` container cannot run as rendered: no reachable
registry ships ``mc``; its init container (the wait for the lake) runs, and its script runs with a
stand-in ``mc`` (``MC_STUB``: mc's own MC_HOST parsing, then the bucket calls against moto); its `mc admin` calls (the lake's user and its policy) run in test_lake_user_job.py. PostgreSQL's
init script (the postgres image runs it on its first start) runs as the postgres user against a
throwaway cluster of the machine's PostgreSQL binaries.
"""

from __future__ import annotations

import base64
import copy
import errno
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest
import requests
import yaml

from support.airbyte_fake import AirbyteFake
from support.helm_render import NAMESPACE, REPO, Rendered, containers, render
from support.kube_emulator import CRD_PATH, EmulatedKubernetesAPI
from support.kube_rbac import RBAC
from support.openmetadata_standin import OpenMetadataStandIn
from support.databases import throwaway_name, throwaway_tag, throwaway_user
from support.ports import PortTaken, bind_refused, start_on_free_port
from support.workloads import MissingKey, NotRunnable, Peers, Unreadable, Workloads, create_release_secrets

SUFFIX = throwaway_tag(8)
MYSQL_DB, WAREHOUSE_DB, SUPERSET_DB = (throwaway_name(service, "wl", SUFFIX)
                                       for service in ("retail", "warehouse", "superset"))
#: Small enough for seconds (the chart's default seeds 50,000 orders); the command is still the rendered one.
SEED_ARGS = ["seed", "--customers", "300", "--products", "40", "--orders", "1500",
             "--start", "2025-01-01", "--end", "2025-06-30", "--truncate"]
VALUES = {
    "global": {"retailflow": {"mysql": {"database": MYSQL_DB},
                              "postgresql": {"warehouseDatabase": WAREHOUSE_DB}}},
    "jobs": {"seed": {"args": SEED_ARGS}},
}


#: A WSGI app gunicorn serves where a test checks the server's start, not Superset
PROBE_APP = '''def app(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"served by the probe app"]
'''

#: The containers the tests below run, per workload (in the order of their pod).
RUN_HERE = {
    ("Job", "retailflow-datastores-ready"): {"wait-for"},
    ("Job", "retailflow-lake-buckets"): {"wait-for"},
    ("Job", "retailflow-seed"): {"wait-for", "schema", "seed"},
    ("Job", "retailflow-superset-dashboards"): {"wait-for", "import"},
    ("Job", "retailflow-openmetadata-ingestion"): {"wait-for", "ingest"},
    ("Job", "retailflow-pipeline"): {"apply"},
    ("Deployment", "retailflow-superset"): {"drivers", "wait-for", "setup", "superset"},
    ("Deployment", "retailflow-operator"): {"operator"},
}
#: Our containers that cannot run here (the runner raises NotRunnable, saying why).
NOT_RUNNABLE = {("Job", "retailflow-lake-buckets"): {"buckets"}}


def admin_sql(server: str, sql: str, database: str = "") -> str:
    """SQL as the server's administrator over the local socket (root for MariaDB, postgres for PostgreSQL).
    The SQL goes on the client's stdin, never its command line: it may hold a password (``ps`` shows argv)."""
    if server == "mysql":
        argv = ["mysql", "--batch", "--skip-column-names", *([database] if database else [])]
    else:
        argv = ["runuser", "-u", "postgres", "--", "psql", "-v", "ON_ERROR_STOP=1", "-At", database or "postgres"]
    proc = subprocess.run(argv, input=sql, capture_output=True, text=True, check=False, cwd="/")
    if proc.returncode:
        # not the SQL itself, nor a traceback showing it as an argument: it may hold a password; psql quotes
        # the failing statement's line ("LINE 1: create role ... password '...'"), so its string literals go
        said = re.sub(r"'(?:[^']|'')*'", "'…'", proc.stderr.strip())
        pytest.fail(f"{server} administration over the local socket failed (run as root after `make services`): "
                    f"{said}", pytrace=False)
    return proc.stdout


@pytest.fixture(scope="module")
def databases() -> Iterator[tuple[str, str]]:
    """Throwaway databases, each with its own throwaway user, on the machine's real MariaDB and PostgreSQL
    (made as their administrators over the local socket: the shared users' passwords belong to `make services`)."""
    user, password = throwaway_user(SUFFIX), secrets.token_hex(16)
    admin_sql("mysql", f"create database `{MYSQL_DB}` character set utf8mb4; "
                       f"create user '{user}'@'%' identified by '{password}'; "
                       f"grant all on `{MYSQL_DB}`.* to '{user}'@'%'")
    admin_sql("pg", f"create role {user} login password '{password}'")
    for name in (WAREHOUSE_DB, SUPERSET_DB):
        admin_sql("pg", f'create database "{name}" owner {user}')
    yield f"mysql://{user}:{password}@127.0.0.1:3306/{MYSQL_DB}", f"postgresql://{user}:{password}@127.0.0.1:5432/{WAREHOUSE_DB}"
    admin_sql("mysql", f"drop database if exists `{MYSQL_DB}`; drop user if exists '{user}'@'%'")
    for name in (WAREHOUSE_DB, SUPERSET_DB):
        admin_sql("pg", f'drop database if exists "{name}" with (force)')
    admin_sql("pg", f"drop role if exists {user}")


@pytest.fixture(scope="module")
def release() -> Rendered:
    return render(values=VALUES)


@contextmanager
def moto_server(log: Path) -> Iterator[str]:
    """moto's S3 server (``moto_server`` from the dags environment): the stand-in for MinIO, on a port it
    binds itself (``-p 0``) and names once bound (werkzeug's ``Running on`` line), for the ``with`` block.
    Yields its URL; the server (in a session of its own) is stopped at the block's end."""
    proc = subprocess.Popen([str(REPO / "dags" / ".venv" / "bin" / "moto_server"), "-H", "127.0.0.1", "-p", "0"],
                            stdout=log.open("w"), stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while not (bound := re.search(r"Running on http://127\.0\.0\.1:(\d+)", log.read_text())):
            assert proc.poll() is None and time.monotonic() < deadline, f"moto_server did not start:\n{log.read_text()}"
            time.sleep(0.1)
        yield f"http://127.0.0.1:{bound.group(1)}"
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=10)


@pytest.fixture(scope="module")
def moto(tmp_path_factory) -> Iterator[str]:
    """moto's S3 server for the whole module (``moto_server``)."""
    with moto_server(tmp_path_factory.mktemp("moto") / "moto_server.log") as url:
        yield url


@pytest.fixture(scope="module")
def airbyte_fake() -> Iterator[AirbyteFake]:
    """The Airbyte fake: a stateful stand-in for Airbyte's public API v1, for the whole module."""
    with AirbyteFake() as fake:
        yield fake


@pytest.fixture(scope="module")
def openmetadata() -> Iterator[OpenMetadataStandIn]:
    """The OpenMetadata stand-in: a recording imitation of OpenMetadata's REST API."""
    with OpenMetadataStandIn() as standin:
        yield standin


@pytest.fixture(scope="module")
def kube(release: Rendered) -> Iterator[EmulatedKubernetesAPI]:
    """The emulated Kubernetes API (a stand-in) enforcing the release's RBAC."""
    with EmulatedKubernetesAPI(CRD_PATH, rbac=RBAC(release.docs)) as api:
        api.ensure_namespace(NAMESPACE)
        yield api


def local_cluster(release: Rendered, kube: EmulatedKubernetesAPI, databases: tuple[str, str], moto: str,
                  airflow, airbyte_fake: AirbyteFake | None = None,
                  openmetadata: OpenMetadataStandIn | None = None) -> Workloads:
    """The release's generated Secrets in the emulated API (exactly their rendered keys, the local peers'
    credentials as values), and its Services mapped to the local peers."""
    mysql_url, pg_url = databases
    my, pg = urlsplit(mysql_url), urlsplit(pg_url)
    pg_user, pg_password = unquote(pg.username or ""), unquote(pg.password or "")
    credentials = {
        "retailflow-mysql": {"username": unquote(my.username or ""), "password": unquote(my.password or "")},
        # the operator's copy of the application user (the chart writes it from the same value)
        "retailflow-mysql-app": {"username": unquote(my.username or ""), "password": unquote(my.password or "")},
        # the local server has one role for the warehouse: the suite's throwaway databases use it
        "retailflow-postgresql": {"warehouse-username": pg_user, "warehouse-password": pg_password},
        "retailflow-warehouse": {"username": pg_user, "password": pg_password},
        "retailflow-lake": {"accessKeyId": "standin-access-key", "secretAccessKey": "standin-secret-key"},
        "retailflow-superset-env": {
            "SUPERSET_DATABASE_URI": f"postgresql+psycopg2://{pg_user}:{requests.utils.quote(pg_password, safe='')}"
                                     f"@retailflow-postgresql:5432/{SUPERSET_DB}?sslmode=disable"},
        "retailflow-airflow-admin": {"username": airflow.username, "password": airflow.password,
                                     "passwords.json": json.dumps({airflow.username: airflow.password})},
    }
    peers = Peers()
    peers.add("retailflow-mysql", 3306, my.port or 3306, "MariaDB (real)")
    peers.add("retailflow-postgresql", 5432, pg.port or 5432, "PostgreSQL (real)")
    peers.add("retailflow-minio", 9000, urlsplit(moto).port, "moto (stand-in for MinIO)")
    peers.add("retailflow-api-server", 8080, urlsplit(airflow.url).port, "a real Airflow API server")
    # Superset's gunicorn binds it only after the pod's init containers (a minute or more): held until then
    peers.hold("retailflow-superset", 8088, "Superset, run from its Deployment")
    if openmetadata is not None:
        credentials["retailflow-openmetadata"] = {"admin-password": openmetadata.admin_password}
        peers.add("openmetadata", 8585, urlsplit(openmetadata.url).port, "the OpenMetadata stand-in")
    if airbyte_fake is not None:
        # What Airbyte's bootloader writes (not rendered by this chart): the instance admin's application.
        kube.create_secret(NAMESPACE, "airbyte-auth-secrets", {
            "instance-admin-client-id": airbyte_fake.client_id, "instance-admin-client-secret": airbyte_fake.client_secret})
        peers.add("retailflow-airbyte-server-svc", 8001, urlsplit(airbyte_fake.url).port, "the Airbyte fake")
    create_release_secrets(kube, release, credentials)
    return Workloads(release, peers, kube)


@pytest.fixture(scope="module")
def cluster(release, databases, moto, airbyte_fake, openmetadata, airflow, kube) -> Iterator[Workloads]:
    workloads = local_cluster(release, kube, databases, moto, airflow, airbyte_fake, openmetadata)
    yield workloads
    workloads.peers.close()


def superset_port(cluster: Workloads) -> int:
    return cluster.peers.services["retailflow-superset"].ports[8088]


def secret(kube: EmulatedKubernetesAPI, name: str, key: str) -> str:
    data = kube.request("GET", f"/api/v1/namespaces/{NAMESPACE}/secrets/{name}").json()["data"]
    return base64.b64decode(data[key]).decode()


@pytest.fixture(scope="module")
def superset(cluster: Workloads, tmp_path_factory) -> Iterator[str]:
    """Superset's pod, from its Deployment: the drivers, wait-for and setup init containers in order,
    then the web server (gunicorn) on the port mapped to the Service."""
    deployment = ("Deployment", "retailflow-superset")
    for init in ("drivers", "wait-for", "setup"):
        cluster.run(*deployment, init, timeout=600).check()
    port = superset_port(cluster)
    log = tmp_path_factory.mktemp("superset") / "gunicorn.log"
    proc = cluster.start(*deployment, "superset", log, listen={8088: port})
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 180
    while True:
        assert proc.poll() is None, log.read_text()[-4000:]
        try:
            if requests.get(f"{url}/health", timeout=3).status_code == 200:
                break
        except requests.RequestException:
            pass
        assert time.monotonic() < deadline, f"Superset did not answer /health in 180 s:\n{log.read_text()[-4000:]}"
        time.sleep(1)
    yield url
    os.killpg(proc.pid, signal.SIGTERM)
    proc.wait(timeout=30)


@contextmanager
def operator_ready(cluster: Workloads, log: Path) -> Iterator[int]:
    """The operator from its Deployment, until the RetailPipeline ``retail`` is Ready and its liveness
    endpoint answers; yields that endpoint's port, stopped after. kopf binds the port itself as it starts,
    and exits when another program took it since the pick: it is then started again on a fresh one.
    kopf's words that it could not bind the port are enough: its health reporter is one of its root tasks,
    whose failure ends the operator (kopf 1.45 ``_core/reactor/running.py``, ``run_tasks``), but only after
    up to 5 s for its other tasks to finish; that start is killed at once instead."""
    kube = cluster.kube

    def start(port: int) -> tuple[subprocess.Popen, int]:
        proc = cluster.start("Deployment", "retailflow-operator", "operator", log, listen={8080: port})
        try:
            deadline = time.monotonic() + 90
            while True:
                exited = proc.poll() is not None
                if bind_refused(log.read_text(), port):
                    if not exited:  # it is exiting anyway: nothing of it is kept
                        os.killpg(proc.pid, signal.SIGKILL)
                    raise PortTaken(port, "the operator's liveness endpoint")
                if exited:
                    raise AssertionError(f"the operator exited with {proc.returncode}:\n{log.read_text()[-6000:]}")
                assert kube.rbac.denials == [], kube.rbac.denials
                status = (kube.get_rp(NAMESPACE, "retail") or {}).get("status") or {}
                if status.get("phase") == "Ready" and answers(f"http://127.0.0.1:{port}/healthz"):
                    return proc, port
                assert time.monotonic() < deadline, f"not Ready in 90 s: {status}\n{log.read_text()[-6000:]}"
                time.sleep(0.5)
        except BaseException:
            stop(proc)
            raise

    proc, port = start_on_free_port(start)
    try:
        yield port
    finally:
        stop(proc)


def answers(url: str) -> bool:
    try:
        return requests.get(url, timeout=2).status_code == 200
    except requests.RequestException:  # not yet served, or a program that took the port and never answers
        return False


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
    proc.wait(timeout=30)


@pytest.fixture(scope="module")
def seeded(cluster: Workloads) -> Workloads:
    for step in ("wait-for", "schema", "seed"):
        cluster.run("Job", "retailflow-seed", step, timeout=300).check()
    return cluster


@pytest.fixture(scope="module")
def dashboards(cluster: Workloads, superset: str) -> str:
    cluster.run("Job", "retailflow-superset-dashboards", "wait-for", timeout=60).check()
    run = cluster.run("Job", "retailflow-superset-dashboards", "import", timeout=300).check()
    return run.output


def s3_keys(moto: str, bucket: str) -> list[str]:
    import xml.etree.ElementTree as ET

    resp = requests.get(f"{moto}/{bucket}?list-type=2", timeout=10)
    assert resp.status_code == 200, resp.text
    return [e.text for e in ET.fromstring(resp.content).iter() if e.tag.endswith("Key")]


def s3_buckets(moto: str) -> set[str]:
    import xml.etree.ElementTree as ET

    resp = requests.get(moto, timeout=10)
    assert resp.status_code == 200, resp.text
    return {e.text for e in ET.fromstring(resp.content).iter() if e.tag.endswith("Name")}


def lake_object(moto: str, bucket: str, key: str) -> str:
    """An object's text, read with the lake's credentials (the minio client of the dags environment)."""
    code = ("import sys; from minio import Minio; "
            "c = Minio(sys.argv[1], 'standin-access-key', 'standin-secret-key', secure=False, region='us-east-1'); "
            "sys.stdout.write(c.get_object(sys.argv[2], sys.argv[3]).read().decode())")
    proc = subprocess.run([str(REPO / "dags" / ".venv" / "bin" / "python"), "-c", code, urlsplit(moto).netloc, bucket, key],
                          capture_output=True, text=True, check=False, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


#: A stand-in for the MinIO client (no registry reachable here ships `mc`): it records its argv, reads an
#: alias from MC_HOST_<alias> exactly as mc RELEASE.2025-08-13T08-35-41Z (minio/mc@7394ce0dd2a8, the chart's
#: pinned image) does (cmd/config.go, parseEnvURLStr: two regular expressions, the keys taken verbatim, not
#: percent-decoded), or from `mc alias set` (kept in $HOME/.mc-stub.json), and does `mb --ignore-existing
#: --region R alias/bucket` against the S3 endpoint.
MC_STUB = r'''#!{python}
import json, os, re, sys
from urllib.parse import urlsplit
from minio import Minio

args = sys.argv[1:]
with open(os.environ["MC_STUB_LOG"], "a") as log:
    log.write(json.dumps({{"argv": args}}) + "\n")
config = os.path.join(os.environ["HOME"], ".mc-stub.json")
aliases = json.load(open(config)) if os.path.exists(config) else {{}}
if args[:2] == ["alias", "set"]:
    name, url, access, secret = args[2:6]
    aliases[name] = [url, access, secret]
    json.dump(aliases, open(config, "w"))
    sys.exit(0)
if args[:1] != ["mb"]:
    sys.exit(f"mc stub: {{args[:1]}} is not stood in for")
region = args[args.index("--region") + 1] if "--region" in args else "us-east-1"
alias, bucket = args[-1].split("/", 1)
if f"MC_HOST_{{alias}}" in os.environ:
    value = os.environ[f"MC_HOST_{{alias}}"]
    tokens = re.match(r"^(https?://)(.*?):(.*?):(.*)@(.*?)$", value)
    keys = re.match(r"^(https?://)(.*?):(.*)@(.*?)$", value)
    if tokens:
        sys.exit("mc stub: MC_HOST_" + alias + " holds a session token, which this stand-in does not take")
    if not keys:
        sys.exit("mc stub: MC_HOST_" + alias + " has no keys")
    url, access, secret = keys.group(1) + keys.group(4), keys.group(2), keys.group(3)
elif alias in aliases:
    url, access, secret = aliases[alias]
else:
    sys.exit(f"mc stub: no alias {{alias}}")
with open(os.environ["MC_STUB_LOG"], "a") as log:
    log.write(json.dumps({{"keys": [access, secret]}}) + "\n")
parts = urlsplit(url)
client = Minio(parts.netloc, access_key=access, secret_key=secret, secure=parts.scheme == "https", region=region)
if not client.bucket_exists(bucket):
    client.make_bucket(bucket, location=region)
print(f"Bucket created successfully `{{alias}}/{{bucket}}`.")
'''

def run_buckets_job(cluster: Workloads, tmp_path, access: str, secret: str):
    """The lake-buckets Job's `buckets` container with the `mc` stand-in first on its PATH. The runner
    refuses the minio/mc image (nothing stands in for it), so the copy run here names an image the table
    maps to no programs of its own: the script runs in the machine's `sh`, as in the image's."""
    job = copy.deepcopy(cluster.release)
    (buckets,) = [c for c in containers(job.get("Job", "retailflow-lake-buckets"), init=False) if c["name"] == "buckets"]
    assert "minio/mc:" in buckets["image"], buckets["image"]
    buckets["image"] = "mysql:8.4"
    stub_dir = tmp_path / "bin"
    stub_dir.mkdir()
    (stub_dir / "mc").write_text(MC_STUB.format(python=REPO / "dags" / ".venv" / "bin" / "python"))
    (stub_dir / "mc").chmod(0o755)
    log = tmp_path / "mc.log"
    runner = Workloads(job, cluster.peers, cluster.kube, root=tmp_path / "root")
    run = runner.run("Job", "retailflow-lake-buckets", "buckets", timeout=120, extra_env={
        "PATH": f"{stub_dir}:/usr/local/bin:/usr/bin:/bin", "MC_STUB_LOG": str(log),
        "LAKE_ACCESS_KEY_ID": access, "LAKE_SECRET_ACCESS_KEY": secret})
    records = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
    return run, [r["argv"] for r in records if "argv" in r], [r["keys"] for r in records if "keys" in r]


class TestLakeBuckets:
    def test_waits_for_the_lake_and_says_why_mc_cannot_run(self, cluster):
        cluster.run("Job", "retailflow-lake-buckets", "wait-for", timeout=60).check()
        with pytest.raises(NotRunnable, match="mc"):
            cluster.prepare("Job", "retailflow-lake-buckets", "buckets")

    def test_a_key_mc_cannot_read_from_the_environment_is_refused_with_the_reason(self, cluster, tmp_path):
        run, argvs, _ = run_buckets_job(cluster, tmp_path, "AKIACOLON", "secret:with-a-colon")
        assert run.returncode != 0 and "holds a ':'" in run.output, run.output
        assert argvs == []

    def test_datastores_ready_job_passes_once_postgresql_and_the_lake_answer(self, cluster):
        cluster.run("Job", "retailflow-datastores-ready", "wait-for", timeout=60).check()


PG_BIN = "/usr/lib/postgresql/15/bin"
#: A password an existing Secret may hold: quotes, a backslash, a dollar sign, a colon-separated tail.
AWKWARD_PASSWORD = "it's \"quoted\" \\ $HOME; DROP ROLE x; --:tail"


@contextmanager
def postgresql_cluster() -> Iterator[dict[str, str]]:
    """A throwaway PostgreSQL cluster of the machine's binaries (initdb, as the postgres user), like the
    postgres image's first start: local connections over a Unix socket, trusted, for the init scripts;
    TCP on loopback with passwords (scram-sha-256), for the logins after. PostgreSQL binds the port it is
    given itself: when another program took it since the pick (the server says so, naming the port), the
    cluster is started again on a fresh one. Stopped and removed after."""
    if os.geteuid() != 0:
        pytest.fail("the init script runs as the postgres user: run the workloads suite as root")
    import pwd
    import shutil
    import tempfile

    account = pwd.getpwnam("postgres")
    root = Path(tempfile.mkdtemp(prefix="rf_wl_sec_pg_"))  # pytest's own folders are closed to other users
    as_postgres = {"user": account.pw_uid, "group": account.pw_gid, "cwd": "/", "capture_output": True,
                   "text": True, "check": False}
    server_log = root / "socket" / "log"

    def start(port: int) -> int:
        started = subprocess.run([f"{PG_BIN}/pg_ctl", "-D", str(root / "data"), "-w", "-l", str(server_log),
                                  "-o", f"-p {port} -k {root / 'socket'} -c listen_addresses=127.0.0.1", "start"],
                                 **as_postgres)
        if started.returncode != 0:
            said = server_log.read_text() if server_log.exists() else ""
            # src/backend/libpq/pqcomm.c, StreamServerPort: this hint for EADDRINUSE only, naming the port
            if ('could not bind IPv4 address "127.0.0.1": Address already in use' in said
                    and f"Is another postmaster already running on port {port}?" in said):
                raise PortTaken(port, "PostgreSQL")
            raise AssertionError(started.stdout + started.stderr + said[-3000:])
        return port

    try:
        os.chmod(root, 0o755)
        for sub in ("data", "socket", "bin"):
            (root / sub).mkdir()
            os.chown(root / sub, account.pw_uid, account.pw_gid)
        init = subprocess.run([f"{PG_BIN}/initdb", "-D", str(root / "data"), "-U", "postgres", "--auth-local=trust",
                               "--auth-host=scram-sha-256"], **as_postgres)
        assert init.returncode == 0, init.stderr
        port = start_on_free_port(start)
        yield {"root": str(root), "socket": str(root / "socket"), "port": str(port), "uid": str(account.pw_uid),
               "gid": str(account.pw_gid)}
    finally:
        subprocess.run([f"{PG_BIN}/pg_ctl", "-D", str(root / "data"), "-m", "immediate", "stop"], **as_postgres)
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def private_postgresql() -> Iterator[dict[str, str]]:
    """A throwaway PostgreSQL cluster (``postgresql_cluster``)."""
    with postgresql_cluster() as cluster:
        yield cluster


def test_a_port_taken_before_the_throwaway_cluster_binds_it_is_left_for_a_fresh_one(monkeypatch):
    """The cluster's port is picked, then PostgreSQL binds it: when another program took it in between,
    the cluster comes up on a fresh port all the same, and answers there."""
    from support import ports

    taken = ports.listening_socket()
    picks = [taken.getsockname()[1]]
    free_port = ports.free_port
    monkeypatch.setattr(ports, "free_port", lambda: picks.pop(0) if picks else free_port())
    try:
        with postgresql_cluster() as pg:
            assert not picks and pg["port"] != str(taken.getsockname()[1])
            ready = subprocess.run(["pg_isready", "-h", "127.0.0.1", "-p", pg["port"]], capture_output=True,
                                   text=True, check=False, timeout=30)
            assert ready.returncode == 0 and "accepting connections" in ready.stdout, ready.stdout + ready.stderr
    finally:
        taken.close()


class TestPostgresqlInit:
    """The postgres image's first start runs the init ConfigMap's script (docker-entrypoint-initdb.d) with
    the StatefulSet's environment. Run here: the rendered script, as the postgres user, with that
    environment (the rendered Secret's passwords; one replaced by an awkward one, as an existing Secret may
    hold), against a throwaway cluster, with a `psql` first on PATH that records its argv and runs psql."""

    def test_each_role_gets_its_password_and_no_psql_command_line_holds_one(self, release, private_postgresql):
        pg = private_postgresql
        script = release.get("ConfigMap", "retailflow-postgresql-init")["data"]["10-retailflow-roles.sh"]
        (container,) = containers(release.get("StatefulSet", "retailflow-postgresql"), init=False)
        secret_data = {d["metadata"]["name"]: d.get("stringData") or {} for d in release.of_kind("Secret")}
        env: dict[str, str] = {}
        for item in container["env"]:
            ref = (item.get("valueFrom") or {}).get("secretKeyRef")
            env[item["name"]] = secret_data[ref["name"]][ref["key"]] if ref else item["value"]
        env["RETAILFLOW_PW_SUPERSET"] = AWKWARD_PASSWORD
        passwords = {k.removeprefix("RETAILFLOW_PW_").lower(): v for k, v in env.items() if k.startswith("RETAILFLOW_PW_")}
        assert len(passwords) == 5

        bin_dir = f"{pg['root']}/bin"
        log = f"{pg['root']}/bin/argv.log"
        Path(bin_dir, "psql").write_text(f'#!/bin/bash\nprintf "%s\\n" "$*" >> {log}\nexec /usr/bin/psql "$@"\n')
        Path(bin_dir, "init.sh").write_text(script)
        for name in ("psql", "init.sh"):
            os.chmod(Path(bin_dir, name), 0o555)
        os.chown(bin_dir, int(pg["uid"]), int(pg["gid"]))
        env |= {"PATH": f"{bin_dir}:/usr/bin:/bin", "PGHOST": pg["socket"], "PGPORT": pg["port"], "LANG": "C.UTF-8"}
        run = subprocess.run([f"{bin_dir}/init.sh"], env=env, user=int(pg["uid"]), group=int(pg["gid"]), cwd="/",
                             capture_output=True, text=True, check=False, timeout=120)
        assert run.returncode == 0, run.stdout + run.stderr

        argvs = Path(log).read_text().splitlines()
        assert len(argvs) == 5, argvs
        for argv in argvs:
            assert not any(password in argv for password in passwords.values()), argv
        for role, password in passwords.items():
            login = subprocess.run(["psql", "-h", "127.0.0.1", "-p", pg["port"], "-U", role, "-d", role, "-Atc",
                                    "select current_user || ' ' || current_database()"],
                                   env={"PATH": "/usr/bin:/bin", "PGPASSWORD": password}, capture_output=True,
                                   text=True, check=False, timeout=30)
            assert login.returncode == 0 and login.stdout.strip() == f"{role} {role}", login.stderr
        wrong = subprocess.run(["psql", "-h", "127.0.0.1", "-p", pg["port"], "-U", "warehouse", "-d", "warehouse",
                                "-c", "select 1"], env={"PATH": "/usr/bin:/bin", "PGPASSWORD": "not-it"},
                               capture_output=True, text=True, check=False, timeout=30)
        assert wrong.returncode != 0 and "password authentication failed" in wrong.stderr, wrong.stderr


class TestSeedJob:
    def test_mysql_gets_its_rows_and_the_lake_the_store_locations(self, seeded, databases, moto):
        counts = admin_sql("mysql", "select (select count(*) from customers), (select count(*) from products), "
                                      "(select count(*) from orders), (select count(*) from order_items)", MYSQL_DB)
        customers, products, orders, items = map(int, counts.split())
        assert (customers, products, orders) == (300, 40, 1500)
        assert items >= orders
        assert "store_locations/store_locations.csv" in s3_keys(moto, "retail-lake")
        csv = lake_object(moto, "retail-lake", "store_locations/store_locations.csv")
        assert csv.splitlines()[0].startswith("store_id") and len(csv.splitlines()) > 10


class TestSuperset:
    def test_setup_makes_the_secrets_admin_who_can_log_in(self, superset, kube):
        login = requests.post(f"{superset}/api/v1/security/login", timeout=30, json={
            "username": secret(kube, "retailflow-superset-env", "ADMIN_USERNAME"),
            "password": secret(kube, "retailflow-superset-env", "ADMIN_PASSWORD"), "provider": "db"})
        assert login.status_code == 200, login.text

    def test_the_import_job_brings_the_three_dashboards(self, dashboards, superset, kube):
        assert "imported 3 dashboards, 15 charts, 4 datasets" in dashboards, dashboards
        token = requests.post(f"{superset}/api/v1/security/login", timeout=30, json={
            "username": secret(kube, "retailflow-superset-env", "ADMIN_USERNAME"),
            "password": secret(kube, "retailflow-superset-env", "ADMIN_PASSWORD"), "provider": "db"}).json()["access_token"]
        headers = {"Authorization": f"Bearer {token}", "Accept": "application/json"}
        titles = {d["dashboard_title"] for d in requests.get(f"{superset}/api/v1/dashboard/", headers=headers,
                                                              timeout=30).json()["result"]}
        assert {"Sales performance by region", "Top 10 customers", "Best-selling products"} <= titles
        databases = requests.get(f"{superset}/api/v1/database/", headers=headers, timeout=30).json()["result"]
        (warehouse,) = [d for d in databases if d["database_name"] == "RetailFlow warehouse"]
        uri = requests.get(f"{superset}/api/v1/database/{warehouse['id']}/connection", headers=headers,
                           timeout=30).json()["result"]["sqlalchemy_uri"]
        assert uri.endswith(f"/{WAREHOUSE_DB}"), uri


class TestOpenMetadataIngestionJob:
    def test_the_catalogue_gets_mysql_the_warehouse_and_superset(self, seeded, dashboards, cluster, openmetadata):
        cluster.run("Job", "retailflow-openmetadata-ingestion", "wait-for", timeout=60).check()
        cluster.run("Job", "retailflow-openmetadata-ingestion", "ingest", timeout=600).check()
        tables = set(openmetadata.of_type("table"))
        for name in ("customers", "products", "orders", "order_items"):
            assert any(fqn.endswith(f".{MYSQL_DB}.{name}") for fqn in tables), sorted(tables)
        services = set(openmetadata.of_type("databaseService"))
        assert len(services) == 2, services
        dashboards_seen = {d["displayName"] for d in openmetadata.of_type("dashboard").values()}
        assert {"Sales performance by region", "Top 10 customers", "Best-selling products"} <= dashboards_seen


class TestPipelineAndOperator:
    def test_the_job_creates_the_pipeline_and_the_operator_makes_it_ready(self, cluster, kube, airbyte_fake,
                                                                         airflow, tmp_path):
        cluster.run("Job", "retailflow-pipeline", "apply", timeout=120).check()
        pipeline = kube.get_rp(NAMESPACE, "retail")
        assert pipeline["spec"]["airbyte"]["workspaceId"] == airbyte_fake.workspace_id
        assert kube.rbac.denials == []

        with operator_ready(cluster, tmp_path / "operator.log"):
            pass  # Ready, its liveness endpoint answering
        assert len(airbyte_fake.live("connections")) == 4
        assert any(k.startswith("retailflow_") for k in airflow.variables())

    def test_an_operator_whose_liveness_port_was_taken_since_the_pick_starts_on_a_fresh_one(
            self, cluster, kube, tmp_path, monkeypatch):
        """kopf binds its liveness port a moment after it starts; another program that took the port in
        between makes it exit. It is started again on a fresh port, and is Ready there."""
        from support import ports

        cluster.run("Job", "retailflow-pipeline", "apply", timeout=120).check()
        taken = ports.listening_socket()
        picks = [taken.getsockname()[1]]
        free_port = ports.free_port
        monkeypatch.setattr(ports, "free_port", lambda: picks.pop(0) if picks else free_port())
        log = tmp_path / "operator.log"
        try:
            with operator_ready(cluster, log) as port:
                assert not picks and port != taken.getsockname()[1]
                assert requests.get(f"http://127.0.0.1:{port}/healthz", timeout=5).status_code == 200
        finally:
            taken.close()
        assert kube.rbac.denials == []


#: What the `direct` task of retail_pipeline's ingestion group runs, for a pipeline without operator
#: variables (settings.local_defaults: the retailflow_* connections and RETAILFLOW_LAKE_* of the pod).
INGEST_DIRECT = ("import json; from retailflow_pipeline import settings, tasks; "
                 "print(json.dumps(tasks.ingest_direct(settings.local_defaults().to_dict(), full_refresh=True), default=str))")


#: What retail_pipeline's governance task runs (wiring.governance_task -> tasks.run_governance).
GOVERNANCE = ("import json; from retailflow_pipeline import tasks; "
              "print(json.dumps(tasks.run_governance(), default=str))")


def airflow_pod(release: Rendered, code: str = INGEST_DIRECT) -> dict:
    """The Airflow scheduler's pod as far as this chart writes it: the image built here, `airflow.extraEnv`
    (rendered through the Airflow stand-in chart's tpl, as the real chart renders it), `airflow.volumes`
    and `airflow.volumeMounts`; the command is the task's code. The rest of the pod is Airflow's chart's."""
    values = yaml.safe_load((REPO / "charts" / "retailflow" / "values.yaml").read_text())
    (extra,) = [d for d in release.stand_ins if d["metadata"]["name"] == "stand-in-airflow-extra-env"]
    image = values["images"]["airflow"]
    return {"containers": [{"name": "scheduler", "image": f"{image['repository']}:{image['tag']}",
                            "command": ["python", "-c", code], "env": yaml.safe_load(extra["data"]["extraEnv"]),
                            "volumeMounts": values["airflow"]["volumeMounts"]}],
            "volumes": values["airflow"]["volumes"]}


class TestAirflowTask:
    def test_ingestion_on_the_direct_engine_with_the_airflow_pods_environment(self, seeded, cluster, moto):
        cluster.add_pod("Deployment", "retailflow-scheduler", airflow_pod(cluster.release))
        run = cluster.run("Deployment", "retailflow-scheduler", "scheduler", timeout=300).check()
        counts = admin_sql("pg", "select (select count(*) from raw.orders), (select count(*) from raw.customers), "
                                 "(select count(*) from raw.store_locations)", WAREHOUSE_DB).split("|")
        assert [int(c) for c in counts[:2]] == [1500, 300], run.output[-3000:]
        assert int(counts[2]) > 10
        assert any(k.startswith("raw/") and k.endswith(".parquet") for k in s3_keys(moto, "retail-lake")), run.output[-3000:]

    def test_the_governance_task_registers_the_warehouse_dbt_and_airflow(self, seeded, cluster, openmetadata, airflow):
        """postgres, dbt and airflow workflows (RETAILFLOW_OPENMETADATA_RUN_WORKFLOWS), with the image's
        `metadata` CLI and dbt artifacts, the mounted workflows ConfigMap and the Secret's admin password."""
        if not (REPO / "dbt" / "target" / "manifest.json").exists():
            pytest.fail("dbt/target/manifest.json is missing: run `make dbt-manifest` (make test-workloads does)")
        cluster.add_pod("Deployment", "retailflow-governance", airflow_pod(cluster.release, GOVERNANCE))
        run = cluster.run("Deployment", "retailflow-governance", "scheduler", timeout=400).check()
        assert '"postgres"' in run.output and '"dbt"' in run.output and '"airflow"' in run.output, run.output[-3000:]
        tables = set(openmetadata.of_type("table"))
        assert any(f".{WAREHOUSE_DB}.raw.orders" in fqn for fqn in tables), sorted(tables)
        assert openmetadata.of_type("pipelineService"), run.output[-3000:]

    def test_the_simple_auth_managers_passwords_file_is_where_the_config_names_it(self, cluster, kube):
        """The Airflow chart writes `airflow.config` into airflow.cfg; the file it names must be mounted."""
        values = yaml.safe_load((REPO / "charts" / "retailflow" / "values.yaml").read_text())
        path = values["airflow"]["config"]["core"]["simple_auth_manager_passwords_file"]
        cluster.add_pod("Deployment", "retailflow-api-server", airflow_pod(cluster.release))
        local = cluster.local_path("Deployment", "retailflow-api-server", "scheduler", path)
        assert local.is_file(), f"{path} is not in any volume airflow.volumeMounts mounts"
        assert json.loads(local.read_text()) == {secret(kube, "retailflow-airflow-admin", "username"):
                                                 secret(kube, "retailflow-airflow-admin", "password")}


def deep_merge(base: dict, extra: dict) -> dict:
    merged = dict(base)
    for key, value in extra.items():
        merged[key] = deep_merge(merged[key], value) if isinstance(value, dict) and isinstance(merged.get(key), dict) else value
    return merged


class TestLiteProfile:
    """`make up PROFILE=lite` (values-lite.yaml): no Airbyte and no OpenMetadata; the RetailPipeline is a
    release resource with engine direct."""

    def test_the_operator_makes_the_release_pipeline_ready_and_governance_skips(self, databases, moto, airflow, tmp_path):
        lite = yaml.safe_load((REPO / "charts" / "retailflow" / "values-lite.yaml").read_text())
        release = render(values=deep_merge(lite, VALUES))
        assert "retailflow-openmetadata" not in release.names("Secret")
        with EmulatedKubernetesAPI(CRD_PATH, rbac=RBAC(release.docs)) as kube:
            kube.ensure_namespace(NAMESPACE)
            cluster = local_cluster(release, kube, databases, moto, airflow)
            cluster.root = tmp_path
            cluster.create("RetailPipeline", "retail")
            try:
                with operator_ready(cluster, tmp_path / "operator.log"):
                    pass  # Ready, its liveness endpoint answering
            finally:
                cluster.peers.close()
            assert any('"direct"' in v for k, v in airflow.variables().items() if k.startswith("retailflow_")), \
                airflow.variables()

            cluster.add_pod("Deployment", "retailflow-governance", airflow_pod(release, GOVERNANCE))
            run = cluster.run("Deployment", "retailflow-governance", "scheduler", timeout=120)
            assert run.returncode == 1 and "StepSkipped" in run.output, run.output[-3000:]  # the DAG task skips on it
            assert "RETAILFLOW_OPENMETADATA_URL is not set" in run.output, run.output[-3000:]


class TestRunner:
    def test_a_missing_secret_key_names_the_container_and_the_key(self, cluster):
        broken = copy.deepcopy(cluster.release)
        seed = broken.get("Job", "retailflow-seed")
        env = seed["spec"]["template"]["spec"]["containers"][0]["env"]
        next(e for e in env if e["name"] == "RETAILFLOW_MYSQL_PASSWORD")["valueFrom"]["secretKeyRef"]["key"] = "passwd"
        runner = Workloads(broken, cluster.peers, cluster.kube, root=cluster.root / "broken")
        with pytest.raises(MissingKey, match=r"container retailflow-seed/seed: couldn't find key passwd in Secret "
                                             r"retailflow/retailflow-mysql"):
            runner.prepare("Job", "retailflow-seed", "seed")

    def test_a_secret_file_its_user_cannot_read_names_the_container_and_the_file(self, cluster):
        broken = copy.deepcopy(cluster.release)
        del broken.get("Deployment", "retailflow-operator")["spec"]["template"]["spec"]["securityContext"]["fsGroup"]
        runner = Workloads(broken, cluster.peers, cluster.kube, root=cluster.root / "unreadable")
        with pytest.raises(Unreadable, match=r"container retailflow-operator/operator: cannot read "
                                             r"/etc/retailflow/hmac/key: .* mode 0400 .* uid 10001"):
            runner.prepare("Deployment", "retailflow-operator", "operator")

    def test_a_port_held_for_superset_is_refused_to_other_programs_and_served_by_its_container(self, cluster,
                                                                                             tmp_path):
        """Superset's local port is bound when the Services are mapped; its gunicorn starts minutes later,
        after the pod's init containers. A program binding the port in between is refused, and the
        container serves on it. Superset's container as rendered, gunicorn serving a probe app instead."""
        probe = copy.deepcopy(cluster.release)
        (web,) = probe.get("Deployment", "retailflow-superset")["spec"]["template"]["spec"]["containers"]
        assert web["command"][0] == "gunicorn" and "--bind=0.0.0.0:8088" in web["command"], web["command"]
        web["command"] = ["gunicorn", "--bind=0.0.0.0:8088", f"--chdir={tmp_path}", "probe_app:app"]
        (tmp_path / "probe_app.py").write_text(PROBE_APP)
        runner = Workloads(probe, Peers(), cluster.kube, root=tmp_path / "root")
        port = runner.peers.hold("retailflow-superset", 8088, "Superset's container, serving a probe app")
        log = tmp_path / "gunicorn.log"
        squatter = socket.socket()
        proc = None
        try:
            try:  # another program, while the init containers would run
                squatter.bind(("127.0.0.1", port))
                squatter.listen()
                attempt = 0
            except OSError as exc:
                attempt = exc.errno
            proc = runner.start("Deployment", "retailflow-superset", "superset", log, listen={8088: port})
            deadline = time.monotonic() + 60
            while not answers(f"http://127.0.0.1:{port}/"):
                assert proc.poll() is None and time.monotonic() < deadline, log.read_text()[-3000:]
                time.sleep(0.2)
            assert requests.get(f"http://127.0.0.1:{port}/", timeout=5).text == "served by the probe app"
            assert attempt == errno.EADDRINUSE
        finally:
            squatter.close()
            if proc is not None:
                stop(proc)

    def test_two_supersets_side_by_side_each_keep_their_own_gunicorn_control_socket(self, cluster, tmp_path):
        """`gunicornc` (gunicorn's control client: worker counts, reload, shutdown) run with a Superset
        container's environment, as `kubectl exec` would run it in its pod, reaches that container's gunicorn,
        though another Superset runs here at the same time (another suite's, under `make test`), and still
        does once the other one stopped. Superset's container as rendered, gunicorn serving a probe app."""
        (tmp_path / "probe_app.py").write_text(PROBE_APP)
        probe = copy.deepcopy(cluster.release)
        (web,) = probe.get("Deployment", "retailflow-superset")["spec"]["template"]["spec"]["containers"]
        web["command"] = ["gunicorn", "--bind=0.0.0.0:8088", f"--chdir={tmp_path}", "probe_app:app"]
        started: list[tuple[subprocess.Popen, dict[str, str]]] = []

        def control(env: dict[str, str]) -> int | None:
            """The pid of the arbiter `gunicornc -c 'show all'` reaches with that environment, if any."""
            asked = subprocess.run([shutil.which("gunicornc", path=env["PATH"]), "-j", "-c", "show all"], env=env,
                                   capture_output=True, text=True, check=False, timeout=30)
            return json.loads(asked.stdout)["arbiter"]["pid"] if asked.returncode == 0 else None

        try:
            for name in ("first", "second"):
                runner = Workloads(probe, Peers(), cluster.kube, root=tmp_path / name)
                port = runner.peers.hold("retailflow-superset", 8088, "Superset's container, serving a probe app")
                proc = runner.start("Deployment", "retailflow-superset", "superset", tmp_path / f"{name}.log",
                                    listen={8088: port})
                _, env, _ = runner.prepare("Deployment", "retailflow-superset", "superset")
                started.append((proc, env))
                deadline = time.monotonic() + 60
                while control(env) != proc.pid:  # its control socket opens once its workers are up
                    assert proc.poll() is None and time.monotonic() < deadline, \
                        (tmp_path / f"{name}.log").read_text()[-3000:]
                    time.sleep(0.2)
            (first, first_env), (second, second_env) = started
            # (the environments hold the Secrets' values: not in an assertion, whose message would show them)
            first_reached = control(first_env)
            assert first_reached == first.pid  # not taken over by the second
            stop(first)
            second_reached = control(second_env)
            assert second_reached == second.pid  # not removed with the first
        finally:
            for proc, _ in started:
                stop(proc)

    @pytest.mark.skipif(os.geteuid() != 0, reason="the read-only root needs a private mount namespace (root)")
    def test_a_read_only_root_leaves_only_the_pods_writable_volumes(self, cluster):
        """The operator's container: readOnlyRootFilesystem, with an emptyDir at /tmp."""
        probe = copy.deepcopy(cluster.release)
        (operator,) = probe.get("Deployment", "retailflow-operator")["spec"]["template"]["spec"]["containers"]
        operator["command"] = ["python", "-c", "import sys, tempfile\ntempfile.TemporaryFile().write(b'ok')\n"
                               "try:\n    open('/app/written', 'w')\nexcept OSError as exc:\n    sys.exit(str(exc))"]
        runner = Workloads(probe, cluster.peers, cluster.kube, root=cluster.root / "read-only")
        run = runner.run("Deployment", "retailflow-operator", "operator", timeout=60)
        assert run.returncode == 1 and "Read-only file system" in run.output, run.output
        assert not (REPO / "operator" / "written").exists()

    def test_every_container_of_ours_is_run_here_or_says_why_not(self, release):
        ours = {(d["kind"], d["metadata"]["name"]): {c["name"] for c in containers(d)}
                for d in release.workloads() if d["kind"] in ("Job", "Deployment")}
        covered = {w: RUN_HERE.get(w, set()) | NOT_RUNNABLE.get(w, set()) for w in ours}
        assert ours == covered, "containers neither run by this suite nor listed as not runnable: " + str(
            {w: sorted(ours[w] - covered[w]) for w in ours if ours[w] != covered[w]})
