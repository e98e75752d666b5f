"""`retailflow-generator`: seed, live and stores."""

from __future__ import annotations

import argparse
import sys
from datetime import date
from pathlib import Path

from .db import GeneratorError, MySQLTarget, env_url

DEFAULT_STORES_CSV = Path("data/store_locations.csv")


def _day(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a date YYYY-MM-DD, got {text!r}") from None


def _count(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None


def _positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be greater than zero, got {text!r}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="retailflow-generator",
        description="Deterministic retail data for RetailFlow: a MySQL orders database and a store-locations CSV.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    url_help = "mysql://USER:PASSWORD@HOST:PORT/DATABASE (default: $RETAILFLOW_MYSQL_URL)"

    seed = sub.add_parser("seed", help="bulk-load customers, products and orders over a date range")
    seed.add_argument("--customers", type=_count, required=True, help="customers to create")
    seed.add_argument("--products", type=_count, required=True, help="products to create")
    seed.add_argument("--orders", type=_count, required=True, help="orders to create (1-12 lines each)")
    seed.add_argument("--start", type=_day, required=True, help="first order day, YYYY-MM-DD")
    seed.add_argument("--end", type=_day, required=True, help="last order day, YYYY-MM-DD (inclusive)")
    seed.add_argument("--seed", type=_count, default=42, help="random seed: same seed and arguments, same rows")
    mode = seed.add_mutually_exclusive_group()
    mode.add_argument("--append", action="store_true", help="add to existing data (ids continue after the current max)")
    mode.add_argument("--truncate", action="store_true", help="replace existing data (in the same transaction)")
    seed.add_argument("--mysql-url", default=None, help=url_help)

    live = sub.add_parser("live", help="simulate live traffic: new orders and status changes")
    bound = live.add_mutually_exclusive_group(required=True)
    bound.add_argument("--duration", type=_positive, help="run for this many seconds")
    bound.add_argument("--iterations", type=_count, help="run this many ticks")
    live.add_argument("--rate", type=_positive, default=5.0, help="new orders per second (default 5)")
    live.add_argument("--interval", type=_positive, default=1.0, help="seconds per tick (default 1)")
    live.add_argument("--seed", type=_count, default=None, help="random seed for the choices made")
    live.add_argument("--mysql-url", default=None, help=url_help)

    stores = sub.add_parser("stores", help="write the store-locations CSV (and upload it to the lake)")
    stores.add_argument("--out", type=Path, default=DEFAULT_STORES_CSV, help=f"CSV path (default {DEFAULT_STORES_CSV})")
    stores.add_argument("--lake", metavar="URL", help="S3 endpoint (MinIO), e.g. http://127.0.0.1:9000; "
                        "credentials from RETAILFLOW_LAKE_ACCESS_KEY / RETAILFLOW_LAKE_SECRET_KEY")
    stores.add_argument("--bucket", default="retailflow-lake", help="lake bucket (default retailflow-lake)")
    stores.add_argument("--prefix", default="raw/store_locations", help="object key prefix (default raw/store_locations)")
    return parser


def _seed(args: argparse.Namespace) -> str:
    from .seed import SeedRequest, print_progress_factory, run_seed

    request = SeedRequest(
        customers=args.customers,
        products=args.products,
        orders=args.orders,
        start=args.start,
        end=args.end,
        seed=args.seed,
        append=args.append,
        truncate=args.truncate,
    )
    request.validate()
    target = MySQLTarget.from_url(args.mysql_url or env_url())
    bar = print_progress_factory(request.orders)
    try:
        result = run_seed(request, target, progress=bar.update)
    finally:
        bar.close()
    return result.summary()


def _live(args: argparse.Namespace) -> str:
    from .live import LiveRequest, run_live

    if args.iterations is not None and args.iterations <= 0:
        raise GeneratorError(f"--iterations must be greater than zero, got {args.iterations}")
    request = LiveRequest(
        duration=args.duration, iterations=args.iterations, rate=args.rate, interval=args.interval, seed=args.seed
    )
    request.validate()
    target = MySQLTarget.from_url(args.mysql_url or env_url())
    return run_live(request, target).summary()


def _stores(args: argparse.Namespace) -> str:
    from .stores import build_stores, upload_to_lake, write_csv

    if args.lake and not args.bucket:
        raise GeneratorError("--bucket must not be empty")
    stores = build_stores()
    path = write_csv(args.out, stores)
    regions = len({s.region for s in stores})
    countries = len({s.country for s in stores})
    line = f"stores: wrote {len(stores)} stores in {regions} regions, {countries} countries to {path}"
    if args.lake:
        line += f"; uploaded to {upload_to_lake(path, args.lake, args.bucket, args.prefix)}"
    return line


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    handler = {"seed": _seed, "live": _live, "stores": _stores}[args.command]
    try:
        print(handler(args), flush=True)
    except GeneratorError as exc:
        print(f"retailflow-generator {args.command}: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        done = "completed ticks were kept" if args.command == "live" else "nothing was committed"
        print(f"retailflow-generator {args.command}: interrupted; {done}", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
