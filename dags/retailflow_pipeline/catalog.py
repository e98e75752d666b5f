"""The parts of RetailFlow's catalog the DAGs' tasks use (``catalog.json``, package data: a link to
``generator/retailflow_generator/catalog.json`` in a checkout, the file itself in a built wheel).

The catalog is the one place for the source tables, the Airflow-variables contract the operator
writes, the default connection ids and the service ports; edit it there, never here.
"""

from __future__ import annotations

import json
from importlib.resources import files
from typing import Any

_CATALOG: dict[str, Any] = json.loads(files(__package__).joinpath("catalog.json").read_text(encoding="utf-8"))
_AIRFLOW = _CATALOG["airflow"]

#: primary key of each source table (MySQL), in the catalog's order
PRIMARY_KEYS: dict[str, str] = {t["name"]: t["primary_key"] for t in _CATALOG["source_tables"]}
#: cursor column of each source table
CURSORS: dict[str, str] = {t["name"]: t["cursor"] for t in _CATALOG["source_tables"]}
STREAM_NAMES: tuple[str, ...] = tuple(PRIMARY_KEYS)
#: the stream of the store locations CSV
STORE_LOCATIONS_STREAM: str = _CATALOG["store_locations"]["stream"]
#: prefix of the variables when a run does not name one (the operator's default ``variablePrefix``)
DEFAULT_PREFIX: str = _AIRFLOW["default_variable_prefix"]
#: the variable in which the operator lists every RetailPipeline's prefix
REGISTRY_VARIABLE: str = _AIRFLOW["registry_variable"]
#: the variables of one pipeline, without the prefix, and the shape of each (the contract)
VARIABLE_SHAPES: dict[str, Any] = _AIRFLOW["variables"]
VARIABLE_NAMES: tuple[str, ...] = tuple(VARIABLE_SHAPES)
#: the connection ids the operator's CRD defaults to (``spec.airflow.connectionIds``)
DEFAULT_CONN_IDS: dict[str, str] = dict(_AIRFLOW["default_connection_ids"])
#: default ports of the services (a URL or connection without a port means these)
PORTS: dict[str, int] = dict(_CATALOG["ports"])
