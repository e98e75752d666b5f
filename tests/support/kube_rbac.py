"""RBAC for the emulated Kubernetes API: authentication by bearer token and Kubernetes' own authorisation.

Used by ``kube_emulator.RealisticKubernetesEmulator`` when it is given an ``RBAC`` (off by default).
Everything below follows the API server's source, read in ``kubernetes/kubernetes``:

- **Request → attributes** (verb, API group, resource, subresource, namespace, name):
  ``staging/src/k8s.io/apiserver/pkg/endpoints/request/requestinfo.go`` at commit
  ``db8b216c556cbd896ffb49a0a7bf13443230d18c`` (``NewRequestInfo``). Paths shorter than
  ``/api/{version}/{resource}`` or ``/apis/{group}/{version}/{resource}`` are non-resource requests
  (verb: the lower-case HTTP method). Otherwise POST → ``create``, GET/HEAD → ``get``, PUT → ``update``,
  PATCH → ``patch``, DELETE → ``delete``; a GET without a name is ``list``, or ``watch`` when the ``watch``
  parameter is anything but ``false``/``0``, and then a ``fieldSelector`` of exactly
  ``metadata.name=<n>`` sets the name; a DELETE without a name is ``deletecollection``. The part after
  the name is the subresource (``status``); ``/namespaces/{ns}/status`` and ``/finalize`` are the
  namespace's own subresources. The legacy ``/watch/`` path prefix also gives ``watch``.
- **Server-side apply that creates**: ``staging/src/k8s.io/apiserver/pkg/endpoints/handlers/patch.go``
  at commit ``86b3ca48ea108bf601e7dac30684ca9b1308c488``. An apply patch sets ``forceAllowCreate``;
  when the object does not exist, ``createValidation`` is wrapped in ``withAuthorization`` with
  ``createAuthorizerAttributes{Verb: "create", Name: name, ...}``. So such a request needs ``patch``
  (the request's own verb) *and* ``create``, both with the object's name: ``resourceNames`` apply to
  both (``RBAC.authorize_create_on_apply``). A POST create carries no name (the name is in the body),
  so a rule with ``resourceNames`` never allows it.
- **Rule matching**: ``plugin/pkg/auth/authorizer/rbac/rbac.go`` at commit
  ``01aa0f3f6052c9866dcb69054d8924fa8c96e3cb`` (``RuleAllows``: the combined ``resource/subresource``)
  and ``pkg/apis/rbac/v1/evaluation_helpers.go`` at commit ``6732d913237bd282d81fe99df860938c5d60480a``
  (``VerbMatches``, ``APIGroupMatches``, ``ResourceMatches`` with ``*`` and ``*/subresource``,
  ``ResourceNameMatches``: an empty list matches every name, otherwise the request's name must be
  listed, so a request without a name never matches; ``NonResourceURLMatches`` with a trailing ``*``).
- **Which rules apply**: ``pkg/registry/rbac/validation/rule.go`` at commit
  ``2821f1617e3ce4f4ee17f6d0c770e2abbb5147a5`` (``VisitRulesFor``): every ClusterRoleBinding, then the
  RoleBindings of the request's namespace (none for a cluster-scoped request), each naming a Role of its
  own namespace or a ClusterRole; ``appliesToUser``: User by name, Group by the user's groups,
  ServiceAccount as ``system:serviceaccount:<ns>:<name>`` (a subject without a namespace takes the
  binding's).
- **Authentication**: a bearer token issued here for a ServiceAccount authenticates as
  ``system:serviceaccount:<ns>:<name>`` with groups ``system:serviceaccounts``,
  ``system:serviceaccounts:<ns>`` and ``system:authenticated``, as a projected token does. The
  emulator's own kubeconfig token (``ADMIN_TOKEN``) is ``system:admin`` in ``system:masters``, which the
  API server allows everything without asking RBAC. Any other token is 401 Unauthorized.
- **Default policy**: the API server's bootstrap ClusterRoles ``system:discovery`` and
  ``system:public-info-viewer``, read in ``plugin/pkg/auth/authorizer/rbac/bootstrappolicy/policy.go``
  at commit ``53f1b9d6f8de259644c05a25aa7ac8c6a67258e2`` (a commit of OpenShift's fork of the repository,
  which adds a ``system:openshift:public-info-viewer`` role of its own; that one is left out here).
  ``clusterRoles()``: ``system:discovery`` allows ``get`` on the non-resource URLs ``/livez``,
  ``/readyz``, ``/healthz``, ``/version``, ``/version/``, ``/openapi``, ``/openapi/*``, ``/api``,
  ``/api/*``, ``/apis``, ``/apis/*`` and nothing else (no resource rule at all);
  ``system:public-info-viewer`` allows ``get`` on the health and version paths among them.
  ``clusterRoleBindings()``: ``system:discovery`` is bound to the group ``system:authenticated`` only,
  ``system:public-info-viewer`` to ``system:authenticated`` and ``system:unauthenticated``; the same
  bindings are in the policy's expected output, ``testdata/cluster-role-bindings.yaml`` at commit
  ``c60df8997f62f861cf0cd2b13ab62271464589ed`` (KEP-789 took ``system:unauthenticated`` off the
  discovery binding). So every authenticated user may GET discovery (``/api``, ``/apis``,
  ``/apis/<group>/<version>``) with no grant of its own, while listing or watching a resource, a
  cluster-scoped one such as ``namespaces`` or ``customresourcedefinitions`` included, needs a rule
  (403 otherwise). No other default ClusterRole is loaded.
- **Denial**: 403 with reason ``Forbidden`` and the message of
  ``responsewriters/errors.go`` ``forbiddenMessage`` inside ``apierrors.NewForbidden``:
  ``<resource>.<group> "<name>" is forbidden: User "<user>" cannot <verb> resource "<resource[/sub]>" in
  API group "<group>" in the namespace "<ns>"`` (``at the cluster scope`` without a namespace).

Not emulated: aggregation of ClusterRoles (``aggregationRule``), impersonation, escalation checks on
writing RBAC objects (RBAC objects are loaded, never served), the ``AuthorizeWithSelectors`` field and
label selector attributes, other authorisers (Node, webhooks), token expiry and audiences.

Every authorised request of every user is recorded (``used``), and every denial (``denials``), so a
test can compare what a client used with what it was granted (``granted``, ``unused_grants``); and every
decision in order, allowed or not (``decisions``), so a test can tell what a client asked for at all.
"""

