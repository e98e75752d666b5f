"""Database URLs for the tasks, from Airflow connections (``AIRFLOW_CONN_*`` locally, the chart's
Secrets in the cluster).

Where the pipeline's variables name a host, port and database (the ``RetailPipeline`` spec), those
win and the connection gives only the credentials; with local defaults the connection gives all.
The URLs carry the password: they are passed to the engine in memory and never logged (use
``redact()`` for messages).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

from retailflow_pipeline.catalog import PORTS
from retailflow_pipeline.settings import Endpoint


@dataclass(frozen=True)
class ConnectionFields:
    host: str | None
    port: int | None
    login: str | None
    password: str | None = None
    schema: str | None = None
    extra: dict[str, Any] | None = None

    def __repr__(self) -> str:  # never show the password
        return f"ConnectionFields(host={self.host!r}, port={self.port!r}, login={self.login!r}, schema={self.schema!r})"


def airflow_connection(conn_id: str) -> ConnectionFields:
    """The fields of an Airflow connection (raises ``AirflowNotFoundException`` if it is not defined)."""
    from airflow.sdk import BaseHook

    conn = BaseHook.get_connection(conn_id)
    return ConnectionFields(conn.host, conn.port, conn.login, conn.password, conn.schema, conn.extra_dejson)


def database_url(scheme: str, endpoint: Endpoint, conn: ConnectionFields, default_port: int) -> str:
    host = endpoint.host or conn.host or "127.0.0.1"
    port = endpoint.port or conn.port or default_port
    database = endpoint.database or conn.schema
    if not database:
        raise ValueError(f"connection {endpoint.conn_id} names no database (its schema field) and the pipeline none")
    auth = quote(conn.login or "", safe="")
    if conn.password:
        auth += ":" + quote(conn.password, safe="")
    return f"{scheme}://{auth}@{host}:{port}/{quote(database, safe='')}"


def mysql_url(endpoint: Endpoint) -> str:
    return database_url("mysql", endpoint, airflow_connection(endpoint.conn_id), PORTS["mysql"])


def warehouse_url(endpoint: Endpoint) -> str:
    return database_url("postgresql", endpoint, airflow_connection(endpoint.conn_id), PORTS["postgresql"])


def redact(url: str) -> str:
    """``scheme://user@host:port/db`` without the password, for messages."""
    parts = urlsplit(url)
    netloc = parts.hostname or ""
    if parts.port:
        netloc += f":{parts.port}"
    if parts.username:
        netloc = f"{parts.username}@{netloc}"
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))
