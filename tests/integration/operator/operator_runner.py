"""Runs the real RetailFlow operator (``kopf run -m retailflow_operator``) in a thread of the test
process, against whatever ``KUBECONFIG`` points at, plus helpers to build pipelines for the stand-ins.

Shared by the operator scenarios and by ``tests/bench/bench_operator.py``.
"""

from __future__ import annotations

import importlib
import os
import sys
import tempfile
import time
import uuid
from contextlib import contextmanager
from typing import Any, Iterator

import kopf
import pytest
from kopf.testing import KopfRunner

_HMAC_KEY_FILE = os.path.join(tempfile.mkdtemp(prefix="rf-operator-"), "hmac-key")
with open(_HMAC_KEY_FILE, "w") as _f:
    _f.write(uuid.uuid4().hex)
os.chmod(_HMAC_KEY_FILE, 0o600)

#: Label the operator requires on the Secrets it reads (the chart's Secrets carry it).
CREDENTIALS_LABEL = {"retailflow.io/credentials": "true"}
#: Hosts of the stand-ins (loopback) and of the databases named in ``pipeline_body``.
TEST_HOSTS = "127.0.0.1,localhost,mariadb,postgresql,minio"
#: Short timer and backoff so drift and recovery are seen within seconds.
FAST = {
    "RETAILFLOW_DRIFT_INTERVAL_S": "1",
    "RETAILFLOW_DRIFT_IDLE_S": "0.3",
    "RETAILFLOW_BACKOFF_S": "0.5",
    "RETAILFLOW_BACKOFF_MAX_S": "2",
    "RETAILFLOW_HTTP_TIMEOUT_S": "5",
    "RETAILFLOW_ALLOWED_HOSTS": TEST_HOSTS,
    "RETAILFLOW_HMAC_KEY_FILE": _HMAC_KEY_FILE,
}
NS = "retail"
PROJECT_STREAMS = {
    "customers": "customer_id",
    "products": "product_id",
    "orders": "order_id",
    "order_items": "order_item_id",
}


def load_operator(env: dict[str, str]) -> kopf.OperatorRegistry:
    """Import the operator afresh into its own registry: its settings (timer interval) are read at import."""
    os.environ.update(env)
    registry = kopf.OperatorRegistry()
    # A bare registry lacks kopf's fallback logins; the operator logs in like kopf would by default.
    kopf.on.login(registry=registry)(kopf.login_via_client)
    kopf.set_default_registry(registry)
    for mod in [m for m in sys.modules if m == "retailflow_operator" or m.startswith("retailflow_operator.")]:
        del sys.modules[mod]
    importlib.import_module("retailflow_operator")
    return registry


@contextmanager
def running_operator(env: dict[str, str] | None = None) -> Iterator[KopfRunner]:
    registry = load_operator(env or FAST)
    args = ["run", "--standalone", "-A", "--verbose", "-m", "retailflow_operator"]
    with KopfRunner(args, registry=registry, timeout=60) as runner:
        yield runner
    assert runner.exception is None, runner.output[-4000:]
    assert runner.exit_code == 0, runner.output[-4000:]


def create_secrets(kube: Any, airbyte: Any, airflow: Any, namespace: str) -> None:
    label = CREDENTIALS_LABEL
    kube.create_secret(namespace, "mysql", {"username": "retail", "password": uuid.uuid4().hex}, label)
    kube.create_secret(namespace, "warehouse", {"username": "warehouse", "password": uuid.uuid4().hex}, label)
    kube.create_secret(namespace, "lake", {"accessKeyId": "lake-user", "secretAccessKey": uuid.uuid4().hex}, label)
    kube.create_secret(namespace, "airbyte", {"clientId": airbyte.client_id, "clientSecret": airbyte.client_secret},
                       label)
    kube.create_secret(namespace, "airflow", {"username": airflow.username, "password": airflow.password}, label)


def pipeline_body(namespace: str, name: str, airbyte: Any, airflow: Any, prefix: str, **spec: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "apiVersion": "retailflow.io/v1alpha1",
        "kind": "RetailPipeline",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "mysql": {
                "host": "mariadb",
                "database": "retail",
                "credentialsSecretRef": {"name": "mysql"},
                "streams": [
                    {"name": n, "cursorField": "updated_at", "primaryKey": pk} for n, pk in PROJECT_STREAMS.items()
                ],
            },
            "storeLocations": {"s3Key": "store_locations/store_locations.csv"},
            "warehouse": {"host": "postgresql", "database": "warehouse", "credentialsSecretRef": {"name": "warehouse"}},
            "lake": {
                "endpoint": "http://minio:9000",
                "bucket": "retail-lake",
                "credentialsSecretRef": {"name": "lake"},
            },
            "airbyte": {
                "apiUrl": airbyte.server_url,
                "workspaceId": airbyte.workspace_id,
                "credentialsSecretRef": {"name": "airbyte"},
            },
            "airflow": {"apiUrl": airflow.url, "variablePrefix": prefix, "credentialsSecretRef": {"name": "airflow"}},
            "schedule": "0 2 * * *",
        },
    }
    body["spec"].update(spec)
    return body


def is_ready(obj: dict[str, Any]) -> bool:
    status = obj.get("status") or {}
    return status.get("phase") == "Ready" and status.get("observedGeneration") == obj["metadata"].get("generation")


def phase_is(phase: str):
    return lambda obj: (obj.get("status") or {}).get("phase") == phase


def unique_prefix(tag: str) -> str:
    return f"t{uuid.uuid4().hex[:6]}_{tag}_"


def wait_for(predicate, timeout: float = 20, message: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {message}")
        time.sleep(0.05)


def wait_for_event(kube: Any, reason: str, timeout: float = 10) -> None:
    """Wait until an Event with ``reason`` is in the namespace: kopf posts events from a queue of its
    own, after the status patch that a test may already have seen."""
    wait_for(lambda: reason in {e.get("reason") for e in kube.events(NS)}, timeout, f"a {reason} event in {NS}")


#: what kopf logs after each pass of the operator's drift timer (``support.kopf_log``)
DRIFT_PASS = "Timer 'drift' succeeded."


def airflow_variable_writes(airflow: Any) -> int:
    """Writes to variables recorded in Airflow's own audit log (every write endpoint is action-logged)."""
    res = airflow.api("GET", "/eventLogs", params={"event_pattern": "variable", "limit": 1})
    res.raise_for_status()
    return int(res.json()["total_entries"])


def owned_variables(airflow: Any, prefix: str) -> dict[str, str]:
    return {k: v for k, v in airflow.variables().items() if k.startswith(prefix)}


@pytest.fixture
def make_pipeline(kube, airbyte, airflow):
    """Creates the five Secrets in namespace ``retail``; returns a factory of RetailPipeline bodies whose
    Airflow variable prefix is unique, so tests sharing one Airflow never see each other's variables."""
    create_secrets(kube, airbyte, airflow, NS)

    def make(name: str = "demo", **spec: Any) -> dict[str, Any]:
        return pipeline_body(NS, name, airbyte, airflow, unique_prefix(name.replace("-", "_")), **spec)

    return make


@pytest.fixture
def operator_run(kube):
    """The real operator (kopf, in a thread of this process) watching the emulated Kubernetes API."""
    with running_operator() as runner:
        yield runner
