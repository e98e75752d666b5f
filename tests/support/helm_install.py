"""Helm's install and upgrade sequence, played over a rendered release: who waits for whom.

A model of what `helm install --wait` and `helm upgrade --wait` do with the release's documents,
written from Helm 4's own code (helm/helm, main at e9b85e4de16a, 2026-08-20):

- ``pkg/action/install.go`` ``performInstall``: pre-install hooks, then the release's resources are
  created, then ``waiter.Wait`` (``WaitWithJobs`` with ``--wait-for-jobs``), then post-install
  hooks. ``pkg/action/upgrade.go`` does the same with pre-upgrade and post-upgrade hooks around
  ``KubeClient.Update``.
- ``pkg/action/hooks.go`` ``execHookWithDelayedShutdown``: the hooks of one event, pre-ordered by
  kind (``pkg/release/v1/util/kind_sorter.go`` ``InstallOrder``) and stably sorted by weight, then
  name (``hookByWeight``). Each one is created (a ``before-hook-creation`` copy is deleted first) and
  ``WatchUntilReady`` runs before the next one is created.
- ``pkg/kube/statuswait.go`` ``WatchUntilReady``: only Jobs (``internal/statusreaders``: Current only
  once Complete) and Pods (Succeeded) are waited for; every other kind is ``alwaysReady``, so a hook
  StatefulSet is created, not waited for.
- ``Wait``: kstatus readiness of every resource; kstatus counts a Job in progress as Current, so
  Jobs are waited for only with ``--wait-for-jobs`` (``WaitWithJobs``).

What each workload waits for is read from the release itself, never guessed from its code:

- ``retailflow.io/waits-for`` (the chart's own workloads): ``service/<name>``, ``job/<name>`` or
  ``secret/<name>``, waited for by the workload with a bounded loop (``files/scripts/wait_for.py``
  or its own code): it may come later, as long as nothing makes it wait on this workload's phase.
- ``retailflow.io/creates`` (the chart's own workloads): what it writes at run time (``secret/<name>``,
  in its own namespace), for the workloads that need it.
- What a pod cannot start without: the Secrets and ConfigMaps its env, envFrom and volumes name
  (unless ``optional``), and its ServiceAccount.
- ``UPSTREAM``: the upstream charts' workloads and what they need *when they start* (a bounded
  check, such as Airbyte's bootloader and its database), for both the real charts and the
  stand-ins of the offline render.

**Namespaces.** A release may span two namespaces (Airbyte in its own, ``global.retailflow.airbyte.
namespace``). Every object lives in its document's namespace (an upstream chart's stand-in workloads
in ``upstream_namespaces``); a pod's Secrets, ConfigMaps and ServiceAccount are looked up in the pod's
namespace, a Service serves only workloads of its own namespace, and a wait names another namespace
as ``service/<name>.<namespace>.svc`` (a host) or ``secret/<namespace>/<name>``. Objects of the release
namespace keep the short key ``<kind>/<name>``; the others are ``<kind>/<namespace>/<name>``.

``play`` reports two kinds of problem: a deadlock (Helm waits for something that waits for
something only a later phase creates, or nothing creates) and a race (something needs another
thing ready when it starts, and nothing Helm waited for before it guarantees that).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field

WAITS_FOR = "retailflow.io/waits-for"
CREATES = "retailflow.io/creates"
HOOK = "helm.sh/hook"
HOOK_WEIGHT = "helm.sh/hook-weight"

#: pkg/release/v1/util/kind_sorter.go InstallOrder (the kinds this release renders, in order).
INSTALL_ORDER = [
    "PriorityClass", "Namespace", "NetworkPolicy", "ResourceQuota", "LimitRange", "PodSecurityPolicy",
    "PodDisruptionBudget", "ServiceAccount", "Secret", "SecretList", "ConfigMap", "StorageClass",
    "PersistentVolume", "PersistentVolumeClaim", "CustomResourceDefinition", "ClusterRole",
    "ClusterRoleList", "ClusterRoleBinding", "ClusterRoleBindingList", "Role", "RoleList", "RoleBinding",
    "RoleBindingList", "Service", "DaemonSet", "Pod", "ReplicationController", "ReplicaSet", "Deployment",
    "HorizontalPodAutoscaler", "StatefulSet", "Job", "CronJob", "IngressClass", "Ingress", "APIService",
    "MutatingWebhookConfiguration", "ValidatingWebhookConfiguration",
]
WORKLOADS = {"Deployment", "StatefulSet", "DaemonSet", "Job", "Pod", "ReplicaSet"}


@dataclass(frozen=True)
class Upstream:
    """An upstream chart's workload, as the model needs it."""

    #: the umbrella's dependency that renders it
    chart: str
    kind: str
    #: name, with {release} for the release name
    name: str
    #: "resource", or "<event>:<weight>" for a hook
    phase: str
    #: Services it serves (names with {release})
    serves: tuple[str, ...] = ()
    #: what must be ready when it starts ("service/…"; "…?" when the release serves it, else it is
    #: the user's): it checks a bounded number of times only
    needs_at_start: tuple[str, ...] = ()
    #: what it waits for, bounded, before it is ready (its init containers)
    waits_for: tuple[str, ...] = ()
    #: what it creates at run time ("secret/…"), in its own namespace
    creates: tuple[str, ...] = ()
    #: Secrets its pods name in their env (in its own namespace; "{database_secret}", "{storage_secret}":
    #: the names the umbrella hands Airbyte in global.database / global.storage)
    start_secrets: tuple[str, ...] = ()
    #: where this was read
    source: str = ""


