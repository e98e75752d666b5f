"""Import RetailFlow's Superset dashboards (the YAML bundle in the chart's files) into a Superset.

``refresh(env)`` zips the bundle, points its warehouse database at ``RETAILFLOW_WAREHOUSE_URL`` and
posts it to Superset's assets API (``POST /api/v1/assets/import/``), which creates every database,
dataset, chart and dashboard on the first import and updates them in place, matched by uuid, on
every later one. The warehouse password travels only in the request's ``passwords`` field: the
bundle never holds one, and Superset stores it encrypted.

Pure HTTP (``requests``): it runs in the Airflow environment (the ``retail_pipeline`` DAG's
dashboards task), in the chart's import Job and from ``make dashboards``, never importing Superset.

Environment:

- ``RETAILFLOW_SUPERSET_URL``: Superset's base URL, e.g. ``http://127.0.0.1:8088``. Unset: the
  refresh raises :class:`NotConfigured` (the DAG then skips its dashboards task).
- ``RETAILFLOW_SUPERSET_USERNAME``, ``RETAILFLOW_SUPERSET_PASSWORD``: a Superset admin.
- ``RETAILFLOW_WAREHOUSE_URL``: ``postgresql://user:password@host:port/db`` of the warehouse, as
  Superset reaches it; ``RETAILFLOW_SUPERSET_WAREHOUSE_URL`` overrides it when Superset sees the
  warehouse at another address than this process does.
- ``RETAILFLOW_SUPERSET_BUNDLE``: the bundle folder (default: ``charts/retailflow/files/superset/bundle``
  of ``$RETAILFLOW_HOME``, see ``paths``).

``python -m retailflow_pipeline.dashboards`` runs the same refresh and prints the dashboard URLs.
"""

from __future__ import annotations

import io
import json
import os
import sys
import time
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote, urlsplit

import requests
import yaml

from retailflow_pipeline.catalog import PORTS
from retailflow_pipeline.errors import NotConfigured
from retailflow_pipeline.paths import superset_bundle_dir

#: What Superset's exports put where a password was; the import then takes it from ``passwords``.
PASSWORD_MASK = "X" * 10
#: Folder name inside the zip (Superset strips the first path component of every entry).
ZIP_ROOT = "retailflow_dashboards"


class RefreshError(RuntimeError):
    """Superset refused a login or the import; the message carries Superset's own answer."""


@dataclass(frozen=True)
class SupersetSettings:
    superset_url: str
    username: str
    password: str = field(repr=False)  # a repr lands in task logs and tracebacks
    warehouse_url: str = field(repr=False)  # holds the warehouse user's password
    bundle_dir: Path
    #: seconds to wait for Superset's /health before giving up (it may still be starting)
    wait_seconds: float = 60.0

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> SupersetSettings:
        url = env.get("RETAILFLOW_SUPERSET_URL", "").rstrip("/")
        if not url:
            raise NotConfigured("RETAILFLOW_SUPERSET_URL is not set: no Superset to import the dashboards into")
        missing = [k for k in ("RETAILFLOW_SUPERSET_USERNAME", "RETAILFLOW_SUPERSET_PASSWORD") if not env.get(k)]
        warehouse = env.get("RETAILFLOW_SUPERSET_WAREHOUSE_URL") or env.get("RETAILFLOW_WAREHOUSE_URL", "")
        if not warehouse:
            missing.append("RETAILFLOW_WAREHOUSE_URL")
        if missing:
            raise ValueError(f"Superset is configured ({url}) but {', '.join(missing)} is not set")
        bundle = superset_bundle_dir(env)
        if not (bundle / "metadata.yaml").is_file():
            raise ValueError(f"no dashboard bundle at {bundle} (metadata.yaml missing); set RETAILFLOW_SUPERSET_BUNDLE")
        return cls(url, env["RETAILFLOW_SUPERSET_USERNAME"], env["RETAILFLOW_SUPERSET_PASSWORD"], warehouse, bundle,
                   float(env.get("RETAILFLOW_SUPERSET_WAIT_SECONDS") or 60))


