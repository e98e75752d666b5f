"""Thin wrapper over the airbyte-api SDK: list/create/patch/delete, with errors sorted into transient and permanent."""

from __future__ import annotations

import re
import threading
from typing import Any, Callable

import httpx
from airbyte_api import AirbyteAPI, api, errors, models

from .builders import Actor
from .errors import PeerError

PAGE = 100
_clients: dict[tuple[str, ...], AirbyteAPI] = {}
_clients_lock = threading.Lock()


def _status_of(exc: Exception) -> int | None:
    raw = getattr(exc, "raw_response", None)
    if raw is not None:
        return raw.status_code
    # The SDK's token hook raises a bare Exception carrying only the status in its text.
    match = re.search(r"Unexpected status code (\d{3}) from token endpoint", str(exc))
    return int(match.group(1)) if match else None


class AirbyteClient:
    """Airbyte public API v1 through the official SDK; answers are returned as the JSON Airbyte sent."""

    def __init__(self, api_url: str, token_url: str | None, client_id: str, client_secret: str, timeout_s: float = 30):
        self.api_url = api_url.rstrip("/")
        # The SDK joins a relative token URL onto the host root, losing /api/public/v1.
        self.token_url = token_url or f"{self.api_url}/applications/token"
        key = (self.api_url, self.token_url, client_id, client_secret)
        with _clients_lock:
            sdk = _clients.get(key)
            if sdk is None:
                sdk = AirbyteAPI(
                    server_url=self.api_url,
                    security=models.Security(
                        client_credentials=models.SchemeClientCredentials(
                            client_id=client_id, client_secret=client_secret, token_url=self.token_url
                        )
                    ),
                    client=httpx.Client(follow_redirects=True, timeout=timeout_s),
                    timeout_ms=int(timeout_s * 1000),
                )
                _clients[key] = sdk
        self.sdk = sdk

    def _call(self, what: str, fn: Callable[[], Any], missing_ok: bool = False) -> Any:
        for attempt in range(2):
            try:
                return fn()
            except (httpx.HTTPError, OSError) as exc:
                raise PeerError("Airbyte", f"{what}: {exc.__class__.__name__}: {exc}", transient=True) from exc
            except Exception as exc:  # the SDK raises SDKError or, from its token hook, bare Exception
                status = _status_of(exc)
                if status == 404 and missing_ok:
                    return None
                if status == 401 and attempt == 0:
                    continue  # the SDK dropped its cached token on this 401; one fresh token is worth a try
                if status is None and not isinstance(exc, errors.AirbyteAPIError):
                    raise
                transient = status is None or status >= 500 or status == 429
                text = str(exc).split(". Body:")[0][:300]
                raise PeerError("Airbyte", f"{what}: {text}", transient=transient, status=status) from exc
        raise AssertionError("unreachable")

    # ------------------------------------------------------------ reads

    def _list(self, what: str, call: Callable[[int], Any]) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        offset = 0
        while True:
            res = self._call(what, lambda: call(offset))
            page = res.raw_response.json().get("data") or []
            out.extend(page)
            if len(page) < PAGE:
                return out
            offset += PAGE

    def list_sources(self, workspace_id: str) -> list[dict[str, Any]]:
        return self._list(
            "list sources",
            lambda off: self.sdk.sources.list_sources(
                request=api.ListSourcesRequest(workspace_ids=[workspace_id], limit=PAGE, offset=off)
            ),
        )

    def list_destinations(self, workspace_id: str) -> list[dict[str, Any]]:
        return self._list(
            "list destinations",
            lambda off: self.sdk.destinations.list_destinations(
                request=api.ListDestinationsRequest(workspace_ids=[workspace_id], limit=PAGE, offset=off)
            ),
        )

    def list_connections(self, workspace_id: str) -> list[dict[str, Any]]:
        return self._list(
            "list connections",
            lambda off: self.sdk.connections.list_connections(
                request=api.ListConnectionsRequest(workspace_ids=[workspace_id], limit=PAGE, offset=off)
            ),
        )

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
