"""NetworkPolicies, evaluated on the rendered release: every connection the release needs is allowed,
and a sample of the others is not.

The evaluation follows the NetworkPolicy API (a pod selected by no policy of a direction is open in
it; otherwise some rule of a policy that selects it must admit the peer and port; both the client's
egress and the server's ingress must allow). With the real upstream charts present the upstream pods
are the rendered ones (test ids `[full-render]`, where UPSTREAM_PODS is checked against them); with
the stand-ins they come from UPSTREAM_PODS, the labels the real charts give them (`[stand-ins]`).
Nothing here proves a CNI enforces them: kind's default (kindnet) does not (README, Security).
"""

from __future__ import annotations

import pytest

from support.helm_render import REAL_SUBCHARTS, VARIANTS, pod_spec, render

REL = "retailflow"


def _airflow(component: str) -> dict:
    return {"tier": "airflow", "component": component, "release": REL}


def _airbyte(name: str) -> dict:
    return {"airbyte": name, "app.kubernetes.io/name": name, "app.kubernetes.io/instance": REL}


#: Pod labels the real upstream charts render (checked against them in the full render).
UPSTREAM_PODS: dict[str, dict] = {
    "retailflow-api-server": _airflow("api-server"),
    "retailflow-scheduler": _airflow("scheduler"),
    "retailflow-dag-processor": _airflow("dag-processor"),
    "retailflow-triggerer": _airflow("triggerer"),
    "retailflow-run-airflow-migrations": _airflow("run-airflow-migrations"),
    "retailflow-server": _airbyte("server"),
    "retailflow-worker": _airbyte("worker"),
    "retailflow-workload-launcher": _airbyte("workload-launcher"),
    "retailflow-workload-api-server": _airbyte("workload-api-server"),
    "retailflow-cron": _airbyte("cron"),
    "retailflow-temporal": _airbyte("temporal"),
    "retailflow-bootloader": _airbyte("bootloader"),
    "openmetadata": {"app.kubernetes.io/name": "openmetadata", "app.kubernetes.io/instance": REL},
    "opensearch-cluster-master": {"app.kubernetes.io/name": "opensearch", "app.kubernetes.io/instance": REL},
}
#: Services of the upstream charts that the chart's own workloads wait for: (pod, port).
UPSTREAM_SERVICES = {"openmetadata": ("openmetadata", 8585), "retailflow-airbyte-server-svc": ("retailflow-server", 8001)}
EXTERNAL = "outside the namespace"  # a wait for a host that is no Service of the release (an external S3)
CONNECTOR = "airbyte-connector-pod"  # launched by Airbyte at run time, labelled by airbyte.global.jobs.kube.labels
TASK_POD = "airflow-task-pod"  # with the KubernetesExecutor (README, scale-out): the Airflow chart's pod template labels

