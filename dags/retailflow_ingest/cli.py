"""``retailflow-ingest``: the local ingestion engine from the command line.

Exit codes: 0 synced; 2 bad input or a peer that is down (one line on stderr, nothing written);
130 / 143 stopped by SIGINT / SIGTERM (streams in flight rolled back, committed ones kept, summary
printed); 1 a stream failed for another reason (the others committed).
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
from datetime import timedelta
from pathlib import Path

from retailflow_ingest.errors import (
    MYSQL_SCHEMES,
    MYSQL_SHAPE,
    WAREHOUSE_SCHEMES,
    WAREHOUSE_SHAPE,
    IngestCancelled,
    IngestFailed,
    IngestError,
    OneLineParser,
    first_line,
    url_problem,
)
from retailflow_ingest.settings import (
    DEFAULT_BATCH_ROWS,
    DEFAULT_LAKE_KEEP,
    DEFAULT_LOCAL_DIR,
    DEFAULT_LOOKBACK,
    default_stores_csv,
)

PROG = "retailflow-ingest"


def _whole(minimum: int):
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"{value} is below the minimum of {minimum}")
        return value

    return parse


#: the longest lookback: a year re-reads all a shop changed in it; more would overflow the dates
MAX_LOOKBACK_S = 366 * 86400


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not value >= 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"{text} must be 0 or more (seconds)")
    if value > MAX_LOOKBACK_S:
        raise argparse.ArgumentTypeError(f"{text} is more than a year ({MAX_LOOKBACK_S} s); for a full reload"
                                         " use --full-refresh")
    return value


def _schema(text: str) -> str:
    """A schema the engine may create: PostgreSQL reserves names starting with ``pg_`` for itself."""
    if not text or text.lower().startswith("pg_") or text.lower() == "information_schema":
        raise argparse.ArgumentTypeError(f"{text!r} is not a schema the engine can write: PostgreSQL reserves"
                                         " it (or names starting with pg_)")
    return text


def parser() -> argparse.ArgumentParser:
    p = OneLineParser(
        name=PROG,
        prog=PROG,
        description="Sync the MySQL orders database and the store locations CSV into the warehouse's raw "
        "schema, in the same tables Airbyte's Postgres destination writes, and copy the raw rows to the lake.",
    )
    p.add_argument("--mysql-url", default=None,
                   help="source, mysql://USER@HOST:PORT/DB without a password (default and the only way to pass one:"
                   " $RETAILFLOW_MYSQL_URL; a password in an argument shows in the process list)")
    p.add_argument("--warehouse-url", default=None,
                   help="warehouse, postgresql://USER@HOST:PORT/DB without a password (default $RETAILFLOW_WAREHOUSE_URL;"
                   " a URL without one uses libpq's PGPASSWORD or ~/.pgpass)")
    p.add_argument("--schema", type=_schema, default=os.environ.get("RETAILFLOW_RAW_SCHEMA", "raw"),
                   help="raw schema in the warehouse (default $RETAILFLOW_RAW_SCHEMA or raw)")
    p.add_argument("--streams", nargs="+", metavar="STREAM",
                   help="streams to sync (default: the pipeline's catalog, customers, products, orders and order_items,"
                   " and store_locations; other tables are ignored, named in one line)")
    p.add_argument("--stores-csv", default=None,
                   help="store locations CSV (default $RETAILFLOW_DATA_DIR/store_locations.csv, else the checkout's"
                   " data/store_locations.csv, from any working directory; 'none' to skip)")
    p.add_argument("--allow-empty-stores", action="store_true",
                   help="let a store locations CSV without a loadable row empty raw.store_locations (refused otherwise)")
    lake = p.add_mutually_exclusive_group()
    lake.add_argument("--lake-dir", type=Path, help=f"local lake folder (default {DEFAULT_LOCAL_DIR})")
    lake.add_argument("--lake-endpoint", default=None,
                      help="S3 endpoint http(s)://HOST:PORT (default $RETAILFLOW_LAKE_ENDPOINT, unless --lake-dir is"
                      " given); credentials from $RETAILFLOW_LAKE_ACCESS_KEY/$RETAILFLOW_LAKE_SECRET_KEY")
    lake.add_argument("--no-lake", action="store_true", help="write no lake files")
    p.add_argument("--lake-bucket", default=os.environ.get("RETAILFLOW_LAKE_BUCKET", "retailflow"))
    p.add_argument("--lake-prefix", default=os.environ.get("RETAILFLOW_LAKE_PREFIX", "raw"))
    p.add_argument("--lake-keep", type=_whole(0), default=os.environ.get("RETAILFLOW_LAKE_KEEP", DEFAULT_LAKE_KEEP),
                   help="keep the lake folders of the last N full loads of each stream (and the incremental syncs"
                   " since); older ones and those left uncommitted are removed; 0 keeps everything"
                   " (default $RETAILFLOW_LAKE_KEEP or %(default)s)")
    p.add_argument("--full-refresh", action="store_true",
                   help="reload every stream and start a new _airbyte_generation_id; remembered until every stream"
                   " has completed it")
    p.add_argument("--lookback-seconds", type=_seconds, default=DEFAULT_LOOKBACK.total_seconds(),
                   help="re-read this far before the saved cursor (late commits; default %(default)s)")
    p.add_argument("--parallel", type=_whole(1), default=2, help="streams written at once (default %(default)s)")
    p.add_argument("--batch-rows", type=_whole(1), default=DEFAULT_BATCH_ROWS,
                   help="rows per Arrow batch and lake file (default %(default)s)")
    return p


def lake_config(args: argparse.Namespace):
    """The lake the arguments choose: none (``--no-lake``), the folder of ``--lake-dir``, the S3 endpoint
    of ``--lake-endpoint`` or else ``$RETAILFLOW_LAKE_ENDPOINT``, else the local folder. A folder named on
    the command line wins over the environment's endpoint."""
    from retailflow_ingest.lake import LakeConfig

    if args.no_lake:
        return None
    endpoint = None if args.lake_dir else args.lake_endpoint or os.environ.get("RETAILFLOW_LAKE_ENDPOINT")
    if endpoint:
        return LakeConfig(bucket=args.lake_bucket, prefix=args.lake_prefix, endpoint=endpoint, keep=args.lake_keep)
    return LakeConfig(bucket=args.lake_bucket, prefix=args.lake_prefix, local_dir=args.lake_dir or DEFAULT_LOCAL_DIR,
                      keep=args.lake_keep)


