"""NetworkPolicies, evaluated on the rendered release: every connection the release needs is allowed,
and a sample of the others is not.

The evaluation follows the NetworkPolicy API (a policy selects pods of its own namespace only; a pod
selected by no policy of a direction is open in it; otherwise some rule of a policy that selects it
must admit the peer and port; both the client's egress and the server's ingress must allow). A peer
with a podSelector alone names pods of the policy's namespace; with a namespaceSelector, pods of the
namespaces whose labels it selects (every namespace carries ``kubernetes.io/metadata.name``). A pod
is (namespace, labels): with Airbyte in its own namespace (the airbyte-namespace variant) its pods and
connector pods live there. With the real upstream charts present the upstream pods
are the rendered ones (test ids `[full-render]`, where UPSTREAM_PODS is checked against them); with
the stand-ins they come from UPSTREAM_PODS, the labels the real charts give them (`[stand-ins]`).
Nothing here proves a CNI enforces them: kind's default (kindnet) does not (README, Security).
"""

from __future__ import annotations

import pytest

from support.helm_render import NAMESPACE, REAL_SUBCHARTS, VARIANTS, chart_values, pod_spec, render

REL = "retailflow"
#: A pod: (namespace, labels).
Pod = tuple[str, dict]


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
#: A pod of another namespace carrying the labels of Airbyte's server: a pod selector alone must not admit it.
IMPOSTOR = "airbyte-labelled-pod-elsewhere"

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
    (IMPOSTOR, "retailflow-postgresql", 5432),
    (IMPOSTOR, "retailflow-minio", 9000),
    (IMPOSTOR, "retailflow-workload-api-server", 8001),
]
#: Across the two namespaces when Airbyte has its own: a sample nothing in the release makes.
DENIED_ACROSS = [
    ("retailflow-superset", "retailflow-server", 8001),
    ("retailflow-seed", "retailflow-server", 8001),
    ("retailflow-api-server", "retailflow-server", 8001),
    ("retailflow-operator", "retailflow-temporal", 7233),
    ("retailflow-scheduler", "retailflow-workload-api-server", 8001),
    (CONNECTOR, "retailflow-superset", 8088),
    (CONNECTOR, "retailflow-operator", 8080),
    ("retailflow-server", "retailflow-api-server", 8080),
    ("retailflow-worker", "openmetadata", 8585),
    ("retailflow-temporal", "retailflow-mysql", 3306),
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


def _namespace_labels(namespace: str) -> dict:
    return {"kubernetes.io/metadata.name": namespace}


def _peer_ok(peers: list[dict] | None, policy_ns: str, pod: Pod) -> bool:
    if peers is None:
        return True
    namespace, labels = pod
    for peer in peers:
        if "ipBlock" in peer:
            continue  # never names a pod
        if "namespaceSelector" in peer:
            ns_ok = selects(peer["namespaceSelector"], _namespace_labels(namespace))
        else:
            ns_ok = namespace == policy_ns
        if ns_ok and selects(peer.get("podSelector") or {}, labels):
            return True
    return False


def _applies(policy: dict, pod: Pod) -> bool:
    return (policy["metadata"].get("namespace") or NAMESPACE) == pod[0] and selects(policy["spec"]["podSelector"], pod[1])


def allowed(policies: list[dict], src: Pod, dst: Pod | None, port: int) -> bool:
    if dst is None:  # EXTERNAL: some egress rule of a policy selecting the client names an ipBlock, on the port
        # (a wait's unknown port, 0, only by a rule without ports)
        applying = [p for p in policies if "Egress" in p["spec"].get("policyTypes", []) and _applies(p, src)]
        return not applying or any(any("ipBlock" in peer for peer in rule.get("to") or []) and _port_ok(rule, port)
                                   for p in applying for rule in p["spec"].get("egress") or [])
    def direction(kind: str, subject: Pod, peer: Pod, key: str, peers_key: str) -> bool:
        applying = [p for p in policies if kind in p["spec"].get("policyTypes", ["Ingress"]) and _applies(p, subject)]
        return not applying or any(_peer_ok(rule.get(peers_key), p["metadata"].get("namespace") or NAMESPACE, peer)
                                   and _port_ok(rule, port) for p in applying for rule in p["spec"].get(key) or [])
    return direction("Egress", src, dst, "egress", "to") and direction("Ingress", dst, src, "ingress", "from")


def airbyte_namespace(values: dict | None) -> str:
    return chart_values(values)["global"]["retailflow"]["airbyte"]["namespace"] or NAMESPACE


def pods(rendered, values, variant_values: dict | None = None) -> dict[str, Pod]:
    """Every pod of the release by name: (namespace, labels); ``variant_values`` place Airbyte's."""
    airbyte_ns = airbyte_namespace(variant_values)
    out = {}
    for doc in rendered.docs:
        namespace = doc["metadata"].get("namespace") or NAMESPACE
        if doc["kind"] in ("Deployment", "StatefulSet", "Job", "DaemonSet"):
            out[doc["metadata"]["name"]] = (namespace, doc["spec"]["template"]["metadata"].get("labels") or {})
        elif doc["kind"] == "Pod":
            out[doc["metadata"]["name"]] = (namespace, doc["metadata"].get("labels") or {})
    if MODE == "stand-ins":
        out.update({name: (airbyte_ns if "airbyte" in labels else NAMESPACE, labels) for name, labels in UPSTREAM_PODS.items()})
    out[CONNECTOR] = (airbyte_ns, dict(values["airbyte"]["global"]["jobs"]["kube"]["labels"]))
    out[TASK_POD] = (NAMESPACE, {"tier": "airflow", "component": "worker", "release": REL})
    out[IMPOSTOR] = ("elsewhere", _airbyte("server"))
    return out


def waits(rendered, all_pods: dict[str, Pod]) -> list[tuple[str, str, int]]:
    """(workload, server pod, port) of every `retailflow.io/waits-for` Service of the chart's own workloads."""
    services = {}
    for svc in rendered.of_kind("Service"):
        port = svc["spec"]["ports"][0]
        target = port.get("targetPort", port["port"])
        svc_ns = svc["metadata"].get("namespace") or NAMESPACE
        targets = [name for name, (ns, labels) in all_pods.items() if ns == svc_ns and svc["spec"].get("selector")
                   and selects({"matchLabels": svc["spec"]["selector"]}, labels)]
        if targets:
            services[svc["metadata"]["name"]] = (targets[0], target if isinstance(target, int) else port["port"])
    services = {**UPSTREAM_SERVICES, **services}
    namespaces = {ns for ns, _ in all_pods.values()}
    out = []
    for doc in rendered.own_workloads():
        annotation = (doc["metadata"].get("annotations") or {}).get("retailflow.io/waits-for", "")
        for target in filter(None, annotation.split(",")):
            if not target.startswith("service/"):
                continue  # a Secret or a Job: no connection
            host = target.removeprefix("service/")
            name, _, domain = host.partition(".")
            if domain.partition(".")[0] in namespaces:  # <service>.<namespace>.svc: a Service of the release
                host = name
            server, port = services.get(host, (EXTERNAL, 0))
            out.append((doc["metadata"]["name"], server, port))
    return out


@pytest.fixture(scope="module")
def rendered():
    return render()


#: The variants whose every needed connection and sample of refused ones are checked: Airbyte in the
#: release namespace, and in its own.
LAYOUTS = ["defaults", "airbyte-namespace"]


class TestNetworkPolicies:
    def test_on_by_default_with_a_default_deny_for_every_pod(self, rendered, values):
        assert values["networkPolicies"]["enabled"] is True
        (deny,) = [p for p in rendered.of_kind("NetworkPolicy") if p["spec"]["podSelector"] == {}]
        assert set(deny["spec"]["policyTypes"]) == {"Ingress", "Egress"} and not deny["spec"].get("ingress")

    def test_airbytes_own_namespace_gets_its_default_deny_too(self):
        values = VARIANTS["airbyte-namespace"]
        denies = {p["metadata"]["namespace"]: p for p in render(values=values).of_kind("NetworkPolicy")
                  if p["spec"]["podSelector"] == {}}
        assert set(denies) == {NAMESPACE, airbyte_namespace(values)}
        assert all(set(d["spec"]["policyTypes"]) == {"Ingress", "Egress"} and not d["spec"].get("ingress")
                   for d in denies.values())

    @pytest.mark.parametrize("variant", LAYOUTS)
    @pytest.mark.parametrize("mode", [MODE])
    def test_every_connection_the_release_needs_is_allowed(self, values, mode, variant):
        rendered = render(values=VARIANTS[variant])
        policies = rendered.of_kind("NetworkPolicy")
        all_pods = pods(rendered, values, VARIANTS[variant])
        needed = waits(rendered, all_pods) + NEEDED
        assert len(waits(rendered, all_pods)) >= 10, "the waits-for annotations were not read"
        across = [(c, s) for c, s, _ in needed if s in all_pods and all_pods[c][0] != all_pods[s][0]]
        if variant == "airbyte-namespace":
            assert len(across) >= 15, f"the variant does not put Airbyte in another namespace: {across}"
        refused = [f"{c} -> {s}:{p}" for c, s, p in needed if not allowed(policies, all_pods[c], all_pods.get(s), p)]
        print(f"[{mode}] [{variant}] {len(needed)} needed connections checked ({len(across)} across namespaces), "
              f"{len(refused)} refused")
        assert not refused, "refused by the NetworkPolicies: " + ", ".join(refused)

    @pytest.mark.parametrize("variant", LAYOUTS)
    @pytest.mark.parametrize("mode", [MODE])
    def test_a_sample_of_other_connections_is_refused(self, values, mode, variant):
        rendered = render(values=VARIANTS[variant])
        policies = rendered.of_kind("NetworkPolicy")
        all_pods = pods(rendered, values, VARIANTS[variant])
        let_through = [f"{c} -> {s}:{p}" for c, s, p in DENIED + DENIED_ACROSS
                       if allowed(policies, all_pods[c], all_pods[s], p)]
        assert not let_through, "allowed, but nothing in the release needs it: " + ", ".join(let_through)

    def test_dns_is_allowed_to_every_pod(self, rendered, values):
        (deny,) = [p for p in rendered.of_kind("NetworkPolicy") if p["spec"]["podSelector"] == {}]
        assert any({"protocol": "UDP", "port": 53} in (rule.get("ports") or []) and "to" not in rule
                   for rule in deny["spec"]["egress"]), f"no DNS egress (UDP 53, any destination): {deny['spec']['egress']}"

    @pytest.mark.skipif(MODE != "full-render", reason="needs the real upstream charts in charts/retailflow/charts/")
    def test_upstream_pod_labels_are_the_real_charts(self, rendered):
        real = {name: labels for name, (_, labels) in
                pods(rendered, {"airbyte": {"global": {"jobs": {"kube": {"labels": {}}}}}}).items()}
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
        all_pods = pods(rendered, values, VARIANTS[variant])
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

    def test_the_copy_job_may_reach_the_kubernetes_api(self, values):
        """Airbyte in its own namespace: the Job copying airbyte-auth-secrets talks to the API server."""
        rendered = render(values=VARIANTS["airbyte-namespace"])
        all_pods = pods(rendered, values, VARIANTS["airbyte-namespace"])
        assert allowed(rendered.of_kind("NetworkPolicy"), all_pods["retailflow-airbyte-auth-copy"], None, 443)
