"""The Airbyte fake: a stateful stand-in for Airbyte's public API v1, serving real HTTP on loopback.

No Airbyte server can run here (it is a Java platform shipped as container images), so the operator
tests talk to this fake through the real ``airbyte-api`` SDK (1.0.1) and plain HTTP. Every behaviour
below was read in ``airbytehq/airbyte-platform`` at commit ``310e6cb6ac0e7bd310fe99bfd505d5c36ba71f2e``
(2026-08-21); paths are relative to ``airbyte-server/src/main/kotlin/io/airbyte/server/apis/publicapi/``
(``PA/``), ``airbyte-commons-server/src/main/kotlin/io/airbyte/commons/server/`` (``CS/``) or the
repository root.

Endpoints: ``POST /applications/token``; ``GET /health``; ``GET /workspaces[/{id}]``;
``/sources`` and ``/destinations`` (POST, GET list, GET|PATCH|PUT|DELETE ``/{id}``);
``/connections`` (the same without PUT); ``/jobs`` (a separate block at the end of the class).

Behaviours copied from the real server, with where each was read:

- **Tokens** (``PA/controllers/ApplicationsController.kt`` ``publicGetAccessToken``;
  ``airbyte-commons-micronaut/.../AirbyteConfig.kt`` ``DEFAULT_AUTH_APP_TOKEN_EXPIRATION_MINS = 15``):
  ``expires_in`` is 900 s and a token stops working after it (``token_ttl_s``); then 401.
- **sourceType / destinationType are removed from ``configuration``** before the actor is stored
  (``PA/helpers/ActorConfigurationHelper.kt`` ``removeSourceTypeNode``/``removeDestinationType``,
  called by ``PA/controllers/SourcesController.kt`` and ``DestinationsController.kt`` on POST, PATCH
  and PUT), so no response carries them inside ``configuration``. The top-level ``sourceType`` is
  derived from the definition id (``PA/mappers/SourceReadMapper.kt``, ``NameToDefinitionMapper.kt``,
  whose ids are used here). A create without ``definitionId`` and without a type in the configuration
  is 422; an unknown type is 400 (``SourcesController.publicCreateSource``).
  The SDK 1.0.1 cannot parse such a destination (airbyte-api-python-sdk issue #88).
- **Configuration is validated against the connector's spec** on create, and on PATCH/PUT after
  merging into the stored configuration (``CS/handlers/SourceHandler.kt`` ``validateSource``,
  ``validateSourceUpdate``); a failure is 422 (``PA/errorHandlers/ConfigClientErrorHandler.kt``,
  ``JsonValidationException``). The specs are the connectors' configuration schemas of the public
  API (``airbyte-api/server-api/src/main/openapi/api_sdk.yaml``), extracted into
  ``airbyte_connector_specs.json`` next to this file.
- **Secrets are masked** as ``**********`` in every answer: exactly the fields the spec marks
  ``airbyte_secret`` (``SourceHandler.buildSourceRead`` -> ``secretsProcessor.prepareSecretsForOutput``).
  A masked value sent back in PATCH/PUT keeps the stored secret.
- **PATCH merges** the configuration into the stored one; PUT replaces it
  (``PA/services/SourceService.kt`` ``partialUpdateSource``/``updateSource``).
- **Deletion tombstones** sources and destinations: the record stays with its configuration voided,
  is left out of lists unless ``includeDeleted=true``, and its connections are deleted first
  (``SourceHandler.deleteSource``; ``airbyte-data/.../SourceServiceJooqImpl.kt`` ``tombstoneSource``).
  Deleting a connection sets its status to ``deprecated`` (``CS/converters/ConnectionHelper.kt``
  ``deleteConnection``); deprecated connections are listed only with ``includeDeleted=true``.
  A GET by id still answers a deleted resource (``listSourceQuery`` has no tombstone filter); the fake
  answers a deleted actor with ``configuration: {}`` (the stored configuration is null).
- **Lists** page by ``limit`` (default 20, 1..100: ``airbyte-api/server-api/src/main/openapi/api.yaml``)
  and ``offset``; ``next`` is set whenever the page
  is not empty and ``previous`` whenever ``offset > 0``, both ``""`` otherwise
  (``PA/mappers/PaginationMapper.kt``, ``SourcesResponseMapper.kt``). The query has **no ORDER BY**
  (``SourceServiceJooqImpl.listWorkspacesSourceConnections``: ``limit``/``offset`` over the table):
  rows come in storage order, and an update writes a new row version, so the fake moves an updated or
  tombstoned row to the end. Writes between pages therefore make a reader see a row twice or miss one.
- **Cron schedules** (``PA/helpers/AirbyteCatalogHelper.kt`` ``validateCronConfiguration``,
  ``normalizeCronExpression``; ``PA/mappers/ConnectionCreateMapper.kt``; ``ConnectionReadMapper.kt``):
  a ``cron`` schedule without an expression, or one Quartz cannot parse, or whose seconds field is not
  a number, is 400; a trailing ``UTC`` is stripped on input; the time zone is stored as UTC and the
  answer's ``cronExpression`` is ``"<expression> UTC"``.
- **Connection streams** (``PA/controllers/ConnectionsController.kt``, ``AirbyteCatalogHelper.kt``):
  create, and a patch that carries streams, first discover the source's schema, then validate each
  stream configuration; 400 unless the stream exists, the sync mode is one the source and destination
  support (``validCombinedSyncModes``), the cursor field is a field of the stream (or, for a
  source-defined cursor, the default one), the primary key equals the source-defined key (or, without
  one, names fields of the stream), and no stream is listed twice. Without stream configurations every
  discovered stream is configured ``full_refresh_overwrite``. The answer carries what the server
  resolved (``ConnectionReadMapper.from``): the stream's ``namespace``, the selected cursor and primary
  key (source-defined ones win), ``mappers: []``. A patch of a ``locked`` connection is 409.
- Unknown ids answer 404; errors are ``application/problem+json`` documents.
- **Null fields are left out of every answer** (``airbyte-server/src/main/resources/application.yml``,
  ``jackson.serialization-inclusion: NON_ABSENT``, line 614 at the commit above): a field the server
  has no value for is absent, never ``null`` (a file stream's ``namespace``, a connection without a
  ``prefix``, …). Only the connector ``configuration`` objects keep their nulls: they are JSON trees
  (``JsonNode``), which Jackson writes whole, whatever the inclusion (``omit_absent``).

Discovery (what a real source connector would report, which no server code contains) is emulated from
the project's own files: ``source-mysql`` discovers the tables of ``generator/retailflow_generator/schema.sql``
(namespace = the configured database, source-defined primary key = the table's key, no source-defined
cursor, full refresh and incremental); ``source-s3`` and ``source-file`` discover one stream per
configured stream / ``dataset_name`` with the columns of ``data/store_locations.csv`` (source-s3 adds
its ``_ab_source_file_*`` columns and a source-defined cursor, as the file-based CDK does; source-file
supports full refresh only). Destination sync modes (from the connectors' specs, not in this
repository): Postgres ``overwrite, append, append_dedup, update, soft_delete``; S3 ``overwrite, append``.
Tests can replace ``catalogs`` (source type -> callable(configuration) -> streams).

The jobs endpoints (a separate block at the end of the class) were not re-read against the server
code in this revision; they keep the earlier behaviour described in their block.

Not emulated: connector checks, real syncs (no data moves), OAuth, definitions, organizations,
permissions, tags endpoints, secret persistence (``secretId``), rate limits, Keycloak.

Test controls: ``fail_next(n, status)`` makes the next n calls (token call included) answer ``status``;
``fail_on(method, path_prefix, status, times)`` fails matching calls only (``clear_failures()`` forgets
those not yet answered); ``down = True`` makes every call answer 503; ``writes`` records ``(method, path)`` of every
POST/PATCH/PUT/DELETE except the token call; ``between_pages`` (a callable, or None) runs after every
list page is served, to write concurrently; ``token_ttl_s`` shortens token life; ``live(kind)`` gives
the resources a list without ``includeDeleted`` shows.
"""

