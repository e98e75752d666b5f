"""dlt loading the four source tables into PostgreSQL, as bench_peers.py measures it. Runs in the peers
environment (``make peers-env``: ``.tools/peers/bin/python``), never the product's.

    peers_dlt.py full|incr PIPELINES_DIR DATASET

The URLs come from the environment only (``RETAILFLOW_MYSQL_URL``, ``RETAILFLOW_WAREHOUSE_URL``). The
configuration is dlt's documented fast path:

- ``sql_database`` with ``backend="connectorx"`` (dlt's sql_database docs, "Configuring the backend":
  ConnectorX reads rows in Rust and yields Arrow tables, "2x faster than the PyArrow backend");
- ``loader_file_format="csv"`` for the postgres destination (dlt's postgres destination docs, "Fast
  loading with Arrow tables and CSV": Arrow tables are written as CSV by pyarrow and streamed with COPY,
  skipping the normalizer);
- every table with an ``updated_at`` cursor (``dlt.sources.incremental``) and its primary key, so that
  ``incr`` merges only what changed since the last run (``full`` replaces the tables and sets the cursor).
"""

from __future__ import annotations

import os
import sys
from urllib.parse import urlsplit, urlunsplit

import dlt
from dlt.sources.sql_database import sql_database

TABLES = ("customers", "products", "orders", "order_items")
PRIMARY_KEYS = {"customers": "customer_id", "products": "product_id", "orders": "order_id",
                "order_items": "order_item_id"}


def main() -> int:
    mode, pipelines_dir, dataset = sys.argv[1], sys.argv[2], sys.argv[3]
    mysql = urlsplit(os.environ["RETAILFLOW_MYSQL_URL"])
    sqlalchemy_url = urlunsplit(("mysql+pymysql", mysql.netloc, mysql.path, "", ""))
    connectorx_url = urlunsplit(("mysql", mysql.netloc, mysql.path, "", ""))
    source = sql_database(sqlalchemy_url, table_names=list(TABLES), backend="connectorx",
                          backend_kwargs={"conn": connectorx_url})
    for table in TABLES:
        getattr(source, table).apply_hints(
            primary_key=PRIMARY_KEYS[table], incremental=dlt.sources.incremental("updated_at"),
            write_disposition="replace" if mode == "full" else "merge")
    pipeline = dlt.pipeline(pipeline_name="retailflow_peers", pipelines_dir=pipelines_dir,
                            destination=dlt.destinations.postgres(os.environ["RETAILFLOW_WAREHOUSE_URL"]),
                            dataset_name=dataset)
    info = pipeline.run(source, loader_file_format="csv")
    info.raise_on_failed_jobs()
    rows = pipeline.last_trace.last_normalize_info.row_counts
    print({t: n for t, n in rows.items() if not t.startswith("_dlt")}, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