from __future__ import annotations

import secrets
import threading
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

ADMIN_TOKEN = "emulated"
ADMIN_USER = "system:admin"

# plugin/pkg/auth/authorizer/rbac/bootstrappolicy/policy.go (commit in the module docstring): system:discovery
# and system:public-info-viewer, both bound to system:authenticated (the latter to system:unauthenticated too).
DEFAULT_RULES: tuple[dict[str, Any], ...] = (
    {"nonResourceURLs": ["/api", "/api/*", "/apis", "/apis/*", "/healthz", "/livez", "/readyz",
                         "/openapi", "/openapi/*", "/version", "/version/"], "verbs": ["get"]},
)

SPECIAL_VERBS = {"proxy", "watch"}
NAMESPACE_SUBRESOURCES = {"status", "finalize"}


@dataclass(frozen=True)
class User:
    name: str
    groups: tuple[str, ...] = ()


@dataclass(frozen=True)
class Attributes:
    """``authorizer.AttributesRecord``: what RBAC decides on."""

    user: User
    verb: str
    resource_request: bool
    path: str = ""
    api_group: str = ""
    api_version: str = ""
    resource: str = ""
    subresource: str = ""
    namespace: str = ""
    name: str = ""

    def with_verb(self, verb: str) -> "Attributes":
        return Attributes(self.user, verb, self.resource_request, self.path, self.api_group, self.api_version,
                          self.resource, self.subresource, self.namespace, self.name)

    @property
    def key(self) -> tuple[str, str, str, str, str, str]:
        """(verb, group, resource, subresource, namespace, name): one recorded use."""
        return (self.verb, self.api_group, self.resource, self.subresource, self.namespace, self.name)


