"""Run the RetailFlow dbt project against the warehouse named by ``$RETAILFLOW_WAREHOUSE_URL``.

``python -m retailflow_pipeline.dbt <dbt args>`` behaves like ``dbt <dbt args>`` run from the
project, with the connection taken from one URL instead of a profile holding a password:

    python -m retailflow_pipeline.dbt build
    python -m retailflow_pipeline.dbt docs generate
    python -m retailflow_pipeline.dbt source freshness

Environment:

- ``RETAILFLOW_WAREHOUSE_URL``: ``postgresql://user:password@host:5432/database`` (required unless
  the ``RETAILFLOW_DBT_*`` variables that ``dbt/profiles.yml`` reads are already set).
- ``RETAILFLOW_RAW_SCHEMA``: schema of the raw tables the sources read (default ``raw``, passed to
  dbt explicitly, as the DAG's dbt tasks pass it).
- ``RETAILFLOW_DBT_PROJECT_DIR``: where the dbt project is (default: ``dbt/`` of ``$RETAILFLOW_HOME``, see
  ``paths``).
- ``RETAILFLOW_DBT_THREADS``: dbt threads (default 4).
- ``RETAILFLOW_DBT_WORK_MEM``: PostgreSQL ``work_mem`` of dbt's sessions (default 128MB; ignored when
  ``PGOPTIONS`` is set).
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from urllib.parse import parse_qsl, unquote, urlsplit

from retailflow_pipeline import paths
from retailflow_pipeline.catalog import PORTS


#: the profile and target of ``dbt/profiles.yml``, passed explicitly as Cosmos passes them to the DAG's
#: dbt tasks: dbt keeps a partial-parse file only for the same ``--profile`` and ``--target``
#: arguments and connection settings, so a parse here (``make dbt-manifest``) spares the next
#: Airflow run a full parse
PROFILE, TARGET = "retailflow", "warehouse"
#: the raw schema when none is given (``dbt/models/staging/_retail__sources.yml`` has the same default)
DEFAULT_RAW_SCHEMA = "raw"


def project_dir() -> Path:
    """``$RETAILFLOW_DBT_PROJECT_DIR``, else ``dbt/`` of ``$RETAILFLOW_HOME`` (``paths``)."""
    return paths.dbt_project_dir()


def profile_env(warehouse_url: str, raw_schema: str | None = None) -> dict[str, str]:
    """Translate a PostgreSQL URL into the variables ``dbt/profiles.yml`` reads."""
    parts = urlsplit(warehouse_url)
    if parts.scheme not in {"postgresql", "postgres", "postgresql+psycopg", "postgresql+psycopg2"}:
        raise ValueError(f"warehouse URL must be postgresql://…, got scheme {parts.scheme!r}")
    database = unquote(parts.path.lstrip("/"))
    if not parts.username or not database:
        raise ValueError("warehouse URL must name a user and a database: postgresql://user:pw@host:port/db")
    env = {
        "RETAILFLOW_DBT_HOST": parts.hostname or "127.0.0.1",
        "RETAILFLOW_DBT_PORT": str(parts.port or PORTS["postgresql"]),
        "RETAILFLOW_DBT_USER": unquote(parts.username),
        "DBT_ENV_SECRET_RETAILFLOW_PASSWORD": unquote(parts.password or ""),
        "RETAILFLOW_DBT_DBNAME": database,
    }
    # as Cosmos's profile takes it from the Airflow connection's extras (the same URL's query), so that
    # both render the same profile
    query = dict(parse_qsl(parts.query))
    if "sslmode" in query:
        env["RETAILFLOW_DBT_SSLMODE"] = query["sslmode"]
    if raw_schema:
        env["RETAILFLOW_RAW_SCHEMA"] = raw_schema
    return env


def dbt_args(args: Sequence[str], project: Path) -> list[str]:
    """Point dbt at the project, its profile and target unless the caller already did."""
    args = list(args)
    if not args or args[0] in {"--version", "-h", "--help"}:
        return args
    # a flag given (in any of its forms) wins, and so does a profile or target set through dbt's own
    # variable
    for flags, value, variable in ((("--project-dir",), str(project), None),
                                   (("--profiles-dir",), str(project), None),
                                   (("--profile",), PROFILE, "DBT_PROFILE"),
                                   (("--target", "-t"), TARGET, "DBT_TARGET")):
        given = any(a in flags or a.startswith(tuple(f + "=" for f in flags)) for a in args)
        if not given and not (variable and os.environ.get(variable)):
            args += [flags[0], value]
    return args


@contextlib.contextmanager
def _environment(values: Mapping[str, str]) -> Iterator[None]:
    saved = {key: os.environ.get(key) for key in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def run(
    args: Sequence[str],
    *,
    warehouse_url: str | None = None,
    raw_schema: str | None = None,
    target_path: str | Path | None = None,
    log_path: str | Path | None = None,
) -> int:
    """Run dbt in this process; return its exit code (0 ok, 1 failed tests or models, 2 error).

    Raises ``ValueError`` when no usable warehouse URL is given or set.

    ``warehouse_url`` and ``raw_schema`` default to ``$RETAILFLOW_WAREHOUSE_URL`` and
    ``$RETAILFLOW_RAW_SCHEMA``; ``target_path``/``log_path`` let callers keep their artefacts apart
    from ``dbt/target`` (e.g. tests against throwaway databases).
    """
    warehouse_url = warehouse_url or os.environ.get("RETAILFLOW_WAREHOUSE_URL")
    env: dict[str, str] = {
        # No network but package registries: never try to send usage statistics.
        "DBT_SEND_ANONYMOUS_USAGE_STATS": "false",
        "DBT_VERSION_CHECK": "false",
    }
    if "PGOPTIONS" not in os.environ:
        # The marts aggregate every order line; PostgreSQL's 4MB default spills those hashes to disk.
        env["PGOPTIONS"] = f"-c work_mem={os.environ.get('RETAILFLOW_DBT_WORK_MEM', '128MB')}"
    # the raw schema always set, as the DAG's dbt tasks set it: dbt's partial-parse file records the
    # value each env_var() call saw, and re-parses the files whose values changed
    raw_schema = raw_schema or os.environ.get("RETAILFLOW_RAW_SCHEMA") or DEFAULT_RAW_SCHEMA
    if warehouse_url:
        env |= profile_env(warehouse_url, raw_schema)
    elif not os.environ.get("RETAILFLOW_DBT_USER"):
        raise ValueError("RETAILFLOW_WAREHOUSE_URL is not set (postgresql://user:password@host:port/db)")
    else:
        env["RETAILFLOW_RAW_SCHEMA"] = raw_schema
    if target_path:
        env["DBT_TARGET_PATH"] = str(target_path)
    if log_path:
        env["DBT_LOG_PATH"] = str(log_path)

    from dbt.cli.main import dbtRunner  # a 2-5 s import: only once the settings are known to be usable

    with _environment(env):
        result = dbtRunner().invoke(dbt_args(args, project_dir()))
    if result.exception is not None:
        print(f"dbt: {result.exception}", file=sys.stderr)
        return 2
    return 0 if result.success else 1


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args:
        print("usage: python -m retailflow_pipeline.dbt <dbt command> [args] (e.g. build, docs generate)")
        return 2
    try:
        return run(args)
    except ValueError as exc:
        print(f"retailflow_pipeline.dbt: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
