"""The emulated Kubernetes API: ``kmock.KubernetesEmulator`` made realistic enough for kopf.

No cluster can run here (no container engine), so operator tests run the real operator (kopf) against
this in-memory API server on loopback. ``RealisticKubernetesEmulator`` keeps kmock's server,
discovery and object store (``.objects``, with every version of every object) and replaces its
write/read semantics with the ones kopf relies on:

- ``metadata.uid``, ``resourceVersion`` (one cluster-wide counter), ``generation`` (custom
  resources: bumped when anything outside ``metadata``/``status`` changes, and when deletion starts)
  and ``creationTimestamp``; ``metadata.namespace`` from the URL; ``generateName``.
- 201 on create, 409 on duplicates, 404 for unknown objects or a missing namespace.
- PATCH as JSON merge patch (RFC 7386; strategic merge is treated the same) or JSON patch
  (RFC 6902, via ``jsonpatch``); a failed ``test`` op answers 422. PUT replaces. A no-op patch
  changes nothing (same resourceVersion, no watch event), as on a real API server.
- Server-side apply (PATCH ``application/apply-patch+yaml``), approximated: ``fieldManager`` is required
  (422 without it, as ``ValidatePatchOptions``), an apply that finds no object creates it (201, the
  ``forceAllowCreate`` of apiserver ``handlers/patch.go``), and otherwise it is a JSON merge patch.
  Field ownership is not emulated: no ``managedFields``, no conflicts between managers (``force`` is
  ignored), and fields a manager stops applying are not removed; lists are replaced whole.
- RBAC, when given an ``RBAC`` (``support.kube_rbac``; off by default): bearer tokens authenticate
  (401 otherwise), every request is authorised with the API server's request-to-verb mapping and RBAC
  rule matching (403 ``Forbidden`` with the API server's message), an apply that creates is also
  authorised as ``create``, and every decision is recorded. Discovery (``/api``, ``/apis``,
  ``/apis/<group>/<version>``) and ``/version`` are open to every authenticated user, as the bootstrap
  ClusterRole ``system:discovery`` makes them; a list or watch of ``namespaces`` or
  ``customresourcedefinitions`` needs a rule like any other resource. See ``kube_rbac``'s docstring for
  the sources (file and commit) and for what it does not emulate.
- The status subresource: ``/status`` writes only change ``.status``; main-resource writes and
  creation ignore ``.status``.
- Deletion honouring finalizers: DELETE sets ``deletionTimestamp`` while finalizers remain; the object
  disappears (DELETED event) when the last finalizer is removed.
- Lists carry the current ``resourceVersion``; watches resume from ``resourceVersion`` without losing
  events (one event log per resource), and honour ``timeoutSeconds`` and ``sendInitialEvents`` (with
  its closing bookmark). Equality-based ``labelSelector`` and ``fieldSelector`` work on lists and watches.
- Discovery for core ``v1`` namespaces, secrets and events, for
  ``apiextensions.k8s.io/v1/customresourcedefinitions``, and for every CRD loaded from YAML.
- Custom resources go through the CRD's structural schema on every write, spec and status alike:
  undeclared fields are pruned, ``default`` values filled in, and the result validated (422
  ``Invalid`` with the failing paths). The OpenAPI v3 schema is checked as JSON Schema draft 4 by
  ``jsonschema``; then list-map keys and CEL rules (below).
- Secrets: ``stringData`` is folded into base64 ``data``.

- Server-side field validation (``?fieldValidation=``): ``Strict`` refuses unknown fields (422),
  ``Warn`` (the default, what Helm gets) prunes them and answers a ``Warning: 299`` header per field,
  ``Ignore`` prunes silently.
- ``x-kubernetes-validations`` CEL rules, evaluated by ``cel-python`` (``celpy``) with ``self`` bound to
  the rule's node, after defaulting; a false or failing rule is 422 with its ``message``. Only standard
  CEL is available (not the Kubernetes extension libraries such as ``split`` or ``lowerAscii``).
- ``x-kubernetes-list-type: map`` key uniqueness (422 ``Duplicate value``).

Not emulated: CEL transition rules (``oldSelf``), ``messageExpression``, ``format`` checks, serving RBAC
objects (they are loaded into ``RBAC``, not created through the API), garbage collection
(ownerReferences), server-side apply's field management (above), chunked lists
(``limit``/``continue``), ``410 Gone`` for expired resourceVersions, and every built-in resource
other than the ones listed above.

``EmulatedKubernetesAPI`` runs the emulator in a background thread, writes a kubeconfig that points at
it and sets ``KUBECONFIG``, and offers plain-HTTP helpers for tests and benchmarks.
"""

from __future__ import annotations

import asyncio
import base64
import copy
import datetime
import json
import os
import random
import re
import string
import sys
import tempfile
import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp.test_utils
import aiohttp.web
import celpy
import jsonpatch
import jsonpointer
import jsonschema
import kmock
import requests
import yaml
from kmock._internal import rendering

from support.kube_rbac import ADMIN_TOKEN, RBAC, Attributes, request_attributes

REPO_ROOT = Path(__file__).resolve().parents[2]
CRD_PATH = REPO_ROOT / "charts" / "retailflow-operator" / "crds" / "retailpipelines.yaml"
RP_GROUP, RP_VERSION, RP_PLURAL = "retailflow.io", "v1alpha1", "retailpipelines"

CORE_RESOURCES: dict[str, dict[str, Any]] = {
    "v1/namespaces": dict(kind="Namespace", singular="namespace", namespaced=False, shortnames={"ns"},
                          subresources={"status"}),
    "v1/secrets": dict(kind="Secret", singular="secret", namespaced=True),
    "v1/events": dict(kind="Event", singular="event", namespaced=True, shortnames={"ev"}),
    "apiextensions.k8s.io/v1/customresourcedefinitions": dict(
        kind="CustomResourceDefinition", singular="customresourcedefinition", namespaced=False,
        shortnames={"crd", "crds"}, subresources={"status"}),
}
VERBS = {"create", "delete", "get", "list", "patch", "update", "watch"}


