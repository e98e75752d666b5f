"""`retailflow-generator`: seed, live and stores."""

from __future__ import annotations

import argparse
import math
import os
import signal
import sys
from collections.abc import Mapping
from datetime import date
from pathlib import Path

from .catalog import PORTS
from .db import MYSQL_SCHEMES, MYSQL_SHAPE, GeneratorError, MySQLTarget, UsageError, env_url, url_problem
from .limits import LIVE_LIMITS, MIN_INTERVAL

#: the checkout this module sits in (``generator/retailflow_generator/cli.py``), if it is one
_CHECKOUT = Path(__file__).resolve().parent.parent.parent


def default_stores_csv(env: Mapping[str, str] = os.environ) -> Path:
    """Where ``stores`` writes without ``--out``: the file the ingestion engine reads, whatever the working
    directory. ``$RETAILFLOW_DATA_DIR/store_locations.csv``, else ``data/store_locations.csv`` of
    ``$RETAILFLOW_HOME``, else of the checkout this package runs from, else of the working directory
    (installed outside a checkout).

    The same rule as ``stores_csv`` in ``dags/retailflow_pipeline/paths.py`` (``data_dir``, ``home``), which
    ``retailflow_ingest.settings.default_stores_csv`` returns; copied, as this package has its own
    environment (``tests/unit/generator/test_stores_path.py`` checks the two agree)."""
    if env.get("RETAILFLOW_DATA_DIR"):
        return Path(env["RETAILFLOW_DATA_DIR"]) / "store_locations.csv"
    if env.get("RETAILFLOW_HOME"):
        home = Path(env["RETAILFLOW_HOME"])
    else:
        home = _CHECKOUT if (_CHECKOUT / "dags" / "pyproject.toml").is_file() else Path.cwd()
    return home / "data" / "store_locations.csv"


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