#: The upstream workloads our chart talks to or depends on. With the real charts in the render
#: their own documents are used, and these entries add only what a document cannot say
#: (``needs_at_start``, ``waits_for`` of their init containers, ``creates``); with the stand-ins
#: they are the whole of the upstream side. Names and hooks read in the real charts at the pinned
#: versions: airbytehq/charts 19fe173 (airbyte-2.2.0.tgz), the Airflow chart 1.22.0 tgz,
#: open-metadata/openmetadata-helm-charts 039a208 (tag openmetadata-1.13.1), opensearch-project/
#: helm-charts 72d1e74 (tag opensearch-3.3.2).
_AIRFLOW_MIGRATIONS = ("job/{release}-run-airflow-migrations",)
UPSTREAM = [
    Upstream(
        "airbyte", "Pod", "{release}-bootloader", "pre-install,pre-upgrade:0",
        needs_at_start=("service/retailflow-postgresql", "service/retailflow-minio?"),
        creates=("secret/airbyte-auth-secrets",), start_secrets=("{database_secret}",),
        source="airbyte 2.2.0 templates/airbyte-bootloader/pod.yaml:7,17-18,29: a hook Pod, weight 0, "
               "restartPolicy Never; the bootloader checks the database a bounded number of times, then "
               "writes airbyte-auth-secrets (templates/config/_auth.tpl:129) in its own namespace; its env "
               "reads global.database.secretName (pod.yaml:68, config/_database.tpl:90-121)",
    ),
    Upstream("airbyte", "Deployment", "{release}-server", "resource", serves=("{release}-airbyte-server-svc",),
             start_secrets=("{database_secret}", "{storage_secret}"),
             source="airbyte 2.2.0 templates/airbyte-server/deployment.yaml:7,86,97 (database and storage env), "
                    "service.yaml:7"),
    # Airflow's pods wait for the migration Job (init container wait-for-airflow-migrations,
    # _helpers.yaml:799-804). The umbrella sets migrateDatabaseJob.useHelmHooks=false, so that Job is
    # a release resource; with the chart's default (a post-install hook, migrate-database-job.yaml:46-48)
    # the full render shows the deadlock.
    Upstream("airflow", "Deployment", "{release}-api-server", "resource", serves=("{release}-api-server",),
             waits_for=_AIRFLOW_MIGRATIONS, source="airflow 1.22.0 templates/api-server/api-server-deployment.yaml:36,136"),
    Upstream("airflow", "Deployment", "{release}-scheduler", "resource", waits_for=_AIRFLOW_MIGRATIONS,
             source="airflow 1.22.0 templates/scheduler"),
    Upstream("airflow", "Deployment", "{release}-dag-processor", "resource", waits_for=_AIRFLOW_MIGRATIONS,
             source="airflow 1.22.0 templates/dag-processor"),
    Upstream("airflow", "Deployment", "{release}-triggerer", "resource", waits_for=_AIRFLOW_MIGRATIONS,
             source="airflow 1.22.0 templates/triggerer"),
    Upstream("airflow", "Job", "{release}-run-airflow-migrations", "resource",
             waits_for=("service/retailflow-postgresql",),
             source="airflow 1.22.0 templates/jobs/migrate-database-job.yaml (useHelmHooks: false in our values)"),
    Upstream("openmetadata", "Deployment", "openmetadata", "resource", serves=("openmetadata",),
             source="openmetadata 1.13.1 templates/deployment.yaml:4, service.yaml:4 (fullnameOverride)"),
    Upstream("opensearch", "StatefulSet", "opensearch-cluster-master", "resource", serves=("opensearch-cluster-master",),
             source="opensearch 3.3.2 templates/statefulset.yaml:5"),
]


