"""Throwaway databases for the pipeline suites (ingestion engine and dbt project).

Fixtures (names are stable; suites rely on them):

- ``mysql_url``: URL string (``mysql://user:pw@host:port/retail_test_<hex>``) of a fresh MariaDB/MySQL
  database holding the RetailFlow OLTP schema (``generator/retailflow_generator/schema.sql``) with
  empty tables. Created before the test and dropped after it.
- ``warehouse_url``: URL string (``postgresql://user:pw@host:port/warehouse_test_<hex>``) of a fresh,
  empty PostgreSQL database. Created before the test and dropped after it (open sessions are ended).

Both derive their credentials from ``RETAILFLOW_MYSQL_URL`` and ``RETAILFLOW_WAREHOUSE_URL``
(``hack/with-env`` exports them from ``.env.local``); the tests are skipped with a clear reason when those
are absent. The ``retail`` user may create ``retail_%`` databases and the ``warehouse`` role has CREATEDB.
The helpers ``mysql_connect(url)`` and ``pg_connect(url)`` open a plain connection to such a URL.
"""

from collections.abc import Iterator
from pathlib import Path
from urllib.parse import unquote, urlsplit

import psycopg
import pymysql
import pytest

from support.databases import (drop_pg_database, env_url as _env_url, throwaway_name, throwaway_tag,
                               with_database as _with_database)

REPO_ROOT = Path(__file__).resolve().parents[3]
SCHEMA_SQL = REPO_ROOT / "generator" / "retailflow_generator" / "schema.sql"




def mysql_connect(url: str, database: str | None = None, **kwargs) -> pymysql.connections.Connection:
    """A PyMySQL connection to ``url`` (or to ``database`` on the same server, ``""`` for none)."""
    parts = urlsplit(url)
    db = parts.path.lstrip("/") if database is None else database
    return pymysql.connect(
        host=parts.hostname or "127.0.0.1",
        port=parts.port or 3306,
        user=unquote(parts.username or ""),
        password=unquote(parts.password or ""),
        database=db or None,
        autocommit=True,
        **kwargs,
    )


def pg_connect(url: str, **kwargs) -> psycopg.Connection:
    """A psycopg connection to ``url`` (``postgresql://``; autocommit unless told otherwise)."""
    kwargs.setdefault("autocommit", True)
    return psycopg.connect(url, **kwargs)


def _schema_statements() -> list[str]:
    text = "\n".join(line for line in SCHEMA_SQL.read_text().splitlines() if not line.lstrip().startswith("--"))
    return [stmt.strip() for stmt in text.split(";") if stmt.strip()]


@pytest.fixture
def mysql_url() -> Iterator[str]:
    """A fresh MySQL database ``retail_test_<hex>`` with the RetailFlow schema and no rows; dropped after."""
    base = _env_url("RETAILFLOW_MYSQL_URL")
    name = throwaway_name("retail", "test", throwaway_tag())
    admin = mysql_connect(base, database="")
    try:
        with admin.cursor() as cur:
            cur.execute(f"create database `{name}` character set utf8mb4")
        url = _with_database(base, name)
        conn = mysql_connect(url)
        with conn, conn.cursor() as cur:
            for stmt in _schema_statements():
                cur.execute(stmt)
        yield url
    finally:
        with admin.cursor() as cur:
            cur.execute(f"drop database if exists `{name}`")
        admin.close()


@pytest.fixture
def warehouse_url() -> Iterator[str]:
    """A fresh, empty PostgreSQL database ``warehouse_test_<hex>``; dropped after (sessions ended)."""
    base = _env_url("RETAILFLOW_WAREHOUSE_URL")
    name = throwaway_name("warehouse", "test", throwaway_tag())
    with pg_connect(base) as admin:
        admin.execute(f'create database "{name}"')
    try:
        yield _with_database(base, name)
    finally:
        drop_pg_database(base, name)
