"""Benchmark of the RetailFlow operator: time from `kubectl apply` to phase Ready, and writes on a no-op resync.

The real operator (kopf) runs against the emulated Kubernetes API, the Airbyte fake and a real
Airflow 3 API server, all on loopback in this process (Airflow in its own). Baseline, measured in
the same run: one converge pass called directly (same Airbyte/Airflow calls, no Kubernetes, no kopf).

Run: uv run --project operator python tests/bench/bench_operator.py
"""

from __future__ import annotations

import os
import statistics
import sys
import time
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(TESTS), str(TESTS / "integration" / "operator")]

from operator_runner import (  # noqa: E402
    FAST,
    airflow_variable_writes,
    create_secrets,
    is_ready,
    pipeline_body,
    running_operator,
    unique_prefix,
)
from support.airbyte_fake import AirbyteFake  # noqa: E402
from support.airflow_server import AirflowServer  # noqa: E402
from support.kube_emulator import EmulatedKubernetesAPI  # noqa: E402

NS = "bench"
REPEATS = int(os.environ.get("BENCH_REPEATS", "20"))
MANY = int(os.environ.get("BENCH_MANY", "50"))
ENV = FAST | {"RETAILFLOW_DRIFT_INTERVAL_S": "5", "RETAILFLOW_DRIFT_IDLE_S": "1"}


def report(name: str, value: float | int, note: str = "") -> None:
    shown = f"{value:.3f}" if isinstance(value, float) else str(value)
    # kopf's test runner (click's CliRunner) swaps sys.stdout while the operator runs.
    sys.__stdout__.write(f"bench: {name} {shown}" + (f"  ({note})" if note else "") + "\n")
    sys.__stdout__.flush()


def all_ready(kube: EmulatedKubernetesAPI, names: set[str], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        items = kube._ok(kube.request("GET", kube.rp_path(NS)))["items"]
        if {o["metadata"]["name"] for o in items if is_ready(o)} >= names:
            return
        if time.monotonic() > deadline:
            raise SystemExit(f"not Ready after {timeout} s")
        time.sleep(0.05)


def baseline_direct_pass(airbyte: AirbyteFake, airflow: AirflowServer) -> float:
    """One converge pass of a fresh pipeline, called directly: the floor the operator adds to."""
    from retailflow_operator.converge import Converger, Pipeline, peers_for
    from retailflow_operator.spec_model import parse

    body = pipeline_body(NS, "baseline", airbyte, airflow, unique_prefix("baseline"))
    secrets = {
        "mysql": {"username": "u", "password": "p"},
        "warehouse": {"username": "u", "password": "p"},
        "lake": {"access_key_id": "k", "secret_access_key": "s"},
        "airbyte": {"client_id": airbyte.client_id, "client_secret": airbyte.client_secret},
        "airflow": {"username": airflow.username, "password": airflow.password},
    }
    spec = parse(body["spec"])
    peers = peers_for(spec.airbyte, spec.airflow, secrets, 30)
    began = time.perf_counter()
    Converger(Pipeline(NS, "baseline", "uid-baseline", spec, {}), peers, secrets, "rf", apply=True).converge()
    return time.perf_counter() - began


def main() -> None:
    with EmulatedKubernetesAPI() as kube, AirbyteFake() as airbyte, AirflowServer() as airflow:
        create_secrets(kube, airbyte, airflow, NS)
        with running_operator(ENV):
            # One pipeline at a time, created then deleted, REPEATS times.
            samples = []
            for i in range(REPEATS + 1):
                name = f"single-{i}"
                body = pipeline_body(NS, name, airbyte, airflow, unique_prefix(f"s{i}"))
                began = time.perf_counter()
                kube.apply_rp(body)
                kube.wait_rp(NS, name, is_ready, timeout=60)
                if i:  # the first one pays the operator's warm-up
                    samples.append(time.perf_counter() - began)
                kube.delete_rp(NS, name)
                kube.wait_rp_gone(NS, name, timeout=60)
            samples.sort()
            p95 = samples[min(len(samples) - 1, round(0.95 * (len(samples) - 1)))]
            report(
                "operator_ready_baseline_direct_pass_s",
                baseline_direct_pass(airbyte, airflow),
                "one converge pass without Kubernetes or kopf",
            )
            report("operator_ready_p50_s", statistics.median(samples), f"n={len(samples)}")
            report("operator_ready_p95_s", p95, "target < 2 s")

            # MANY pipelines at once.
            names = {f"many-{i}" for i in range(MANY)}
            began = time.perf_counter()
            for i, name in enumerate(sorted(names)):
                kube.apply_rp(pipeline_body(NS, name, airbyte, airflow, unique_prefix(f"m{i}")))
            all_ready(kube, names, timeout=300)
            report(f"operator_{MANY}_crs_ready_s", time.perf_counter() - began, "target < 30 s")
            ours = [c["name"] for c in airbyte.live("connections").values() if c["name"].startswith(f"rf/{NS}/many-")]
            report(
                f"operator_{MANY}_crs_duplicate_connections",
                len(ours) - len(set(ours)),
                f"{len(ours)} connections, must be 0",
            )

            # Nothing changes: the drift timer re-checks every pipeline and must write nothing.
            time.sleep(2)
            airbyte.reset_writes()
            airflow_before = airflow_variable_writes(airflow)
            time.sleep(float(ENV["RETAILFLOW_DRIFT_INTERVAL_S"]) * 1.5)
            writes = len(airbyte.writes) + airflow_variable_writes(airflow) - airflow_before
            report("operator_noop_resync_writes", writes, f"{MANY} pipelines, must be 0")


if __name__ == "__main__":
    main()