@dataclass
class Node:
    kind: str
    name: str
    #: its namespace ("" for the release namespace)
    namespace: str
    #: "resource", or the hook events it runs on
    events: tuple[str, ...]
    weight: int
    doc: dict | None
    needs_wait: set[str] = field(default_factory=set)
    needs_start: set[str] = field(default_factory=set)
    needs_at_start: set[str] = field(default_factory=set)
    creates: set[str] = field(default_factory=set)
    serves: set[str] = field(default_factory=set)
    upstream: str = ""

    @property
    def key(self) -> str:
        return object_key(self.kind, self.name, self.namespace)

    @property
    def is_hook(self) -> bool:
        return self.events != ("resource",)

    def __str__(self) -> str:
        where = "a release resource" if not self.is_hook else f"a {','.join(self.events)} hook (weight {self.weight})"
        name = f"{self.namespace}/{self.name}" if self.namespace else self.name
        return f"{self.kind} {name} ({where})"


def object_key(kind: str, name: str, namespace: str = "") -> str:
    """``<kind>/<name>`` in the release namespace (""), ``<kind>/<namespace>/<name>`` elsewhere."""
    return f"{kind.lower()}/{namespace}/{name}" if namespace else f"{kind.lower()}/{name}"


class _Namespaces:
    """The release namespace and the others of the release; turns a reference into a key."""

    def __init__(self, release_ns: str | None, others: set[str]) -> None:
        self.release_ns = release_ns
        self.others = {ns for ns in others if ns and ns != release_ns}

    def of(self, doc_or_ns: dict | str | None) -> str:
        """"" for the release namespace (and for documents without one), else the namespace."""
        ns = doc_or_ns if isinstance(doc_or_ns, str) or doc_or_ns is None else \
            ((doc_or_ns.get("metadata") or {}).get("namespace") or "")
        if not ns or self.release_ns is None or ns == self.release_ns:
            return ""
        self.others.add(ns)
        return ns

    def ref(self, ref: str, namespace: str) -> str:
        """A reference (``service/<host>``, ``secret/<name>``, ``secret/<ns>/<name>``) made by something
        in ``namespace`` ("" the release's), as a key."""
        kind, _, rest = ref.partition("/")
        if rest.count("/") == 1:
            ns, _, name = rest.partition("/")
            return object_key(kind, name, self.of(ns))
        if kind == "service" and "." in rest:
            name, _, domain = rest.partition(".")
            ns, _, tail = domain.partition(".")
            known = {self.release_ns, *self.others} - {None}
            if ns in known and tail in ("", "svc", "svc.cluster.local"):
                return object_key(kind, name, self.of(ns))
            return ref  # outside the cluster's namespaces of the release: the user's to run
        return object_key(kind, rest, namespace)


@dataclass
class Outcome:
    steps: list[str]
    problems: list[str]


def _pod_spec(doc: dict) -> dict | None:
    if doc["kind"] == "Pod":
        return doc.get("spec") or {}
    if doc["kind"] in WORKLOADS:
        return ((doc.get("spec") or {}).get("template") or {}).get("spec") or {}
    return None