def superset_uri(warehouse_url: str) -> tuple[str, str]:
    """(SQLAlchemy URI with the password masked, password) for Superset's database entry."""
    parts = urlsplit(warehouse_url)
    if not parts.scheme.startswith("postgres"):
        raise ValueError(f"the warehouse URL must be postgresql://…, got scheme {parts.scheme!r}")
    database = parts.path.lstrip("/")
    if not parts.username or not database:
        raise ValueError("the warehouse URL must name a user and a database: postgresql://user:pw@host:port/db")
    host = parts.hostname or "127.0.0.1"
    if ":" in host:  # IPv6 literal
        host = f"[{host}]"
    netloc = f"{quote(unquote(parts.username), safe='')}:{PASSWORD_MASK}@{host}:{parts.port or PORTS['postgresql']}"
    query = f"?{parts.query}" if parts.query else ""
    return f"postgresql+psycopg2://{netloc}/{database}{query}", unquote(parts.password or "")


def build_bundle(bundle_dir: Path, warehouse_url: str) -> tuple[bytes, dict[str, str]]:
    """The zip Superset's assets API takes, and its ``passwords`` map (file name → password).

    Every ``databases/*.yaml`` gets the warehouse's address in place of the one in the repository,
    so one bundle serves the local Superset, the tests' and the cluster's."""
    uri, password = superset_uri(warehouse_url)
    passwords: dict[str, str] = {}
    buffer = io.BytesIO()
    files = sorted(p for p in bundle_dir.rglob("*.yaml") if p.is_file())
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in files:
            name = path.relative_to(bundle_dir).as_posix()
            text = path.read_text()
            if name.startswith("databases/"):
                config = yaml.safe_load(text)
                config["sqlalchemy_uri"] = uri
                text = yaml.safe_dump(config, sort_keys=False)
                passwords[name] = password
            archive.writestr(f"{ZIP_ROOT}/{name}", text)
    return buffer.getvalue(), passwords


def bundle_assets(bundle_dir: Path) -> dict[str, list[dict[str, Any]]]:
    """The bundle's dashboards, charts and datasets as parsed YAML, keyed by kind."""
    assets: dict[str, list[dict[str, Any]]] = {"dashboards": [], "charts": [], "datasets": [], "databases": []}
    for path in sorted(bundle_dir.rglob("*.yaml")):
        kind = path.relative_to(bundle_dir).parts[0]
        if kind in assets:
            assets[kind].append(yaml.safe_load(path.read_text()))
    return assets


