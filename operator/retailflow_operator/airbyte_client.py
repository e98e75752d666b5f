"""Thin wrapper over the airbyte-api SDK: list/create/patch/delete, with errors sorted into transient and permanent."""

from __future__ import annotations

import hashlib
import threading
from typing import Any, Callable

import httpx
from airbyte_api import AirbyteAPI, api, errors, models

from .builders import Actor
from .errors import PeerError

PAGE = 100
_tokens: dict[tuple[str, ...], str] = {}
_clients: dict[tuple[str, ...], tuple[httpx.Client, AirbyteAPI]] = {}
_lock = threading.Lock()


def _status_of(exc: Exception) -> int | None:
    raw = getattr(exc, "raw_response", None)
    return raw.status_code if raw is not None else None


class AirbyteClient:
    """Airbyte public API v1: writes through the official SDK and its request models, reads as plain JSON.

    Reads skip the SDK because it validates every answer against a union of several hundred
    connector models (about 50 ms per listed resource), which would dominate every drift check. One
    client-credentials token serves both paths.
    """

    def __init__(self, api_url: str, token_url: str | None, client_id: str, client_secret: str, timeout_s: float = 30):
        self.api_url = api_url.rstrip("/")
        # A relative token URL would be joined onto the host root, losing /api/public/v1.
        self.token_url = token_url or f"{self.api_url}/applications/token"
        self._credentials = {"grant_type": "client_credentials", "client_id": client_id, "client_secret": client_secret}
        self._key = (self.api_url, self.token_url, client_id, hashlib.sha256(client_secret.encode()).hexdigest())
        with _lock:
            if self._key not in _clients:
                http = httpx.Client(follow_redirects=True, timeout=timeout_s)
                sdk = AirbyteAPI(
                    server_url=self.api_url,
                    security=lambda key=self._key: models.Security(bearer_auth=_tokens.get(key, "")),
                    client=http,
                    timeout_ms=int(timeout_s * 1000),
                )
                _clients[self._key] = (http, sdk)
            self.http, self.sdk = _clients[self._key]

    def _token(self, refresh: bool = False) -> None:
        with _lock:
            if not refresh and self._key in _tokens:
                return
        try:
            res = self.http.post(self.token_url, data=self._credentials)
        except httpx.HTTPError as exc:
            raise PeerError("Airbyte", f"token: {exc.__class__.__name__}: {exc}", transient=True) from exc
        if res.status_code >= 300:
            transient = res.status_code >= 500 or res.status_code == 429
            hint = "" if transient else " (check the client id and secret in the Airbyte credentials Secret)"
            raise PeerError(
                "Airbyte", f"token: HTTP {res.status_code}{hint}", transient=transient, status=res.status_code
            )
        with _lock:
            _tokens[self._key] = res.json()["access_token"]

    def _call(self, what: str, fn: Callable[[], Any], missing_ok: bool = False) -> Any:
        for attempt in range(2):
            self._token(refresh=attempt > 0)
            try:
                return fn()
            except (httpx.HTTPError, OSError) as exc:
                raise PeerError("Airbyte", f"{what}: {exc.__class__.__name__}: {exc}", transient=True) from exc
            except errors.AirbyteAPIError as exc:
                status = _status_of(exc)
                if status == 404 and missing_ok:
                    return None
                if status == 401 and attempt == 0:
                    continue  # expired or revoked token: one fresh token is worth a try
                transient = status is None or status >= 500 or status == 429
                text = str(exc).split(". Body:")[0][:300]
                raise PeerError("Airbyte", f"{what}: {text}", transient=transient, status=status) from exc
        raise AssertionError("unreachable")

    # ------------------------------------------------------------ reads

    def _get(self, path: str, params: dict[str, Any]) -> Any:
        def fetch() -> Any:
            res = self.http.get(
                f"{self.api_url}{path}",
                params=params,
                headers={"Authorization": f"Bearer {_tokens.get(self._key, '')}"},
            )
            if res.status_code >= 300:
                raise errors.SDKError(f"GET {path}", res)
            return res.json()

        return self._call(f"list {path.strip('/')}", fetch)

    def _list(self, path: str, workspace_id: str) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        offset = 0
        while True:
            page = self._get(path, {"workspaceIds": workspace_id, "limit": PAGE, "offset": offset}).get("data") or []
            out.extend(page)
            if len(page) < PAGE:
                return out
            offset += PAGE

    def list_sources(self, workspace_id: str) -> list[dict[str, Any]]:
        return self._list("/sources", workspace_id)

    def list_destinations(self, workspace_id: str) -> list[dict[str, Any]]:
        return self._list("/destinations", workspace_id)

    def list_connections(self, workspace_id: str) -> list[dict[str, Any]]:
        return self._list("/connections", workspace_id)

    # ------------------------------------------------------------ writes

    def create_actor(self, actor: Actor, workspace_id: str) -> dict[str, Any]:
        if actor.kind == "source":
            req = models.SourceCreateRequest(
                name=actor.name, workspace_id=workspace_id, configuration=actor.configuration
            )
            res = self._call(f"create source {actor.name}", lambda: self.sdk.sources.create_source(request=req))
        else:
            req = models.DestinationCreateRequest(
                name=actor.name, workspace_id=workspace_id, configuration=actor.configuration
            )
            res = self._call(
                f"create destination {actor.name}", lambda: self.sdk.destinations.create_destination(request=req)
            )
        return res.raw_response.json()

    def patch_actor(self, actor: Actor, actor_id: str) -> dict[str, Any]:
        if actor.kind == "source":
            req = api.PatchSourceRequest(
                source_id=actor_id,
                source_patch_request=models.SourcePatchRequest(name=actor.name, configuration=actor.configuration),
            )
            res = self._call(f"patch source {actor.name}", lambda: self.sdk.sources.patch_source(request=req))
        else:
            req = api.PatchDestinationRequest(
                destination_id=actor_id,
                destination_patch_request=models.DestinationPatchRequest(
                    name=actor.name, configuration=actor.configuration
                ),
            )
            res = self._call(
                f"patch destination {actor.name}", lambda: self.sdk.destinations.patch_destination(request=req)
            )
        return res.raw_response.json()

    def delete(self, kind: str, resource_id: str) -> None:
        if kind == "source":
            fn = lambda: self.sdk.sources.delete_source(request=api.DeleteSourceRequest(source_id=resource_id))  # noqa: E731
        elif kind == "destination":
            fn = lambda: self.sdk.destinations.delete_destination(  # noqa: E731
                request=api.DeleteDestinationRequest(destination_id=resource_id)
            )
        else:
            fn = lambda: self.sdk.connections.delete_connection(  # noqa: E731
                request=api.DeleteConnectionRequest(connection_id=resource_id)
            )
        self._call(f"delete {kind} {resource_id}", fn, missing_ok=True)

    def create_connection(self, req: models.ConnectionCreateRequest) -> dict[str, Any]:
        res = self._call(f"create connection {req.name}", lambda: self.sdk.connections.create_connection(request=req))
        return res.raw_response.json()

    def patch_connection(self, connection_id: str, req: models.ConnectionPatchRequest) -> dict[str, Any]:
        res = self._call(
            f"patch connection {req.name}",
            lambda: self.sdk.connections.patch_connection(
                request=api.PatchConnectionRequest(connection_id=connection_id, connection_patch_request=req)
            ),
        )
        return res.raw_response.json()


def warm_up() -> None:
    """Build the SDK's request and answer models once, before the first reconcile needs them.

    The first use of a source/destination model builds validators for every connector the SDK
    knows (several seconds); paying it at start keeps it off the first pipeline's path.
    """
    from airbyte_api.utils import unmarshal_json

    for model in (models.SourceResponse, models.DestinationResponse, models.ConnectionResponse):
        try:
            unmarshal_json("{}", model)
        except Exception:  # noqa: BLE001 - an empty answer is invalid; building the validators was the point
            pass
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
