"""Thin client of Airbyte's public API v1: list/get/create/patch/delete, errors sorted into transient and permanent.

Request bodies are built with the official ``airbyte-api`` SDK's models (``airbyte_desired``), so field names
and enums are Airbyte's own. They are sent, and answers read, with plain ``httpx`` because the SDK
1.0.1 cannot parse what the real server answers: the server strips ``destinationType`` from every
destination's configuration, and the SDK then raises ``ResponseValidationError`` after the
destination was created (airbyte-api-python-sdk issue #88). Plain reads also skip the SDK's
validation of every listed resource against several hundred connector models (about 50 ms each).
Answers are parsed into ``Resource`` at this door; one that lacks its id or name is a ``PeerError``.
"""

from __future__ import annotations

import hashlib
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Mapping

import httpx
from airbyte_api import models

from .airbyte_desired import Actor, dump
from .errors import PeerError

PAGE = 100
#: Refresh a token this long before Airbyte says it expires.
TOKEN_MARGIN_S = 30.0
_tokens: dict[tuple[str, ...], tuple[str, float]] = {}
_clients: dict[tuple[str, ...], httpx.Client] = {}
_lock = threading.Lock()
KINDS = {"source": "sources", "destination": "destinations", "connection": "connections"}


@dataclass(frozen=True)
class Resource:
    """One Airbyte source, destination or connection as the server answered it."""

    kind: str
    id: str
    name: str
    body: Mapping[str, Any] = field(repr=False)

    @classmethod
    def parse(cls, kind: str, raw: Any, what: str) -> "Resource":
        if not isinstance(raw, Mapping):
            raise PeerError("Airbyte", f"{what}: the answer is not a JSON object", transient=False)
        rid, name = raw.get(f"{kind}Id"), raw.get("name")
        if not isinstance(rid, str) or not rid or not isinstance(name, str):
            raise PeerError("Airbyte", f"{what}: the answer has no {kind}Id or name", transient=False)
        return cls(kind, rid, name, raw)

    @property
    def configuration(self) -> Mapping[str, Any]:
        return self.body.get("configuration") or {}


