"""The ingestion client and the server it talks to are the same major.minor, and the 1.13 client's
quirks are handled: the real client (``.tools/openmetadata``, from hack/envs/openmetadata/uv.lock)
asks the OpenMetadata stand-in (in-process, loopback; not OpenMetadata, see its docstring) for its
version exactly as ``metadata ingest`` does before any workflow."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from retailflow_pipeline import governance
from support.openmetadata_standin import SERVER_VERSION, OpenMetadataStandIn

REPO = Path(__file__).resolve().parents[3]
CLIENT_PYTHON = REPO / ".tools" / "openmetadata" / "bin" / "python"

# What `metadata ingest` runs first: OpenMetadata(config) calls validate_versions() on the server.
_CONNECT = """
import sys
from metadata.generated.schema.entity.services.connections.metadata.openMetadataConnection import (
    OpenMetadataConnection)
from metadata.generated.schema.security.client.openMetadataJWTClientConfig import OpenMetadataJWTClientConfig
from metadata.ingestion.ometa.ometa_api import OpenMetadata
from metadata.__version__ import get_client_version
config = OpenMetadataConnection(hostPort=sys.argv[1], authProvider="openmetadata",
                                securityConfig=OpenMetadataJWTClientConfig(jwtToken="stand-in.jwt"))
try:
    OpenMetadata(config)
except Exception as exc:
    print(f"refused: {exc}")
    sys.exit(1)
print(f"accepted: client {get_client_version()}")
"""


def _connect(url: str) -> subprocess.CompletedProcess:
    if not CLIENT_PYTHON.exists():
        pytest.fail(f"{CLIENT_PYTHON} is missing: run `make openmetadata-env`")
    return subprocess.run([str(CLIENT_PYTHON), "-c", _CONNECT, url], capture_output=True, text=True,
                          timeout=120, check=False)


def test_the_client_accepts_the_server_the_chart_deploys():
    with OpenMetadataStandIn() as standin:
        proc = _connect(standin.url)
    assert proc.returncode == 0, proc.stdout + proc.stderr[-2000:]
    client = proc.stdout.split("accepted: client ", 1)[1].strip()
    assert client.split(".")[:2] == SERVER_VERSION.split(".")[:2]


def test_a_server_of_another_major_minor_is_refused_with_both_versions_named():
    with OpenMetadataStandIn(version="2.0.7") as standin:
        proc = _connect(standin.url)
    assert proc.returncode == 1
    assert "Server version is 2.0.7 vs. Client version" in proc.stdout
    assert "Major and minor versions should match" in proc.stdout


def test_passing_dbt_tests_get_a_message_so_the_client_records_their_results(tmp_path):
    results = {"args": {"which": "build"}, "results": [
        {"unique_id": "test.retailflow.unique_orders_order_id", "status": "pass", "message": None},
        {"unique_id": "test.retailflow.not_null_orders_status", "status": "fail", "message": "Got 3 results"},
        {"unique_id": "test.retailflow.compiled_only", "status": "success", "message": None},
        {"unique_id": "model.retailflow.orders", "status": "success", "message": "SELECT 12"},
    ]}
    source = tmp_path / "run_results.json"
    source.write_text(json.dumps(results))
    scratch = tmp_path / "scratch"
    scratch.mkdir()

    copy = governance._run_results_with_messages(source, scratch)

    assert copy.parent == scratch and json.loads(source.read_text()) == results  # the build's file is untouched
    assert [(r["status"], r["message"]) for r in json.loads(copy.read_text())["results"]] == [
        ("pass", "pass"), ("fail", "Got 3 results"), ("success", None), ("success", "SELECT 12")]


def test_an_unreadable_run_results_is_passed_on_as_it_is(tmp_path):
    missing = tmp_path / "run_results.json"
    assert governance._run_results_with_messages(missing, tmp_path) == missing