def _seconds(limit: float, least: float | None = None):
    """A finite number of seconds in (0, limit] (and at least ``least``): `nan`, `inf`, zero and negatives
    are refused."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        if not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"must be a finite number, got {text!r}")
        if value <= 0:
            raise argparse.ArgumentTypeError(f"must be greater than zero, got {text!r}")
        if value > limit:
            raise argparse.ArgumentTypeError(f"must be at most {limit:g}, got {text!r}")
        if least is not None and value < least:
            raise argparse.ArgumentTypeError(f"must be at least {least:g}, got {text!r}")
        return value

    return parse


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="retailflow-generator",
        description="Deterministic retail data for RetailFlow: a MySQL orders database and a store-locations CSV.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    url_help = ("mysql://USER@HOST:PORT/DATABASE without a password (default and the only way to pass one:"
                " $RETAILFLOW_MYSQL_URL; a password in an argument shows in the process list)")

    seed = sub.add_parser("seed", help="bulk-load customers, products and orders over a date range")
    seed.add_argument("--customers", type=_count, required=True, help="customers to create")
    seed.add_argument("--products", type=_count, required=True, help="products to create")
    seed.add_argument("--orders", type=_count, required=True, help="orders to create (1-12 lines each)")
    seed.add_argument("--start", type=_day, default=None,
                      help="first order day (UTC), YYYY-MM-DD (default: two years before --end)")
    seed.add_argument("--end", type=_day, default=None,
                      help="last order day (UTC), YYYY-MM-DD, inclusive (default: today; the history then ends now)")
    seed.add_argument("--seed", type=_count, default=42, help="random seed: same seed and arguments, same rows")
    mode = seed.add_mutually_exclusive_group()
    mode.add_argument("--append", action="store_true", help="add to existing data (ids continue after the current max)")
    mode.add_argument("--truncate", action="store_true",
                      help="replace existing data (loaded beside it, then swapped in at once)")
    seed.add_argument("--mysql-url", default=None, help=url_help)

    live = sub.add_parser("live", help="simulate live traffic: new orders and status changes")
    bound = live.add_mutually_exclusive_group(required=True)
    bound.add_argument("--duration", type=_seconds(LIVE_LIMITS["duration"]),
                       help="run for this many seconds (at most a week)")
    bound.add_argument("--iterations", type=_count, help="run this many ticks")
    live.add_argument("--rate", type=_seconds(LIVE_LIMITS["rate"]), default=5.0,
                      help=f"new orders per second (default 5, at most {LIVE_LIMITS['rate']:g})")
    live.add_argument("--interval", type=_seconds(LIVE_LIMITS["interval"], MIN_INTERVAL), default=1.0,
                      help=f"seconds per tick (default 1, from {MIN_INTERVAL:g} to 3600); a tick slower than that"
                           " carries the orders of its own time, so --rate holds")
    live.add_argument("--report-every", type=_seconds(LIVE_LIMITS["interval"]), default=5.0, metavar="SECONDS",
                      help="when stderr is not a terminal, a progress line this often (default 5)")
    live.add_argument("--seed", type=_count, default=None, help="random seed for the choices made")
    live.add_argument("--mysql-url", default=None, help=url_help)

    shape = sub.add_parser("shape", help="measure the data's shape in a seeded database (a Markdown table)")
    shape.add_argument("--mysql-url", default=None, help=url_help)
    shape.add_argument("--plots", type=Path, default=None, metavar="DIR",
                       help="also draw generator-*.png plots into DIR (needs matplotlib: the dev group)")

    stores = sub.add_parser("stores", help="write the store-locations CSV (and upload it to the lake)")
    stores.add_argument("--out", type=Path, default=None,
                        help="CSV path (default: where retailflow-ingest reads it, from any working directory:"
                             " $RETAILFLOW_DATA_DIR/store_locations.csv, else data/store_locations.csv of"
                             " $RETAILFLOW_HOME or of this checkout)")
    stores.add_argument("--lake", metavar="URL", help=f"S3 endpoint (MinIO), e.g. http://127.0.0.1:{PORTS['minio']}; "
                        "credentials from RETAILFLOW_LAKE_ACCESS_KEY / RETAILFLOW_LAKE_SECRET_KEY")
    stores.add_argument("--bucket", default=os.environ.get("RETAILFLOW_LAKE_BUCKET", "retailflow"),
                        help="lake bucket (default $RETAILFLOW_LAKE_BUCKET, else retailflow: retailflow-ingest's"
                             " --lake-bucket default)")
    stores.add_argument("--prefix", default="raw/store_locations", help="object key prefix (default raw/store_locations)")
    return parser


def _seed(args: argparse.Namespace) -> str:
    from .seed import SeedRequest, StopSignals, default_end, default_start, print_progress_factory, run_seed

    end = args.end or default_end()
    if args.start is None and default_start(end) > default_end():
        # the default start is derived from --end: name what the user wrote
        raise UsageError(f"--end {end} is too far in the future: the history's default start, two years before it"
                         f" ({default_start(end)}), is after today (UTC); pass an earlier --end, or --start")
    request = SeedRequest(
        customers=args.customers,
        products=args.products,
        orders=args.orders,
        start=args.start or default_start(end),
        end=end,
        seed=args.seed,
        append=args.append,
        truncate=args.truncate,
    )
    request.validate()
    target = MySQLTarget.from_url(args.mysql_url or env_url())
    # only a process of its own changes how it handles signals (tests call main() in theirs): there a
    # first Ctrl-C or SIGTERM says at once what stopping involves, a second one leaves at once
    args.stop = StopSignals().install() if args.own_process else None
    bar = print_progress_factory(request.orders)
    try:
        result = run_seed(request, target, progress=bar.update, stop=args.stop)
    finally:
        bar.close()
    return result.summary()


def _live(args: argparse.Namespace) -> str:
    from .live import LiveRequest, live_progress, run_live

    request = LiveRequest(
        duration=args.duration, iterations=args.iterations, rate=args.rate, interval=args.interval, seed=args.seed,
        report_every=args.report_every,
    )
    request.validate()
    target = MySQLTarget.from_url(args.mysql_url or env_url())
    return run_live(request, target, progress=live_progress(request)).summary()


def _plots_folder(directory: Path) -> list[Path]:
    """Before anything is measured: `--plots` needs matplotlib and a folder that exists or can be
    created and takes files (bad input otherwise: exit 2). Returns the folders made here, deepest
    first, for `_shape` to remove again if the command fails."""
    import importlib.util
    import tempfile

    if importlib.util.find_spec("matplotlib") is None:
        raise UsageError("--plots needs matplotlib, which is in the generator's dev group (uv sync --project generator)")
    made = []
    try:
        folder = directory.absolute()
        while not folder.exists() and folder != folder.parent:
            made.append(folder)
            folder = folder.parent
        directory.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=directory):
            pass
    except OSError as exc:
        _remove_folders(made)
        raise UsageError(f"--plots {directory}: cannot create or write to this folder ({exc.strerror or exc})") from None
    return made


def _remove_folders(folders: list[Path]) -> None:
    for folder in folders:  # deepest first; only empty ones
        try:
            folder.rmdir()
        except OSError:
            pass


def _shape(args: argparse.Namespace) -> str:
    from .profile import measure, plot, shape_table

    import pymysql

    target = MySQLTarget.from_url(args.mysql_url or env_url())
    made = _plots_folder(args.plots) if args.plots else []
    try:
        try:
            measured = measure(target)
        except pymysql.err.MySQLError as exc:
            raise GeneratorError(f"cannot measure {target.describe()}: {exc.args[-1] if exc.args else exc}") from exc
        if not measured.orders:
            raise GeneratorError(f"{target.describe()} has no orders: run `retailflow-generator seed` first")
        text = shape_table(measured)
        if args.plots:
            try:
                written = plot(measured, args.plots)
            except OSError as exc:
                raise GeneratorError(f"cannot write the plots to {args.plots}: {exc.strerror or exc}") from None
            text += "\n\nplots: " + ", ".join(str(p) for p in written)
    except BaseException:
        _remove_folders(made)  # nothing left behind by a command that did not finish
        raise
    return text


def _stores(args: argparse.Namespace) -> str:
    from .stores import build_stores, check_lake, upload_to_lake, write_csv

    if args.lake is not None:
        check_lake(args.lake, args.bucket)  # bad input is refused before the CSV is written
    stores = build_stores()
    path = write_csv(args.out or default_stores_csv(), stores)
    regions = len({s.region for s in stores})
    countries = len({s.country for s in stores})
    line = f"stores: wrote {len(stores)} stores in {regions} regions, {countries} countries to {path}"
    if args.lake is not None:
        line += f"; uploaded to {upload_to_lake(path, args.lake, args.bucket, args.prefix)}"
    return line


def _check_url_argument(option: str, url: str | None, env: str) -> None:
    """Refuse a malformed URL given as ``option``, or one with a password (every local user reads argv
    in `ps`; the password belongs in ``env``), naming the option."""
    if not url:
        return
    problem = url_problem(url, option, MYSQL_SHAPE, MYSQL_SCHEMES, needs_database=True, password_env=env)
    if problem:
        raise UsageError(problem)


#: exit codes (README): 0 done, 1 the database or the lake refused, 2 bad input, 130 interrupted (Ctrl-C),
#: 143 terminated (SIGTERM, seed)
EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED, EXIT_TERMINATED = 1, 2, 130, 143


def main(argv: list[str] | None = None) -> int:
    """The command line (``argv`` None: this process is the command, ``sys.argv``)."""
    try:
        args = build_parser().parse_args(argv)
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    # only a process of its own may change how it handles signals (tests call main() in theirs)
    args.own_process = argv is None
    handler = {"seed": _seed, "live": _live, "shape": _shape, "stores": _stores}[args.command]
    try:
        # before anything else: nothing is done with a password given where `ps` shows it
        _check_url_argument("--mysql-url", getattr(args, "mysql_url", None), "RETAILFLOW_MYSQL_URL")
        print(handler(args), flush=True)
    except GeneratorError as exc:
        print(f"retailflow-generator {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE if isinstance(exc, UsageError) else EXIT_FAILED
    except KeyboardInterrupt as exc:
        if str(exc):  # the command knows what it kept (seed)
            done = str(exc)
        elif args.command == "live":
            done = "completed ticks were kept"
        elif args.command == "seed" and args.truncate:
            done = "the previous data is unchanged"
        else:
            done = "nothing was committed"
        stop = getattr(args, "stop", None)
        if stop is not None and stop.signum == signal.SIGTERM:
            print(f"retailflow-generator {args.command}: terminated; {done}", file=sys.stderr)
            return EXIT_TERMINATED
        print(f"retailflow-generator {args.command}: interrupted; {done}", file=sys.stderr)
        return EXIT_INTERRUPTED
    return 0


if __name__ == "__main__":
    sys.exit(main())