from __future__ import annotations

import copy
import datetime
import functools
import json
import re
import threading
import time
import urllib.parse
import uuid
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Callable

import jsonschema

API_PREFIX = "/api/public/v1"
MASK = "**********"
#: AirbyteConfig.kt: DEFAULT_AUTH_APP_TOKEN_EXPIRATION_MINS = 15.
TOKEN_TTL_SECONDS = 900
REPO_ROOT = Path(__file__).resolve().parents[2]
SPECS = json.loads((Path(__file__).with_name("airbyte_connector_specs.json")).read_text())
MYSQL_SCHEMA_SQL = REPO_ROOT / "generator" / "retailflow_generator" / "schema.sql"
STORE_CSV = REPO_ROOT / "data" / "store_locations.csv"

#: NameToDefinitionMapper.kt (the connectors the operator uses).
SOURCE_DEFINITIONS = {
    "mysql": "435bb9a5-7887-4809-aa58-28c27df0d7ad",
    "s3": "69589781-7828-43c5-9f63-8925b1c1ccc2",
    "file": "778daa7c-feaf-4db6-96f3-70fd645acc77",
    "postgres": "decd338e-5647-4c0b-adf4-da0e75f5a750",
}
DESTINATION_DEFINITIONS = {
    "postgres": "25c5221d-dce2-4163-ade9-739ef790f503",
    "s3": "4816b78f-1489-44c1-9060-4b19d5fa9362",
    "mysql": "ca81ee7c-3163-4246-af40-094cc31e5e42",
}
DESTINATION_SYNC_MODES = {
    "postgres": ["overwrite", "append", "append_dedup", "update", "soft_delete"],
    "s3": ["overwrite", "append"],
}
#: ConnectionReadMapper.syncModesToConnectionSyncModeEnum.
COMBINED_SYNC_MODES = {
    ("full_refresh", "overwrite"): "full_refresh_overwrite",
    ("full_refresh", "append"): "full_refresh_append",
    ("full_refresh", "overwrite_dedup"): "full_refresh_overwrite_deduped",
    ("full_refresh", "update"): "full_refresh_update",
    ("full_refresh", "soft_delete"): "full_refresh_soft_delete",
    ("incremental", "append"): "incremental_append",
    ("incremental", "append_dedup"): "incremental_deduped_history",
    ("incremental", "update"): "incremental_update",
    ("incremental", "soft_delete"): "incremental_soft_delete",
}
SYNC_MODES = set(COMBINED_SYNC_MODES.values())
SCHEDULE_TYPES = {"manual", "cron"}
CONNECTION_STATUSES = {"active", "inactive", "deprecated", "locked"}
NAMESPACE_DEFINITIONS = {"source", "destination", "custom_format"}
NON_BREAKING_BEHAVIOURS = {"ignore", "disable_connection", "propagate_columns", "propagate_fully"}
JOB_TYPES = {"sync", "reset", "refresh", "clear"}
JOB_STATUSES = {"pending", "queued", "running", "incomplete", "failed", "succeeded", "cancelled"}
FINAL_JOB_STATUSES = {"incomplete", "failed", "succeeded", "cancelled"}


@functools.cache
def connector_spec(kind: str, actor_type: str) -> dict[str, Any] | None:
    """The connector's configuration schema, without the public API's own type discriminator (shared:
    callers must not modify it)."""
    raw = SPECS.get(f"{kind}-{actor_type}")
    if raw is None:
        return None
    spec = copy.deepcopy(raw)
    type_key = f"{kind}Type"
    spec.get("properties", {}).pop(type_key, None)
    spec["required"] = [r for r in spec.get("required", []) if r != type_key]
    return spec


def _secret_paths(schema: Any, value: Any) -> Any:
    """Mask every ``airbyte_secret`` field of ``value`` according to ``schema`` (oneOf branches included)."""
    if not isinstance(schema, dict):
        return value
    if isinstance(value, dict):
        out = dict(value)
        props = dict(schema.get("properties") or {})
        for branch in schema.get("oneOf") or schema.get("anyOf") or []:
            for k, v in (branch.get("properties") or {}).items():
                props.setdefault(k, v)
                if v.get("airbyte_secret"):
                    props[k] = v
        for key, sub in props.items():
            if key not in out:
                continue
            if sub.get("airbyte_secret") and out[key] not in (None, ""):
                out[key] = MASK
            else:
                out[key] = _secret_paths(sub, out[key])
        return out
    if isinstance(value, list) and isinstance(schema.get("items"), dict):
        return [_secret_paths(schema["items"], v) for v in value]
    return value


