"""Throwaway MariaDB databases (`retail_test_<hex>`) for the generator, from $RETAILFLOW_MYSQL_URL."""

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from unittest import mock
from urllib.parse import unquote, urlsplit, urlunsplit

import pymysql
import pytest

from support.databases import throwaway_name, throwaway_tag

REPO_ROOT = Path(__file__).resolve().parents[3]
#: the console script of the environment running the tests
GENERATOR = str(Path(sys.executable).with_name("retailflow-generator"))


def _server_url() -> str:
    url = os.environ.get("RETAILFLOW_MYSQL_URL")
    if not url:
        pytest.skip("RETAILFLOW_MYSQL_URL is not set: run `make services` and the tests through `hack/with-env`")
    return url


def url_for(database: str) -> str:
    parts = urlsplit(_server_url())
    return urlunsplit((parts.scheme, parts.netloc, "/" + database, "", ""))


def mysql_env(url: str) -> dict[str, str]:
    """The environment of a generator subprocess aimed at ``url``: the URL, password and all, goes in
    $RETAILFLOW_MYSQL_URL, never on its command line (which every local user reads in `ps`; the
    generator refuses a password in --mysql-url)."""
    return {**os.environ, "RETAILFLOW_MYSQL_URL": url}


@contextmanager
def mysql_url_set(url: str) -> Iterator[None]:
    """The same for the generator run in this interpreter (``cli.main``): $RETAILFLOW_MYSQL_URL is ``url``
    meanwhile."""
    with mock.patch.dict(os.environ, {"RETAILFLOW_MYSQL_URL": url}):
        yield


def connect(url: str) -> pymysql.connections.Connection:
    parts = urlsplit(url)
    return pymysql.connect(
        host=parts.hostname, port=parts.port or 3306, user=unquote(parts.username or ""),
        password=unquote(parts.password or ""), database=parts.path.lstrip("/") or None, autocommit=True,
    )


def scalar(url: str, sql: str, args=()):
    conn = connect(url)
    try:
        with conn.cursor() as cur:
            cur.execute(sql, args)
            return cur.fetchone()[0]
    finally:
        conn.close()


def rows(url: str, sql: str, args=()):
    conn = connect(url)
    try:
        with conn.cursor() as cur:
            cur.execute(sql, args)
            return cur.fetchall()
    finally:
        conn.close()


def _databases():
    admin = connect(url_for(""))
    created = []

    def make() -> str:
        name = throwaway_name("retail", "test", throwaway_tag())
        with admin.cursor() as cur:
            cur.execute(f"create database `{name}`")
        created.append(name)
        return url_for(name)

    yield make
    with admin.cursor() as cur:
        for name in created:
            cur.execute(f"drop database if exists `{name}`")
    admin.close()


@pytest.fixture
def make_database():
    """Creates empty `retail_test_<hex>` databases on request; drops them all afterwards."""
    yield from _databases()


@pytest.fixture(scope="module")
def make_module_database():
    """The same, kept for a whole test module (a seed shared by its read-only tests)."""
    yield from _databases()


@pytest.fixture
def database(make_database) -> str:
    return make_database()
