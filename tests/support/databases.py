"""Local test databases: the server URLs `make services` writes, and throwaway databases beside them."""

from __future__ import annotations

import os
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