def _check_url_argument(option: str, url: str | None, env: str) -> None:
    """A URL given as ``option`` is whole and carries no password (it belongs in ``env``): refused
    before the engine loads, naming the option."""
    if not url:
        return
    if option == "--mysql-url":
        problem = url_problem(url, option, MYSQL_SHAPE, MYSQL_SCHEMES, needs_database=True, password_env=env)
    else:
        problem = url_problem(url, option, WAREHOUSE_SHAPE, WAREHOUSE_SCHEMES, password_env=env)
    if problem:
        raise IngestError(problem)


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        _check_url_argument("--mysql-url", args.mysql_url, "RETAILFLOW_MYSQL_URL")
        _check_url_argument("--warehouse-url", args.warehouse_url, "RETAILFLOW_WAREHOUSE_URL")
    except IngestError as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return 2
    mysql_url = args.mysql_url or os.environ.get("RETAILFLOW_MYSQL_URL")
    warehouse_url = args.warehouse_url or os.environ.get("RETAILFLOW_WAREHOUSE_URL")
    if not mysql_url:
        print(f"{PROG}: no source: set RETAILFLOW_MYSQL_URL (or pass --mysql-url)", file=sys.stderr)
        return 2
    if not warehouse_url:
        print(f"{PROG}: no warehouse: set RETAILFLOW_WAREHOUSE_URL (or pass --warehouse-url)", file=sys.stderr)
        return 2
    # the engine (Arrow, the drivers) loads only once the arguments are known to be good. numpy's
    # OpenBLAS would start a thread per core as it loads, which busy-waits for work: the engine does no
    # linear algebra, and that spin cost a small sync's process about 0.1 CPU-s (0.43 against 0.31)
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    from retailflow_ingest.engine import configure_logging, run

    lake = lake_config(args)

    stop = threading.Event()
    received: list[int] = []

    def on_signal(signum, _frame) -> None:
        if received:  # a second signal: leave now; the server rolls back the open transactions
            os._exit(128 + received[0])
        received.append(signum)
        print(f"{PROG}: {signal.Signals(signum).name} received, stopping: streams in flight roll back,"
              " committed ones stay", file=sys.stderr, flush=True)
        stop.set()

    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, on_signal)
    configure_logging()
    try:
        result = run(
            mysql_url,
            warehouse_url,
            schema=args.schema,
            streams=args.streams,
            stores_csv=(default_stores_csv() if args.stores_csv is None
                        else None if args.stores_csv.lower() == "none" else args.stores_csv),
            lake=lake,
            full_refresh=args.full_refresh,
            lookback=timedelta(seconds=args.lookback_seconds),
            batch_rows=args.batch_rows,
            parallel=args.parallel,
            allow_empty_stores=args.allow_empty_stores,
            stop=stop,
        )
    except IngestCancelled as exc:
        print(exc.result.summary(), flush=True)
        return 128 + (received[0] if received else signal.SIGINT)
    except IngestFailed as exc:  # the summary says which streams committed; stderr, which failed and why
        print(exc.result.summary(), flush=True)
        for name, failure in exc.failures:
            print(f"{PROG}: {name} failed, its table and cursor are unchanged:"
                  f" {first_line(failure).removeprefix(f'{name}: ')}",
                  file=sys.stderr)
        return 1
    except IngestError as exc:
        if received:
            return 128 + received[0]
        print(f"{PROG}: {exc}", file=sys.stderr)
        return 2
    print(result.summary(), flush=True)
    return 0


def entry() -> None:
    """The console script: ``main``, then out at once. By then every connection is closed and every
    stream committed or rolled back; what is left is the interpreter's teardown of Arrow, numpy and
    the drivers (about 50 ms, a tenth of a small sync's wall time), which only frees memory."""
    code = main()
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    entry()