def mask_secrets(value: Any, spec: dict[str, Any] | None = None) -> Any:
    """``value`` with its secret fields masked, as ``prepareSecretsForOutput`` does."""
    if spec is not None:
        return _secret_paths(spec, value)
    if isinstance(value, dict):
        return {k: MASK if any(p in k.lower() for p in ("secret", "password", "token")) and v not in (None, "")
                else mask_secrets(v) for k, v in value.items()}
    if isinstance(value, list):
        return [mask_secrets(v) for v in value]
    return value


def keep_masked_secrets(new: Any, old: Any) -> Any:
    """Replace masked placeholders in ``new`` with the stored secret from ``old``."""
    if isinstance(new, dict):
        old = old if isinstance(old, dict) else {}
        return {k: old[k] if v == MASK and k in old else keep_masked_secrets(v, old.get(k)) for k, v in new.items()}
    if isinstance(new, list) and isinstance(old, list) and len(new) == len(old):
        return [keep_masked_secrets(n, o) for n, o in zip(new, old)]
    return new


def merge(base: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    """Jsons.mergeNodes: objects merge key by key, anything else replaces."""
    result = copy.deepcopy(base)
    for key, value in patch.items():
        if isinstance(value, dict) and isinstance(result.get(key), dict):
            result[key] = merge(result[key], value)
        else:
            result[key] = copy.deepcopy(value)
    return result


def now_iso() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# ---------------------------------------------------------------- discovery (emulated connectors)


@functools.cache
def _validator(kind: str, actor_type: str) -> Any:
    spec = connector_spec(kind, actor_type)
    return None if spec is None else jsonschema.Draft7Validator(spec)


@functools.cache
def mysql_tables(path: Path = MYSQL_SCHEMA_SQL) -> dict[str, dict[str, Any]]:
    """table -> {"columns": [...], "primary_key": [...]}, read from the project's MySQL schema."""
    tables: dict[str, dict[str, Any]] = {}
    for match in re.finditer(r"create table if not exists (\w+) \((.*?)\n\) engine", path.read_text(), re.S):
        name, body = match.groups()
        columns, pk = [], []
        for line in body.splitlines():
            line = line.strip().rstrip(",")
            if not line or line.startswith("--"):
                continue
            key = re.match(r"primary key \(([^)]*)\)", line)
            if key:
                pk = [c.strip() for c in key.group(1).split(",")]
            elif not re.match(r"(unique key|key|constraint|index)\b", line):
                columns.append(line.split()[0])
        tables[name] = {"columns": columns, "primary_key": pk}
    return tables


def _stream(name: str, columns: list[str], namespace: str | None, modes: list[str], pk: list[str] | None,
            cursor: list[str] | None = None) -> dict[str, Any]:
    return {
        "name": name, "namespace": namespace,
        "jsonSchema": {"type": "object", "properties": {c: {"type": ["null", "string"]} for c in columns}},
        "supportedSyncModes": modes,
        "sourceDefinedCursor": cursor is not None, "defaultCursorField": cursor or [],
        "sourceDefinedPrimaryKey": [[k] for k in pk] if pk else [],
    }


def discover_mysql(config: dict[str, Any]) -> list[dict[str, Any]]:
    return [_stream(t, list(info["columns"]), config.get("database"), ["full_refresh", "incremental"],
                    list(info["primary_key"])) for t, info in mysql_tables().items()]


@functools.cache
def _csv_columns() -> list[str]:
    return STORE_CSV.read_text().splitlines()[0].split(",")


def discover_s3(config: dict[str, Any]) -> list[dict[str, Any]]:
    extra = ["_ab_source_file_last_modified", "_ab_source_file_url"]
    return [_stream(s.get("name", ""), _csv_columns() + extra, None, ["full_refresh", "incremental"], None,
                    cursor=["_ab_source_file_last_modified"]) for s in config.get("streams") or []]


def discover_file(config: dict[str, Any]) -> list[dict[str, Any]]:
    return [_stream(config.get("dataset_name", ""), _csv_columns(), None, ["full_refresh"], None)]


class ApiError(Exception):
    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail


class AirbyteFake:
    """The Airbyte fake: Airbyte's public API v1 (the operator's and the SDK's subset) on loopback, state in memory."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        # Fresh credentials per instance: the SDK caches tokens per (client_id, client_secret)
        # process-wide, and must not reuse one issued by an earlier fake.
        self.client_id = f"retailflow-test-{uuid.uuid4()}"
        self.client_secret = uuid.uuid4().hex
        self.workspace_id = str(uuid.uuid4())
        self.workspaces: dict[str, dict[str, Any]] = {
            self.workspace_id: {
                "workspaceId": self.workspace_id, "name": "retailflow", "dataResidency": "auto",
                "notifications": {},
            },
        }
        # Dicts keep storage order: an update moves a row to the end (see the module docstring).
        self.sources: dict[str, dict[str, Any]] = {}
        self.destinations: dict[str, dict[str, Any]] = {}
        self.connections: dict[str, dict[str, Any]] = {}
        self.jobs: dict[int, dict[str, Any]] = {}
        self.catalogs: dict[str, Callable[[dict[str, Any]], list[dict[str, Any]]]] = {
            "mysql": discover_mysql, "s3": discover_s3, "file": discover_file,
        }
        self.writes: list[tuple[str, str]] = []
        #: Every request as (method, path relative to server_url, status answered), token call included.
        self.calls: list[tuple[str, str, int]] = []
        #: token -> monotonic expiry
        self.tokens: dict[str, float] = {}
        self.token_ttl_s: float = TOKEN_TTL_SECONDS
        self.down = False
        self.between_pages: Callable[[], None] | None = None
        #: Status a job reports once it is older than ``job_seconds``.
        self.job_result = "succeeded"
        self.job_seconds = 0.0
        self._failures: list[int] = []
        self._targeted: list[list[Any]] = []
        self._next_job_id = 1
        self._lock = threading.RLock()
        self._host = host
        self._port = port
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.url = ""

    # -- lifecycle -----------------------------------------------------------------------------

    @property
    def server_url(self) -> str:
        return f"{self.url}{API_PREFIX}"

    @property
    def token_url(self) -> str:
        return f"{self.server_url}/applications/token"

    def start(self) -> "AirbyteFake":
        fake = self

        class Handler(_Handler):
            owner = fake

        self._httpd = ThreadingHTTPServer((self._host, self._port), Handler)
        self._httpd.daemon_threads = True
        host, port = self._httpd.server_address[:2]
        self.url = f"http://{host}:{port}"
        self._thread = threading.Thread(target=self._httpd.serve_forever, args=(0.05,), name="airbyte-fake", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> "AirbyteFake":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    # -- test controls ----------------------------------------------------------------------------

    def fail_next(self, n: int, status: int = 503) -> None:
        """Make the next ``n`` calls (token call included) answer ``status``."""
        with self._lock:
            self._failures.extend([status] * n)

    def fail_on(self, method: str, rel_prefix: str, status: int = 503, times: int = 1,
                detail: str = "injected failure") -> None:
        """Make the next ``times`` calls of ``method`` to a path starting with ``rel_prefix`` answer ``status``
        (with ``detail`` in the problem document)."""
        with self._lock:
            self._targeted.append([method, rel_prefix, status, times, detail])

    def clear_failures(self) -> None:
        """Forget the failures ``fail_on`` asked for that have not been answered yet."""
        with self._lock:
            self._targeted.clear()

    def reset_writes(self) -> None:
        with self._lock:
            self.writes.clear()

    def revoke_tokens(self) -> None:
        """Forget every issued token, as if they had expired: the next call answers 401."""
        with self._lock:
            self.tokens.clear()

    def finish_job(self, job_id: int, status: str = "succeeded") -> None:
        with self._lock:
            job = self.jobs[job_id]
            job.update(status=status, lastUpdatedAt=now_iso())

    def delete_out_of_band(self, kind: str, resource_id: str) -> None:
        """Delete as a user of the Airbyte UI would (the API's DELETE semantics), not counted as a write."""
        with self._lock:
            if kind == "connections":
                self._route_connections("DELETE", resource_id, {}, None)
            else:
                self._actors(kind[:-1], getattr(self, kind), "DELETE", resource_id, {}, None)

    def live(self, kind: str) -> dict[str, dict[str, Any]]:
        """The resources of ``kind`` (sources, destinations, connections) a plain list shows."""
        with self._lock:
            store = getattr(self, kind)
            return {k: v for k, v in store.items() if not self._deleted(v)}

    # -- request dispatch -------------------------------------------------------------------------

    def handle(self, method: str, raw_path: str, headers: Any, body: bytes) -> tuple[int, Any]:
        parsed = urllib.parse.urlsplit(raw_path)
        path = parsed.path
        query = urllib.parse.parse_qs(parsed.query)
        rel = path[len(API_PREFIX):] if path.startswith(API_PREFIX) else path
        with self._lock:
            status, payload = self._dispatch(method, path, rel, query, headers, body)
            self.calls.append((method, rel, status))
        if method == "GET" and status == 200 and isinstance(payload, dict) and "data" in payload:
            hook = self.between_pages
            if hook is not None:
                hook()
        return status, payload

    def _dispatch(self, method: str, path: str, rel: str, query: dict[str, list[str]],
                  headers: Any, body: bytes) -> tuple[int, Any]:
        is_token = method == "POST" and rel == "/applications/token"
        if method in {"POST", "PATCH", "PUT", "DELETE"} and not is_token:
            self.writes.append((method, rel))
        if self.down:
            return 503, problem(503, "Airbyte is unavailable")
        if self._failures:
            status = self._failures.pop(0)
            return status, problem(status, "injected failure")
        for target in self._targeted:
            if target[0] == method and rel.startswith(target[1]) and target[3] > 0:
                target[3] -= 1
                return target[2], problem(target[2], target[4])
        try:
            if is_token:
                return self._token(headers, body)
            if path == "/health" or rel == "/health":
                return 200, "Successful operation"
            if not path.startswith(API_PREFIX):
                raise ApiError(404, f"no route for {path}")
            auth = headers.get("Authorization", "")
            token = auth[len("Bearer "):] if auth.startswith("Bearer ") else ""
            if self.tokens.get(token, 0) < time.monotonic():
                self.tokens.pop(token, None)
                raise ApiError(401, "a valid bearer token is required")
            data = self._json(body) if method in {"POST", "PATCH", "PUT"} else None
            parts = [p for p in rel.split("/") if p]
            if not parts:
                raise ApiError(404, f"no route for {path}")
            collection, item = parts[0], (parts[1] if len(parts) > 1 else None)
            if len(parts) > 2:
                raise ApiError(404, f"no route for {path}")
            route = getattr(self, f"_route_{collection}", None)
            if route is None:
                raise ApiError(404, f"no route for {path}")
            return route(method, item, query, data)
        except ApiError as exc:
            return exc.status, problem(exc.status, exc.detail)

    @staticmethod
    def _json(body: bytes) -> Any:
        try:
            return json.loads(body or b"{}")
        except ValueError as exc:
            raise ApiError(400, f"invalid JSON: {exc}") from exc

    def _token(self, headers: Any, body: bytes) -> tuple[int, Any]:
        if headers.get("Content-Type", "").startswith("application/json"):
            form = self._json(body)
        else:
            form = {k: v[0] for k, v in urllib.parse.parse_qs(body.decode()).items()}
        if form.get("client_id") != self.client_id or form.get("client_secret") != self.client_secret:
            return 401, problem(401, "Invalid client_id or client_secret")
        token = uuid.uuid4().hex
        self.tokens[token] = time.monotonic() + self.token_ttl_s
        return 200, {"access_token": token, "token_type": "Bearer", "expires_in": TOKEN_TTL_SECONDS}

    # -- helpers --------------------------------------------------------------------------------

    @staticmethod
    def _require(data: Any, *fields: str) -> None:
        if not isinstance(data, dict):
            raise ApiError(422, "The body of the request was not understood")
        missing = [f for f in fields if data.get(f) in (None, "")]
        if missing:
            raise ApiError(422, f"missing required field(s): {', '.join(missing)}")

    @staticmethod
    def _check_enum(value: Any, allowed: set[str], field: str) -> None:
        if value is not None and value not in allowed:
            raise ApiError(400, f"{field}: {value!r} is not one of {sorted(allowed)}")

    def _workspace(self, workspace_id: str) -> None:
        if workspace_id not in self.workspaces:
            raise ApiError(404, f"workspace {workspace_id} not found")

    @staticmethod
    def _deleted(resource: dict[str, Any]) -> bool:
        return bool(resource.get("_tombstone")) or resource.get("status") == "deprecated"

    def _page(self, collection: str, items: list[dict[str, Any]], query: dict[str, list[str]]) -> dict[str, Any]:
        try:
            limit = int(query.get("limit", ["20"])[0])
            offset = int(query.get("offset", ["0"])[0])
        except ValueError as exc:
            raise ApiError(400, f"limit/offset must be integers: {exc}") from exc
        if not 1 <= limit <= 100 or offset < 0:
            raise ApiError(400, "limit must be within 1..100 and offset >= 0")
        data = items[offset:offset + limit]

        def link(new_offset: int) -> str:
            params = [(k, v) for k, vs in query.items() if k not in {"limit", "offset"} for v in vs]
            params += [("limit", str(limit)), ("offset", str(new_offset))]
            return f"{self.server_url}/{collection}?{urllib.parse.urlencode(params)}"

        # PaginationMapper: a next link for every non-empty page, a previous link past the first.
        return {"next": link(offset + limit) if data else "",
                "previous": link(max(0, offset - limit)) if offset else "",
                "data": data}

    @staticmethod
    def _in_workspaces(resource: dict[str, Any], query: dict[str, list[str]]) -> bool:
        wanted = [w for value in query.get("workspaceIds", []) for w in value.split(",") if w]
        return not wanted or resource["workspaceId"] in wanted

    @staticmethod
    def _flag(query: dict[str, list[str]], name: str) -> bool:
        return query.get(name, ["false"])[0].lower() == "true"

    @staticmethod
    def _touch(store: dict[str, dict[str, Any]], key: str, row: dict[str, Any]) -> None:
        """Write a new row version: it moves to the end of the storage order."""
        store.pop(key, None)
        store[key] = row

    # -- workspaces ----------------------------------------------------------------------------

    def _route_workspaces(self, method: str, item: str | None, query: dict[str, list[str]], data: Any) -> tuple[int, Any]:
        if method != "GET":
            raise ApiError(405, "workspaces are read-only here")
        if item is None:
            items = [copy.deepcopy(w) for w in self.workspaces.values() if self._in_workspaces(w, query)]
            return 200, self._page("workspaces", items, query)
        if item not in self.workspaces:
            raise ApiError(404, f"workspace {item} not found")
        return 200, copy.deepcopy(self.workspaces[item])

    # -- sources and destinations ------------------------------------------------------------------

    def _route_sources(self, method: str, item: str | None, query: dict[str, list[str]], data: Any) -> tuple[int, Any]:
        return self._actors("source", self.sources, method, item, query, data)

    def _route_destinations(self, method: str, item: str | None, query: dict[str, list[str]], data: Any) -> tuple[int, Any]:
        return self._actors("destination", self.destinations, method, item, query, data)

    def _view(self, kind: str, resource: dict[str, Any]) -> dict[str, Any]:
        """SourceReadMapper.from: the stored row as the API answers it."""
        out = {k: copy.deepcopy(v) for k, v in resource.items() if not k.startswith("_")}
        spec = connector_spec(kind, resource[f"{kind}Type"])
        out["configuration"] = {} if resource.get("_tombstone") else mask_secrets(out["configuration"], spec)
        return out

    def _validate_config(self, kind: str, actor_type: str, config: dict[str, Any]) -> None:
        validator = _validator(kind, actor_type)
        if validator is None:
            return
        errors = sorted(validator.iter_errors(config), key=lambda e: list(e.absolute_path))
        if errors:
            first = errors[0]
            where = "$." + ".".join(str(p) for p in first.absolute_path) if first.absolute_path else "$"
            raise ApiError(422, f"The provided configuration does not fulfill the specification. Errors: {where}: {first.message}")

    def _actors(self, kind: str, store: dict[str, dict[str, Any]], method: str, item: str | None,
                query: dict[str, list[str]], data: Any) -> tuple[int, Any]:
        collection = f"{kind}s"
        if item is None:
            if method == "GET":
                include_deleted = self._flag(query, "includeDeleted")
                items = [self._view(kind, r) for r in store.values()
                         if self._in_workspaces(r, query) and (include_deleted or not r.get("_tombstone"))]
                return 200, self._page(collection, items, query)
            if method == "POST":
                return 200, self._view(kind, self._create_actor(kind, store, data))
            raise ApiError(405, f"{method} not allowed on /{collection}")
        if item not in store:
            raise ApiError(404, f"{kind} {item} not found")
        current = store[item]
        if method == "GET":
            return 200, self._view(kind, current)
        if method in {"PATCH", "PUT"}:
            if method == "PUT":
                self._require(data, "name", "configuration")
            if not isinstance(data, dict):
                raise ApiError(422, "The body of the request was not understood")
            updated = copy.deepcopy(current)
            if data.get("name") is not None:
                updated["name"] = data["name"]
            config = data.get("configuration")
            if config is not None:
                if not isinstance(config, dict):
                    raise ApiError(422, "configuration must be an object")
                config = {k: v for k, v in config.items() if k != f"{kind}Type"}  # removeSourceTypeNode
                config = keep_masked_secrets(config, current["configuration"])
                updated["configuration"] = config if method == "PUT" else merge(current["configuration"], config)
            self._validate_config(kind, current[f"{kind}Type"], updated["configuration"])
            if data.get("resourceAllocation") is not None:
                updated["resourceAllocation"] = data["resourceAllocation"]
            self._touch(store, item, updated)
            return 200, self._view(kind, updated)
        if method == "DELETE":
            if current.get("_tombstone"):
                return 204, None
            for conn_id, conn in list(self.connections.items()):
                if conn[f"{kind}Id"] == item and conn["status"] != "deprecated":
                    self._touch(self.connections, conn_id, conn | {"status": "deprecated"})
            self._touch(store, item, current | {"_tombstone": True, "configuration": {}})
            return 204, None
        raise ApiError(405, f"{method} not allowed on /{collection}/{{id}}")

    def _create_actor(self, kind: str, store: dict[str, dict[str, Any]], data: Any) -> dict[str, Any]:
        self._require(data, "name", "workspaceId", "configuration")
        if not isinstance(data["configuration"], dict):
            raise ApiError(422, "configuration must be an object")
        self._workspace(data["workspaceId"])
        type_key = f"{kind}Type"
        definitions = SOURCE_DEFINITIONS if kind == "source" else DESTINATION_DEFINITIONS
        by_id = {v: k for k, v in definitions.items()}
        if data.get("definitionId"):
            actor_type = by_id.get(data["definitionId"], "")
            definition_id = data["definitionId"]
        else:
            actor_type = data["configuration"].get(type_key)
            if not actor_type:
                raise ApiError(422, "The body of the request was not understood")
            if actor_type not in definitions:
                raise ApiError(400, f"The value '{actor_type}' is not a valid {type_key}")
            definition_id = definitions[actor_type]
        config = {k: copy.deepcopy(v) for k, v in data["configuration"].items() if k != type_key}
        self._validate_config(kind, actor_type, config)
        resource = {
            f"{kind}Id": str(uuid.uuid4()),
            "name": data["name"],
            f"{kind}Type": actor_type,
            "definitionId": definition_id,
            "workspaceId": data["workspaceId"],
            "configuration": config,
            "createdAt": int(time.time()),
        }
        if data.get("resourceAllocation") is not None:
            resource["resourceAllocation"] = data["resourceAllocation"]
        store[resource[f"{kind}Id"]] = resource
        return resource

    # -- connections ---------------------------------------------------------------------------

    def _check_connection_fields(self, data: dict[str, Any]) -> None:
        self._check_enum(data.get("status"), CONNECTION_STATUSES, "status")
        self._check_enum(data.get("namespaceDefinition"), NAMESPACE_DEFINITIONS, "namespaceDefinition")
        self._check_enum(data.get("nonBreakingSchemaUpdatesBehavior"), NON_BREAKING_BEHAVIOURS,
                         "nonBreakingSchemaUpdatesBehavior")
        schedule = data.get("schedule")
        if schedule is not None:
            self._require(schedule, "scheduleType")
            self._check_enum(schedule["scheduleType"], SCHEDULE_TYPES, "schedule.scheduleType")
            self._validate_cron(schedule)
        configurations = data.get("configurations")
        if configurations is not None:
            for stream in configurations.get("streams") or []:
                self._require(stream, "name")
                self._check_enum(stream.get("syncMode"), SYNC_MODES, f"streams[{stream['name']}].syncMode")

    @staticmethod
    def _normalize_cron(expression: str) -> str:
        return expression.replace("UTC", "").strip() if expression.endswith("UTC") else expression

    def _validate_cron(self, schedule: dict[str, Any]) -> None:
        """AirbyteCatalogHelper.validateCronConfiguration (Quartz via cron-utils)."""
        if schedule.get("scheduleType") != "cron":
            return
        expression = schedule.get("cronExpression")
        if expression is None:
            raise ApiError(400, "Missing cron expression in the schedule.")
        fields = self._normalize_cron(expression).split()
        ranges = [(0, 59), (0, 59), (0, 23), (1, 31), (1, 12), (1, 7), (1970, 2099)]
        error = None
        if len(fields) not in (6, 7):
            error = f"Cron expression contains {len(fields)} parts but we expect one of [6, 7]"
        elif (fields[3] == "?") == (fields[5] == "?"):
            error = "Both, a day-of-week AND a day-of-month parameter, are not supported."
        else:
            for value, (lo, hi) in zip(fields, ranges):
                for number in re.findall(r"\d+", value.split("/")[0]):
                    if not lo <= int(number) <= hi:
                        error = f"Value {number} not in range [{lo}, {hi}]"
        if error:
            raise ApiError(400, f"The cron expression {expression} is not valid. Error: {error}. Please check the cron "
                                "expression format at https://www.quartz-scheduler.org/documentation/quartz-2.3.0/tutorials/crontrigger.html")
        if not fields[0].isdigit() or (len(fields) == 7 and not fields[1].isdigit()):
            raise ApiError(400, f"The cron expression {expression} is not valid or is less than the one hour minimum. "
                                "The seconds and minutes values cannot be `*`.")

    def _schedule(self, schedule: dict[str, Any] | None) -> dict[str, Any]:
        """ConnectionCreateMapper (stored, time zone UTC) read back by ConnectionReadMapper."""
        if not schedule or schedule.get("scheduleType") == "manual":
            return {"scheduleType": "manual"}
        return {"scheduleType": "cron", "cronExpression": f"{self._normalize_cron(schedule['cronExpression'])} UTC"}

    def _configure_streams(self, source: dict[str, Any], destination: dict[str, Any],
                           wanted: list[dict[str, Any]] | None) -> list[dict[str, Any]]:
        """Discover, then AirbyteCatalogHelper.getValidConfiguredStreams / updateAllStreamsFullRefreshOverwrite."""
        discover = self.catalogs.get(source["sourceType"])
        catalog = discover(source["configuration"]) if discover else []
        dest_modes = DESTINATION_SYNC_MODES.get(destination["destinationType"], ["overwrite", "append"])
        if not wanted:
            return [self._configured(s, {"name": s["name"], "syncMode": "full_refresh_overwrite"}) for s in catalog]
        out, seen = [], set()
        for conf in wanted:
            name = conf["name"]
            matches = [s for s in catalog if s["name"] == name]
            if len(matches) > 1:
                matches = [s for s in matches if s["namespace"] == conf.get("namespace")]
            if len(matches) != 1:
                raise ApiError(400, f"No streams found with name [{name}] and namespace [{conf.get('namespace')}]. "
                                    "Please call the https://reference.airbyte.com/reference/getstreamproperties "
                                    "endpoint to see the valid stream name and namespace combinations.")
            stream = matches[0]
            self._validate_stream(conf, stream, dest_modes)
            if (name, conf.get("namespace")) in seen:
                raise ApiError(400, f"Duplicate stream found in configuration for stream name [{name}] in namespace "
                                    f"[{conf.get('namespace')}].")
            seen.add((name, conf.get("namespace")))
            out.append(self._configured(stream, conf))
        return out

    @staticmethod
    def _fields(stream: dict[str, Any]) -> list[list[str]]:
        return [[c] for c in stream["jsonSchema"]["properties"]]

    def _validate_stream(self, conf: dict[str, Any], stream: dict[str, Any], dest_modes: list[str]) -> None:
        """AirbyteCatalogHelper.validateStreamConfig, validateCursorField, validatePrimaryKey."""
        mode = conf.get("syncMode")
        if mode in (None, "full_refresh_overwrite"):
            return
        valid = {COMBINED_SYNC_MODES[(s, d)] for s in stream["supportedSyncModes"] for d in dest_modes
                 if (s, d) in COMBINED_SYNC_MODES}
        if mode not in valid:
            raise ApiError(400, f"Cannot set sync mode to {mode} for stream {conf['name']}. Valid sync modes are: "
                                f"{sorted(valid)}")
        if mode in {"incremental_append", "incremental_deduped_history"}:
            cursor = conf.get("cursorField")
            if stream["sourceDefinedCursor"]:
                if cursor and set(cursor) != set(stream["defaultCursorField"]):
                    raise ApiError(400, f"Cursor Field {cursor} is already defined by source for stream: "
                                        f"{stream['name']}. Do not include a cursor field configuration for this stream.")
            elif cursor:
                if cursor not in self._fields(stream):
                    raise ApiError(400, f"Invalid cursor field for stream: {stream['name']}. The list of valid cursor "
                                        f"fields include: {self._fields(stream)}.")
            elif not stream["defaultCursorField"]:
                raise ApiError(400, f"No default cursor field for stream: {stream['name']}. Please include a cursor "
                                    "field configuration for this stream.")
        if mode in {"incremental_deduped_history", "full_refresh_update", "incremental_update"}:
            pk = conf.get("primaryKey")
            source_pk = stream["sourceDefinedPrimaryKey"]
            if source_pk and pk and source_pk != pk:
                raise ApiError(400, f"Primary key for stream: {stream['name']} is already pre-defined. Please remove "
                                    f"the primaryKey or provide the value as {source_pk}.")
            if not source_pk and not pk:
                raise ApiError(400, f"No default primary key for stream: {stream['name']}. Please include a primary "
                                    "key configuration for this stream.")
            for key in pk or []:
                if key not in self._fields(stream):
                    raise ApiError(400, f"Invalid primary key for stream: {stream['name']}. The list of valid primary "
                                        f"keys fields: {self._fields(stream)}.")

    @staticmethod
    def _configured(stream: dict[str, Any], conf: dict[str, Any]) -> dict[str, Any]:
        """toAirbyteStreamConfiguration, read back through ConnectionReadMapper."""
        mode = conf.get("syncMode") or "full_refresh_overwrite"
        incremental = mode.startswith("incremental")
        if incremental and stream["sourceDefinedCursor"]:
            cursor = stream["defaultCursorField"]
        elif incremental:
            cursor = conf.get("cursorField") or stream["defaultCursorField"]
        else:
            cursor = stream["defaultCursorField"]
        keyed = mode not in {"full_refresh_overwrite", "full_refresh_append"}
        pk = (stream["sourceDefinedPrimaryKey"] or conf.get("primaryKey") or []) if keyed else stream["sourceDefinedPrimaryKey"]
        return {"name": stream["name"], "namespace": stream["namespace"], "syncMode": mode,
                "cursorField": list(cursor), "primaryKey": [list(k) for k in pk], "mappers": []}

    def _connection_view(self, connection: dict[str, Any]) -> dict[str, Any]:
        return {k: copy.deepcopy(v) for k, v in connection.items() if not k.startswith("_")}

    def _route_connections(self, method: str, item: str | None, query: dict[str, list[str]], data: Any) -> tuple[int, Any]:
        if item is None:
            if method == "GET":
                include_deleted = self._flag(query, "includeDeleted")
                items = [self._connection_view(c) for c in self.connections.values()
                         if self._in_workspaces(c, query) and (include_deleted or c["status"] != "deprecated")]
                return 200, self._page("connections", items, query)
            if method == "POST":
                return 200, self._connection_view(self._create_connection(data))
            raise ApiError(405, f"{method} not allowed on /connections")
        if item not in self.connections:
            raise ApiError(404, f"connection {item} not found")
        current = self.connections[item]
        if method == "GET":
            return 200, self._connection_view(current)
        if method == "PATCH":
            if not isinstance(data, dict):
                raise ApiError(422, "The body of the request was not understood")
            self._check_connection_fields(data)
            if current["status"] == "locked":
                raise ApiError(409, f"Connection {item} is locked")
            updated = copy.deepcopy(current)
            for key in ("name", "namespaceDefinition", "namespaceFormat", "nonBreakingSchemaUpdatesBehavior",
                        "prefix", "status", "dataResidency", "tags"):
                if data.get(key) is not None:
                    updated[key] = data[key]
            streams = (data.get("configurations") or {}).get("streams")
            if streams:
                updated["configurations"] = {"streams": self._configure_streams(
                    self.sources[current["sourceId"]], self.destinations[current["destinationId"]], streams)}
            if data.get("schedule") is not None:
                updated["schedule"] = self._schedule(data["schedule"])
            self._touch(self.connections, item, updated)
            return 200, self._connection_view(updated)
        if method == "DELETE":
            if current["status"] != "deprecated":
                self._touch(self.connections, item, current | {"status": "deprecated"})
            return 204, None
        raise ApiError(405, f"{method} not allowed on /connections/{{id}}")

    def _create_connection(self, data: Any) -> dict[str, Any]:
        self._require(data, "sourceId", "destinationId")
        self._check_connection_fields(data)
        destination = self.destinations.get(data["destinationId"])
        if destination is None or destination.get("_tombstone"):
            raise ApiError(404, f"destination {data['destinationId']} not found")
        source = self.sources.get(data["sourceId"])
        if source is None or source.get("_tombstone"):
            raise ApiError(404, f"source {data['sourceId']} not found")
        streams = self._configure_streams(source, destination, (data.get("configurations") or {}).get("streams"))
        connection = {
            "connectionId": str(uuid.uuid4()),
            "name": data.get("name") or f"{source['name']} \u2192 {destination['name']}",
            "sourceId": source["sourceId"],
            "destinationId": destination["destinationId"],
            "workspaceId": destination["workspaceId"],
            "status": data.get("status") or "active",
            "schedule": self._schedule(data.get("schedule")),
            "configurations": {"streams": streams},
            "namespaceDefinition": data.get("namespaceDefinition") or "destination",
            "namespaceFormat": data.get("namespaceFormat") or "${SOURCE_NAMESPACE}",
            "nonBreakingSchemaUpdatesBehavior": data.get("nonBreakingSchemaUpdatesBehavior") or "ignore",
            "prefix": data.get("prefix") or "",
            "dataResidency": data.get("dataResidency") or "auto",
            "tags": data.get("tags") or [],
            "createdAt": int(time.time()),
        }
        self.connections[connection["connectionId"]] = connection
        return connection

    # -- jobs ------------------------------------------------------------------------------------

    def _job_view(self, job: dict[str, Any]) -> dict[str, Any]:
        if job["status"] not in FINAL_JOB_STATUSES and time.monotonic() - job["_started"] >= self.job_seconds:
            job.update(status=self.job_result, lastUpdatedAt=now_iso(), duration="PT1S",
                       rowsSynced=0, bytesSynced=0)
        return {k: v for k, v in job.items() if not k.startswith("_")}

    def _route_jobs(self, method: str, item: str | None, query: dict[str, list[str]], data: Any) -> tuple[int, Any]:
        if item is None:
            if method == "GET":
                jobs = [self._job_view(j) for j in self.jobs.values()]
                if "connectionId" in query:
                    jobs = [j for j in jobs if j["connectionId"] == query["connectionId"][0]]
                if "jobType" in query:
                    jobs = [j for j in jobs if j["jobType"] == query["jobType"][0]]
                if "status" in query:
                    jobs = [j for j in jobs if j["status"] == query["status"][0]]
                wanted = [w for value in query.get("workspaceIds", []) for w in value.split(",") if w]
                if wanted:
                    jobs = [j for j in jobs
                            if self.connections.get(j["connectionId"], {}).get("workspaceId") in wanted]
                if query.get("orderBy", ["createdAt|DESC"])[0].endswith("DESC"):
                    jobs.reverse()
                return 200, self._page("jobs", jobs, query)
            if method == "POST":
                self._require(data, "connectionId", "jobType")
                self._check_enum(data["jobType"], JOB_TYPES, "jobType")
                if data["connectionId"] not in self.connections:
                    raise ApiError(404, f"connection {data['connectionId']} not found")
                if any(j["connectionId"] == data["connectionId"] and j["status"] not in FINAL_JOB_STATUSES
                       and time.monotonic() - j["_started"] < self.job_seconds for j in self.jobs.values()):
                    # Airbyte refuses a second sync while one runs for the same connection.
                    raise ApiError(409, "a sync is already running for this connection")
                job_id = self._next_job_id
                self._next_job_id += 1
                self.jobs[job_id] = {
                    "jobId": job_id, "status": "running", "jobType": data["jobType"],
                    "connectionId": data["connectionId"], "startTime": now_iso(), "lastUpdatedAt": now_iso(),
                    "_started": time.monotonic(),
                }
                return 200, {k: v for k, v in self.jobs[job_id].items() if not k.startswith("_")}
            raise ApiError(405, f"{method} not allowed on /jobs")
        try:
            job_id = int(item)
        except ValueError as exc:
            raise ApiError(400, f"job id must be an integer: {item}") from exc
        if job_id not in self.jobs:
            raise ApiError(404, f"job {job_id} not found")
        job = self.jobs[job_id]
        if method == "GET":
            return 200, self._job_view(job)
        if method == "DELETE":
            if job["status"] not in FINAL_JOB_STATUSES:
                job.update(status="cancelled", lastUpdatedAt=now_iso())
            return 200, self._job_view(job)
        raise ApiError(405, f"{method} not allowed on /jobs/{{id}}")



def problem(status: int, detail: str) -> dict[str, Any]:
    title = HTTPStatus(status).phrase if status in HTTPStatus._value2member_map_ else "Error"
    return {"type": f"https://reference.airbyte.com/reference/errors#{status}", "title": title,
            "status": status, "detail": detail}


def omit_absent(value: Any, key: str | None = None) -> Any:
    """``value`` as the server's Jackson writes it with ``NON_ABSENT``: object fields whose value is
    null left out, at any depth, except inside a ``configuration`` (a JSON tree, written whole)."""
    if key == "configuration":
        return value
    if isinstance(value, dict):
        return {k: omit_absent(v, k) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [omit_absent(v) for v in value]
    return value


class _Handler(BaseHTTPRequestHandler):
    owner: AirbyteFake
    protocol_version = "HTTP/1.1"
    # Headers and body go out in two writes; with Nagle's algorithm each keep-alive call would wait
    # for a delayed ACK (about 40 ms).
    disable_nagle_algorithm = True

    def log_message(self, format: str, *args: Any) -> None:
        pass  # Requests are recorded in AirbyteFake.calls; stderr noise would hide test output.

    def _serve(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        status, payload = self.owner.handle(self.command, self.path, self.headers, body)
        if status == 204 or payload is None:
            raw, ctype = b"", None
        elif isinstance(payload, str):
            raw, ctype = payload.encode(), "text/plain"
        else:
            raw = json.dumps(omit_absent(payload)).encode()
            ctype = "application/problem+json" if status >= 400 else "application/json"
        self.send_response(status)
        if ctype:
            self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        if raw:
            self.wfile.write(raw)

    do_GET = do_POST = do_PATCH = do_PUT = do_DELETE = _serve
