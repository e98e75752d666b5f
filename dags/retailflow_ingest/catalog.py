"""The parts of RetailFlow's catalog the ingestion engine uses (``catalog.json``, package data: a link to
``generator/retailflow_generator/catalog.json`` in a checkout, the file itself in a built wheel).

The catalog is the one place for the source tables, their keys and cursor, the store CSV's header and
the service ports; edit it there, never here.
"""

from __future__ import annotations

import json
from importlib.resources import files

_CATALOG = json.loads(files(__package__).joinpath("catalog.json").read_text(encoding="utf-8"))

#: primary key of each source table, in the catalog's order (the engine's default streams)
PRIMARY_KEYS: dict[str, str] = {t["name"]: t["primary_key"] for t in _CATALOG["source_tables"]}
#: the CSV stream of store locations: its name, primary key and the header its file must have
STORES_STREAM: str = _CATALOG["store_locations"]["stream"]
STORES_PRIMARY_KEY: str = _CATALOG["store_locations"]["primary_key"]
STORES_CSV_HEADER: tuple[str, ...] = tuple(_CATALOG["store_locations"]["csv_header"])
#: default ports of the services (a URL without a port means these)
MYSQL_PORT: int = _CATALOG["ports"]["mysql"]
POSTGRESQL_PORT: int = _CATALOG["ports"]["postgresql"]
