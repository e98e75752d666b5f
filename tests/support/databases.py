"""Local test databases: the server URLs `make services` writes, and throwaway databases beside them."""

from __future__ import annotations

import os
import time
from urllib.parse import urlsplit, urlunsplit

import pytest


def env_url(name: str) -> str:
    """The URL in environment variable ``name``; the test is skipped, saying how to set it, if it is unset."""
    url = os.environ.get(name)
    if not url:
        pytest.skip(f"{name} is not set: run `make services` and the tests through `hack/with-env`")
    return url


def with_database(url: str, database: str) -> str:
    """``url`` pointing at another database on the same server."""
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, "/" + database, parts.query, parts.fragment))


def drop_pg_database(base_url: str, name: str) -> None:
    """Drop the PostgreSQL database ``name`` from the server of ``base_url``, ending its sessions; retried
    briefly, since ``with (force)`` cannot end an autovacuum worker for a non-superuser."""
    import psycopg  # not every suite's environment has it; those that drop databases do

    for attempt in range(20):
        try:
            with psycopg.connect(base_url, autocommit=True) as admin:
                admin.execute(f'drop database if exists "{name}" with (force)')
            return
        except psycopg.errors.InsufficientPrivilege:
            if attempt == 19:
                raise
            time.sleep(0.5)
