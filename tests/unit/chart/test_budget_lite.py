"""The lite profile's budget (values-lite.yaml): steady memory requests ≤ 4 GiB, CPU requests ≤ 2,
limits on every container, so that it fits a kind node on an 8 GiB Docker Desktop.

Counted as in test_budget.py: the pods this chart renders (from the lite render) plus the requests
the merged values give the one upstream chart the profile keeps, Airflow. "Steady" is what runs all
the time (Deployments, StatefulSets, Airflow's four services); the Jobs (the chart's, and Airflow's
migrations) run at install and upgrade and are reported on top.
"""

from __future__ import annotations

import re

from support.helm_render import LITE_VALUES, UMBRELLA, chart_values, pod_spec, render
from unit.chart.test_budget import dig, mebibytes, millicores, pod_request

import yaml

STEADY_MI = 4 * 1024
STEADY_CPU_M = 2000
LITE = yaml.safe_load(LITE_VALUES.read_text())
# upstream component -> [(path under the merged values, pods at once)]; Airbyte, OpenMetadata and
# OpenSearch are off in this profile (asserted below).
UPSTREAM_STEADY = [("airflow.apiServer", 1), ("airflow.scheduler", 1), ("airflow.dagProcessor", 1),
                   ("airflow.triggerer", 1)]
UPSTREAM_JOBS = [("airflow.migrateDatabaseJob", 1)]


def pod_cpu(spec: dict) -> float:
    app = sum(millicores(c["resources"]["requests"]["cpu"]) for c in spec["containers"])
    init = max((millicores(c["resources"]["requests"]["cpu"]) for c in spec.get("initContainers", [])), default=0)
    return max(app, init)


def pod_memory_limit(spec: dict) -> float:
    app = sum(mebibytes(c["resources"]["limits"]["memory"]) for c in spec["containers"])
    init = max((mebibytes(c["resources"]["limits"]["memory"]) for c in spec.get("initContainers", [])), default=0)
    return max(app, init)


def figures() -> dict[str, float]:
    """Memory (Mi) and CPU (m) requests and memory limits (Mi) of the lite release, steady and of its Jobs."""
    rendered, values = render(values=LITE), chart_values(LITE)
    out = {f"{w}_{k}": 0.0 for w in ("steady", "jobs") for k in ("mi", "cpu", "limit_mi")}
    for doc in rendered.workloads():
        which = "jobs" if doc["kind"] == "Job" else "steady"
        replicas = 1 if doc["kind"] == "Job" else doc["spec"].get("replicas", 1)
        out[f"{which}_mi"] += replicas * pod_request(pod_spec(doc))
        out[f"{which}_cpu"] += replicas * pod_cpu(pod_spec(doc))
        out[f"{which}_limit_mi"] += replicas * pod_memory_limit(pod_spec(doc))
    for which, paths in (("steady", UPSTREAM_STEADY), ("jobs", UPSTREAM_JOBS)):
        for path, count in paths:
            resources = dig(values, path)["resources"]
            out[f"{which}_mi"] += count * mebibytes(resources["requests"]["memory"])
            out[f"{which}_cpu"] += count * millicores(resources["requests"]["cpu"])
            out[f"{which}_limit_mi"] += count * mebibytes(resources["limits"]["memory"])
    return out


class TestLiteBudget:
    def test_only_airflow_of_the_upstream_charts_runs(self):
        values = chart_values(LITE)
        assert [c for c in ("airbyte", "airflow", "openmetadata", "opensearch") if values[c]["enabled"]] == ["airflow"]

    def test_steady_requests_fit_4_gib_and_2_cpus(self):
        f = figures()
        assert f["steady_mi"] <= STEADY_MI, f"{f['steady_mi']:.0f} Mi requested steady > {STEADY_MI} Mi: {f}"
        assert f["steady_cpu"] <= STEADY_CPU_M, f"{f['steady_cpu']:.0f}m CPU requested steady > {STEADY_CPU_M}m: {f}"

    def test_every_container_has_limits_at_or_above_its_requests(self):
        for doc in render(values=LITE).workloads():
            for c in pod_spec(doc).get("initContainers", []) + pod_spec(doc)["containers"]:
                req, lim = c["resources"]["requests"], c["resources"].get("limits") or {}
                where = f"{doc['kind']} {doc['metadata']['name']} container {c['name']}"
                assert lim.get("memory") and lim.get("cpu"), f"{where}: no limits"
                assert mebibytes(lim["memory"]) >= mebibytes(req["memory"]), where
                assert millicores(lim["cpu"]) >= millicores(req["cpu"]), where
        values = chart_values(LITE)
        for path, _ in UPSTREAM_STEADY + UPSTREAM_JOBS:
            res = dig(values, path)["resources"]
            assert mebibytes(res["limits"]["memory"]) >= mebibytes(res["requests"]["memory"]), path
            assert millicores(res["limits"]["cpu"]) >= millicores(res["requests"]["cpu"]), path

    def test_readme_lite_row_matches(self):
        readme = (UMBRELLA / "README.md").read_text()
        budget = readme.split("## Memory budget", 1)[1].split("\n## ", 1)[0]
        row = re.search(r"\|\s*\*\*Lite profile\*\*[^|]*\|[^|]*\|\s*\*\*([0-9]+) Mi\*\* steady, ([0-9]+) Mi with "
                        r"its Jobs; ([0-9]+)m CPU steady; limits ([0-9]+) Mi steady", budget)
        assert row, "README budget table has no **Lite profile** row"
        f = figures()
        assert tuple(int(x) for x in row.groups()) == (round(f["steady_mi"]), round(f["steady_mi"] + f["jobs_mi"]),
                                                        round(f["steady_cpu"]), round(f["steady_limit_mi"]))