def _start_needs(doc: dict) -> set[str]:
    """Secrets, ConfigMaps and the ServiceAccount a pod cannot start without."""
    spec = _pod_spec(doc)
    if spec is None:
        return set()
    needs = set()
    if spec.get("serviceAccountName"):
        needs.add(f"serviceaccount/{spec['serviceAccountName']}")
    for container in spec.get("initContainers", []) + spec.get("containers", []):
        for env in container.get("env") or []:
            ref = (env.get("valueFrom") or {})
            for kind, key in (("secret", "secretKeyRef"), ("configmap", "configMapKeyRef")):
                if key in ref and not ref[key].get("optional"):
                    needs.add(f"{kind}/{ref[key]['name']}")
        for source in container.get("envFrom") or []:
            for kind, key in (("secret", "secretRef"), ("configmap", "configMapRef")):
                if key in source and not source[key].get("optional"):
                    needs.add(f"{kind}/{source[key]['name']}")
    for volume in spec.get("volumes") or []:
        if "secret" in volume and not volume["secret"].get("optional"):
            needs.add(f"secret/{volume['secret']['secretName']}")
        if "configMap" in volume and not volume["configMap"].get("optional"):
            needs.add(f"configmap/{volume['configMap']['name']}")
    return needs


def declared_waits(doc: dict) -> set[str]:
    value = ((doc.get("metadata") or {}).get("annotations") or {}).get(WAITS_FOR, "")
    return {item.strip() for item in value.split(",") if item.strip()}


def _selected(selector: dict, labels: dict) -> bool:
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def build(docs: list[dict], release: str, upstream: set[str], *, namespace: str | None = None,
          upstream_namespaces: dict[str, str] | None = None, names: dict[str, str] | None = None) -> dict[str, Node]:
    """The release's nodes: its documents plus the upstream workloads of the enabled ``upstream``
    charts that the stand-ins leave out. ``namespace``: the release namespace (None: every document is
    in it); ``upstream_namespaces``: chart -> namespace its workloads run in (default the release's);
    ``names``: the values the Upstream entries name (``database_secret``, ``storage_secret``)."""
    spaces = _Namespaces(namespace, set((upstream_namespaces or {}).values()))
    nodes: dict[str, Node] = {}
    for doc in docs:
        annotations = (doc.get("metadata") or {}).get("annotations") or {}
        hook = annotations.get(HOOK)
        ns = spaces.of(doc)
        node = Node(
            kind=doc["kind"], name=doc["metadata"]["name"], namespace=ns,
            events=tuple(e.strip() for e in hook.split(",")) if hook else ("resource",),
            weight=int(annotations.get(HOOK_WEIGHT, "0")), doc=doc,
            needs_wait={spaces.ref(w, ns) for w in declared_waits(doc)},
            needs_start={spaces.ref(n, ns) for n in _start_needs(doc)},
            creates={spaces.ref(c.strip(), ns) for c in annotations.get(CREATES, "").split(",") if c.strip()},
        )
        nodes[node.key] = node
    fill = {"release": release, "database_secret": "", "storage_secret": "", **(names or {})}
    for up in UPSTREAM:
        if up.chart not in upstream:
            continue
        ns = spaces.of((upstream_namespaces or {}).get(up.chart))
        key = object_key(up.kind, up.name.format(**fill), ns)
        phase, _, weight = up.phase.partition(":")
        node = nodes.get(key) or Node(
            kind=up.kind, name=up.name.format(**fill), namespace=ns,
            events=("resource",) if phase == "resource" else tuple(phase.split(",")),
            weight=int(weight or 0), doc=None,
        )
        # needs_at_start name the release namespace's Services (Airbyte's database and lake are ours)
        node.needs_at_start |= {n.rstrip("?") for n in up.needs_at_start if not n.endswith("?")}
        optional = {n.rstrip("?") for n in up.needs_at_start if n.endswith("?")}
        node.needs_at_start |= {n for n in optional if any(d["kind"] == "Service" and not spaces.of(d)
                                                         and f"service/{d['metadata']['name']}" == n for d in docs)}
        node.creates |= {spaces.ref(c, ns) for c in up.creates}
        node.needs_start |= {spaces.ref(f"secret/{s.format(**fill)}", ns) for s in up.start_secrets if s.format(**fill)}
        node.needs_wait |= {spaces.ref(w.format(**fill), ns) for w in up.waits_for}
        node.serves |= {object_key("service", s.format(**fill), ns).removeprefix("service/") for s in up.serves}
        node.upstream = up.source
        nodes[key] = node
    # Services: served by the workloads of their namespace whose pod labels their selector matches.
    for service in [n for n in nodes.values() if n.kind == "Service" and n.doc]:
        selector = service.doc.get("spec", {}).get("selector") or {}
        for node in nodes.values():
            spec_labels = (((node.doc or {}).get("spec") or {}).get("template") or {}).get("metadata", {}).get("labels")
            if node.kind in WORKLOADS and node.namespace == service.namespace and spec_labels \
                    and _selected(selector, spec_labels):
                node.serves.add(service.key.removeprefix("service/"))
    return nodes


