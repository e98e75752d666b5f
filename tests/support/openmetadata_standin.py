"""The OpenMetadata stand-in: a recording imitation of OpenMetadata's REST API (``/api/v1``).

No OpenMetadata server can run here (a Java server plus a search engine, shipped as images), so the
governance tests point the real ingestion framework (``metadata ingest``, openmetadata-ingestion
1.13.1.1, the client of the 1.13.1 server the chart deploys) at this stand-in. It stores entities by fully qualified name, keeps every request (with
secrets redacted) and answers the way the server does, so a test can assert on what a real server
would have received and what a user would then see.

Written from the ``open-metadata/OpenMetadata`` repository (files and the commits read):

- ``openmetadata-service/.../resources/databases/TableResource.java`` @ 008226a92facfedc071566117b33fbcc937d2277
  and ``resources/EntityResource.java`` @ 01450e133c4d6f1ed18b6395a8c5c8594691c2b7: the collection
  routes (``GET /{id}``, ``GET /name/{fqn}``, ``GET ?<parent>=&limit=&after=`` -> ``{data, paging}``,
  ``PUT`` create-or-update answering 201 on create and 200 on update, ``PATCH /{id}`` with JSON Patch,
  ``PUT /{id}/dataModel``); the version starts at 0.1 and a change adds 0.1.
- ``openmetadata-service/.../exception/CatalogExceptionMessage.java`` (``entityNotFound``): a missing
  entity is ``404 {"code": 404, "message": "<type> instance for <fqn> not found"}``.
- ``openmetadata-spec/.../utils/EntityInterfaceUtil.java`` (``quoteName``): a name holding a dot is
  quoted in its FQN (``svc."a.b"``); FQNs are the parent's FQN, a dot, the quoted name, except a
  dashboard data model's, ``<service>.model.<name>`` (the repository inserts ``model``; the
  client's ``fqn.build`` for ``DashboardDataModel`` builds the same).
- ``openmetadata-service/.../jdbi3/ListFilter.java`` @ ca6ca2e2bd3c4cc76131487cda13f91b7c1f51af
  (``getDatabaseSchemaCondition``, ``getTableNameRegexCondition``, ``getFqnRegexCondition``): the
  list filters ``databaseRegex``, ``databaseSchemaRegex``, ``tableRegex`` with ``regexMode`` and
  ``regexFilterByFqn``, which the profiler's table fetcher sends instead of filtering itself. The
  field a regex is matched on (``<param>RegexField``) is bound by the resource; the stored
  ``TableResource.java`` predates these filters, so the stand-in matches the parent's (or the
  table's own) name, which is what the profiler's fetcher (``DatabaseFetcherStrategy``) expects.
- ``openmetadata-service/.../resources/teams/UserResource.java`` @ 4cc1e7a47c40f15b064ec168facaa5ce6bfdb525
  (``loginUserWithPassword``): ``POST /users/login`` with ``{email, password}``, the password base64
  encoded (else 400), answers a ``JwtResponse`` ``{tokenType, accessToken, refreshToken,
  expiryDuration}``; ``GET /users/name/ingestion-bot?fields=authenticationMechanism`` carries the
  bot's JWT in ``authenticationMechanism.config.JWTToken``, readable by the admin only here.
- ``openmetadata-service/.../resources/system/SystemResource.java`` @ 0029309d0a405b4bd1190a59fc85b606f5fe3d13
  and the ``/system/version`` answer ``{version, revision, timestamp}``. The version is the server's
  release the chart deploys: ``open-metadata/openmetadata-helm-charts`` ``charts/openmetadata/Chart.yaml``
  @ 039a208f0b9f2c40f6ce68d87e1e39b1d0819a57 (tag openmetadata-1.13.1), ``appVersion: 1.13.1``.
  The client compares major.minor only and refuses anything else: ``ingestion/src/metadata/__version__.py``
  (``get_server_version_from_string`` keeps the leading major.minor.patch, ``match_versions``) and
  ``…/ingestion/ometa/mixins/server_mixin.py`` (``validate_versions`` raises ``VersionMismatchException``
  "Server version is 2.0.7 vs. Client version 1.13.1.1. Major and minor versions should match."),
  read in the openmetadata-ingestion 1.13.1.1 wheel from PyPI (the OpenMetadata repository itself is
  too large to fetch here). Moving from the 2.0.7 client changed nothing else the stand-in answers:
  the 1.13 differences the suite met are in the client (its bulk sink sends tables, data models and
  dashboards only after it has looked them up for foreign keys and lineage; its dbt source drops
  passing tests' results) and are handled in ``files/openmetadata/mysql.yaml``, ``superset.yaml``
  and ``retailflow_pipeline.governance``.
- ``openmetadata-service/src/main/resources/json/data/testConnections/database/mysql.json``
  @ bd89be67ca3327509de404b348ec4e0710e205f3, ``.../database/postgres.json`` @ 18ef684a9791c79e609e0e3799dfd60d1bc36b8b,
  ``.../dashboard/superset.json`` @ 1a80a12538dc107dddde6be1edad1a122b3820b6: the test-connection
  definitions served by ``/services/testConnectionDefinitions/name/<Type>.testConnectionDefinition``
  (copied step names, descriptions and ``mandatory`` flags; Airflow's follows the same file layout).
- ``openmetadata-spec/src/main/resources/json/schema/``: ``type/entityReference.json``
  (``{id, type, name, fullyQualifiedName}``), ``type/bulkOperationResult.json`` (the answer of
  ``PUT /<collection>/bulk``), ``type/entityLineage.json`` and ``api/lineage/addLineage.json``
  (``PUT /lineage`` with ``{edge: {fromEntity, toEntity, lineageDetails}}``; ``GET
  /lineage/getLineageEdge/{fromId}/{toId}`` is a 404 until the edge exists), ``entity/data/table.json``
  (columns carry ``fullyQualifiedName`` and a 1-based ``ordinalPosition`` given by the server).

Endpoints served (under ``/api/v1``): ``system/version``, ``system/settings/profilerConfiguration``,
``services/testConnectionDefinitions/name/…``, ``metadata/types/name/…``; for every collection of
``COLLECTIONS`` (database, dashboard and pipeline services, databases, schemas, tables, stored
procedures, charts, dashboards, dashboard data models, pipelines, classifications, tags, test
definitions, suites and cases, queries, users, teams): ``PUT`` create-or-update, ``PUT …/bulk``,
``GET ?<parent>=&limit=&after=&include=`` (and the regex filters above), ``GET /name/{fqn}``, ``GET|PATCH|DELETE /{id}``,
``DELETE …/deleteStale`` (soft-deletes what the connector did not see in the scope, as
``EntityResource.deleteStale`` does), ``PUT /tables/{id}/dataModel|tableProfile|tableProfilerConfig``;
``lineage`` (``PUT``, by id and by name, ``PATCH`` of an edge's details, ``getLineageEdge`` by id
and by name, the graph of an entity); ``search/fieldQuery`` and ``search/query``;
``dataQuality/testCases/testCaseResults/{fqn}``; ``pipelines/{fqn}/status`` (and ``/bulk``);
``services/ingestionPipelines/{fqn}/pipelineStatus``; ``usage/{entity}/{id}`` and
``usage/compute.percentile/…``. Test cases join their table's basic test suite, made on demand
(``TestCaseRepository``); dashboard data model columns get FQNs like table columns.

Quirks copied because the client depends on them: the client's response models forbid unknown
fields, so entities carry only fields of the entity schema; connection passwords come back masked
(``*********``, the server's ``PasswordEntityMasker``); the ingestion-pipeline status GET answers 204
when there is no status; ``/search/fieldQuery`` and ``/search/query`` answer in the search engine's
shape (only ``hits.hits[]._source`` is read) and treat ``*`` in the value as a wildcard, as the
search index does for dbt's lookups.

Not covered (answered 404 and listed in ``unhandled``): authentication (any bearer token is
accepted, except that only the admin's login token reads the bot's JWT), authorization, entity
versions history, soft-delete/restore, change events, the search engine's ranking and every
endpoint the RetailFlow workflows do not call.
"""