class ApiStatus(Exception):
    """A Kubernetes ``Status`` failure answered to the client."""

    def __init__(self, code: int, reason: str, message: str) -> None:
        super().__init__(message)
        self.code, self.reason, self.message = code, reason, message


def now_rfc3339() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = copy.deepcopy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def structural(value: Any, schema: dict[str, Any]) -> Any:
    """Prune fields a structural schema does not declare and fill in its defaults, like the API server."""
    if isinstance(value, dict) and (schema.get("type") == "object" or "properties" in schema):
        props = schema.get("properties") or {}
        extra = schema.get("additionalProperties")
        keep_unknown = schema.get("x-kubernetes-preserve-unknown-fields") or extra is True
        out: dict[str, Any] = {}
        for key, item in value.items():
            if key in props:
                out[key] = structural(item, props[key])
            elif isinstance(extra, dict):
                out[key] = structural(item, extra)
            elif keep_unknown:
                out[key] = copy.deepcopy(item)
        for key, prop in props.items():
            if key not in out and "default" in prop:
                out[key] = structural(copy.deepcopy(prop["default"]), prop)
        return out
    if isinstance(value, list) and isinstance(schema.get("items"), dict):
        return [structural(item, schema["items"]) for item in value]
    return copy.deepcopy(value)


def unknown_fields(value: Any, schema: dict[str, Any], path: str = "") -> list[str]:
    """Paths of the fields ``structural`` would prune (what server-side field validation reports)."""
    out: list[str] = []
    if isinstance(value, dict) and (schema.get("type") == "object" or "properties" in schema):
        props = schema.get("properties") or {}
        extra = schema.get("additionalProperties")
        if schema.get("x-kubernetes-preserve-unknown-fields") or extra is True:
            return out
        for key, item in value.items():
            sub = f"{path}.{key}" if path else key
            if key in props:
                out += unknown_fields(item, props[key], sub)
            elif isinstance(extra, dict):
                out += unknown_fields(item, extra, sub)
            else:
                out.append(sub)
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        for i, item in enumerate(value):
            out += unknown_fields(item, schema["items"], f"{path}[{i}]")
    return out


def _cel_program(rule: str) -> Any:
    if rule not in _CEL_CACHE:
        env = celpy.Environment()
        _CEL_CACHE[rule] = env.program(env.compile(rule))
    return _CEL_CACHE[rule]


_CEL_CACHE: dict[str, Any] = {}


def cel_violations(value: Any, schema: dict[str, Any], path: str = "") -> list[str]:
    """Evaluate every ``x-kubernetes-validations`` rule with ``self`` bound to its node, as the API server
    does after defaulting (cel-python; rules must use standard CEL only, no Kubernetes extension library)."""
    out: list[str] = []
    if value is None:
        return out
    for rule in schema.get("x-kubernetes-validations") or []:
        try:
            ok = _cel_program(rule["rule"]).evaluate({"self": celpy.json_to_cel(value)})
        except celpy.CELEvalError as exc:  # e.g. a missing field: the API server reports the rule as failed
            ok = exc
        if ok is not True and not (isinstance(ok, celpy.celtypes.BoolType) and bool(ok)):
            message = rule.get("message") or f"failed rule: {rule['rule']}"
            out.append(f"{path or '<root>'}: Invalid value: {message}")
    if isinstance(value, dict):
        props = schema.get("properties") or {}
        for key, item in value.items():
            if key in props:
                out += cel_violations(item, props[key], f"{path}.{key}" if path else key)
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        for i, item in enumerate(value):
            out += cel_violations(item, schema["items"], f"{path}[{i}]")
    return out


def list_map_duplicates(value: Any, schema: dict[str, Any], path: str = "") -> list[str]:
    """``x-kubernetes-list-type: map`` lists may hold each key (``x-kubernetes-list-map-keys``) once."""
    out: list[str] = []
    if isinstance(value, list) and isinstance(schema.get("items"), dict):
        if schema.get("x-kubernetes-list-type") == "map":
            keys = schema.get("x-kubernetes-list-map-keys") or []
            seen: set[str] = set()
            for i, item in enumerate(value):
                key = json.dumps({k: item.get(k) for k in keys} if isinstance(item, dict) else item, sort_keys=True)
                if key in seen:
                    out.append(f"{path}[{i}]: Duplicate value: {key}")
                seen.add(key)
        for i, item in enumerate(value):
            out += list_map_duplicates(item, schema["items"], f"{path}[{i}]")
    elif isinstance(value, dict):
        for key, item in value.items():
            sub = (schema.get("properties") or {}).get(key)
            if isinstance(sub, dict):
                out += list_map_duplicates(item, sub, f"{path}.{key}" if path else key)
    return out


class ResourceRef:
    """A parsed resource URL: ``/api/v1/...`` or ``/apis/{group}/{version}/...``."""

    def __init__(self, group: str, version: str, plural: str, namespace: str | None,
                 name: str | None, subresource: str | None) -> None:
        self.group, self.version, self.plural = group, version, plural
        self.namespace, self.name, self.subresource = namespace, name, subresource

    @property
    def resource(self) -> kmock.resource:
        return kmock.resource(self.group, self.version, self.plural)

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @classmethod
    def parse(cls, path: str) -> "ResourceRef | None":
        parts = [p for p in path.split("/") if p]
        if len(parts) >= 2 and parts[0] == "api":
            group, version, rest = "", parts[1], parts[2:]
        elif len(parts) >= 3 and parts[0] == "apis":
            group, version, rest = parts[1], parts[2], parts[3:]
        else:
            return None
        if not rest:
            return None  # discovery of a group version
        namespace = None
        if rest[0] == "namespaces" and len(rest) >= 3:
            namespace, rest = rest[1], rest[2:]
        plural, name, sub = rest[0], (rest[1] if len(rest) > 1 else None), "/".join(rest[2:]) or None
        return cls(group, version, plural, namespace, name, sub)


