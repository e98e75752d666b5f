"""Thin client of the Airflow 3 REST API (/api/v2) for the variables a pipeline owns."""

from __future__ import annotations

import hashlib
import threading
from typing import Any
from urllib.parse import quote

import requests

from .errors import PeerError

PAGE = 100
_tokens: dict[tuple[str, str, str], str] = {}
_tokens_lock = threading.Lock()
# One write at a time per Airflow: each is a single bulk call, and an Airflow on SQLite (tests, small
# installs) times out when many arrive together.
_write_locks: dict[str, threading.Lock] = {}


def _redirect_hint(res: requests.Response) -> str:
    """Redirects are not followed: they would take the credentials (or the token) to another host."""
    if not res.is_redirect:
        return ""
    return " (a redirect, not followed: the Airflow URL must be the API server's own address)"


class AirflowClient:
    """Bearer token from ``POST /auth/token``, then the variables endpoints; one bulk call per write."""

    def __repr__(self) -> str:
        return f"AirflowClient({self.base!r})"

    def __init__(self, api_url: str, username: str, password: str, timeout_s: float = 30):
        self.base = api_url.rstrip("/")
        self.username = username
        self._password = password
        self._token_key = (self.base, username, hashlib.sha256(password.encode()).hexdigest())
        self.timeout = timeout_s
        self.http = requests.Session()

    def _token(self, refresh: bool = False) -> str:
        with _tokens_lock:
            token = None if refresh else _tokens.get(self._token_key)
        if token:
            return token
        try:
            res = self.http.post(
                f"{self.base}/auth/token",
                json={"username": self.username, "password": self._password},
                timeout=self.timeout,
                allow_redirects=False,  # a redirect would carry the password to a host nobody allowed
            )
        except requests.RequestException as exc:
            raise PeerError("Airflow", f"token: {exc.__class__.__name__}", transient=True) from None
        if res.status_code >= 300:
            transient = res.status_code >= 500 or res.status_code == 429
            raise PeerError(
                "Airflow",
                f"token: HTTP {res.status_code}{_redirect_hint(res) or ' (check the user name and password in the Airflow credentials Secret)'}"
                if not transient
                else f"token: HTTP {res.status_code}",
                transient=transient,
                status=res.status_code,
            )
        try:
            token = res.json()["access_token"]
        except (ValueError, KeyError, TypeError):
            raise PeerError("Airflow", "token: the answer has no access_token", transient=False) from None
        if not isinstance(token, str) or not token:
            raise PeerError("Airflow", "token: the answer has no access_token", transient=False)
        with _tokens_lock:
            _tokens[self._token_key] = token
        return token

    def _request(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        for attempt in range(2):
            headers = {"Authorization": f"Bearer {self._token(refresh=attempt > 0)}"}
            try:
                res = self.http.request(
                    method, f"{self.base}/api/v2{path}", headers=headers, timeout=self.timeout, allow_redirects=False,
                    **kwargs,
                )
            except requests.RequestException as exc:
                raise PeerError("Airflow", f"{method} {path}: {exc.__class__.__name__}", transient=True) from None
            if res.status_code == 401 and attempt == 0:
                continue  # expired token
            if res.status_code >= 300:
                transient = res.status_code >= 500 or res.status_code == 429
                # Never the body: Airflow's validation errors echo the request, which may hold a value.
                raise PeerError("Airflow", f"{method} {path}: HTTP {res.status_code}{_redirect_hint(res)}", transient,
                                res.status_code)
            return res
        raise AssertionError("unreachable")

    def _json(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        """The answer's JSON object. An answer that is not one (a proxy's HTML page, say) is refused like
        a 4xx, as the Airbyte client refuses one: phase Failed, and the drift timer tries again."""
        try:
            body = self._request(method, path, **kwargs).json()
        except ValueError:
            raise PeerError("Airflow", f"{method} {path}: the answer is not JSON", transient=False) from None
        if not isinstance(body, dict):
            raise PeerError("Airflow", f"{method} {path}: the answer is not a JSON object", transient=False)
        return body

    def list_variables(self, prefix: str) -> dict[str, dict[str, Any]]:
        """Variables whose key starts with ``prefix``: key -> {"value", "description"}."""
        out: dict[str, dict[str, Any]] = {}
        offset = 0
        while True:
            res = self._json(
                "GET",
                "/variables",
                params={"variable_key_prefix_pattern": prefix, "limit": PAGE, "offset": offset, "order_by": "key"},
            )
            page = list(res.get("variables") or [])
            for var in page:
                if var["key"].startswith(prefix):
                    out[var["key"]] = {"value": var.get("value"), "description": var.get("description")}
            offset += len(page)
            if not page or offset >= res.get("total_entries", 0):
                return out

    def _write(self, body: dict[str, Any], action: str) -> None:
        with _tokens_lock:
            lock = _write_locks.setdefault(self.base, threading.Lock())
        with lock:
            self._check_bulk(self._json("PATCH", "/variables", json=body), action)

    def upsert_variables(self, entities: list[dict[str, str]]) -> None:
        if entities:
            self._write(
                {"actions": [{"action": "create", "action_on_existence": "overwrite", "entities": entities}]}, "create"
            )

    def delete_variables(self, keys: list[str]) -> None:
        if keys:
            self._write(
                {"actions": [{"action": "delete", "action_on_non_existence": "skip", "entities": keys}]}, "delete"
            )

    def get_variable(self, key: str) -> str | None:
        try:
            return self._json("GET", f"/variables/{quote(key, safe='')}").get("value")
        except PeerError as exc:
            if exc.status == 404:
                return None
            raise

    @staticmethod
    def _check_bulk(res: dict[str, Any], action: str) -> None:
        errors = (res.get(action) or {}).get("errors") or []
        if errors:
            keys = sorted({str(e.get("key") or "") for e in errors if isinstance(e, dict)} - {""})
            raise PeerError("Airflow", f"bulk {action} of {len(errors)} variable(s) failed {keys}"[:300], transient=False)