#: (client, server, port) the release needs, besides the waits in `retailflow.io/waits-for`.
NEEDED = [
    *[(airflow, "retailflow-postgresql", 5432) for airflow in ("retailflow-api-server", "retailflow-scheduler",
      "retailflow-dag-processor", "retailflow-triggerer", "retailflow-run-airflow-migrations")],
    ("retailflow-scheduler", "retailflow-mysql", 3306),  # engine: direct copies MySQL itself
    ("retailflow-scheduler", "retailflow-minio", 9000),
    ("retailflow-scheduler", "openmetadata", 8585),  # the governance task
    ("retailflow-scheduler", "retailflow-superset", 8088),
    ("retailflow-scheduler", "retailflow-server", 8001),  # Airbyte syncs
    ("retailflow-triggerer", "retailflow-server", 8001),  # deferred Airbyte sensors
    ("retailflow-scheduler", "retailflow-api-server", 8080),  # the execution API
    ("retailflow-api-server", "retailflow-scheduler", 8793),  # task logs
    ("retailflow-operator", "retailflow-server", 8001),
    ("retailflow-operator", "retailflow-api-server", 8080),
    *[(airbyte, "retailflow-postgresql", 5432) for airbyte in ("retailflow-server", "retailflow-worker",
      "retailflow-workload-launcher", "retailflow-workload-api-server", "retailflow-cron", "retailflow-temporal",
      "retailflow-bootloader")],
    *[(airbyte, "retailflow-minio", 9000) for airbyte in ("retailflow-server", "retailflow-worker", "retailflow-workload-launcher")],
    ("retailflow-worker", "retailflow-temporal", 7233),
    ("retailflow-workload-launcher", "retailflow-workload-api-server", 8001),
    (CONNECTOR, "retailflow-mysql", 3306),
    (CONNECTOR, "retailflow-postgresql", 5432),
    (CONNECTOR, "retailflow-minio", 9000),
    (CONNECTOR, "retailflow-workload-api-server", 8001),
    *[(TASK_POD, server, port) for server, port in (("retailflow-postgresql", 5432), ("retailflow-mysql", 3306),
      ("retailflow-minio", 9000), ("openmetadata", 8585), ("retailflow-superset", 8088), ("retailflow-server", 8001),
      ("retailflow-api-server", 8080))],
    ("openmetadata", "retailflow-postgresql", 5432),
    ("openmetadata", "opensearch-cluster-master", 9200),
    ("openmetadata", "openmetadata", 8585),  # its own JWKS
    ("retailflow-superset", "retailflow-postgresql", 5432),
]
#: A sample of connections nothing in the release makes.
DENIED = [
    ("retailflow-superset", "retailflow-mysql", 3306),
    ("retailflow-superset", "retailflow-minio", 9000),
    ("retailflow-superset", "opensearch-cluster-master", 9200),
    ("retailflow-seed", "retailflow-postgresql", 5432),
    ("retailflow-seed", "retailflow-minio", 9001),  # the MinIO console: port-forward only
    ("retailflow-operator", "retailflow-postgresql", 5432),
    ("retailflow-operator", "retailflow-mysql", 3306),
    ("retailflow-pipeline", "retailflow-postgresql", 5432),
    ("retailflow-lake-buckets", "retailflow-postgresql", 5432),
    ("retailflow-superset-dashboards", "retailflow-mysql", 3306),
    ("retailflow-server", "retailflow-mysql", 3306),
    ("retailflow-api-server", "retailflow-mysql", 3306),
    ("openmetadata", "retailflow-mysql", 3306),
    ("opensearch-cluster-master", "retailflow-postgresql", 5432),
    ("retailflow-scheduler", "opensearch-cluster-master", 9200),
    # OpenMetadata's built-in admin password lives until the ingestion Job's first login: only that
    # Job, Airflow's scheduler and the server itself reach it (README, Security)
    (CONNECTOR, "openmetadata", 8585),
    ("retailflow-superset", "openmetadata", 8585),
    ("retailflow-operator", "openmetadata", 8585),
    ("retailflow-api-server", "openmetadata", 8585),
    ("retailflow-server", "openmetadata", 8585),
    ("retailflow-seed", "openmetadata", 8585),
    (CONNECTOR, "retailflow-api-server", 8080),
    (CONNECTOR, "retailflow-operator", 8080),
    ("retailflow-temporal", "retailflow-api-server", 8080),
    (TASK_POD, "opensearch-cluster-master", 9200),
]
MODE = "full-render" if {"airbyte", "airflow", "openmetadata", "opensearch"} <= set(REAL_SUBCHARTS) else "stand-ins"


def selects(selector: dict, labels: dict) -> bool:
    if any(labels.get(k) != v for k, v in (selector.get("matchLabels") or {}).items()):
        return False
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr["key"], expr["operator"], expr.get("values", [])
        if (op == "In" and labels.get(key) not in values) or (op == "NotIn" and labels.get(key) in values) \
                or (op == "Exists" and key not in labels) or (op == "DoesNotExist" and key in labels):
            return False
    return True


def _port_ok(rule: dict, port: int) -> bool:
    return not rule.get("ports") or any(p.get("port") == port for p in rule["ports"])


def _peer_ok(peers: list[dict] | None, labels: dict) -> bool:
    # same-namespace pod peers only: an ipBlock or another namespace never names a pod of this one
    return peers is None or any("podSelector" in p and "namespaceSelector" not in p and selects(p["podSelector"], labels)
                                for p in peers)


def allowed(policies: list[dict], src: dict, dst: dict | None, port: int) -> bool:
    if dst is None:  # EXTERNAL: some egress rule of a policy selecting the client names an ipBlock
        applying = [p for p in policies if "Egress" in p["spec"].get("policyTypes", []) and selects(p["spec"]["podSelector"], src)]
        return not applying or any("ipBlock" in peer for p in applying for rule in p["spec"].get("egress") or []
                                   for peer in rule.get("to") or [])
    def direction(kind: str, subject: dict, peer: dict, key: str, peers_key: str) -> bool:
        applying = [p for p in policies if kind in p["spec"].get("policyTypes", ["Ingress"])
                    and selects(p["spec"]["podSelector"], subject)]
        return not applying or any(_peer_ok(rule.get(peers_key), peer) and _port_ok(rule, port)
                                   for p in applying for rule in p["spec"].get(key) or [])
    return direction("Egress", src, dst, "egress", "to") and direction("Ingress", dst, src, "ingress", "from")


def pods(rendered, values) -> dict[str, dict]:
    out = {}
    for doc in rendered.docs:
        if doc["kind"] in ("Deployment", "StatefulSet", "Job", "DaemonSet"):
            out[doc["metadata"]["name"]] = doc["spec"]["template"]["metadata"].get("labels") or {}
        elif doc["kind"] == "Pod":
            out[doc["metadata"]["name"]] = doc["metadata"].get("labels") or {}
    if MODE == "stand-ins":
        out.update(UPSTREAM_PODS)
    out[CONNECTOR] = dict(values["airbyte"]["global"]["jobs"]["kube"]["labels"])
    out[TASK_POD] = {"tier": "airflow", "component": "worker", "release": REL}
    return out


