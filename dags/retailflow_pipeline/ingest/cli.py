"""``retailflow-ingest``: the local ingestion engine from the command line."""

from __future__ import annotations

import argparse
import os
import sys
from datetime import timedelta
from pathlib import Path

from retailflow_pipeline.ingest.engine import DEFAULT_BATCH_ROWS, DEFAULT_LOOKBACK, configure_logging, run
from retailflow_pipeline.ingest.errors import IngestError
from retailflow_pipeline.ingest.lake import DEFAULT_LOCAL_DIR, LakeConfig


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="retailflow-ingest",
        description="Sync the MySQL orders database and the store locations CSV into the warehouse's raw "
        "schema, in the same tables Airbyte's Postgres destination writes, and copy the raw rows to the lake.",
    )
    p.add_argument("--mysql-url", default=os.environ.get("RETAILFLOW_MYSQL_URL"),
                   help="source, mysql://USER:PW@HOST:PORT/DB (default $RETAILFLOW_MYSQL_URL)")
    p.add_argument("--warehouse-url", default=os.environ.get("RETAILFLOW_WAREHOUSE_URL"),
                   help="warehouse, postgresql://USER:PW@HOST:PORT/DB (default $RETAILFLOW_WAREHOUSE_URL)")
    p.add_argument("--schema", default=os.environ.get("RETAILFLOW_RAW_SCHEMA", "raw"),
                   help="raw schema in the warehouse (default $RETAILFLOW_RAW_SCHEMA or raw)")
    p.add_argument("--streams", nargs="+", metavar="STREAM",
                   help="streams to sync (default: all MySQL tables and store_locations)")
    p.add_argument("--stores-csv", default="data/store_locations.csv",
                   help="store locations CSV (default data/store_locations.csv; 'none' to skip)")
    lake = p.add_mutually_exclusive_group()
    lake.add_argument("--lake-dir", type=Path, help=f"local lake folder (default {DEFAULT_LOCAL_DIR})")
    lake.add_argument("--lake-endpoint", default=os.environ.get("RETAILFLOW_LAKE_ENDPOINT"),
                      help="S3 endpoint http(s)://HOST:PORT (default $RETAILFLOW_LAKE_ENDPOINT); credentials "
                      "from $RETAILFLOW_LAKE_ACCESS_KEY/$RETAILFLOW_LAKE_SECRET_KEY")
    lake.add_argument("--no-lake", action="store_true", help="write no lake files")
    p.add_argument("--lake-bucket", default=os.environ.get("RETAILFLOW_LAKE_BUCKET", "retailflow"))
    p.add_argument("--lake-prefix", default=os.environ.get("RETAILFLOW_LAKE_PREFIX", "raw"))
    p.add_argument("--full-refresh", action="store_true",
                   help="reload every stream and start a new _airbyte_generation_id")
    p.add_argument("--lookback-seconds", type=float, default=DEFAULT_LOOKBACK.total_seconds(),
                   help="re-read this far before the saved cursor (late commits; default %(default)s)")
    p.add_argument("--parallel", type=int, default=2, help="streams synced at once (default %(default)s)")
    p.add_argument("--batch-rows", type=int, default=DEFAULT_BATCH_ROWS, help="rows per read (default %(default)s)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if not args.mysql_url:
        print("retailflow-ingest: no source: pass --mysql-url or set RETAILFLOW_MYSQL_URL", file=sys.stderr)
        return 2
    if not args.warehouse_url:
        print("retailflow-ingest: no warehouse: pass --warehouse-url or set RETAILFLOW_WAREHOUSE_URL", file=sys.stderr)
        return 2
    if args.no_lake:
        lake = None
    elif args.lake_endpoint:
        lake = LakeConfig(bucket=args.lake_bucket, prefix=args.lake_prefix, endpoint=args.lake_endpoint)
    else:
        lake = LakeConfig(bucket=args.lake_bucket, prefix=args.lake_prefix,
                          local_dir=args.lake_dir or DEFAULT_LOCAL_DIR)
    configure_logging()
    try:
        result = run(
            args.mysql_url,
            args.warehouse_url,
            schema=args.schema,
            streams=args.streams,
            stores_csv=None if args.stores_csv.lower() == "none" else args.stores_csv,
            lake=lake,
            full_refresh=args.full_refresh,
            lookback=timedelta(seconds=args.lookback_seconds),
            batch_rows=args.batch_rows,
            parallel=args.parallel,
        )
    except IngestError as exc:
        print(f"retailflow-ingest: {exc}", file=sys.stderr)
        return 2
    print(result.summary(), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