from __future__ import annotations

import base64
import copy
import fnmatch
import json
import re
import threading
import time
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

#: the OpenMetadata server the chart deploys (Chart.yaml `openmetadata` 1.13.1, appVersion 1.13.1)
SERVER_VERSION = "1.13.1"
PASSWORD_MASK = "*********"
_SECRET_KEY = re.compile(r"(?i)(password|secret|token|jwt|apikey|api_key|privatekey)")

#: collection path (under /api/v1) -> (entity type, parent field in the create request, parent collection)
COLLECTIONS: dict[str, tuple[str, str | None, str | None]] = {
    "services/databaseServices": ("databaseService", None, None),
    "services/dashboardServices": ("dashboardService", None, None),
    "services/pipelineServices": ("pipelineService", None, None),
    "services/ingestionPipelines": ("ingestionPipeline", "service", None),
    "databases": ("database", "service", "services/databaseServices"),
    "databaseSchemas": ("databaseSchema", "database", "databases"),
    "tables": ("table", "databaseSchema", "databaseSchemas"),
    "storedProcedures": ("storedProcedure", "databaseSchema", "databaseSchemas"),
    "charts": ("chart", "service", "services/dashboardServices"),
    "dashboards": ("dashboard", "service", "services/dashboardServices"),
    "dashboard/datamodels": ("dashboardDataModel", "service", "services/dashboardServices"),
    "pipelines": ("pipeline", "service", "services/pipelineServices"),
    "classifications": ("classification", None, None),
    "tags": ("tag", "classification", "classifications"),
    "dataQuality/testDefinitions": ("testDefinition", None, None),
    "dataQuality/testSuites": ("testSuite", None, None),
    "dataQuality/testCases": ("testCase", None, None),
    "queries": ("query", None, None),
    "users": ("user", None, None),
    "teams": ("team", None, None),
}
#: create-request fields holding FQN strings that the entity turns into references
_REFERENCE_LISTS = {"charts": "charts", "dataModels": "dashboardDataModels"}
_TEST_CONNECTION_STEPS = {
    "Mysql": [("CheckAccess", True), ("GetSchemas", True), ("GetTables", True), ("GetViews", False)],
    "Postgres": [("CheckAccess", True), ("GetDatabases", True), ("GetSchemas", True), ("GetTables", True),
                 ("GetViews", False), ("GetTags", False), ("GetQueries", False)],
    "Superset": [("CheckAccess", True), ("GetDashboards", True), ("GetCharts", True)],
    "Airflow": [("CheckAccess", True)],
}


