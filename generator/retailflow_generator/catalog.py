"""What the generator takes from RetailFlow's catalog (`catalog.json`, beside `schema.sql`): the
source tables and their keys, the store CSV's header and the service ports. The file is the one
place these facts are written; edit it, not this module."""

from __future__ import annotations

import json
from importlib.resources import files

_CATALOG = json.loads(files(__package__).joinpath("catalog.json").read_text(encoding="utf-8"))

#: the MySQL source tables, parents first (the order `schema.sql` creates them in)
TABLES: tuple[str, ...] = tuple(t["name"] for t in _CATALOG["source_tables"])
#: primary key of each source table
PRIMARY_KEYS: dict[str, str] = {t["name"]: t["primary_key"] for t in _CATALOG["source_tables"]}
#: columns of the store-locations CSV, in order
STORE_CSV_HEADER: tuple[str, ...] = tuple(_CATALOG["store_locations"]["csv_header"])
#: default port of each service (mysql, postgresql, airflow, superset, minio, openmetadata)
PORTS: dict[str, int] = dict(_CATALOG["ports"])