def request_attributes(user: User, method: str, path: str, query: Mapping[str, str]) -> Attributes:
    """``RequestInfoFactory.NewRequestInfo`` (requestinfo.go) for the prefixes ``api`` (groupless) and ``apis``."""
    parts = [p for p in path.strip("/").split("/") if p] if path.strip("/") else []
    verb = method.lower()
    if len(parts) < 3 or parts[0] not in ("api", "apis"):
        return Attributes(user, verb, False, path=path)
    prefix, rest = parts[0], parts[1:]
    group = ""
    if prefix == "apis":
        if len(rest) < 3:
            return Attributes(user, verb, False, path=path)
        group, rest = rest[0], rest[1:]
    version, rest = rest[0], rest[1:]
    if rest[0] in SPECIAL_VERBS:  # the legacy /watch/... and /proxy/... path prefixes
        verb, rest = rest[0], rest[1:]
    else:
        verb = {"POST": "create", "GET": "get", "HEAD": "get", "PUT": "update", "PATCH": "patch",
                "DELETE": "delete"}.get(method.upper(), "")
    namespace = ""
    if rest and rest[0] == "namespaces":
        if len(rest) > 1:
            namespace = rest[1]
            if len(rest) > 2 and rest[2] not in NAMESPACE_SUBRESOURCES:
                rest = rest[2:]
    resource = rest[0] if rest else ""
    name = rest[1] if len(rest) >= 2 else ""
    subresource = rest[2] if len(rest) >= 3 and verb != "proxy" else ""
    if not name and verb == "get":
        watch = query.get("watch")
        verb = "watch" if watch is not None and watch.lower() not in ("false", "0") else "list"
        selector = query.get("fieldSelector") or ""
        # fields.Selector.RequiresExactMatch("metadata.name"): the whole selector is that one term.
        terms = [t.strip() for t in selector.split(",") if t.strip()]
        if len(terms) == 1:
            for op in ("==", "="):
                key, sep, value = terms[0].partition(op)
                if sep and key.strip() == "metadata.name" and value and "/" not in value and "!" not in key:
                    name = value.strip()
                    break
    if not name and verb == "delete":
        verb = "deletecollection"
    return Attributes(user, verb, True, path=path, api_group=group, api_version=version, resource=resource,
                      subresource=subresource, namespace=namespace, name=name)


def rule_allows(attrs: Attributes, rule: Mapping[str, Any]) -> bool:
    """``RuleAllows`` (rbac.go) with the helpers of evaluation_helpers.go."""
    verbs = rule.get("verbs") or []
    if not ("*" in verbs or attrs.verb in verbs):
        return False
    if not attrs.resource_request:
        for url in rule.get("nonResourceURLs") or []:
            if url == "*" or url == attrs.path or (url.endswith("*") and attrs.path.startswith(url.rstrip("*"))):
                return True
        return False
    groups = rule.get("apiGroups") or []
    if not ("*" in groups or attrs.api_group in groups):
        return False
    combined = f"{attrs.resource}/{attrs.subresource}" if attrs.subresource else attrs.resource
    resource_ok = False
    for res in rule.get("resources") or []:
        if res == "*" or res == combined or (
                attrs.subresource and res == f"*/{attrs.subresource}"):
            resource_ok = True
            break
    if not resource_ok:
        return False
    names = rule.get("resourceNames") or []
    return not names or attrs.name in names


def forbidden_message(attrs: Attributes, reason: str = "") -> str:
    """``forbiddenMessage`` (responsewriters/errors.go) wrapped as ``apierrors.NewForbidden`` words it."""
    user = attrs.user.name
    if not attrs.resource_request:
        return f'forbidden: User "{user}" cannot {attrs.verb} path "{attrs.path}"'
    resource = f"{attrs.resource}/{attrs.subresource}" if attrs.subresource else attrs.resource
    if attrs.namespace:
        msg = (f'User "{user}" cannot {attrs.verb} resource "{resource}" in API group "{attrs.api_group}" '
               f'in the namespace "{attrs.namespace}"')
    else:
        msg = f'User "{user}" cannot {attrs.verb} resource "{resource}" in API group "{attrs.api_group}" at the cluster scope'
    if reason:
        msg += f": {reason}"
    qualified = f"{attrs.resource}.{attrs.api_group}" if attrs.api_group else attrs.resource
    subject = f'{qualified} "{attrs.name}"' if attrs.name else qualified
    return f"{subject} is forbidden: {msg}"