def quote_name(name: str) -> str:
    """EntityInterfaceUtil.quoteName: names holding a dot are quoted inside an FQN."""
    return f'"{name}"' if "." in name and '"' not in name else name


def split_fqn(fqn: str) -> list[str]:
    parts, current, quoted = [], "", False
    for char in fqn:
        if char == '"':
            quoted = not quoted
        elif char == "." and not quoted:
            parts.append(current)
            current = ""
            continue
        current += char
    parts.append(current)
    return [p.strip('"') for p in parts]


def redact(value: Any) -> Any:
    """A copy of a request body with every secret-looking value replaced (never log bodies raw)."""
    if isinstance(value, dict):
        return {k: ("<redacted>" if _SECRET_KEY.search(k) and isinstance(v, str) and v else redact(v))
                for k, v in value.items()}
    if isinstance(value, list):
        return [redact(v) for v in value]
    return value


def _mask(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: (PASSWORD_MASK if re.search(r"(?i)password", k) and isinstance(v, str) else _mask(v))
                for k, v in value.items()}
    if isinstance(value, list):
        return [_mask(v) for v in value]
    return value


@dataclass
class Recorded:
    """One request as the server received it (body with secrets redacted)."""

    method: str
    path: str
    query: dict[str, list[str]]
    status: int
    body: Any = None


