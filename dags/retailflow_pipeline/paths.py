"""Where RetailFlow's files are: every path below one home folder, ``$RETAILFLOW_HOME``.

``RETAILFLOW_HOME`` is the repository's layout: ``dbt/``, ``data/``, ``charts/retailflow/files/`` and
``.tools/`` below it. Unset, it is the checkout these packages run from (``make`` and the tests), or
the working directory when they are installed outside a checkout. The Airflow image sets it to
``/opt/retailflow``, and sets the specific variables below where its layout differs from the
repository's (the OpenMetadata workflows, the ``metadata`` CLI).

A specific variable always wins over the path derived from the home:

| function | variable | derived default |
|---|---|---|
| ``dbt_project_dir`` | ``RETAILFLOW_DBT_PROJECT_DIR`` | ``dbt/`` |
| ``dbt_target_dir`` | ``RETAILFLOW_DBT_TARGET_DIR`` | the project's ``target/`` |
| ``dbt_manifest`` | ``RETAILFLOW_DBT_MANIFEST`` | the target's ``manifest.json`` |
| ``data_dir`` | ``RETAILFLOW_DATA_DIR`` | ``data/`` (``store_locations.csv``) |
| ``local_lake_dir`` | (the CLI's ``--lake-dir``) | ``.lake/`` (ignored by git) |
| ``superset_bundle_dir`` | ``RETAILFLOW_SUPERSET_BUNDLE`` | ``charts/retailflow/files/superset/bundle`` |
| ``openmetadata_workflows_dir`` | ``RETAILFLOW_OPENMETADATA_WORKFLOWS`` | ``charts/retailflow/files/openmetadata`` |
| ``openmetadata_metadata_bin`` | ``RETAILFLOW_OPENMETADATA_METADATA_BIN`` | ``.tools/openmetadata/bin/metadata`` |

Each function reads the environment when called (``env``, default ``os.environ``), so a variable set
after import counts. Package data (``catalog.json``) is not found here but through
``importlib.resources`` (``catalog.py``).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

#: the checkout this module sits in (``dags/retailflow_pipeline/paths.py``), if it is one
_CHECKOUT = Path(__file__).resolve().parent.parent.parent


def home(env: Mapping[str, str] = os.environ) -> Path:
    if env.get("RETAILFLOW_HOME"):
        return Path(env["RETAILFLOW_HOME"])
    return _CHECKOUT if (_CHECKOUT / "dags" / "pyproject.toml").is_file() else Path.cwd()


def _specific(env: Mapping[str, str], variable: str, default: Path) -> Path:
    return Path(env[variable]) if env.get(variable) else default


def dbt_project_dir(env: Mapping[str, str] = os.environ) -> Path:
    return _specific(env, "RETAILFLOW_DBT_PROJECT_DIR", home(env) / "dbt")


def dbt_target_dir(env: Mapping[str, str] = os.environ) -> Path:
    return _specific(env, "RETAILFLOW_DBT_TARGET_DIR", dbt_project_dir(env) / "target")


def dbt_manifest(env: Mapping[str, str] = os.environ) -> Path:
    return _specific(env, "RETAILFLOW_DBT_MANIFEST", dbt_target_dir(env) / "manifest.json")


def data_dir(env: Mapping[str, str] = os.environ) -> Path:
    return _specific(env, "RETAILFLOW_DATA_DIR", home(env) / "data")


def stores_csv(env: Mapping[str, str] = os.environ) -> Path:
    """The store locations CSV of the data folder."""
    return data_dir(env) / "store_locations.csv"


def local_lake_dir(env: Mapping[str, str] = os.environ) -> Path:
    return home(env) / ".lake"


def superset_bundle_dir(env: Mapping[str, str] = os.environ) -> Path:
    return _specific(env, "RETAILFLOW_SUPERSET_BUNDLE", home(env) / "charts" / "retailflow" / "files" / "superset" / "bundle")


def openmetadata_workflows_dir(env: Mapping[str, str] = os.environ) -> Path:
    return _specific(env, "RETAILFLOW_OPENMETADATA_WORKFLOWS", home(env) / "charts" / "retailflow" / "files" / "openmetadata")


def openmetadata_metadata_bin(env: Mapping[str, str] = os.environ) -> Path:
    return _specific(env, "RETAILFLOW_OPENMETADATA_METADATA_BIN", home(env) / ".tools" / "openmetadata" / "bin" / "metadata")