def _ordered_hooks(nodes: dict[str, Node], event: str) -> list[Node]:
    hooks = [n for n in nodes.values() if event in n.events]
    rank = {kind: i for i, kind in enumerate(INSTALL_ORDER)}
    hooks.sort(key=lambda n: rank.get(n.kind, len(rank)))  # releaseutil's pre-order by kind
    return sorted(hooks, key=lambda n: (n.weight, n.name))  # hookByWeight, stable


class _State:
    """What exists and what Helm has already seen ready, while the sequence plays."""

    def __init__(self, nodes: dict[str, Node]) -> None:
        self.nodes = nodes
        self.created: set[str] = set()
        self.guaranteed: set[str] = set()

    def servers_of(self, service: str) -> list[Node]:
        return [n for n in self.nodes.values() if service in n.serves]

    def producers_of(self, key: str) -> list[Node]:
        return [n for n in self.nodes.values() if key in n.creates]

    def why_not(self, key: str, seen: frozenset[str] = frozenset()) -> str | None:
        """None when ``key`` becomes ready by itself given what exists now; else why it never does."""
        if key in seen:
            return f"{key} waits for itself"
        seen = seen | {key}
        kind, _, name = key.partition("/")
        if kind == "service" and "." in name:
            return None  # a name outside the namespace (an external S3 store...): the user's to run
        if kind == "service":
            servers = self.servers_of(name)
            if not servers:
                return (f"service/{name}: nothing in the release serves it" if key not in self.created
                        else f"service/{name} selects no workload of the release")
            reasons = [self.why_not(s.key, seen) for s in servers]
            return None if any(r is None for r in reasons) else "; ".join(r for r in reasons if r)
        node = self.nodes.get(key)
        if key in self.created and node is None:
            return None  # made at run time by a producer that ran
        if key not in self.created:
            producers = [p for p in self.producers_of(key) if p.key in self.created]
            if producers and any(self.why_not(p.key, seen) is None for p in producers):
                return None
            if node is None and not self.producers_of(key):
                return f"{key}: nothing in the release creates it"
            late = node or self.producers_of(key)[0]
            return f"{key}: {late} does not exist yet at this point of the sequence"
        for need in sorted(node.needs_start | node.needs_wait | node.needs_at_start):
            reason = self.why_not(need, seen)
            if reason:
                return f"{node.kind} {node.name} waits for {reason}"
        return None

    def mark_ready(self, key: str) -> None:
        """``key`` was seen ready: so were the things it waited for. A Service is ready through the
        workloads that serve it, never by itself."""
        kind, _, name = key.partition("/")
        if kind == "service":
            for server in self.servers_of(name):
                if server.key not in self.guaranteed and self.why_not(server.key) is None:
                    self.mark_ready(server.key)
            return
        if key in self.guaranteed:
            return
        self.guaranteed.add(key)
        node = self.nodes.get(key)
        if node:
            for need in node.needs_wait | node.needs_start | node.needs_at_start:
                self.mark_ready(need)
            for product in node.creates:
                self.guaranteed.add(product)

    def ready_now(self, key: str) -> bool:
        kind, _, name = key.partition("/")
        if kind == "service" and "." in name:
            return True
        if kind == "service":
            return any(s.key in self.guaranteed for s in self.servers_of(name))
        return key in self.guaranteed


def _waited_by_helm_in_hook(node: Node) -> bool:
    return node.kind in ("Job", "Pod")