@dataclass
class OpenMetadataStandIn:
    """The OpenMetadata stand-in (see the module docstring); ``start()`` serves it on a free port
    (``with OpenMetadataStandIn() as standin:`` starts it, sets ``standin.url`` and stops it)."""

    version: str = SERVER_VERSION
    entities: dict[str, dict[str, dict]] = field(default_factory=dict)  # entity type -> FQN -> entity
    lineage: dict[tuple[str, str], dict] = field(default_factory=dict)  # (from id, to id) -> edge
    pipeline_statuses: dict[str, list[dict]] = field(default_factory=dict)  # pipeline FQN -> statuses
    test_case_results: dict[str, list[dict]] = field(default_factory=dict)  # test case FQN -> results
    usage: dict[str, list[dict]] = field(default_factory=dict)  # entity FQN -> daily counts
    requests: list[Recorded] = field(default_factory=list)
    unhandled: list[str] = field(default_factory=list)
    #: the basic-auth admin (``POST /users/login``) and the ingestion bot's JWT it may read
    admin_email: str = "admin@open-metadata.org"
    admin_password: str = field(default_factory=lambda: f"Stand-in-{uuid.uuid4().hex}!")
    bot_jwt: str = field(default_factory=lambda: f"stand-in.ingestion-bot.{uuid.uuid4().hex}")
    #: the API base (``http://127.0.0.1:<port>/api``) once started
    url: str = ""

    def __post_init__(self) -> None:
        self._lock = threading.RLock()
        self._by_id: dict[str, tuple[str, str]] = {}
        self._server: ThreadingHTTPServer | None = None
        self._admin_tokens: set[str] = set()
        self._bearer: str | None = None

    # ---- lifecycle -------------------------------------------------------------------------
    def start(self) -> str:
        standin = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *_args):  # bodies carry passwords: nothing is logged
                return

            def _serve(self):
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                status, payload = standin.handle(self.command, self.path, raw,
                                                 self.headers.get("Authorization", "").removeprefix("Bearer "))
                body = b"" if payload is None else json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_PUT = do_POST = do_PATCH = do_DELETE = _serve

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/api"
        return self.url

    def stop(self) -> None:
        if self._server:
            self._server.shutdown()
            self._server.server_close()

    def __enter__(self) -> OpenMetadataStandIn:
        self.start()
        return self

    def __exit__(self, *_exc) -> None:
        self.stop()

    # ---- what tests read ---------------------------------------------------------------------
    def of_type(self, entity_type: str) -> dict[str, dict]:
        return self.entities.get(entity_type, {})

    def by_id(self, entity_id: str) -> dict | None:
        where = self._by_id.get(entity_id)
        return self.entities[where[0]][where[1]] if where else None

    def lineage_edges(self) -> list[tuple[str, str]]:
        """Every lineage edge as (from FQN, to FQN)."""
        out = []
        for (src, dst) in self.lineage:
            a, b = self.by_id(src), self.by_id(dst)
            if a and b:
                out.append((a["fullyQualifiedName"], b["fullyQualifiedName"]))
        return out

    def counts(self) -> dict[str, int]:
        out = {etype: len(items) for etype, items in sorted(self.entities.items())}
        out["lineageEdges"] = len(self.lineage)
        out["requests"] = len(self.requests)
        return out

    # ---- dispatch ----------------------------------------------------------------------------
    def handle(self, method: str, raw_path: str, raw_body: bytes, bearer: str | None = None) -> tuple[int, Any]:
        parts = urlsplit(raw_path)
        path = parts.path
        query = parse_qs(parts.query)
        body: Any = None
        if raw_body:
            try:
                body = json.loads(raw_body)
            except ValueError:
                return self._record(method, path, query, None, 400, {"code": 400, "message": "Invalid JSON"})
        with self._lock:
            self._bearer = bearer
            try:
                status, payload = self._route(method, path.removeprefix("/api/v1/").rstrip("/"), query, body)
            except _Error as err:
                status, payload = err.status, {"code": err.status, "message": err.message}
        return self._record(method, path, query, body, status, payload)

    # ---- basic auth: the admin's login and the ingestion bot ---------------------------------
    def _login(self, body: dict) -> tuple[int, Any]:
        """UserResource.loginUserWithPassword: the password arrives base64-encoded; a JwtResponse."""
        try:
            password = base64.b64decode(body.get("password") or "", validate=True).decode()
        except ValueError:
            raise _Error(400, "Password needs to be encoded in Base-64.") from None
        if body.get("email") != self.admin_email or password != self.admin_password:
            raise _Error(401, "You have entered an invalid username or password.")
        token = f"stand-in.admin.{uuid.uuid4().hex}"
        self._admin_tokens.add(token)
        return 200, {"tokenType": "Bearer", "accessToken": token, "refreshToken": uuid.uuid4().hex,
                     "expiryDuration": int(time.time() * 1000) + 3_600_000}

    def _authorized(self, admin: bool) -> None:
        """Only the admin's login token may read a bot's JWT (any bearer token passes elsewhere)."""
        if admin and self._bearer not in self._admin_tokens:
            raise _Error(403, "Principal: CatalogPrincipal{name='ingestion-bot'} operations [ViewAll] not allowed")

    def _ingestion_bot(self) -> dict:
        """The ingestion bot's user with ``fields=authenticationMechanism`` (entity/teams/user.json)."""
        return {"id": str(uuid.uuid5(uuid.NAMESPACE_URL, "ingestion-bot")), "name": "ingestion-bot",
                "fullyQualifiedName": "ingestion-bot", "email": "ingestion-bot@open-metadata.org", "isBot": True,
                "version": 0.1, "deleted": False,
                "authenticationMechanism": {"authType": "JWT", "config": {"JWTToken": self.bot_jwt,
                                                                          "JWTTokenExpiry": "Unlimited"}}}

    def _record(self, method, path, query, body, status, payload):
        self.requests.append(Recorded(method, path, query, status, redact(body)))
        if status == 404 and isinstance(payload, dict) and payload.get("message", "").startswith("HTTP 404"):
            self.unhandled.append(f"{method} {path}")
        return status, payload

    def _route(self, method: str, path: str, query: dict, body: Any) -> tuple[int, Any]:
        if method == "GET" and path == "system/version":
            return 200, {"version": self.version, "revision": "stand-in", "timestamp": int(time.time() * 1000)}
        if method == "GET" and path == "system/settings/profilerConfiguration":
            # SystemResource.getSettingByName: a fresh server holds the profiler setting, with no metric override
            return 200, {"config_type": "profilerConfiguration", "config_value": {"metricConfiguration": []}}
        if method == "GET" and path.startswith("services/testConnectionDefinitions/name/"):
            name = unquote(path.rsplit("/", 1)[1]).removesuffix(".testConnectionDefinition")
            return self._test_connection_definition(name)
        match = re.fullmatch(r"metadata/types/name/([A-Za-z]+)", path)
        if match and method == "GET":  # TypeResource: every entity type exists, with no custom property here
            name = match.group(1)
            return 200, {"id": str(uuid.uuid5(uuid.NAMESPACE_URL, name)), "name": name, "fullyQualifiedName": name,
                         "description": f"`{name}` entity type", "nameSpace": "data", "category": "entity",
                         "schema": "{}", "customProperties": [], "version": 0.1}
        if method == "POST" and path == "users/login":
            return self._login(body or {})
        if method == "GET" and path == "users/name/ingestion-bot":
            self._authorized(admin=True)
            return 200, self._ingestion_bot()
        if path.startswith("search/"):
            return self._search(path, query)
        match = re.fullmatch(r"usage/([A-Za-z]+)/([0-9a-f-]{36})", path)
        if match and method in {"PUT", "POST"}:  # UsageResource: a daily count per entity
            entity = self._get_by_id(match.group(1), match.group(2))
            self.usage.setdefault(entity["fullyQualifiedName"], []).append(body)
            return 201, {"entity": self._ref(entity), "usage": [{"date": body.get("date"), "dailyStats": {"count": body.get("count", 0)}}]}
        if re.fullmatch(r"usage/compute\.percentile/[A-Za-z]+/[0-9-]+", path) and method == "POST":
            return 201, None
        if path.startswith("lineage"):
            return self._lineage(method, path, body, query)
        if path.startswith("services/ingestionPipelines/") and "pipelineStatus" in path:
            return self._ingestion_status(method, path, body)
        if path.startswith("dataQuality/testCases/testCaseResults/"):
            fqn = unquote(path.split("/", 3)[3])
            if method in {"PUT", "POST"}:
                self.test_case_results.setdefault(fqn, []).append(body)
                return 200, body
            return 200, {"data": self.test_case_results.get(fqn, []), "paging": {"total": len(self.test_case_results.get(fqn, []))}}
        match = re.fullmatch(r"pipelines/name/(.+)/status(/bulk)?", path) or re.fullmatch(r"pipelines/(.+)/status(/bulk)?", path)
        if match and method == "PUT":
            fqn = unquote(match.group(1))
            pipeline = self._get_by_fqn("pipeline", fqn)
            statuses = body if match.group(2) else [body]
            self.pipeline_statuses.setdefault(fqn, []).extend(statuses)
            pipeline["pipelineStatus"] = statuses[-1]
            return 200, pipeline
        for collection in sorted(COLLECTIONS, key=len, reverse=True):
            if path == collection or path.startswith(collection + "/"):
                return self._collection(method, collection, path[len(collection):].lstrip("/"), query, body)
        raise _Error(404, "HTTP 404 Not Found")

    # ---- entities ----------------------------------------------------------------------------
    def _collection(self, method, collection, rest, query, body):
        etype, parent_field, _ = COLLECTIONS[collection]
        if method == "PUT" and rest == "":
            return self._create_or_update(etype, collection, parent_field, body)
        if method == "PUT" and rest == "bulk":
            passed, failed = [], []
            for item in body:
                try:
                    self._create_or_update(etype, collection, parent_field, item)
                    passed.append({"request": item.get("name"), "status": 200})
                except _Error as err:
                    failed.append({"request": item.get("name"), "message": err.message, "status": err.status})
            return 200, {"dryRun": False, "status": "success" if not failed else "partialSuccess",
                         "numberOfRowsProcessed": len(body), "numberOfRowsPassed": len(passed),
                         "numberOfRowsFailed": len(failed), "successRequest": passed, "failedRequest": failed}
        if method == "GET" and rest == "":
            return 200, self._list(etype, query)
        if method == "GET" and rest.startswith("name/"):
            entity = self._get_by_fqn(etype, unquote(rest[5:]))
            if entity.get("deleted") and query.get("include", ["non-deleted"])[0] == "non-deleted":
                raise _Error(404, f"{etype} instance for {entity['fullyQualifiedName']} not found")
            return 200, self._view(entity)
        match = re.fullmatch(r"([0-9a-f-]{36})(/[A-Za-z]+)?", rest)
        if match:
            entity = self._get_by_id(etype, match.group(1))
            sub = (match.group(2) or "").lstrip("/")
            if method == "GET" and not sub:
                return 200, self._view(entity)
            if method == "PATCH" and not sub:
                patched = apply_json_patch(entity, body)
                patched["version"] = round(entity.get("version", 0.1) + 0.1, 1)
                self._store(etype, patched)
                return 200, self._view(patched)
            if method == "PUT" and sub in {"dataModel", "tableProfilerConfig", "customMetric"}:
                entity[sub] = body
                return 200, self._view(entity)
            if method == "PUT" and sub == "tableProfile":
                # CreateTableProfile: the table's profile, and one profile per column, which the
                # server keeps on the column (``columns[].profile`` in entity/data/table.json)
                entity["profile"] = body.get("tableProfile")
                by_name = {c["name"]: c for c in entity.get("columns", [])}
                for profile in body.get("columnProfile") or []:
                    if profile.get("name") in by_name:
                        by_name[profile["name"]]["profile"] = profile
                return 200, self._view(entity)
        if method == "DELETE" and rest == "deleteStale":
            return 200, self._delete_stale(etype, body)
        if method == "DELETE" and match:
            entity["deleted"] = True
            return 200, self._view(entity)
        raise _Error(404, "HTTP 404 Not Found")

    def _delete_stale(self, etype: str, request: dict) -> dict:
        """Soft-delete the in-scope entities the connector did not see this run (EntityResource.deleteStale)."""
        scope_type, scope_fqn = request["scopeEntityType"], request["scopeFqn"]
        seen = set(request.get("seenFqns") or [])
        stale = [e for e in self.entities.get(etype, {}).values()
                 if not e.get("deleted") and (e.get(scope_type) or {}).get("fullyQualifiedName") == scope_fqn
                 and e["fullyQualifiedName"] not in seen]
        for entity in stale:
            entity["deleted"] = True
        return {"dryRun": False, "status": "success", "numberOfRowsProcessed": len(stale),
                "numberOfRowsPassed": len(stale), "numberOfRowsFailed": 0,
                "successRequest": [{"request": e["fullyQualifiedName"], "status": 200} for e in stale],
                "failedRequest": []}

    def _create_or_update(self, etype, collection, parent_field, create):
        name = create["name"]
        parent_fqn = None
        entity = {k: copy.deepcopy(v) for k, v in create.items() if v is not None}
        if parent_field:
            ref_value = create.get(parent_field)
            if isinstance(ref_value, dict):  # ingestion pipelines name their service by reference
                parent_fqn = ref_value.get("fullyQualifiedName") or ref_value.get("name")
                parent_type = ref_value["type"]
            else:
                parent_fqn = ref_value
                parent_type = COLLECTIONS[COLLECTIONS[collection][2]][0]
            parent = self._get_by_fqn(parent_type, parent_fqn)
            entity[parent_field] = self._ref(parent)
            self._inherit(entity, parent)
        if etype == "tag":
            parent_fqn = create["classification"]
        if etype == "testCase":
            entity["entityLink"] = create["entityLink"]
            target = create["entityLink"].strip("<>").split("::")
            parent_fqn = target[2] if len(target) > 2 else None
            if len(target) > 4:
                parent_fqn = f"{parent_fqn}.{target[4]}"
            definition = self._get_by_fqn("testDefinition", create["testDefinition"])
            entity["testDefinition"] = self._ref(definition)
            # TestCaseRepository: a test case belongs to its table's basic test suite, made on demand.
            table = self._get_by_fqn("table", target[2])
            suite_fqn = f"{table['fullyQualifiedName']}.testSuite"
            if suite_fqn not in self.entities.get("testSuite", {}):
                self._create_or_update("testSuite", "dataQuality/testSuites", None,
                                       {"name": suite_fqn, "basicEntityReference": table["fullyQualifiedName"]})
            entity["testSuite"] = self._ref(self._get_by_fqn("testSuite", suite_fqn))
        fqn = f"{parent_fqn}.{quote_name(name)}" if parent_fqn else quote_name(name)
        if etype == "dashboardDataModel":  # DashboardDataModelRepository: <service>.model.<name>
            fqn = f"{parent_fqn}.model.{quote_name(name)}"
        if etype == "testSuite" and create.get("basicEntityReference"):
            fqn = f"{create['basicEntityReference']}.testSuite"
            entity.pop("basicEntityReference", None)
            entity["basic"] = True
            entity["basicEntityReference"] = self._ref(self._get_by_fqn("table", create["basicEntityReference"]))
        for key, target_type in _REFERENCE_LISTS.items():
            if key in entity and isinstance(entity[key], list):
                entity[key] = [self._ref(self._get_by_fqn(target_type.rstrip("s") if target_type != "dashboardDataModels" else "dashboardDataModel", ref))
                               for ref in entity[key]]
        if etype in {"table", "dashboardDataModel"}:  # ColumnUtil.setColumnFQN on both
            for position, column in enumerate(entity.get("columns", []), start=1):
                self._column_fqn(column, fqn)
                column.setdefault("ordinalPosition", position)
        if etype == "pipeline":
            for task in entity.get("tasks", []):
                task["fullyQualifiedName"] = f"{fqn}.{quote_name(task['name'])}"
        existing = self.entities.get(etype, {}).get(fqn)
        entity["fullyQualifiedName"] = fqn
        entity["id"] = existing["id"] if existing else str(uuid.uuid4())
        entity["version"] = round(existing["version"] + 0.1, 1) if existing else 0.1
        entity["updatedAt"] = int(time.time() * 1000)
        entity["updatedBy"] = "ingestion-bot"
        entity["deleted"] = False
        if existing:  # PUT keeps what the create request does not carry (dataModel, patches, ...)
            entity = {**existing, **entity}
        self._store(etype, entity)
        return (200 if existing else 201), self._view(entity)

    def _column_fqn(self, column: dict, parent: str) -> None:
        column["fullyQualifiedName"] = f"{parent}.{quote_name(column['name'])}"
        for child in column.get("children") or []:
            self._column_fqn(child, column["fullyQualifiedName"])

    def _inherit(self, entity: dict, parent: dict) -> None:
        """The server fills the service and database references and serviceType from the parent."""
        parent_type = self._by_id[parent["id"]][0]
        for key in ("service", "database"):
            if key in parent and key not in entity:
                entity[key] = parent[key]
        if parent_type == "database":
            entity["database"] = self._ref(parent)
        if parent.get("serviceType"):
            entity["serviceType"] = parent["serviceType"]

    def _store(self, etype: str, entity: dict) -> None:
        entity["href"] = f"http://openmetadata/api/v1/{etype}/{entity['id']}"
        self.entities.setdefault(etype, {})[entity["fullyQualifiedName"]] = entity
        self._by_id[entity["id"]] = (etype, entity["fullyQualifiedName"])

    def _ref(self, entity: dict) -> dict:
        etype, _ = self._by_id[entity["id"]]
        ref = {"id": entity["id"], "type": etype, "name": entity["name"],
               "fullyQualifiedName": entity["fullyQualifiedName"], "deleted": False}
        if entity.get("displayName"):
            ref["displayName"] = entity["displayName"]
        return ref

    def _view(self, entity: dict) -> dict:
        return _mask(copy.deepcopy(entity))

    def _get_by_fqn(self, etype: str, fqn: str) -> dict:
        found = self.entities.get(etype, {}).get(fqn)
        if found is None:
            raise _Error(404, f"{etype} instance for {fqn} not found")
        return found

    def _get_by_id(self, etype: str, entity_id: str) -> dict:
        where = self._by_id.get(entity_id)
        if not where or where[0] != etype:
            raise _Error(404, f"{etype} instance for {entity_id} not found")
        return self.entities[etype][where[1]]

    def _list(self, etype: str, query: dict) -> dict:
        items = list(self.entities.get(etype, {}).values())
        include = query.get("include", ["non-deleted"])[0]
        if include != "all":
            items = [e for e in items if bool(e.get("deleted")) == (include == "deleted")]
        for key in ("service", "database", "databaseSchema"):
            if key in query:
                wanted = query[key][0]
                items = [e for e in items if (e.get(key) or {}).get("fullyQualifiedName") == wanted]
        items = [e for e in items if self._regex_filters_pass(e, query)]
        limit = int(query.get("limit", ["10"])[0])
        start = int(query.get("after", ["0"])[0] or 0)
        page = items[start:start + limit]
        paging: dict[str, Any] = {"total": len(items)}
        if start + limit < len(items):  # the server sets `after` only when there is more
            paging["after"] = str(start + limit)
        return {"data": [self._view(e) for e in page], "paging": paging}

    @staticmethod
    def _regex_filters_pass(entity: dict, query: dict) -> bool:
        """ListFilter's regex conditions: ``databaseRegex``, ``databaseSchemaRegex`` and ``tableRegex``
        match the parent's / the entity's ``name`` (its ``fullyQualifiedName`` with
        ``regexFilterByFqn=true``) with PostgreSQL's ``~`` (a search, not a full match), negated by
        ``regexMode=exclude``; all given conditions must hold (ANDed)."""
        by_fqn = query.get("regexFilterByFqn", ["false"])[0].lower() == "true"
        exclude = query.get("regexMode", ["include"])[0].lower() == "exclude"
        field_name = "fullyQualifiedName" if by_fqn else "name"
        for param, of in (("databaseRegex", "database"), ("databaseSchemaRegex", "databaseSchema"),
                          ("tableRegex", None)):
            if not query.get(param, [""])[0]:
                continue
            value = (entity if of is None else (entity.get(of) or {})).get(field_name) or ""
            if bool(re.search(query[param][0], value)) == exclude:
                return False
        return True

    # ---- search ------------------------------------------------------------------------------
    def _search(self, path: str, query: dict) -> tuple[int, Any]:
        if path == "search/fieldQuery":
            field_name = query.get("fieldName", ["fullyQualifiedName"])[0]
            value = query.get("fieldValue", [""])[0]
        else:
            q = query.get("q", [""])[0]
            match = re.search(r'fullyQualifiedName:"?([^"\s)]+)"?', q) or re.search(r"(\S+)", q)
            field_name, value = "fullyQualifiedName", (match.group(1) if match else "*")
        index = query.get("index", [""])[0]
        wanted_types = {"table_search_index": {"table"}, "dashboard_search_index": {"dashboard"},
                        "chart_search_index": {"chart"}, "pipeline_search_index": {"pipeline"},
                        "dashboard_data_model_search_index": {"dashboardDataModel"}}.get(index)
        hits = []
        pattern = value.replace("\\", "")
        for etype, items in self.entities.items():
            if wanted_types and etype not in wanted_types:
                continue
            for entity in items.values():
                candidate = str(entity.get(field_name, ""))
                if fnmatch.fnmatchcase(candidate.lower(), pattern.lower()) or candidate == value:
                    hits.append({"_index": index or etype, "_id": entity["id"], "_source": self._view(entity)})
        return 200, {"hits": {"total": {"value": len(hits), "relation": "eq"}, "hits": hits}}

    # ---- lineage -----------------------------------------------------------------------------
    def _lineage(self, method: str, path: str, body: Any, query: dict) -> tuple[int, Any]:
        if method == "PUT" and path == "lineage":
            edge = body["edge"]
            src, dst = edge["fromEntity"]["id"], edge["toEntity"]["id"]
            if not self.by_id(src) or not self.by_id(dst):
                raise _Error(404, f"{edge['fromEntity']['type']} instance for {src} not found")
            self.lineage[(src, dst)] = {"fromEntity": src, "toEntity": dst, **({"lineageDetails": edge["lineageDetails"]} if edge.get("lineageDetails") else {})}
            return 200, None
        by_name = re.fullmatch(r"lineage/(getLineageEdge/)?([A-Za-z]+)/name/(.+?)/([A-Za-z]+)/name/(.+)", path)
        if by_name:  # the by-name variants (LineageResource.addLineageByName / getLineageEdgeByName)
            lookup, from_type, from_fqn, to_type, to_fqn = by_name.groups()
            src = self._get_by_fqn(from_type, unquote(from_fqn))["id"]
            dst = self._get_by_fqn(to_type, unquote(to_fqn))["id"]
            if method == "PUT" and not lookup:
                self.lineage[(src, dst)] = {"fromEntity": src, "toEntity": dst, **({"lineageDetails": body} if body else {})}
                return 200, None
            if method == "GET" and lookup:
                return self._edge(src, dst)
            if method == "PATCH" and not lookup:
                return self._patch_edge(src, dst, body)
        match = re.fullmatch(r"lineage/getLineageEdge/([0-9a-f-]{36})/([0-9a-f-]{36})", path)
        if match and method == "GET":
            return self._edge(match.group(1), match.group(2))
        match = re.fullmatch(r"lineage/([A-Za-z]+)/([0-9a-f-]{36})/([A-Za-z]+)/([0-9a-f-]{36})", path)
        if match and method == "PATCH":
            return self._patch_edge(match.group(2), match.group(4), body)
        match = re.fullmatch(r"lineage/([A-Za-z]+)/(name/)?(.+)", path)
        if match and method == "GET":
            etype, by_name, key = match.groups()
            entity = self._get_by_fqn(etype, unquote(key)) if by_name else self._get_by_id(etype, key)
            up = [e for e in self.lineage.values() if e["toEntity"] == entity["id"]]
            down = [e for e in self.lineage.values() if e["fromEntity"] == entity["id"]]
            nodes = {e["fromEntity"] for e in up} | {e["toEntity"] for e in down}
            return 200, {"entity": self._ref(entity), "nodes": [self._ref(self.by_id(n)) for n in nodes],
                         "upstreamEdges": up, "downstreamEdges": down}
        raise _Error(404, "HTTP 404 Not Found")

    def _patch_edge(self, src: str, dst: str, operations: list[dict]) -> tuple[int, Any]:
        """patchLineageEdge: JSON Patch on the edge's lineageDetails."""
        edge = self.lineage.get((src, dst))
        if not edge:
            raise _Error(404, f"lineage edge {src} -> {dst} not found")
        edge["lineageDetails"] = apply_json_patch(edge.get("lineageDetails", {}), operations)
        return 200, None

    def _edge(self, src: str, dst: str) -> tuple[int, Any]:
        edge = self.lineage.get((src, dst))
        if not edge:
            raise _Error(404, f"lineage edge {src} -> {dst} not found")
        return 200, {"edge": {"fromEntity": self._ref(self.by_id(src)), "toEntity": self._ref(self.by_id(dst)),
                              **({"lineageDetails": edge["lineageDetails"]} if "lineageDetails" in edge else {})}}

    # ---- ingestion pipelines -----------------------------------------------------------------
    def _ingestion_status(self, method: str, path: str, body: Any) -> tuple[int, Any]:
        fqn, _, run = path.removeprefix("services/ingestionPipelines/").partition("/pipelineStatus")
        fqn = unquote(fqn)
        self._get_by_fqn("ingestionPipeline", fqn)
        statuses = self.pipeline_statuses.setdefault(f"ingestionPipeline:{fqn}", [])
        if method == "PUT":
            statuses[:] = [s for s in statuses if s.get("runId") != body.get("runId")] + [body]
            return 200, None
        run_id = run.strip("/")
        found = [s for s in statuses if s.get("runId") == run_id]
        return (200, found[-1]) if found else (204, None)

    def _test_connection_definition(self, name: str) -> tuple[int, Any]:
        steps = _TEST_CONNECTION_STEPS.get(name)
        if steps is None:
            raise _Error(404, f"testConnectionDefinition instance for {name}.testConnectionDefinition not found")
        return 200, {"id": str(uuid.uuid5(uuid.NAMESPACE_DNS, name)), "name": name, "fullyQualifiedName": name,
                     "displayName": f"{name} Test Connection",
                     "steps": [{"name": s, "description": s, "mandatory": m} for s, m in steps]}


