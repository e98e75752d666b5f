"""The Airbyte fake: a stateful stand-in for Airbyte's public API v1, serving real HTTP on loopback.

No Airbyte server can run here (it is a Java platform shipped as container images), so the operator
tests talk to this fake through the real ``airbyte-api`` SDK. It implements the subset of the public
API that the SDK (1.0.1) calls for, with the same paths, field names and status codes:

- ``POST /api/public/v1/applications/token``: client-credentials grant (form or JSON body) ->
  ``{"access_token", "token_type": "Bearer", "expires_in"}``; every other call needs that bearer
  token, or answers 401.
- ``GET /health``.
- ``GET /workspaces``, ``GET /workspaces/{id}`` (one workspace exists from the start).
- ``/sources`` and ``/destinations``: ``POST`` (create, 200 with the resource), ``GET`` (list, with
  ``workspaceIds``, ``includeDeleted``, ``limit``, ``offset``), ``GET|PATCH|PUT|DELETE /{id}``
  (DELETE answers 204).
- ``/connections``: the same verbs except PUT.
- ``/jobs``: ``POST`` (create), ``GET`` (list, with ``connectionId``, ``workspaceIds``, ``jobType``,
  ``status``, ``limit``, ``offset``), ``GET /{id}``, ``DELETE /{id}`` (cancel, 200 with the job).

Behaviour copied from Airbyte:

- Configurations are stored as sent. GET and list responses mask secret fields (``password``,
  ``secret_access_key``, ``access_key_id`` and any key containing ``secret``, ``password`` or
  ``token``) as ``**********``. A masked value sent back in PATCH/PUT keeps the stored secret.
- PATCH merges ``configuration`` into the stored one; PUT replaces it.
- Unknown ids answer 404, bodies missing required fields 422, unknown enum values 400; errors are
  ``application/problem+json`` documents.
- Deleting a source or destination marks its connections ``deprecated``; they are then left out
  of lists unless ``includeDeleted=true``.
- A job starts ``running`` and reads as ``job_result`` (default ``succeeded``) once it is older
  than ``job_seconds``.

Not emulated: connector checks, schema discovery and catalogs (streams are stored as sent, not
checked against a discovered schema), real syncs (no data moves), OAuth flows, definitions,
organizations, permissions, tags endpoints, secret persistence (``secretId``), rate limits.

Test controls: ``fail_next(n, status)`` makes the next n calls (token call included) answer
``status``; ``down = True`` makes every call answer 503; ``writes`` records ``(method, path)`` of
every POST/PATCH/PUT/DELETE except the token call, with ``path`` relative to ``server_url``.
"""

from __future__ import annotations

import copy
import datetime
import json
import threading
import time
import urllib.parse
import uuid
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

API_PREFIX = "/api/public/v1"
MASK = "**********"
TOKEN_TTL_SECONDS = 180  # Airbyte's application tokens last 3 minutes.
EXPLICIT_SECRET_KEYS = {"password", "secret_access_key", "access_key_id"}
SECRET_KEY_PARTS = ("secret", "password", "token")

SYNC_MODES = {
    "full_refresh_overwrite", "full_refresh_overwrite_deduped", "full_refresh_append", "full_refresh_update",
    "full_refresh_soft_delete", "incremental_append", "incremental_deduped_history", "incremental_update",
    "incremental_soft_delete",
}
SCHEDULE_TYPES = {"manual", "cron"}
CONNECTION_STATUSES = {"active", "inactive", "deprecated", "locked"}
NAMESPACE_DEFINITIONS = {"source", "destination", "custom_format"}
NON_BREAKING_BEHAVIOURS = {"ignore", "disable_connection", "propagate_columns", "propagate_fully"}
JOB_TYPES = {"sync", "reset", "refresh", "clear"}
JOB_STATUSES = {"pending", "queued", "running", "incomplete", "failed", "succeeded", "cancelled"}
FINAL_JOB_STATUSES = {"incomplete", "failed", "succeeded", "cancelled"}


def is_secret_key(key: str) -> bool:
    lowered = key.lower()
    return lowered in EXPLICIT_SECRET_KEYS or any(part in lowered for part in SECRET_KEY_PARTS)


