"""RetailFlow's catalog, as the operator reads it: the source tables, the store-locations stream, the
Airflow-variables contract, the default Airflow connection ids and the service ports.

``catalog.json`` in this package is a symlink to ``generator/retailflow_generator/catalog.json``, the one
copy (a built wheel and the image carry the real file). Edit it there only, then run ``make crd``: the
CRD's stream rules and defaults and the contract block of operator/README.md are generated from it.
"""

from __future__ import annotations

import json
from importlib import resources
from typing import Any

DATA: dict[str, Any] = json.loads(resources.files(__package__).joinpath("catalog.json").read_text())

#: The orders database's tables, in order: name -> (single-column primary key, cursor column).
SOURCE_TABLES: dict[str, tuple[str, str]] = {
    t["name"]: (t["primary_key"], t["cursor"]) for t in DATA["source_tables"]
}
#: The stream name of the store-locations CSV.
STORE_LOCATIONS_STREAM: str = DATA["store_locations"]["stream"]

_AIRFLOW = DATA["airflow"]
#: Prefix of a pipeline's variable keys when spec.airflow.variablePrefix is left out.
DEFAULT_VARIABLE_PREFIX: str = _AIRFLOW["default_variable_prefix"]
#: The variable listing every pipeline's prefix (``{prefix: "namespace/name"}``).
REGISTRY_VARIABLE: str = _AIRFLOW["registry_variable"]
#: role (mysql, warehouse, lake, airbyte) -> the Airflow connection id the DAGs use by default.
DEFAULT_CONNECTION_IDS: dict[str, str] = dict(_AIRFLOW["default_connection_ids"])
#: variable name (without prefix) -> its documented shape (the contract with the DAGs).
VARIABLES: dict[str, Any] = _AIRFLOW["variables"]
VARIABLE_NAMES: tuple[str, ...] = tuple(VARIABLES)

#: service -> default port (mysql, postgresql, airflow, superset, minio, openmetadata).
PORTS: dict[str, int] = dict(DATA["ports"])
