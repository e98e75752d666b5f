"""Fixtures of the governance suite: a real source and warehouse, and the OpenMetadata stand-in.

- ``source_url``: a throwaway MySQL database ``retail_test_<hex>`` with RetailFlow's schema and a
  small seeded history (dropped after the session).
- ``warehouse``: a throwaway PostgreSQL database ``warehouse_test_<hex>``, filled by the real
  ingestion engine from ``source_url`` and built by the real dbt project (``dbt build`` + ``dbt docs
  generate``, artifacts in a temporary target directory). Shared by the session: building it is the
  suite's most expensive step.
- ``standin``: a fresh OpenMetadata stand-in (``support.openmetadata_standin``) on a free loopback
  port for each test; the stand-in is not OpenMetadata, see its docstring for what it covers.
- ``om_env``: the environment ``retailflow_pipeline.governance.run`` reads, pointing at the stand-in.

The databases are never the shared ``retail``/``warehouse`` ones: credentials come from
``RETAILFLOW_MYSQL_URL``/``RETAILFLOW_WAREHOUSE_URL`` (``hack/with-env``), whose users may create
``retail_%`` databases and (the warehouse role) databases of its own.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest

from integration.pipeline.ingest_support import mysql, seed
from support.openmetadata_standin import OpenMetadataStandIn
from support.databases import (drop_pg_database, env_url as _env_url, throwaway_name, throwaway_tag,
                               with_database as _with_database)

REPO = Path(__file__).resolve().parents[3]
SCHEMA_SQL = REPO / "generator" / "retailflow_generator" / "schema.sql"
METADATA_BIN = REPO / ".tools" / "openmetadata" / "bin" / "metadata"




@pytest.fixture(scope="session")
def metadata_bin() -> Path:
    if not METADATA_BIN.exists():
        pytest.fail(f"{METADATA_BIN} is missing: run `make openmetadata-env`")
    return METADATA_BIN


@pytest.fixture(scope="session")
def source_url() -> Iterator[str]:
    """A throwaway MySQL database with the RetailFlow schema and a small history."""
    base = _env_url("RETAILFLOW_MYSQL_URL")
    name = throwaway_name("retail", "test", throwaway_tag())
    admin = mysql(_with_database(base, ""))
    with admin.cursor() as cur:
        cur.execute(f"create database `{name}` character set utf8mb4")
    url = _with_database(base, name)
    try:
        text = "\n".join(l for l in SCHEMA_SQL.read_text().splitlines() if not l.lstrip().startswith("--"))
        conn = mysql(url)
        with conn, conn.cursor() as cur:
            for statement in filter(None, (s.strip() for s in text.split(";"))):
                cur.execute(statement)
        seed(url, customers=60, products=20, orders=300, items=700)
        yield url
    finally:
        with admin.cursor() as cur:
            cur.execute(f"drop database if exists `{name}`")
        admin.close()


@dataclass(frozen=True)
class Warehouse:
    url: str
    database: str
    dbt_target: Path
    run_results: Path


@pytest.fixture(scope="session")
def warehouse(source_url: str, tmp_path_factory) -> Iterator[Warehouse]:
    """A throwaway warehouse, ingested from ``source_url`` and built by dbt (with docs)."""
    from retailflow_pipeline import dbt as dbt_runner
    from retailflow_ingest.engine import run as ingest

    base = _env_url("RETAILFLOW_WAREHOUSE_URL")
    name = throwaway_name("warehouse", "test", throwaway_tag())
    with psycopg.connect(base, autocommit=True) as admin:
        admin.execute(f'create database "{name}"')
    url = _with_database(base, name)
    target = tmp_path_factory.mktemp("dbt-target")
    try:
        ingest(source_url, url, schema="raw", stores_csv=REPO / "data" / "store_locations.csv", lake=None)
        for args in (["build"], ["docs", "generate"]):
            code = dbt_runner.run(args, warehouse_url=url, raw_schema="raw", target_path=target,
                                  log_path=target / "logs")
            assert code == 0, f"dbt {' '.join(args)} failed on the throwaway warehouse (exit {code})"
            if args == ["build"]:  # docs generate overwrites run_results.json with its own
                shutil.copy(target / "run_results.json", target / "build_run_results.json")
        yield Warehouse(url=url, database=name, dbt_target=target, run_results=target / "build_run_results.json")
    finally:
        drop_pg_database(base, name)


@pytest.fixture
def standin() -> Iterator[OpenMetadataStandIn]:
    """The OpenMetadata stand-in (a recording imitation of its REST API, not OpenMetadata)."""
    with OpenMetadataStandIn() as server:
        yield server


@pytest.fixture
def om_env(standin, metadata_bin) -> dict[str, str]:
    """Settings for ``governance.run`` pointing at the stand-in (and only at throwaway peers)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RETAILFLOW_")}
    env |= {
        "RETAILFLOW_OPENMETADATA_URL": standin.url.removesuffix("/api"),
        # The stand-in accepts any bearer token; a real server checks the ingestion bot's JWT.
        "RETAILFLOW_OPENMETADATA_TOKEN": "stand-in.ingestion-bot.jwt",
        "RETAILFLOW_OPENMETADATA_METADATA_BIN": str(metadata_bin),
    }
    return env