class SupersetClient:
    """A logged-in session on Superset's REST API (bearer token plus the CSRF token its POSTs need)."""

    def __init__(self, base_url: str, username: str, password: str, *, timeout: float = 60.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.session = requests.Session()
        # Without it Superset answers errors as HTML pages.
        self.session.headers["Accept"] = "application/json"
        response = self.session.post(
            self.url("/api/v1/security/login"),
            json={"username": username, "password": password, "provider": "db", "refresh": False},
            timeout=timeout,
        )
        if response.status_code != 200:
            raise RefreshError(f"Superset login as {username!r} failed: HTTP {response.status_code} {_message(response)}")
        self.session.headers["Authorization"] = f"Bearer {response.json()['access_token']}"
        csrf = self.session.get(self.url("/api/v1/security/csrf_token/"), timeout=timeout)
        csrf.raise_for_status()
        self.session.headers["X-CSRFToken"] = csrf.json()["result"]
        self.session.headers["Referer"] = self.base_url

    def url(self, path: str) -> str:
        return f"{self.base_url}{path}"

    def get(self, path: str, **params: Any) -> dict[str, Any]:
        query = {"q": _rison(params)} if params else None
        response = self.session.get(self.url(path), params=query, timeout=self.timeout)
        if response.status_code != 200:
            raise RefreshError(f"GET {path}: HTTP {response.status_code} {_message(response)}")
        return response.json()

    def import_assets(self, bundle: bytes, passwords: Mapping[str, str]) -> None:
        response = self.session.post(
            self.url("/api/v1/assets/import/"),
            files={"bundle": ("retailflow_dashboards.zip", bundle, "application/zip")},
            data={"passwords": json.dumps(dict(passwords))},
            timeout=max(self.timeout, 300),
        )
        if response.status_code != 200:
            raise RefreshError(f"Superset refused the dashboard bundle: HTTP {response.status_code} {_message(response)}")

    def list_all(self, resource: str, columns: list[str]) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = []
        page = 0
        while True:
            body = self.get(f"/api/v1/{resource}/", columns=columns, page=page, page_size=100)
            rows.extend(body["result"])
            if len(rows) >= body["count"] or not body["result"]:
                return rows
            page += 1


def wait_healthy(base_url: str, seconds: float) -> None:
    """Wait until Superset's /health answers OK (it takes ~10 s after start)."""
    deadline = time.monotonic() + seconds
    last = "no answer"
    while True:
        try:
            response = requests.get(f"{base_url}/health", timeout=5)
            if response.status_code == 200:
                return
            last = f"HTTP {response.status_code}"
        except requests.RequestException as exc:
            last = type(exc).__name__
        if time.monotonic() >= deadline:
            raise RefreshError(f"Superset at {base_url} is not healthy after {seconds:.0f} s ({last})")
        time.sleep(1)


def refresh(env: Mapping[str, str] = os.environ) -> dict[str, Any]:
    """Import the bundle into the Superset ``env`` names; return what it now holds of it.

    The summary: ``{"dashboards": n, "charts": n, "datasets": n, "urls": {title: url}}``, counted
    from what Superset lists back for the bundle's uuids (so a missing asset shows as a lower count).
    Raises :class:`NotConfigured` when ``RETAILFLOW_SUPERSET_URL`` is unset, ``ValueError`` on
    incomplete settings and :class:`RefreshError` when Superset refuses the login or the import.
    """
    settings = SupersetSettings.from_env(env)
    wait_healthy(settings.superset_url, settings.wait_seconds)
    bundle, passwords = build_bundle(settings.bundle_dir, settings.warehouse_url)
    client = SupersetClient(settings.superset_url, settings.username, settings.password)
    client.import_assets(bundle, passwords)

    assets = bundle_assets(settings.bundle_dir)
    wanted = {kind: {str(a["uuid"]) for a in items} for kind, items in assets.items()}
    dashboards = [d for d in client.list_all("dashboard", ["id", "uuid", "dashboard_title", "slug", "url"])
                  if str(d.get("uuid")) in wanted["dashboards"]]
    charts = [c for c in client.list_all("chart", ["id", "uuid"]) if str(c.get("uuid")) in wanted["charts"]]
    datasets = [d for d in client.list_all("dataset", ["id", "uuid"]) if str(d.get("uuid")) in wanted["datasets"]]
    order = [str(d["uuid"]) for d in assets["dashboards"]]  # the bundle's file order
    return {
        "dashboards": len(dashboards),
        "charts": len(charts),
        "datasets": len(datasets),
        "urls": {d["dashboard_title"]: f"{settings.superset_url}{d['url']}"
                 for d in sorted(dashboards, key=lambda d: order.index(str(d["uuid"])))},
    }


def _message(response: requests.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text[:300]
    return json.dumps(body.get("message") or body.get("errors") or body)[:1000]


def _rison(value: Any) -> str:
    """The few rison shapes Superset's list API takes (dicts, lists, strings, ints)."""
    if isinstance(value, dict):
        return "(" + ",".join(f"{k}:{_rison(v)}" for k, v in value.items()) + ")"
    if isinstance(value, (list, tuple)):
        return "!(" + ",".join(_rison(v) for v in value) + ")"
    if isinstance(value, bool):
        return "!t" if value else "!f"
    if isinstance(value, int):
        return str(value)
    return "'" + str(value).replace("!", "!!").replace("'", "!'") + "'"


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m retailflow_pipeline.dashboards", description=__doc__.splitlines()[0])
    parser.parse_args(argv)
    try:
        summary = refresh(os.environ)
    except NotConfigured as exc:
        print(f"dashboards: {exc}", file=sys.stderr)
        return 2
    except (ValueError, RefreshError, requests.RequestException) as exc:
        print(f"dashboards: error: {exc}", file=sys.stderr)
        return 1
    print(f"dashboards: imported {summary['dashboards']} dashboards, {summary['charts']} charts, "
          f"{summary['datasets']} datasets")
    for title, url in summary["urls"].items():
        print(f"  {title}: {url}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
