"""Local test databases: the server URLs `make services` writes, and throwaway databases beside them."""

from __future__ import annotations

import os
import sys
import time
import uuid
from collections.abc import Sequence
from urllib.parse import urlsplit, urlunsplit

#: the services and kinds of run that name throwaway databases ``<service>_<kind>[_<label>]_<tag>``;
#: `make clean-tests` (hack/clean-tests.sh, SERVICES and THROWAWAY) finds them by the same words, and
#: tests/unit/pipeline/test_throwaway_databases.py checks that it does
SERVICES = ("retail", "warehouse", "superset", "airflow")
KINDS = ("test", "dags", "wl", "bench", "ui")


def throwaway_tag(width: int = 10) -> str:
    """``width`` random hexadecimal digits, at least one of them a letter: `make clean-tests` takes a
    database for a killed run's leftover only if its tag holds a letter (so that one named with a date
    is never dropped), and a bare ``uuid4().hex[:10]`` is all digits about 1% of the time ([:8]: 2%)."""
    while True:
        tag = uuid.uuid4().hex[:width]
        if not tag.isdigit():
            return tag


def throwaway_name(service: str, kind: str, tag: str) -> str:
    """``<service>_<kind>_<tag>``, the name of a throwaway database; ``kind`` is one of ``KINDS``, with
    labels after it if any (``test_bench``, ``test_scale_10k``), ``tag`` from ``throwaway_tag()``."""
    if service not in SERVICES or kind.split("_")[0] not in KINDS:
        raise ValueError(f"{service}_{kind}_: not a name `make clean-tests` knows (SERVICES, KINDS)")
    return f"{service}_{kind}_{tag}"


def throwaway_user(tag: str) -> str:
    """``rf_wl_<tag>``: the workloads suite's throwaway user, a PostgreSQL role owning that run's PostgreSQL
    databases (``throwaway_name(service, "wl", tag)``) and a MariaDB user, both made by the servers'
    administrators; `make clean-tests` (TEST_USER) finds them after a killed run, and drops them when run
    as root. ``tag`` from ``throwaway_tag(8)``."""
    return f"rf_wl_{tag}"


def env_url(name: str) -> str:
    """The URL in environment variable ``name``; the test is skipped, saying how to set it, if it is unset."""
    url = os.environ.get(name)
    if not url:
        import pytest  # here: the benchmarks (tests/bench) import this module, and need no pytest

        pytest.skip(f"{name} is not set: run `make services` and the tests through `hack/with-env`")
    return url


def with_database(url: str, database: str) -> str:
    """``url`` pointing at another database on the same server."""
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, "/" + database, parts.query, parts.fragment))


def drop_pg_database(base_url: str, name: str, *, pauses: Sequence[float] = (0.5,) * 19,
                     strict: bool = True) -> None:
    """Drop the PostgreSQL database ``name`` from the server of ``base_url``, ending its sessions; tried
    again after each of ``pauses`` (seconds), since ``with (force)`` cannot end an autovacuum worker for
    a non-superuser. If the last try fails too: raised, or with ``strict=False`` a warning on stderr (a
    benchmark goes on to print what it measured). With psycopg, or psycopg2 where the environment has
    only that (Superset's, ``hack/envs/superset``)."""
    try:
        import psycopg as driver  # not every suite's environment has it; those that drop databases do
    except ImportError:
        import psycopg2 as driver

    for attempt in range(len(pauses) + 1):
        try:
            admin = driver.connect(base_url)
            try:
                admin.autocommit = True
                admin.cursor().execute(f'drop database if exists "{name}" with (force)')
            finally:
                admin.close()
            return
        except driver.errors.InsufficientPrivilege:
            if attempt == len(pauses):
                if strict:
                    raise
                print(f"warning: could not drop database {name}", file=sys.stderr)
                return
            time.sleep(pauses[attempt])