def waits(rendered, all_pods: dict) -> list[tuple[str, str, int]]:
    """(workload, server pod, port) of every `retailflow.io/waits-for` of the chart's own workloads."""
    services = {}
    for svc in rendered.of_kind("Service"):
        port = svc["spec"]["ports"][0]
        target = port.get("targetPort", port["port"])
        targets = [name for name, labels in all_pods.items() if selects({"matchLabels": svc["spec"].get("selector") or {}}, labels)
                   and svc["spec"].get("selector")]
        if targets:
            services[svc["metadata"]["name"]] = (targets[0], target if isinstance(target, int) else port["port"])
    services = {**UPSTREAM_SERVICES, **services}
    out = []
    for doc in rendered.own_workloads():
        annotation = (doc["metadata"].get("annotations") or {}).get("retailflow.io/waits-for", "")
        for target in filter(None, annotation.split(",")):
            server, port = services.get(target.removeprefix("service/"), (EXTERNAL, 0))
            out.append((doc["metadata"]["name"], server, port))
    return out


@pytest.fixture(scope="module")
def rendered():
    return render()


class TestNetworkPolicies:
    def test_on_by_default_with_a_default_deny_for_every_pod(self, rendered, values):
        assert values["networkPolicies"]["enabled"] is True
        (deny,) = [p for p in rendered.of_kind("NetworkPolicy") if p["spec"]["podSelector"] == {}]
        assert set(deny["spec"]["policyTypes"]) == {"Ingress", "Egress"} and not deny["spec"].get("ingress")

    @pytest.mark.parametrize("mode", [MODE])
    def test_every_connection_the_release_needs_is_allowed(self, rendered, values, mode):
        policies = rendered.of_kind("NetworkPolicy")
        all_pods = pods(rendered, values)
        needed = waits(rendered, all_pods) + NEEDED
        assert len(waits(rendered, all_pods)) >= 10, "the waits-for annotations were not read"
        refused = [f"{c} -> {s}:{p}" for c, s, p in needed if not allowed(policies, all_pods[c], all_pods.get(s), p)]
        print(f"[{mode}] {len(needed)} needed connections checked, {len(refused)} refused")
        assert not refused, "refused by the NetworkPolicies: " + ", ".join(refused)

    @pytest.mark.parametrize("mode", [MODE])
    def test_a_sample_of_other_connections_is_refused(self, rendered, values, mode):
        policies = rendered.of_kind("NetworkPolicy")
        all_pods = pods(rendered, values)
        let_through = [f"{c} -> {s}:{p}" for c, s, p in DENIED if allowed(policies, all_pods[c], all_pods[s], p)]
        assert not let_through, "allowed, but nothing in the release needs it: " + ", ".join(let_through)

    def test_dns_is_allowed_to_every_pod(self, rendered, values):
        (deny,) = [p for p in rendered.of_kind("NetworkPolicy") if p["spec"]["podSelector"] == {}]
        assert any({"protocol": "UDP", "port": 53} in (rule.get("ports") or []) and "to" not in rule
                   for rule in deny["spec"]["egress"]), f"no DNS egress (UDP 53, any destination): {deny['spec']['egress']}"

    @pytest.mark.skipif(MODE != "full-render", reason="needs the real upstream charts in charts/retailflow/charts/")
    def test_upstream_pod_labels_are_the_real_charts(self, rendered):
        real = {name: labels for name, labels in pods(rendered, {"airbyte": {"global": {"jobs": {"kube": {"labels": {}}}}}}).items()}
        for name, labels in UPSTREAM_PODS.items():
            assert name in real, f"{name} is not rendered by the real charts"
            assert labels.items() <= real[name].items(), (name, labels, real[name])
        # the connector pods carry airbyte.global.jobs.kube.labels: Airbyte's launcher reads JOB_KUBE_LABELS
        (env,) = [d for d in rendered.upstream if d["kind"] == "ConfigMap" and d["metadata"]["name"] == "retailflow-airbyte-env"]
        assert env["data"]["JOB_KUBE_LABELS"] == "retailflow.io/airbyte-connector=true"

    def test_off_renders_none(self):
        assert not render(values={"networkPolicies": {"enabled": False}}).of_kind("NetworkPolicy")

    @pytest.mark.parametrize("variant", sorted(VARIANTS))
    def test_every_variant_keeps_its_waits_allowed(self, variant, values):
        rendered = render(values=VARIANTS[variant])
        all_pods = pods(rendered, values)
        policies = rendered.of_kind("NetworkPolicy")
        refused = [f"{c} -> {s}:{p}" for c, s, p in waits(rendered, all_pods)
                   if not allowed(policies, all_pods[c], all_pods.get(s), p)]
        assert not refused, refused

    def test_external_lake_clients_may_leave_the_namespace(self):
        rendered = render(values=VARIANTS["external-s3"])
        egress = [p for p in rendered.of_kind("NetworkPolicy") if any(
            "ipBlock" in peer for rule in p["spec"].get("egress") or [] for peer in rule.get("to") or [])]
        for job in ("retailflow-seed", "retailflow-lake-buckets"):
            labels = rendered.get("Job", job)["spec"]["template"]["metadata"]["labels"]
            assert any(selects(p["spec"]["podSelector"], labels) for p in egress), job