class RealisticKubernetesEmulator(kmock.KubernetesEmulator):
    """kmock's emulator with the object semantics of a real API server (see the module docstring)."""

    def __attrs_post_init__(self) -> None:
        super().__attrs_post_init__()
        self.rv = 0
        self.kinds: dict[kmock.resource, dict[str, Any]] = {}
        self.schemas: dict[kmock.resource, dict[str, Any]] = {}
        self.log: dict[kmock.resource, list[dict[str, Any]]] = defaultdict(list)
        self.watchers: dict[kmock.resource, set[asyncio.Queue[dict[str, Any] | None]]] = defaultdict(set)
        self.state_lock = threading.RLock()
        self._params: dict[str, str] | None = None
        self._attrs: Attributes | None = None
        self._warnings: list[str] = []
        #: RBAC enforcement (``support.kube_rbac``); None (the default) lets every request through.
        self.rbac: RBAC | None = None
        for key, info in CORE_RESOURCES.items():
            self.declare(key, **info)
        self.store_object("v1/namespaces", None, {"metadata": {"name": "default"}})

    # -- declarations ------------------------------------------------------------------------

    def declare(self, key: str, *, kind: str, singular: str, namespaced: bool,
                shortnames: set[str] | None = None, subresources: set[str] | None = None,
                categories: set[str] | None = None) -> None:
        resource = kmock.resource(key)
        self.resources[resource] = kmock.ResourceInfo(
            kind=kind, singular=singular, namespaced=namespaced, verbs=VERBS,
            shortnames=shortnames or set(), subresources=subresources or set(), categories=categories or set(),
        )
        self.kinds[resource] = dict(kind=kind, namespaced=namespaced, status=("status" in (subresources or set())))

    def load_crd(self, path: str | os.PathLike[str]) -> list[dict[str, Any]]:
        """Serve every CRD in a YAML file: discovery, storage and the CRD objects themselves."""
        crds = [d for d in yaml.safe_load_all(Path(path).read_text()) if d and d.get("kind") == "CustomResourceDefinition"]
        if not crds:
            raise ValueError(f"{path} holds no CustomResourceDefinition")
        for crd in crds:
            spec, names = crd["spec"], crd["spec"]["names"]
            for version in spec["versions"]:
                if not version.get("served", True):
                    continue
                key = f"{spec['group']}/{version['name']}/{names['plural']}"
                schema = (version.get("schema") or {}).get("openAPIV3Schema")
                if schema:
                    self.schemas[kmock.resource(key)] = schema
                self.declare(
                    key,
                    kind=names["kind"], singular=names.get("singular", names["kind"].lower()),
                    namespaced=spec.get("scope", "Namespaced") == "Namespaced",
                    shortnames=set(names.get("shortNames", [])), categories=set(names.get("categories", [])),
                    subresources=set((version.get("subresources") or {}).keys()),
                )
            self.store_object("apiextensions.k8s.io/v1/customresourcedefinitions", None, crd)
        return crds

    def store_object(self, key: str, namespace: str | None, body: dict[str, Any]) -> dict[str, Any]:
        """Create an object directly (no HTTP), with the same metadata an API create would set."""
        resource = kmock.resource(key)
        ref = ResourceRef(resource.group, resource.version, resource.plural, namespace, None, None)
        with self.state_lock:
            return self._create(ref, copy.deepcopy(body))

    # -- request routing --------------------------------------------------------------------------

    async def __call__(self, raw_request: aiohttp.web.BaseRequest) -> aiohttp.web.StreamResponse:
        attrs: Attributes | None = None
        if self.rbac is not None:
            # The API server's filter order: authentication (401), then authorisation (403), then the handler.
            user = self.rbac.authenticate(raw_request.headers.get("Authorization"))
            if user is None:
                return self._status(ApiStatus(401, "Unauthorized", "Unauthorized"))
            attrs = request_attributes(user, raw_request.method, raw_request.path, raw_request.query)
            denied = self.rbac.authorize(attrs)
            if denied is not None:
                return self._status(ApiStatus(403, "Forbidden", denied))
        # kmock's own URL parser cannot read the namespace collection (/api/v1/namespaces), so
        # resource URLs are parsed here; discovery and other paths go through kmock unchanged.
        ref = ResourceRef.parse(raw_request.path)
        if ref is None:
            return await super().__call__(raw_request)
        body = await raw_request.read()
        text = body.decode(errors="replace")
        try:
            data = json.loads(text) if text else None
        except ValueError:
            data = None
        method = raw_request.method.upper()
        watching = method == "GET" and raw_request.query.get("watch") in {"true", "1"}
        action = (kmock.action.WATCH if watching else
                  {"GET": kmock.action.FETCH if ref.name else kmock.action.LIST, "POST": kmock.action.CREATE,
                   "PATCH": kmock.action.UPDATE, "DELETE": kmock.action.DELETE}.get(method))
        request = rendering.Request(
            id=len(self._requests), raw_request=raw_request, url=raw_request.url, method=method,
            params=dict(raw_request.query), headers=dict(raw_request.headers), cookies=dict(raw_request.cookies),
            body=body, text=text, data=data, action=action, resource=ref.resource, namespace=ref.namespace,
            name=ref.name, subresource=ref.subresource,
        )
        self._requests.append(request)
        if ref.resource not in self.kinds:
            return self._status(ApiStatus(404, "NotFound", f"the server could not find the requested resource ({raw_request.path})"))
        try:
            if watching:
                return await self._watch(request, ref)
            with self.state_lock:
                self._params, self._attrs, self._warnings = request.params, attrs, []
                try:
                    status, payload = self._serve(method, ref, request.params, request)
                finally:
                    warnings, self._params, self._attrs, self._warnings = self._warnings, None, None, []
            await self._flush()
            response = aiohttp.web.json_response(payload, status=status)
            for warning in warnings:
                response.headers.add("Warning", f'299 - "{warning}"')
            return response
        except ApiStatus as exc:
            return self._status(exc)
        except Exception as exc:  # noqa: BLE001 - a bug in the emulator: answer like an API server would, with details
            return self._status(ApiStatus(500, "InternalError", repr(exc)))

    def _serve(self, method: str, ref: ResourceRef, params: dict[str, str], request: rendering.Request) -> tuple[int, Any]:
        info = self.kinds[ref.resource]
        if ref.namespace is not None and not info["namespaced"]:
            raise ApiStatus(404, "NotFound", f"{ref.plural} is cluster-scoped")
        if ref.name is None:
            if method == "GET":
                return 200, self._list(ref, params)
            if method == "POST":
                data = request.data
                if not isinstance(data, dict):
                    raise ApiStatus(400, "BadRequest", "the body must be a JSON object")
                return 201, self._create(ref, copy.deepcopy(data))
            raise ApiStatus(405, "MethodNotAllowed", f"{method} is not supported on collections here")
        if ref.subresource not in (None, "status"):
            raise ApiStatus(404, "NotFound", f"subresource {ref.subresource} is not served")
        if ref.subresource == "status" and not info["status"]:
            raise ApiStatus(404, "NotFound", f"{ref.plural} has no status subresource")
        if method == "GET":
            return 200, self._get(ref)
        if method == "PATCH":
            ctype = request.headers.get("Content-Type", "application/merge-patch+json").split(";")[0].strip()
            if ctype == "application/apply-patch+yaml":
                return self._apply(ref, request)
            return 200, self._update(ref, patch=request.data, ctype=ctype)
        if method == "PUT":
            return 200, self._update(ref, patch=request.data, ctype="replace")
        if method == "DELETE":
            return 200, self._delete(ref)
        raise ApiStatus(405, "MethodNotAllowed", f"{method} is not supported")

    def _apply(self, ref: ResourceRef, request: rendering.Request) -> tuple[int, Any]:
        """Server-side apply, approximated: create when missing (201), else a merge patch (200).

        As in the API server (handlers/patch.go), ``fieldManager`` is required, and an apply that finds
        no object is authorised a second time, as ``create`` of that name (``forceAllowCreate``)."""
        if not request.params.get("fieldManager"):
            raise ApiStatus(422, "Invalid", "PatchOptions.meta.k8s.io \"\" is invalid: fieldManager: Required value: "
                                            "is required for apply patch")
        try:
            body = yaml.safe_load(request.text) if request.text else None
        except yaml.YAMLError as exc:
            raise ApiStatus(400, "BadRequest", f"error decoding YAML: {exc}") from exc
        if not isinstance(body, dict):
            raise ApiStatus(400, "BadRequest", "an apply patch must be an object")
        assert ref.name is not None
        if (body.get("metadata") or {}).get("name") not in (None, ref.name):
            raise ApiStatus(400, "BadRequest", "the name of the object does not match the name on the URL")
        if self._current(ref, ref.name) is not None or ref.subresource is not None:
            return 200, self._update(ref, patch=body, ctype="application/merge-patch+json")
        if self.rbac is not None and self._attrs is not None:
            denied = self.rbac.authorize_create_on_apply(self._attrs)
            if denied is not None:
                raise ApiStatus(403, "Forbidden", denied)
        body = copy.deepcopy(body)
        body.setdefault("metadata", {})["name"] = ref.name
        return 201, self._create(ref, body)

    def _status(self, exc: ApiStatus) -> aiohttp.web.Response:
        return aiohttp.web.json_response({
            "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": exc.message, "reason": exc.reason, "code": exc.code,
        }, status=exc.code)

    # -- state ----------------------------------------------------------------------------------

    def _key(self, ref: ResourceRef, name: str) -> tuple[kmock.resource, str | None, str]:
        return (ref.resource, ref.namespace if self.kinds[ref.resource]["namespaced"] else None, name)

    def _current(self, ref: ResourceRef, name: str) -> dict[str, Any] | None:
        key = self._key(ref, name)
        if key not in self.objects or self.objects[key].deleted:
            return None
        return self.objects[key].raw

    def _get(self, ref: ResourceRef) -> dict[str, Any]:
        assert ref.name is not None
        obj = self._current(ref, ref.name)
        if obj is None:
            raise ApiStatus(404, "NotFound", f'{ref.plural} "{ref.name}" not found')
        return copy.deepcopy(obj)

    def _next_rv(self) -> str:
        self.rv += 1
        return str(self.rv)

    def _emit(self, resource: kmock.resource, event_type: str, obj: dict[str, Any]) -> None:
        event = {"type": event_type, "object": copy.deepcopy(obj)}
        self.log[resource].append(event)
        for queue in self.watchers[resource]:
            queue.put_nowait(event)

    async def _flush(self) -> None:
        await asyncio.sleep(0)  # let watch streams pick their events up before the reply

    def _create(self, ref: ResourceRef, body: dict[str, Any]) -> dict[str, Any]:
        info = self.kinds[ref.resource]
        meta = body.setdefault("metadata", {})
        if info["namespaced"]:
            namespace = ref.namespace or meta.get("namespace")
            if not namespace:
                raise ApiStatus(400, "BadRequest", "a namespace is required for a namespaced resource")
            if meta.get("namespace") not in (None, namespace):
                raise ApiStatus(400, "BadRequest", "the namespace of the object does not match the URL")
            if self._current(ResourceRef("", "v1", "namespaces", None, None, None), namespace) is None:
                raise ApiStatus(404, "NotFound", f'namespaces "{namespace}" not found')
            meta["namespace"] = namespace
            ref = ResourceRef(ref.group, ref.version, ref.plural, namespace, None, None)
        else:
            meta.pop("namespace", None)
        if not meta.get("name"):
            if not meta.get("generateName"):
                raise ApiStatus(422, "Invalid", "metadata.name or metadata.generateName is required")
            meta["name"] = meta["generateName"] + "".join(random.choices(string.ascii_lowercase + string.digits, k=5))
        name = meta["name"]
        if self._current(ref, name) is not None:
            raise ApiStatus(409, "AlreadyExists", f'{ref.plural} "{name}" already exists')
        body["apiVersion"] = ref.api_version
        body["kind"] = info["kind"]
        if info["status"]:
            body.pop("status", None)  # the status subresource owns it
        if ref.plural == "secrets":
            self._fold_string_data(body)
        body = self._admit(ref, body)
        meta = body["metadata"]
        for field in ("resourceVersion", "deletionTimestamp", "deletionGracePeriodSeconds"):
            meta.pop(field, None)
        meta["uid"] = str(uuid.uuid4())
        meta["creationTimestamp"] = now_rfc3339()
        if ref.group:  # custom and extension resources carry a generation; Secrets/Events do not
            meta["generation"] = 1
        meta["resourceVersion"] = self._next_rv()
        key = self._key(ref, name)
        if key in self.objects:
            self.objects[key].create(body)  # a new life after a deletion keeps the history
        else:
            self.objects[key] = body
        self._emit(ref.resource, "ADDED", body)
        return copy.deepcopy(body)

    def _admit(self, ref: ResourceRef, body: dict[str, Any]) -> dict[str, Any]:
        """What the API server does to a custom resource before storing it: prune, default, validate."""
        schema = self.schemas.get(ref.resource)
        if schema is None:
            return body
        meta = body.get("metadata", {})
        kind = self.kinds[ref.resource]["kind"]
        unknown = [f for f in unknown_fields({k: v for k, v in body.items() if k not in ("apiVersion", "kind", "metadata")},
                                             schema)]
        validation = (self._params or {}).get("fieldValidation", "Warn")
        if unknown and validation == "Strict":
            causes = "; ".join(f'unknown field "{f}"' for f in unknown)
            raise ApiStatus(422, "Invalid", f'{kind} "{meta.get("name")}" is invalid: {causes}')
        if unknown and validation == "Warn":
            self._warnings += [f'unknown field "{f}"' for f in unknown]
        admitted = structural(body, schema)
        # The API server never prunes the type and object metadata, whatever the schema says.
        admitted.update(apiVersion=body["apiVersion"], kind=body["kind"], metadata=meta)
        errors = sorted(jsonschema.Draft4Validator(schema).iter_errors(admitted), key=lambda e: list(e.absolute_path))
        causes_list = [f"{'.'.join(str(p) for p in e.absolute_path) or '<root>'}: {e.message}" for e in errors[:10]]
        if not causes_list:
            body_only = {k: v for k, v in admitted.items() if k not in ("apiVersion", "kind", "metadata")}
            causes_list = list_map_duplicates(body_only, schema) + cel_violations(body_only, schema)
        if causes_list:
            raise ApiStatus(422, "Invalid", f'{kind} "{meta.get("name")}" is invalid: {"; ".join(causes_list)}')
        return admitted

    @staticmethod
    def _fold_string_data(body: dict[str, Any]) -> None:
        string_data = body.pop("stringData", None) or {}
        data = body.setdefault("data", {})
        for k, v in string_data.items():
            data[k] = base64.b64encode(str(v).encode()).decode()
        body.setdefault("type", "Opaque")

    def _update(self, ref: ResourceRef, *, patch: Any, ctype: str) -> dict[str, Any]:
        assert ref.name is not None
        info = self.kinds[ref.resource]
        old = self._current(ref, ref.name)
        if old is None:
            raise ApiStatus(404, "NotFound", f'{ref.plural} "{ref.name}" not found')
        if ctype == "application/json-patch+json":
            try:
                new = jsonpatch.apply_patch(old, patch)
            except jsonpatch.JsonPatchTestFailed as exc:
                raise ApiStatus(422, "Invalid", f"the server rejected our request due to an error in our request: {exc}") from exc
            except (jsonpatch.JsonPatchException, jsonpointer.JsonPointerException) as exc:
                raise ApiStatus(422, "Invalid", f"the JSON patch cannot be applied: {exc}") from exc
        elif ctype == "replace":
            if not isinstance(patch, dict):
                raise ApiStatus(400, "BadRequest", "the body must be a JSON object")
            wanted_rv = (patch.get("metadata") or {}).get("resourceVersion")
            if wanted_rv and wanted_rv != old["metadata"]["resourceVersion"]:
                raise ApiStatus(409, "Conflict", "the object has been modified; please apply your changes to the latest version and try again")
            new = copy.deepcopy(patch)
        elif ctype in {"application/merge-patch+json", "application/strategic-merge-patch+json", "application/json"}:
            if not isinstance(patch, dict):
                raise ApiStatus(400, "BadRequest", "a merge patch must be a JSON object")
            wanted_rv = (patch.get("metadata") or {}).get("resourceVersion")
            if wanted_rv and wanted_rv != old["metadata"]["resourceVersion"]:
                raise ApiStatus(409, "Conflict", "the object has been modified; please apply your changes to the latest version and try again")
            new = merge_patch(old, patch)
        else:
            raise ApiStatus(415, "UnsupportedMediaType", f"the content type {ctype} is not supported")

        if not isinstance(new, dict):
            raise ApiStatus(422, "Invalid", "the patched object is not a JSON object")
        # What a write may change depends on the endpoint, as with the status subresource.
        if info["status"] and ref.subresource == "status":
            result = copy.deepcopy(old)
            if "status" in new:
                result["status"] = new["status"]
            else:
                result.pop("status", None)
            new = result
        elif info["status"] and "status" in old:
            new["status"] = copy.deepcopy(old["status"])
        elif info["status"]:
            new.pop("status", None)
        meta = new.setdefault("metadata", {})
        for field in ("name", "namespace", "uid", "creationTimestamp", "generation", "deletionTimestamp",
                      "deletionGracePeriodSeconds", "resourceVersion"):
            if field in old["metadata"]:
                meta[field] = old["metadata"][field]
            else:
                meta.pop(field, None)
        new["apiVersion"], new["kind"] = old["apiVersion"], old["kind"]
        if ref.plural == "secrets":
            self._fold_string_data(new)
        new = self._admit(ref, new)
        meta = new["metadata"]
        if new == old:
            return copy.deepcopy(old)  # a no-op write: no new version, no event
        if ref.group and self._spec_of(new) != self._spec_of(old):
            meta["generation"] = old["metadata"].get("generation", 0) + 1
        meta["resourceVersion"] = self._next_rv()
        return self._store_update(ref, new)

    @staticmethod
    def _spec_of(obj: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in obj.items() if k not in {"metadata", "status"}}

    def _store_update(self, ref: ResourceRef, new: dict[str, Any]) -> dict[str, Any]:
        key = self._key(ref, new["metadata"]["name"])
        self.objects[key].history.append(new)
        meta = new["metadata"]
        if meta.get("deletionTimestamp") and not meta.get("finalizers"):
            self.objects[key].delete()
            self._emit(ref.resource, "DELETED", new)
        else:
            self._emit(ref.resource, "MODIFIED", new)
        return copy.deepcopy(new)

    def _delete(self, ref: ResourceRef) -> dict[str, Any]:
        assert ref.name is not None
        old = self._current(ref, ref.name)
        if old is None:
            raise ApiStatus(404, "NotFound", f'{ref.plural} "{ref.name}" not found')
        if old["metadata"].get("deletionTimestamp"):
            return copy.deepcopy(old)  # deletion already in progress
        new = copy.deepcopy(old)
        meta = new["metadata"]
        meta["resourceVersion"] = self._next_rv()
        if not meta.get("finalizers"):
            key = self._key(ref, ref.name)
            self.objects[key].history.append(new)
            self.objects[key].delete()
            self._emit(ref.resource, "DELETED", new)
            return copy.deepcopy(new)
        meta["deletionTimestamp"] = now_rfc3339()
        meta["deletionGracePeriodSeconds"] = 0
        if ref.group:
            meta["generation"] = meta.get("generation", 0) + 1
        return self._store_update(ref, new)

    # -- reading ---------------------------------------------------------------------------------

    @staticmethod
    def _selector_terms(selector: str | None) -> list[tuple[str, str, str | None]]:
        terms = []
        for term in filter(None, (t.strip() for t in (selector or "").split(","))):
            match = re.fullmatch(r"(!?)([^!=]+?)\s*(?:(==|=|!=)\s*(.*))?", term)
            if not match:
                raise ApiStatus(400, "BadRequest", f"unable to parse selector term {term!r}")
            bang, key, op, value = match.groups()
            terms.append(("!exists" if bang else ("exists" if op is None else ("!=" if op == "!=" else "=")), key, value))
        return terms

    def _matches(self, ref: ResourceRef, obj: dict[str, Any], params: dict[str, str]) -> bool:
        meta = obj.get("metadata", {})
        if ref.namespace is not None and meta.get("namespace") != ref.namespace:
            return False
        labels = meta.get("labels") or {}
        for op, key, value in self._selector_terms(params.get("labelSelector")):
            if (op == "exists" and key not in labels) or (op == "!exists" and key in labels) \
                    or (op == "=" and labels.get(key) != value) or (op == "!=" and labels.get(key) == value):
                return False
        for op, key, value in self._selector_terms(params.get("fieldSelector")):
            actual: Any = obj
            for part in key.split("."):
                actual = actual.get(part) if isinstance(actual, dict) else None
            actual = "" if actual is None else str(actual)
            if (op == "=" and actual != value) or (op == "!=" and actual == value):
                return False
        return True

    def _live(self, ref: ResourceRef) -> list[dict[str, Any]]:
        return [obj.raw for (res, _, _), obj in self.objects.items() if res == ref.resource and not obj.deleted]

    def _list(self, ref: ResourceRef, params: dict[str, str]) -> dict[str, Any]:
        items = [copy.deepcopy(o) for o in self._live(ref) if self._matches(ref, o, params)]
        return {
            "apiVersion": ref.api_version, "kind": f"{self.kinds[ref.resource]['kind']}List",
            "metadata": {"resourceVersion": str(self.rv)}, "items": items,
        }

    async def _watch(self, request: rendering.Request, ref: ResourceRef) -> aiohttp.web.StreamResponse:
        params = dict(request.params)
        if ref.name is not None:
            params["fieldSelector"] = ",".join(filter(None, [params.get("fieldSelector"), f"metadata.name={ref.name}"]))
            ref = ResourceRef(ref.group, ref.version, ref.plural, ref.namespace, None, None)
        self._selector_terms(params.get("labelSelector"))  # fail early on bad selectors
        since = params.get("resourceVersion") or "0"
        if not since.isdigit():
            raise ApiStatus(400, "BadRequest", f"invalid resourceVersion {since!r}")
        queue: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()
        with self.state_lock:
            # Backlog and subscription are taken under one lock: no event falls in between.
            if since == "0" or params.get("sendInitialEvents") == "true":
                backlog = [{"type": "ADDED", "object": copy.deepcopy(o)} for o in self._live(ref)]
                if params.get("sendInitialEvents") == "true":
                    backlog.append({"type": "BOOKMARK", "object": {
                        "kind": self.kinds[ref.resource]["kind"], "apiVersion": ref.api_version,
                        "metadata": {"resourceVersion": str(self.rv),
                                     "annotations": {"k8s.io/initial-events-end": "true"}}}})
            else:
                backlog = [e for e in self.log[ref.resource]
                           if int(e["object"]["metadata"]["resourceVersion"]) > int(since)]
            self.watchers[ref.resource].add(queue)
        raw_request = request._raw_request
        assert raw_request is not None
        response = aiohttp.web.StreamResponse(status=200, headers={"Content-Type": "application/json"})
        timeout = float(params["timeoutSeconds"]) if params.get("timeoutSeconds") else None
        deadline = time.monotonic() + timeout if timeout else None
        try:
            await response.prepare(raw_request)
            for event in backlog:
                if event["type"] == "BOOKMARK" or self._matches(ref, event["object"], params):
                    await response.write(json.dumps(event).encode() + b"\n")
            while True:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    break
                try:
                    # Wake up now and then to notice clients that went away while nothing happened.
                    event = await asyncio.wait_for(queue.get(), timeout=min(remaining or 1.0, 1.0))
                except TimeoutError:
                    if raw_request.transport is None or raw_request.transport.is_closing():
                        break
                    continue
                if event is None:  # the server is stopping
                    break
                if self._matches(ref, event["object"], params):
                    await response.write(json.dumps(event).encode() + b"\n")
            await response.write_eof()
        except (ConnectionResetError, asyncio.CancelledError):
            pass  # the client went away
        finally:
            with self.state_lock:
                self.watchers[ref.resource].discard(queue)
        return response

    def close_watches(self) -> None:
        """End every open watch stream (the server is stopping)."""
        with self.state_lock:
            for queues in self.watchers.values():
                for queue in queues:
                    queue.put_nowait(None)

    async def _serve_version(self, request: rendering.Request) -> rendering.Payload:
        payload = await super()._serve_version(request)
        if payload.get("groupVersion", "").startswith("/"):  # the core group has no prefix
            payload["groupVersion"] = payload["groupVersion"][1:]
        return payload


