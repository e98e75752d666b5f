"""The memory budget: the whole stack's requests fit one 16 GiB kind node (≤ 12 GiB requested).

Counted: every pod the chart renders itself (Jobs included, as they run during the install;
Superset is one of them since it runs from this chart's templates), plus
the requests the umbrella's values give each upstream component, read from the same keys the
upstream charts read (checked against the real Airbyte 2.2.0, OpenMetadata 1.13.1 and OpenSearch
3.3.2 charts; see the chart README). Airbyte's and OpenMetadata's runtime pods (one sync, one
ingestion) are counted too.
"""

from __future__ import annotations

import re

import pytest

from support.helm_render import UMBRELLA, pod_spec

BUDGET_MI = 12 * 1024
UNITS = {"Ki": 1 / 1024, "Mi": 1, "Gi": 1024, "Ti": 1024 ** 2, "k": 1000 / 1024 ** 2, "M": 1000 ** 2 / 1024 ** 2,
         "G": 1000 ** 3 / 1024 ** 2}

# component -> [(path under the umbrella's values, how many such pods run at once)]
UPSTREAM = {
    "Airbyte": [("airbyte.server", 1), ("airbyte.worker", 1), ("airbyte.workloadLauncher", 1),
                ("airbyte.workloadApiServer", 1), ("airbyte.temporal", 1), ("airbyte.cron", 1),
                ("airbyte.airbyteBootloader", 1),
                # one running sync: source, destination and orchestrator containers
                ("global.jobs", 3)],
    "Airflow": [("airflow.apiServer", 1), ("airflow.scheduler", 1), ("airflow.dagProcessor", 1),
                ("airflow.triggerer", 1), ("airflow.migrateDatabaseJob", 1)],
    "OpenMetadata": [("openmetadata", 1)],
    "OpenSearch": [("opensearch", 1)],
}


def mebibytes(quantity: str) -> float:
    match = re.fullmatch(r"([0-9.]+)([KMGT]i?|k)?", str(quantity))
    assert match, quantity
    number, unit = match.groups()
    return float(number) * (UNITS[unit] if unit else 1 / 1024 ** 2)


def millicores(quantity) -> float:
    text = str(quantity)
    return float(text[:-1]) if text.endswith("m") else float(text) * 1000


def dig(values: dict, path: str) -> dict:
    node = values
    for part in path.split("."):
        node = node[part]
    return node


def pod_request(spec: dict) -> float:
    # Kubernetes schedules a pod on max(largest init container, sum of app containers).
    app = sum(mebibytes(c["resources"]["requests"]["memory"]) for c in spec["containers"])
    init = max((mebibytes(c["resources"]["requests"]["memory"]) for c in spec.get("initContainers", [])), default=0)
    return max(app, init)


def own_requests(rendered) -> dict[str, float]:
    out: dict[str, float] = {}
    for doc in rendered.own_workloads():
        replicas = doc["spec"].get("replicas", 1) if doc["kind"] != "Job" else 1
        component = doc["metadata"]["labels"]["app.kubernetes.io/component"]
        out[component] = out.get(component, 0) + replicas * pod_request(pod_spec(doc))
    return out


def upstream_requests(values: dict) -> dict[str, float]:
    out = {}
    for component, paths in UPSTREAM.items():
        total = 0.0
        for path, count in paths:
            total += count * mebibytes(dig(values, path)["resources"]["requests"]["memory"])
        out[component] = total
    return out


class TestBudget:
    def test_every_upstream_component_has_requests_and_limits(self, values):
        for component, paths in UPSTREAM.items():
            for path, _ in paths:
                resources = dig(values, path)["resources"]
                assert resources["requests"]["memory"] and resources["limits"]["memory"], path
                assert mebibytes(resources["limits"]["memory"]) >= mebibytes(resources["requests"]["memory"]), path
                assert millicores(resources["limits"]["cpu"]) >= millicores(resources["requests"]["cpu"]), path

    def test_own_pods_have_limits_at_or_above_requests(self, defaults):
        for doc in defaults.own_workloads():
            for container in pod_spec(doc).get("initContainers", []) + pod_spec(doc)["containers"]:
                requests, limits = container["resources"]["requests"], container["resources"]["limits"]
                assert mebibytes(limits["memory"]) >= mebibytes(requests["memory"]), doc["metadata"]["name"]

    def test_whole_stack_fits_the_budget(self, defaults, values):
        own = own_requests(defaults)
        upstream = upstream_requests(values)
        total = sum(own.values()) + sum(upstream.values())
        assert total <= BUDGET_MI, f"{total:.0f} Mi requested > {BUDGET_MI} Mi: own {own}, upstream {upstream}"
        # Airbyte and OpenMetadata alone recommend 8 GiB each; the budget must not be met by
        # leaving them out.
        assert upstream["Airbyte"] >= 2048 and upstream["OpenMetadata"] + upstream["OpenSearch"] >= 2048

    def test_readme_budget_table_matches_the_values(self, defaults, values):
        readme = (UMBRELLA / "README.md").read_text()
        total = sum(own_requests(defaults).values()) + sum(upstream_requests(values).values())
        match = re.search(r"\|\s*\*\*Total\*\*\s*\|[^|]*\|\s*\*\*([0-9]+) Mi\*\*", readme)
        assert match, "README budget table has no **Total** row"
        assert int(match.group(1)) == round(total)

    @pytest.mark.parametrize("quantity,expected", [("1Gi", 1024), ("1536Mi", 1536), ("512M", 488.28125)])
    def test_quantity_parser(self, quantity, expected):
        assert mebibytes(quantity) == pytest.approx(expected)
