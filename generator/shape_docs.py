"""Seed a throwaway database at demo scale, measure it and write what generator/README.md shows.

`make generator-shape` runs this: it creates `retail_shape_<hex>` with the credentials of
$RETAILFLOW_MYSQL_URL, seeds it like `make seed` (demo scale, default dates: two years up to now),
measures it with `retailflow_generator.profile` (the code the integration tests check), rewrites the
table between the `shape:begin`/`shape:end` markers of generator/README.md, draws
docs/generator-monthly-revenue.png and docs/generator-local-hours.png, and drops the database.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import uuid
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from retailflow_generator import cli
from retailflow_generator.db import MySQLTarget, connect
from retailflow_generator.profile import measure, plot, shape_table

HERE = Path(__file__).resolve().parent
BEGIN, END = "<!-- shape:begin -->", "<!-- shape:end -->"


def database_name() -> str:
    """``retail_shape_<8 hex digits>``, a letter among them: `make clean-tests` takes a killed run's
    database only by a tag holding a letter (one named with a date is never dropped)."""
    while (tag := uuid.uuid4().hex[:8]).isdigit():
        pass
    return f"retail_shape_{tag}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", default="5000")
    parser.add_argument("--products", default="500")
    parser.add_argument("--orders", default="50000")
    parser.add_argument("--seed", default="42")
    parser.add_argument("--readme", type=Path, default=HERE / "README.md")
    parser.add_argument("--plots", type=Path, default=HERE.parent / "docs")
    args = parser.parse_args()
    server = os.environ.get("RETAILFLOW_MYSQL_URL")
    if not server:
        sys.exit("generator-shape: RETAILFLOW_MYSQL_URL is not set (run `make services`, then use hack/with-env)")
    parts = urlsplit(server)
    name = database_name()
    url = urlunsplit((parts.scheme, parts.netloc, "/" + name, "", ""))
    admin = connect(MySQLTarget.from_url(server))
    try:
        with admin.cursor() as cur:
            cur.execute(f"create database `{name}`")
        # the URL (with its password) goes through the environment: the generator refuses one in --mysql-url
        os.environ["RETAILFLOW_MYSQL_URL"] = url
        try:
            code = cli.main(["seed", "--customers", args.customers, "--products", args.products,
                             "--orders", args.orders, "--seed", args.seed])
        finally:
            os.environ["RETAILFLOW_MYSQL_URL"] = server
        if code:
            return code
        shape = measure(MySQLTarget.from_url(url))
    finally:
        with admin.cursor() as cur:
            cur.execute(f"drop database if exists `{name}`")
        admin.close()
    table = shape_table(shape)
    scale = (f"Measured by `make generator-shape` on a seed at demo scale (`--customers {args.customers} "
             f"--products {args.products} --orders {args.orders} --seed {args.seed}`, default dates):")
    readme = args.readme.read_text(encoding="utf-8")
    block = f"{BEGIN}\n{scale}\n\n{table}\n{END}"
    if BEGIN not in readme:
        sys.exit(f"generator-shape: {args.readme} has no {BEGIN} ... {END} block")
    args.readme.write_text(re.sub(re.escape(BEGIN) + ".*?" + re.escape(END), lambda _m: block, readme, flags=re.S),
                           encoding="utf-8")
    written = plot(shape, args.plots)
    print(table)
    print(f"generator-shape: wrote the table into {args.readme} and {', '.join(map(str, written))}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