class EmulatedKubernetesAPI:
    """The emulated Kubernetes API on loopback, in a background thread, with a kubeconfig and helpers."""

    def __init__(self, crd_path: str | os.PathLike[str] | None = CRD_PATH, *, set_env: bool = True,
                 rbac: RBAC | None = None) -> None:
        self.crd_path = Path(crd_path) if crd_path else None
        self.set_env = set_env
        #: RBAC enforcement, off (None) by default; the helpers below authenticate as ``system:admin``.
        self.rbac = rbac
        self.emulator: RealisticKubernetesEmulator | None = None
        self.url = ""
        self.kubeconfig = ""
        self._dir: tempfile.TemporaryDirectory[str] | None = None
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopped: asyncio.Event | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._saved_env: str | None = None
        self._saved_default: str | None = None
        self._session = requests.Session()
        self._session.headers["Authorization"] = f"Bearer {ADMIN_TOKEN}"

    # -- lifecycle -----------------------------------------------------------------------------

    def start(self) -> "EmulatedKubernetesAPI":
        self.emulator = RealisticKubernetesEmulator()
        self.emulator.rbac = self.rbac
        if self.crd_path is not None:
            self.emulator.load_crd(self.crd_path)
        self._thread = threading.Thread(target=self._run, name="kube-emulator", daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout=30) or self._error is not None:
            raise RuntimeError("the emulated Kubernetes API did not start") from self._error
        self._dir = tempfile.TemporaryDirectory(prefix="retailflow-kube-")
        self.kubeconfig = os.path.join(self._dir.name, "kubeconfig")
        Path(self.kubeconfig).write_text(yaml.safe_dump({
            "apiVersion": "v1", "kind": "Config", "current-context": "emulated",
            "clusters": [{"name": "emulated", "cluster": {"server": self.url}}],
            "contexts": [{"name": "emulated", "context": {"cluster": "emulated", "user": "emulated", "namespace": "default"}}],
            "users": [{"name": "emulated", "user": {"token": ADMIN_TOKEN}}],
        }))
        if self.set_env:
            self._saved_env = os.environ.get("KUBECONFIG")
            os.environ["KUBECONFIG"] = self.kubeconfig
            # The kubernetes client reads KUBECONFIG once, at import; follow it if already imported.
            kube_config = sys.modules.get("kubernetes.config.kube_config")
            if kube_config is not None:
                self._saved_default = kube_config.KUBE_CONFIG_DEFAULT_LOCATION
                kube_config.KUBE_CONFIG_DEFAULT_LOCATION = self.kubeconfig
        return self

    def _run(self) -> None:
        try:
            asyncio.run(self._serve())
        except BaseException as exc:  # surfaced by start()
            self._error = exc
            self._ready.set()

    async def _serve(self) -> None:
        assert self.emulator is not None
        self._loop = asyncio.get_running_loop()
        self._stopped = asyncio.Event()
        async with self.emulator:
            server = aiohttp.test_utils.RawTestServer(self.emulator, host="127.0.0.1", port=0,
                                                      shutdown_timeout=1)
            await server.start_server()
            try:
                self.url = str(server.make_url("")).rstrip("/")
                self._ready.set()
                await self._stopped.wait()
            finally:
                self.emulator.close_watches()
                await server.close()

    def stop(self) -> None:
        if self._loop is not None and self._stopped is not None:
            self._loop.call_soon_threadsafe(self._stopped.set)
        if self._thread is not None:
            self._thread.join(timeout=15)
            self._thread = None
        if self.set_env and self.kubeconfig:
            if self._saved_env is None:
                os.environ.pop("KUBECONFIG", None)
            else:
                os.environ["KUBECONFIG"] = self._saved_env
            kube_config = sys.modules.get("kubernetes.config.kube_config")
            if kube_config is not None and self._saved_default is not None:
                kube_config.KUBE_CONFIG_DEFAULT_LOCATION = self._saved_default
        if self._dir is not None:
            self._dir.cleanup()
            self._dir = None
        self._session.close()

    def __enter__(self) -> "EmulatedKubernetesAPI":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def kubeconfig_for(self, namespace: str, service_account: str) -> str:
        """A kubeconfig whose user is the ServiceAccount (a bearer token issued by ``rbac``), as a pod of
        that ServiceAccount would be; its context's namespace is the ServiceAccount's."""
        if self.rbac is None or self._dir is None:
            raise RuntimeError("kubeconfig_for needs a started API with rbac=RBAC(...)")
        token = self.rbac.issue_token(namespace, service_account)
        path = os.path.join(self._dir.name, f"kubeconfig-{namespace}-{service_account}")
        Path(path).write_text(yaml.safe_dump({
            "apiVersion": "v1", "kind": "Config", "current-context": "sa",
            "clusters": [{"name": "emulated", "cluster": {"server": self.url}}],
            "contexts": [{"name": "sa", "context": {"cluster": "emulated", "user": "sa", "namespace": namespace}}],
            "users": [{"name": "sa", "user": {"token": token}}],
        }))
        return path

    # -- plain-HTTP helpers ----------------------------------------------------------------------

    def request(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        return self._session.request(method, f"{self.url}{path}", timeout=10, **kwargs)

    def _ok(self, resp: requests.Response) -> dict[str, Any]:
        if resp.status_code >= 400:
            raise AssertionError(f"{resp.request.method} {resp.request.path_url} -> {resp.status_code}: {resp.text}")
        return resp.json()

    @staticmethod
    def rp_path(namespace: str, name: str | None = None) -> str:
        path = f"/apis/{RP_GROUP}/{RP_VERSION}/namespaces/{namespace}/{RP_PLURAL}"
        return f"{path}/{name}" if name else path

    def ensure_namespace(self, namespace: str) -> None:
        resp = self.request("POST", "/api/v1/namespaces", json={"metadata": {"name": namespace}})
        if resp.status_code not in (201, 409):
            self._ok(resp)

    def create_secret(self, namespace: str, name: str, data: dict[str, str | bytes],
                      labels: dict[str, str] | None = None) -> dict[str, Any]:
        """Create an Opaque Secret from plain strings or bytes (stored base64-encoded, as the API does)."""
        self.ensure_namespace(namespace)
        body = {"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
                "metadata": {"name": name, "labels": dict(labels or {})},
                "data": {k: base64.b64encode(v if isinstance(v, bytes) else v.encode()).decode()
                         for k, v in data.items()}}
        return self._ok(self.request("POST", f"/api/v1/namespaces/{namespace}/secrets", json=body))

    def apply_rp(self, body: dict[str, Any]) -> dict[str, Any]:
        """Create a RetailPipeline (namespace from ``metadata.namespace``, default ``default``)."""
        return self._ok(self.post_rp(body))

    def post_rp(self, body: dict[str, Any], field_validation: str | None = None) -> requests.Response:
        """POST a RetailPipeline and return the raw answer (status, ``Warning`` headers, Status body)."""
        namespace = body.get("metadata", {}).get("namespace") or "default"
        self.ensure_namespace(namespace)
        body = {"apiVersion": f"{RP_GROUP}/{RP_VERSION}", "kind": "RetailPipeline", **body}
        params = {"fieldValidation": field_validation} if field_validation else None
        return self.request("POST", self.rp_path(namespace), json=body, params=params)

    def get_rp(self, namespace: str, name: str) -> dict[str, Any] | None:
        resp = self.request("GET", self.rp_path(namespace, name))
        return None if resp.status_code == 404 else self._ok(resp)

    def patch_rp(self, namespace: str, name: str, merge_patch: dict[str, Any]) -> dict[str, Any]:
        return self._ok(self.request("PATCH", self.rp_path(namespace, name), data=json.dumps(merge_patch),
                                     headers={"Content-Type": "application/merge-patch+json"}))

    def delete_rp(self, namespace: str, name: str) -> dict[str, Any]:
        return self._ok(self.request("DELETE", self.rp_path(namespace, name)))

    def events(self, namespace: str) -> list[dict[str, Any]]:
        return self._ok(self.request("GET", f"/api/v1/namespaces/{namespace}/events"))["items"]

    def watches_opened(self, plural: str) -> int:
        """How many watch requests on ``plural`` the server has received: a client that starts its watch
        again (after a server-side timeout, say) shows here."""
        assert self.emulator is not None
        return sum(1 for r in list(self.emulator)
                   if r.action == kmock.action.WATCH and r.resource is not None and r.resource.plural == plural)

    def watching(self, plural: str) -> int:
        """How many watch streams on ``plural`` are open and subscribed to new events right now."""
        assert self.emulator is not None
        with self.emulator.state_lock:
            return sum(len(queues) for resource, queues in self.emulator.watchers.items() if resource.plural == plural)

    def wait_watches_opened(self, plural: str, count: int, timeout: float = 20) -> None:
        deadline = time.monotonic() + timeout
        while self.watches_opened(plural) < count:
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {timeout} s waiting for watch request {count} on {plural}")
            time.sleep(0.05)

    def wait_rp(self, namespace: str, name: str, predicate: Callable[[dict[str, Any]], Any],
                timeout: float = 20) -> dict[str, Any]:
        """Poll until ``predicate(obj)`` is true; on timeout, fail showing the last object seen."""
        deadline = time.monotonic() + timeout
        last: dict[str, Any] | None = None
        while True:
            last = self.get_rp(namespace, name)
            if last is not None and predicate(last):
                return last
            if time.monotonic() >= deadline:
                raise AssertionError(f"RetailPipeline {namespace}/{name} did not reach the expected state "
                                     f"in {timeout} s; last seen:\n{json.dumps(last, indent=2)}")
            time.sleep(0.05)

    def wait_rp_gone(self, namespace: str, name: str, timeout: float = 20) -> None:
        deadline = time.monotonic() + timeout
        while True:
            last = self.get_rp(namespace, name)
            if last is None:
                return
            if time.monotonic() >= deadline:
                raise AssertionError(f"RetailPipeline {namespace}/{name} still exists after {timeout} s:\n"
                                     f"{json.dumps(last, indent=2)}")
            time.sleep(0.05)