class _Error(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message


def apply_json_patch(document: dict, operations: list[dict]) -> dict:
    """RFC 6902 on a copy (add, remove, replace, test, move, copy), as the server's JsonPatch does."""
    doc = copy.deepcopy(document)

    def walk(path: str):
        tokens = [t.replace("~1", "/").replace("~0", "~") for t in path.lstrip("/").split("/")]
        parent = doc
        for token in tokens[:-1]:
            parent = parent[int(token)] if isinstance(parent, list) else parent.setdefault(token, {})
        return parent, tokens[-1]

    for op in operations:
        parent, key = walk(op["path"])
        kind = op["op"]
        if kind == "test":
            current = parent[int(key)] if isinstance(parent, list) else parent.get(key)
            if current != op["value"]:
                raise _Error(400, f"JSON patch test failed at {op['path']}")
        elif kind in {"add", "replace"}:
            if isinstance(parent, list):
                if key == "-":
                    parent.append(op["value"])
                elif kind == "add":
                    parent.insert(int(key), op["value"])
                else:
                    parent[int(key)] = op["value"]
            else:
                parent[key] = op["value"]
        elif kind == "remove":
            parent.pop(int(key) if isinstance(parent, list) else key)
        elif kind in {"move", "copy"}:
            src_parent, src_key = walk(op["from"])
            value = src_parent[int(src_key)] if isinstance(src_parent, list) else src_parent[src_key]
            if kind == "move":
                src_parent.pop(int(src_key) if isinstance(src_parent, list) else src_key)
            if isinstance(parent, list):
                parent.insert(len(parent) if key == "-" else int(key), copy.deepcopy(value))
            else:
                parent[key] = copy.deepcopy(value)
    return doc