def _waited_by_helm(node: Node, wait_for_jobs: bool) -> bool:
    return node.kind in ("Deployment", "StatefulSet", "DaemonSet", "Pod", "ReplicaSet") or (
        wait_for_jobs and node.kind == "Job")


def play(docs: list[dict], *, release: str, upstream: set[str], action: str = "install",
         wait_for_jobs: bool = False, existing: frozenset[str] = frozenset(),
         installed: tuple[list[dict], set[str]] | None = None, namespace: str | None = None,
         upstream_namespaces: dict[str, str] | None = None, names: dict[str, str] | None = None) -> Outcome:
    """Play ``helm <action> --wait`` over the rendered documents; ``upgrade`` follows an install.
    ``upstream``: the upstream charts enabled in this render; ``existing``: what the user created
    before (``secret/<name>`` of an ``existingSecret``, ``secret/<ns>/<name>`` in another namespace);
    ``installed``: for an upgrade from other values (adding a component), the documents and upstream
    charts of the release as installed; ``namespace``, ``upstream_namespaces``, ``names``: see ``build``."""
    where = {"namespace": namespace, "upstream_namespaces": upstream_namespaces, "names": names}
    nodes = build(docs, release, upstream, **where)
    spaces = _Namespaces(namespace, set((upstream_namespaces or {}).values()))
    existing = frozenset(spaces.ref(e, "") for e in existing)
    state = _State(nodes)
    state.created |= existing
    state.guaranteed |= existing
    steps: list[str] = []
    problems: list[str] = []
    if action == "upgrade":
        # The install happened: everything it made exists and was ready. An upgrade that changes an
        # image rolls every workload again, and reruns the hooks of the upgrade events.
        before_docs, before_upstream = installed or (docs, upstream)
        install = play(before_docs, release=release, upstream=before_upstream, action="install",
                       wait_for_jobs=wait_for_jobs, existing=existing, **where)
        problems += [f"(install) {p}" for p in install.problems]
        before = build(before_docs, release, before_upstream, **where) if installed else nodes
        rerun = {n.key for n in nodes.values() if {"pre-upgrade", "post-upgrade"} & set(n.events)}
        for node in nodes.values():
            old = before.get(node.key)
            # What the install made: its resources and the install hooks that ran. Something new in
            # this upgrade does not exist yet; an install-only hook never runs on an upgrade; a
            # release resource that became a hook left the manifest, so Helm deletes it.
            if old is None or (old.events == ("resource",) and node.is_hook):
                continue
            if old.events == ("resource",) or "pre-install" in old.events or "post-install" in old.events:
                if node.key not in rerun:
                    state.created.add(node.key)
                    state.created |= node.creates
                    if node.is_hook or node.kind not in WORKLOADS:
                        state.mark_ready(node.key)
        state.guaranteed -= {n.key for n in nodes.values() if n.events == ("resource",) and n.kind in WORKLOADS}
    pre, post = f"pre-{action}", f"post-{action}"

    def run_hooks(event: str) -> None:
        for hook in _ordered_hooks(nodes, event):
            state.created.add(hook.key)
            state.guaranteed.discard(hook.key)
            if not _waited_by_helm_in_hook(hook):
                steps.append(f"{event}: create {hook.kind} {hook.name} (weight {hook.weight}; Helm does not wait for it)")
                if hook.kind not in WORKLOADS:
                    state.mark_ready(hook.key)
                continue
            steps.append(f"{event}: create {hook.kind} {hook.name} (weight {hook.weight}) and wait for it to finish")
            for need in sorted(hook.needs_at_start):
                if not state.ready_now(need):
                    problems.append(
                        f"race: {hook} needs {need} ready when it starts, and nothing Helm waited for before it "
                        f"guarantees that ({hook.upstream or 'a bounded check'})")
            reason = state.why_not(hook.key)
            if reason:
                problems.append(f"deadlock: Helm waits for {hook} to finish, but {reason}")
                continue
            state.mark_ready(hook.key)
            state.created |= hook.creates

    run_hooks(pre)
    resources = [n for n in nodes.values() if n.events == ("resource",)]
    for node in resources:
        state.created.add(node.key)
        if node.kind not in WORKLOADS:
            state.mark_ready(node.key)
    steps.append(f"{action}: create or update the {len(resources)} release resources")
    waited = [n for n in resources if _waited_by_helm(n, wait_for_jobs)]
    for node in sorted(waited, key=lambda n: n.key):
        steps.append(f"{action}: --wait for {node.kind} {node.name}")
        for need in sorted(node.needs_at_start):
            if not state.ready_now(need):
                problems.append(f"race: {node} needs {need} ready when it starts ({node.upstream})")
        reason = state.why_not(node.key)
        if reason:
            problems.append(f"deadlock: helm {action} --wait waits for {node} to be ready, but {reason}")
    for node in waited:
        if state.why_not(node.key) is None:
            state.mark_ready(node.key)
    for node in resources:
        if state.why_not(node.key) is None:
            state.created |= node.creates
    run_hooks(post)
    return Outcome(steps=steps, problems=problems)