def service_account_user(namespace: str, name: str) -> User:
    return User(f"system:serviceaccount:{namespace}:{name}",
                ("system:serviceaccounts", f"system:serviceaccounts:{namespace}", "system:authenticated"))


@dataclass
class Binding:
    kind: str  # RoleBinding or ClusterRoleBinding
    name: str
    namespace: str  # "" for a ClusterRoleBinding
    role_kind: str
    role_name: str
    subjects: list[dict[str, Any]] = field(default_factory=list)


class RBAC:
    """Roles, ClusterRoles and their bindings, bearer tokens, and a record of every decision."""

    def __init__(self, docs: Iterable[Mapping[str, Any]] = ()) -> None:
        self.roles: dict[tuple[str, str], list[dict[str, Any]]] = {}
        self.cluster_roles: dict[str, list[dict[str, Any]]] = {}
        self.bindings: list[Binding] = []
        self.tokens: dict[str, User] = {ADMIN_TOKEN: User(ADMIN_USER, ("system:masters", "system:authenticated"))}
        #: user name -> every authorised (verb, group, resource, subresource, namespace, name)
        self.used: dict[str, set[tuple[str, str, str, str, str, str]]] = defaultdict(set)
        #: every denied request: (user name, forbidden message)
        self.denials: list[tuple[str, str]] = []
        #: every decision, in order: (the request's attributes, allowed)
        self.decisions: list[tuple[Attributes, bool]] = []
        self._lock = threading.Lock()
        self.load(docs)

    # -- policy ------------------------------------------------------------------------------

    def load(self, docs: Iterable[Mapping[str, Any]]) -> None:
        """Take the RBAC objects out of a list of documents (e.g. a rendered chart); ignore the rest."""
        for doc in docs:
            kind, meta = doc.get("kind"), doc.get("metadata") or {}
            name, namespace = meta.get("name", ""), meta.get("namespace") or ""
            if kind == "Role":
                if not namespace:
                    raise ValueError(f"Role {name} has no namespace")
                self.roles[(namespace, name)] = [dict(r) for r in doc.get("rules") or []]
            elif kind == "ClusterRole":
                if doc.get("aggregationRule"):
                    raise NotImplementedError(f"ClusterRole {name}: aggregationRule is not emulated")
                self.cluster_roles[name] = [dict(r) for r in doc.get("rules") or []]
            elif kind in ("RoleBinding", "ClusterRoleBinding"):
                if kind == "RoleBinding" and not namespace:
                    raise ValueError(f"RoleBinding {name} has no namespace")
                ref = doc["roleRef"]
                self.bindings.append(Binding(kind, name, namespace if kind == "RoleBinding" else "",
                                             ref["kind"], ref["name"], list(doc.get("subjects") or [])))

    def issue_token(self, namespace: str, service_account: str) -> str:
        """A bearer token that authenticates as the ServiceAccount (what a projected token volume holds)."""
        token = secrets.token_urlsafe(24)
        self.tokens[token] = service_account_user(namespace, service_account)
        return token

    def authenticate(self, authorization: str | None) -> User | None:
        scheme, _, token = (authorization or "").partition(" ")
        return self.tokens.get(token.strip()) if scheme.lower() == "bearer" else None

    def _role_rules(self, binding: Binding) -> list[dict[str, Any]]:
        if binding.role_kind == "Role":
            return self.roles.get((binding.namespace, binding.role_name), []) if binding.namespace else []
        if binding.role_kind == "ClusterRole":
            return self.cluster_roles.get(binding.role_name, [])
        return []

    @staticmethod
    def _applies(user: User, subject: Mapping[str, Any], namespace: str) -> bool:
        kind = subject.get("kind")
        if kind == "User":
            return user.name == subject.get("name")
        if kind == "Group":
            return subject.get("name") in user.groups
        if kind == "ServiceAccount":
            sa_ns = subject.get("namespace") or namespace
            return bool(sa_ns) and user.name == f"system:serviceaccount:{sa_ns}:{subject.get('name')}"
        return False

    def rules_for(self, user: User, namespace: str) -> list[tuple[str, dict[str, Any]]]:
        """(source, rule) of every rule that applies to the user in the namespace (``VisitRulesFor``)."""
        out: list[tuple[str, dict[str, Any]]] = []
        if "system:authenticated" in user.groups:
            out += [("system:discovery", dict(r)) for r in DEFAULT_RULES]
        for b in self.bindings:
            if b.kind == "ClusterRoleBinding" and any(self._applies(user, s, "") for s in b.subjects):
                out += [(f"ClusterRoleBinding {b.name}", r) for r in self._role_rules(b)]
        if namespace:
            for b in self.bindings:
                if b.kind == "RoleBinding" and b.namespace == namespace \
                        and any(self._applies(user, s, namespace) for s in b.subjects):
                    out += [(f"RoleBinding {namespace}/{b.name}", r) for r in self._role_rules(b)]
        return out

    # -- decisions -----------------------------------------------------------------------------

    def authorize(self, attrs: Attributes) -> str | None:
        """None when allowed (and recorded); otherwise the Forbidden message (recorded as a denial)."""
        allowed = "system:masters" in attrs.user.groups or any(
            rule_allows(attrs, rule) for _, rule in self.rules_for(attrs.user, attrs.namespace))
        with self._lock:
            self.decisions.append((attrs, allowed))
            if allowed:
                self.used[attrs.user.name].add(attrs.key if attrs.resource_request else (attrs.verb, "", attrs.path, "", "", ""))
                return None
            message = forbidden_message(attrs)
            self.denials.append((attrs.user.name, message))
            return message

    def requests_of(self, user: User) -> list[Attributes]:
        """Everything the user asked for, allowed or denied, in order."""
        with self._lock:
            return [attrs for attrs, _ in self.decisions if attrs.user.name == user.name]

    def authorize_create_on_apply(self, attrs: Attributes) -> str | None:
        """patch.go: an apply (``forceAllowCreate``) that finds no object is also authorised as ``create``,
        with the same name, namespace and subresource."""
        return self.authorize(attrs.with_verb("create"))

    # -- least privilege -------------------------------------------------------------------------

    def granted(self, user: User, namespaces: Iterable[str]) -> set[tuple[str, str, str, str]]:
        """Every (group, resource[/sub], verb, resourceName or "") the user's rules grant in these namespaces
        or cluster-wide; the default discovery rules are left out."""
        out: set[tuple[str, str, str, str]] = set()
        for ns in {"", *namespaces}:
            for source, rule in self.rules_for(user, ns):
                if source == "system:discovery" or rule.get("nonResourceURLs"):
                    continue
                for group in rule.get("apiGroups") or []:
                    for res in rule.get("resources") or []:
                        for verb in rule.get("verbs") or []:
                            for name in rule.get("resourceNames") or [""]:
                                out.add((group, res, verb, name))
        return out

    def unused_grants(self, user: User, namespaces: Iterable[str]) -> set[tuple[str, str, str, str]]:
        """Grants that no recorded request of the user needed (each grant checked as a one-rule policy)."""
        uses = [u for u in self.used.get(user.name, set()) if not u[2].startswith("/")]  # resource requests
        unused = set()
        for grant in self.granted(user, namespaces):
            group, res, verb, name = grant
            rule = {"apiGroups": [group], "resources": [res], "verbs": [verb],
                    **({"resourceNames": [name]} if name else {})}
            if not any(rule_allows(Attributes(user, u[0], True, api_group=u[1], resource=u[2], subresource=u[3],
                                              namespace=u[4], name=u[5]), rule) for u in uses):
                unused.add(grant)
        return unused