def mask_secrets(value: Any) -> Any:
    """Return a copy of ``value`` with every secret field masked, as Airbyte's GET responses do."""
    if isinstance(value, dict):
        return {
            k: MASK if is_secret_key(k) and isinstance(v, (str, int, float)) and v != "" else mask_secrets(v)
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [mask_secrets(v) for v in value]
    return value


def keep_masked_secrets(new: Any, old: Any) -> Any:
    """Replace masked placeholders in ``new`` with the stored secret from ``old``."""
    if isinstance(new, dict):
        old = old if isinstance(old, dict) else {}
        return {
            k: old[k] if v == MASK and is_secret_key(k) and k in old else keep_masked_secrets(v, old.get(k))
            for k, v in new.items()
        }
    return new


def merge(base: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    result = copy.deepcopy(base)
    for key, value in patch.items():
        if isinstance(value, dict) and isinstance(result.get(key), dict):
            result[key] = merge(result[key], value)
        else:
            result[key] = copy.deepcopy(value)
    return result


def now_iso() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class ApiError(Exception):
    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail


class AirbyteFake:
    """The Airbyte fake: Airbyte's public API v1 (the SDK's subset) on a loopback port, state in memory."""

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
        self.sources: dict[str, dict[str, Any]] = {}
        self.destinations: dict[str, dict[str, Any]] = {}
        self.connections: dict[str, dict[str, Any]] = {}
        self.jobs: dict[int, dict[str, Any]] = {}
        self.writes: list[tuple[str, str]] = []
        #: Every request as (method, path relative to server_url, status answered), token call included.
        self.calls: list[tuple[str, str, int]] = []
        self.tokens: set[str] = set()
        self.down = False
        #: Status a job reports once it is older than ``job_seconds``.
        self.job_result = "succeeded"
        self.job_seconds = 0.0
        self._failures: list[int] = []
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

    # -- request dispatch -------------------------------------------------------------------------

    def handle(self, method: str, raw_path: str, headers: Any, body: bytes) -> tuple[int, Any]:
        parsed = urllib.parse.urlsplit(raw_path)
        path = parsed.path
        query = urllib.parse.parse_qs(parsed.query)
        rel = path[len(API_PREFIX):] if path.startswith(API_PREFIX) else path
        with self._lock:
            status, payload = self._dispatch(method, path, rel, query, headers, body)
            self.calls.append((method, rel, status))
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
        try:
            if is_token:
                return self._token(headers, body)
            if path == "/health" or rel == "/health":
                return 200, "Successful operation"
            if not path.startswith(API_PREFIX):
                raise ApiError(404, f"no route for {path}")
            auth = headers.get("Authorization", "")
            if not auth.startswith("Bearer ") or auth[len("Bearer "):] not in self.tokens:
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
            return 401, problem(401, "invalid client credentials")
        token = uuid.uuid4().hex
        self.tokens.add(token)
        return 200, {"access_token": token, "token_type": "Bearer", "expires_in": TOKEN_TTL_SECONDS}

    # -- helpers --------------------------------------------------------------------------------

    @staticmethod
    def _require(data: Any, *fields: str) -> None:
        if not isinstance(data, dict):
            raise ApiError(422, "the request body must be a JSON object")
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

    def _page(self, collection: str, items: list[dict[str, Any]], query: dict[str, list[str]]) -> dict[str, Any]:
        try:
            limit = int(query.get("limit", ["20"])[0])
            offset = int(query.get("offset", ["0"])[0])
        except ValueError as exc:
            raise ApiError(400, f"limit/offset must be integers: {exc}") from exc
        if not 1 <= limit <= 100 or offset < 0:
            raise ApiError(400, "limit must be within 1..100 and offset >= 0")
        page: dict[str, Any] = {"data": items[offset:offset + limit]}

        def link(new_offset: int) -> str:
            params = [(k, v) for k, vs in query.items() if k not in {"limit", "offset"} for v in vs]
            params += [("limit", str(limit)), ("offset", str(new_offset))]
            return f"{self.server_url}/{collection}?{urllib.parse.urlencode(params)}"

        if offset + limit < len(items):
            page["next"] = link(offset + limit)
        if offset > 0:
            page["previous"] = link(max(0, offset - limit))
        return page

    @staticmethod
    def _in_workspaces(resource: dict[str, Any], query: dict[str, list[str]]) -> bool:
        wanted = [w for value in query.get("workspaceIds", []) for w in value.split(",") if w]
        return not wanted or resource["workspaceId"] in wanted

    @staticmethod
    def _flag(query: dict[str, list[str]], name: str) -> bool:
        return query.get(name, ["false"])[0].lower() == "true"

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

    def _actors(self, kind: str, store: dict[str, dict[str, Any]], method: str, item: str | None,
                query: dict[str, list[str]], data: Any) -> tuple[int, Any]:
        collection = f"{kind}s"
        if item is None:
            if method == "GET":
                items = [mask_secrets(r) for r in store.values() if self._in_workspaces(r, query)]
                return 200, self._page(collection, items, query)
            if method == "POST":
                return 200, mask_secrets(self._create_actor(kind, store, data))
            raise ApiError(405, f"{method} not allowed on /{collection}")
        if item not in store:
            raise ApiError(404, f"{kind} {item} not found")
        current = store[item]
        if method == "GET":
            return 200, mask_secrets(current)
        if method in {"PATCH", "PUT"}:
            if method == "PUT":
                self._require(data, "name", "configuration")
            if not isinstance(data, dict):
                raise ApiError(422, "the request body must be a JSON object")
            updated = copy.deepcopy(current)
            if "name" in data and data["name"] is not None:
                updated["name"] = data["name"]
            config = data.get("configuration")
            if config is not None:
                if not isinstance(config, dict):
                    raise ApiError(422, "configuration must be an object")
                config = keep_masked_secrets(config, current["configuration"])
                updated["configuration"] = config if method == "PUT" else merge(current["configuration"], config)
                type_key = f"{kind}Type"
                updated[type_key] = updated["configuration"].get(type_key, current[type_key])
            if data.get("resourceAllocation") is not None:
                updated["resourceAllocation"] = data["resourceAllocation"]
            store[item] = updated
            return 200, mask_secrets(updated)
        if method == "DELETE":
            del store[item]
            for conn in self.connections.values():
                if conn[f"{kind}Id"] == item:
                    conn["status"] = "deprecated"
            return 204, None
        raise ApiError(405, f"{method} not allowed on /{collection}/{{id}}")

    def _create_actor(self, kind: str, store: dict[str, dict[str, Any]], data: Any) -> dict[str, Any]:
        self._require(data, "name", "workspaceId", "configuration")
        if not isinstance(data["configuration"], dict):
            raise ApiError(422, "configuration must be an object")
        self._workspace(data["workspaceId"])
        type_key = f"{kind}Type"
        actor_type = data["configuration"].get(type_key)
        if not actor_type and not data.get("definitionId"):
            raise ApiError(422, f"configuration.{type_key} or definitionId is required")
        actor_type = actor_type or "custom"
        resource = {
            f"{kind}Id": str(uuid.uuid4()),
            "name": data["name"],
            f"{kind}Type": actor_type,
            "definitionId": data.get("definitionId") or str(uuid.uuid5(uuid.NAMESPACE_URL, f"airbyte:{kind}:{actor_type}")),
            "workspaceId": data["workspaceId"],
            "configuration": copy.deepcopy(data["configuration"]),
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
            if schedule["scheduleType"] == "cron":
                self._require(schedule, "cronExpression")
        configurations = data.get("configurations")
        if configurations is not None:
            for stream in configurations.get("streams") or []:
                self._require(stream, "name")
                self._check_enum(stream.get("syncMode"), SYNC_MODES, f"streams[{stream['name']}].syncMode")

    @staticmethod
    def _schedule(schedule: dict[str, Any] | None) -> dict[str, Any]:
        if not schedule or schedule.get("scheduleType") == "manual":
            return {"scheduleType": "manual"}
        return {"scheduleType": "cron", "cronExpression": schedule["cronExpression"]}

    def _route_connections(self, method: str, item: str | None, query: dict[str, list[str]], data: Any) -> tuple[int, Any]:
        if item is None:
            if method == "GET":
                include_deleted = self._flag(query, "includeDeleted")
                items = [copy.deepcopy(c) for c in self.connections.values()
                         if self._in_workspaces(c, query) and (include_deleted or c["status"] != "deprecated")]
                return 200, self._page("connections", items, query)
            if method == "POST":
                return 200, copy.deepcopy(self._create_connection(data))
            raise ApiError(405, f"{method} not allowed on /connections")
        if item not in self.connections:
            raise ApiError(404, f"connection {item} not found")
        current = self.connections[item]
        if method == "GET":
            return 200, copy.deepcopy(current)
        if method == "PATCH":
            if not isinstance(data, dict):
                raise ApiError(422, "the request body must be a JSON object")
            self._check_connection_fields(data)
            updated = copy.deepcopy(current)
            for key in ("name", "namespaceDefinition", "namespaceFormat", "nonBreakingSchemaUpdatesBehavior",
                        "prefix", "status", "dataResidency", "tags"):
                if data.get(key) is not None:
                    updated[key] = data[key]
            if data.get("configurations") is not None:
                updated["configurations"] = {"streams": data["configurations"].get("streams") or []}
            if data.get("schedule") is not None:
                updated["schedule"] = self._schedule(data["schedule"])
            self.connections[item] = updated
            return 200, copy.deepcopy(updated)
        if method == "DELETE":
            del self.connections[item]
            return 204, None
        raise ApiError(405, f"{method} not allowed on /connections/{{id}}")

    def _create_connection(self, data: Any) -> dict[str, Any]:
        self._require(data, "sourceId", "destinationId")
        self._check_connection_fields(data)
        source = self.sources.get(data["sourceId"])
        if source is None:
            raise ApiError(404, f"source {data['sourceId']} not found")
        destination = self.destinations.get(data["destinationId"])
        if destination is None:
            raise ApiError(404, f"destination {data['destinationId']} not found")
        connection = {
            "connectionId": str(uuid.uuid4()),
            "name": data.get("name") or f"{source['name']} \u2192 {destination['name']}",
            "sourceId": source["sourceId"],
            "destinationId": destination["destinationId"],
            "workspaceId": source["workspaceId"],
            "status": data.get("status") or "active",
            "schedule": self._schedule(data.get("schedule")),
            "configurations": {"streams": (data.get("configurations") or {}).get("streams") or []},
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
            raw = json.dumps(payload).encode()
            ctype = "application/problem+json" if status >= 400 else "application/json"
        self.send_response(status)
        if ctype:
            self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        if raw:
            self.wfile.write(raw)

    do_GET = do_POST = do_PATCH = do_PUT = do_DELETE = _serve