# Static checks of the chart's own workloads: who needs a server, and who loops.

_SHELL_LOOP = re.compile(r"^\s*(until|while)\b.*$", re.M)
_PYTHON_LOOP = re.compile(r"time\.sleep\(|while True:")


def own_workloads(docs: list[dict]) -> list[dict]:
    """Workloads rendered by this repository's charts (retailflow and retailflow-operator)."""
    return [d for d in docs if d["kind"] in WORKLOADS and ((d["metadata"].get("labels") or {}).get(
        "helm.sh/chart", "").startswith("retailflow"))]


def _containers(doc: dict) -> list[dict]:
    spec = _pod_spec(doc) or {}
    return spec.get("initContainers", []) + spec.get("containers", [])


def mounted_files(doc: dict, docs: list[dict], suffixes: tuple[str, ...] = ("",)) -> dict[str, str]:
    """The text of every ConfigMap key a workload mounts (ending in one of ``suffixes``), by key."""
    by_name = {d["metadata"]["name"]: d for d in docs if d["kind"] == "ConfigMap"}
    files = {}
    for volume in (_pod_spec(doc) or {}).get("volumes") or []:
        config_map = by_name.get((volume.get("configMap") or {}).get("name"))
        if config_map:
            files.update({k: v for k, v in (config_map.get("data") or {}).items() if k.endswith(suffixes)})
    return files


def wait_loops(doc: dict, docs: list[dict], module_source: dict[str, str]) -> list[str]:
    """The wait loops a workload's containers run: shell loops in their commands, and loops in the
    scripts and Python modules they run (``python /path/x.py`` from a mounted ConfigMap, or
    ``python -m <module>`` from ``module_source``)."""
    loops = []
    files = mounted_files(doc, docs)
    for container in _containers(doc):
        argv = [str(a) for a in (container.get("command") or []) + (container.get("args") or [])]
        text = "\n".join(argv)
        loops += [f"{container['name']}: {m.group(0).strip()}" for m in _SHELL_LOOP.finditer(text)
                  if "sleep" in text]
        for i, arg in enumerate(argv):
            script = files.get(arg.rsplit("/", 1)[-1]) if arg.endswith(".py") else None
            if arg == "-m" and i + 1 < len(argv):
                script = module_source.get(argv[i + 1])
            if script and _PYTHON_LOOP.search(script):
                loops.append(f"{container['name']}: {arg if arg != '-m' else argv[i + 1]} loops and sleeps")
    return loops


def servers_referenced(doc: dict, docs: list[dict], services: set[str]) -> set[str]:
    """The Services a workload is pointed at: named in env values, commands, args or the scripts it
    mounts (not in data files it passes on, such as the RetailPipeline or the dashboard bundle)."""
    texts = []
    for container in _containers(doc):
        texts += [str(e.get("value", "")) for e in container.get("env") or []]
        texts += [str(a) for a in (container.get("command") or []) + (container.get("args") or [])]
    texts += list(mounted_files(doc, docs, (".py", ".sh")).values())
    blob = "\n".join(texts)
    return {s for s in services if re.search(rf"(?<![\w.-]){re.escape(s)}(?![\w-])", blob)}


def describe(outcome: Outcome) -> str:
    return json.dumps(outcome.steps, indent=1)