class AirbyteClient:
    """Client-credentials token, then the public API; one ``httpx.Client`` per (Airbyte, credentials)."""

    def __init__(self, api_url: str, token_url: str | None, client_id: str, client_secret: str, timeout_s: float = 30):
        self.api_url = api_url.rstrip("/")
        # A relative token URL would be joined onto the host root, losing /api/public/v1.
        self.token_url = token_url or f"{self.api_url}/applications/token"
        self._credentials = {"grant_type": "client_credentials", "client_id": client_id, "client_secret": client_secret}
        self._key = (self.api_url, self.token_url, client_id, hashlib.sha256(client_secret.encode()).hexdigest())
        with _lock:
            if self._key not in _clients:
                _clients[self._key] = httpx.Client(follow_redirects=False, timeout=timeout_s)
            self.http = _clients[self._key]

    def __repr__(self) -> str:
        return f"AirbyteClient({self.api_url!r})"

    # ------------------------------------------------------------ transport

    def _token(self, refresh: bool = False) -> str:
        with _lock:
            cached = _tokens.get(self._key)
        if cached and not refresh and cached[1] > time.monotonic():
            return cached[0]
        try:
            res = self.http.post(self.token_url, data=self._credentials)
        except httpx.HTTPError as exc:
            raise PeerError("Airbyte", f"token: {exc.__class__.__name__}", transient=True) from None
        if res.status_code >= 300:
            transient = res.status_code >= 500 or res.status_code == 429
            hint = "" if transient else " (check the client id and secret in the Airbyte credentials Secret)"
            raise PeerError("Airbyte", f"token: HTTP {res.status_code}{hint}", transient, res.status_code)
        try:
            body = res.json()
            token = body["access_token"]
            ttl = float(body.get("expires_in") or 180)
        except (ValueError, KeyError, TypeError):
            raise PeerError("Airbyte", "token: the answer has no access_token", transient=False) from None
        if not isinstance(token, str) or not token:
            raise PeerError("Airbyte", "token: the answer has no access_token", transient=False)
        with _lock:
            _tokens[self._key] = (token, time.monotonic() + max(ttl - TOKEN_MARGIN_S, ttl / 2))
        return token

    def _request(self, method: str, path: str, what: str, *, missing_ok: bool = False, **kwargs: Any) -> Any:
        for attempt in range(2):
            headers = {"Authorization": f"Bearer {self._token(refresh=attempt > 0)}", "Accept": "application/json"}
            try:
                res = self.http.request(method, f"{self.api_url}{path}", headers=headers, **kwargs)
            except httpx.HTTPError as exc:
                raise PeerError("Airbyte", f"{what}: {exc.__class__.__name__}", transient=True) from None
            if res.status_code == 401 and attempt == 0:
                continue  # expired or revoked token: one fresh token is worth a try
            if res.status_code == 404 and missing_ok:
                return None
            if res.status_code >= 300:
                transient = res.status_code >= 500 or res.status_code == 429 or res.status_code == 409
                raise PeerError("Airbyte", f"{what}: HTTP {res.status_code}{_detail(res)}", transient, res.status_code)
            if res.status_code == 204 or not res.content:
                return None
            try:
                return res.json()
            except ValueError:
                raise PeerError("Airbyte", f"{what}: the answer is not JSON", transient=False) from None
        raise AssertionError("unreachable")

    # ------------------------------------------------------------ reads

    def list(self, kind: str, workspace_id: str) -> list[Resource]:
        """Every live resource of ``kind`` in the workspace, each id once.

        Airbyte pages by offset over an unordered query, so a write between two pages can show one
        resource twice (the later sighting wins) or hide one (callers confirm absence; see ``converge.Inventory``).
        """
        path = f"/{KINDS[kind]}"
        seen: dict[str, Resource] = {}
        offset = 0
        while True:
            page = self._request(
                "GET", path, f"list {KINDS[kind]}", params={"workspaceIds": workspace_id, "limit": PAGE, "offset": offset}
            )
            data = page.get("data") if isinstance(page, Mapping) else None
            if not isinstance(data, list):
                raise PeerError("Airbyte", f"list {KINDS[kind]}: the answer has no data list", transient=False)
            for raw in data:
                res = Resource.parse(kind, raw, f"list {KINDS[kind]}")
                seen.pop(res.id, None)
                seen[res.id] = res
            if len(data) < PAGE:
                return list(seen.values())
            offset += PAGE

    def get(self, kind: str, resource_id: str) -> Resource | None:
        raw = self._request("GET", f"/{KINDS[kind]}/{resource_id}", f"get {kind} {resource_id}", missing_ok=True)
        return None if raw is None else Resource.parse(kind, raw, f"get {kind} {resource_id}")

    # ------------------------------------------------------------ writes

    def create_actor(self, actor: Actor, workspace_id: str) -> Resource:
        model = models.SourceCreateRequest if actor.kind == "source" else models.DestinationCreateRequest
        body = dump(model(name=actor.name, workspace_id=workspace_id, configuration=actor.configuration))
        what = f"create {actor.kind} {actor.name}"
        return Resource.parse(actor.kind, self._request("POST", f"/{KINDS[actor.kind]}", what, json=body), what)

    def patch_actor(self, actor: Actor, actor_id: str) -> Resource:
        model = models.SourcePatchRequest if actor.kind == "source" else models.DestinationPatchRequest
        body = dump(model(name=actor.name, configuration=actor.configuration))
        what = f"patch {actor.kind} {actor.name}"
        raw = self._request("PATCH", f"/{KINDS[actor.kind]}/{actor_id}", what, json=body)
        return Resource.parse(actor.kind, raw, what)

    def delete(self, kind: str, resource_id: str) -> None:
        self._request("DELETE", f"/{KINDS[kind]}/{resource_id}", f"delete {kind} {resource_id}", missing_ok=True)

    def create_connection(self, req: models.ConnectionCreateRequest) -> Resource:
        what = f"create connection {req.name}"
        return Resource.parse("connection", self._request("POST", "/connections", what, json=dump(req)), what)

    def patch_connection(self, connection_id: str, req: models.ConnectionPatchRequest) -> Resource:
        what = f"patch connection {req.name}"
        raw = self._request("PATCH", f"/connections/{connection_id}", what, json=dump(req))
        return Resource.parse("connection", raw, what)


def _detail(res: httpx.Response) -> str:
    """Airbyte's problem ``detail`` (validation messages name fields, never values), at most 300 characters."""
    try:
        body = res.json()
    except ValueError:
        return ""
    detail = body.get("detail") if isinstance(body, Mapping) else None
    return f": {str(detail)[:300]}" if detail else ""


def warm_up() -> None:
    """Build the SDK's request models once, before the first pass needs them.

    The first use of a source/destination model builds validators for every connector the SDK
    knows (seconds); paying it at start keeps it off the first pipeline's path.
    """
    models.SourceCreateRequest(
        name="warm-up",
        workspace_id="-",
        configuration=models.SourceFile(
            dataset_name="d", url="https://localhost/x.csv", provider=models.HTTPSPublicWeb()
        ),
    )
    models.DestinationCreateRequest(
        name="warm-up", workspace_id="-", configuration=models.DestinationPostgres(host="h", database="d", username="u")
    )
