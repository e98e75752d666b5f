"""Print the three RetailFlow answers from the warehouse marts as terminal tables.

``python -m retailflow_pipeline.report`` reads ``$RETAILFLOW_WAREHOUSE_URL`` and prints the top 10
customers, sales by region over the last 12 months of data, the 10 best-selling products, and
where the lake files (as that warehouse's ingestion recorded them) and the dbt docs are.

Exit codes: 0 printed; 1 the warehouse is unreachable or holds no marts; 2 bad input (one line): a
malformed URL, or a password on the command line (it comes from the environment only).
"""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from retailflow_ingest.errors import WAREHOUSE_SCHEMES, WAREHOUSE_SHAPE, OneLineParser, url_problem

TOP_CUSTOMERS_SQL = """
select revenue_rank, customer_name, country, order_count, lifetime_revenue,
       first_order_at, last_order_at
from {schema}.top_customers
order by revenue_rank
limit %(limit)s
"""

# Totals per region over the 12 months that end with the latest month in the mart: generated data
# may end before today, so "last 12 months" is read from the data, not the clock.
SALES_BY_REGION_SQL = """
with window_end as (
    select max(month) as last_month from {schema}.sales_by_region
),
recent as (
    select sales.*
    from {schema}.sales_by_region as sales, window_end
    where sales.month > window_end.last_month - interval '12 months'
)
select region, channel, count(distinct country) as countries, sum(revenue) as revenue,
       sum(orders) as orders, round(sum(revenue) / sum(orders), 2) as average_basket,
       min(month) as first_month, max(month) as last_month
from recent
group by region, channel
order by revenue desc, region
"""

BEST_SELLERS_SQL = """
select revenue_rank, product_name, category, units_sold, revenue, category_revenue_rank
from {schema}.product_sales
where units_sold > 0
order by revenue_rank
limit %(limit)s
"""


@dataclass
class Report:
    top_customers: list[dict[str, Any]] = field(default_factory=list)
    sales_by_region: list[dict[str, Any]] = field(default_factory=list)
    best_sellers: list[dict[str, Any]] = field(default_factory=list)


#: the ingestion engine's per-stream state (``ingest.warehouse.STATE_TABLE``): its lake manifests name
#: the lake each stream's last sync wrote
STATE_TABLE = "_retailflow_ingest_state"


def quote_ident(name: str) -> str:
    """A schema name as one SQL identifier, whatever it holds."""
    return '"' + name.replace('"', '""') + '"'


def fetch(warehouse_url: str, *, schema: str = "marts", limit: int = 10) -> Report:
    """Read the three answers from the marts (built by ``python -m retailflow_pipeline.dbt build``)."""
    import psycopg
    from psycopg.rows import dict_row

    with psycopg.connect(_libpq_url(warehouse_url), row_factory=dict_row, connect_timeout=10) as conn:
        def query(sql: str) -> list[dict[str, Any]]:
            return conn.execute(sql.format(schema=quote_ident(schema)), {"limit": limit}).fetchall()

        return Report(
            top_customers=query(TOP_CUSTOMERS_SQL),
            sales_by_region=query(SALES_BY_REGION_SQL),
            best_sellers=query(BEST_SELLERS_SQL),
        )


def recorded_lakes(warehouse_url: str, raw_schema: str = "raw") -> list[str]:
    """The lakes this warehouse's ingestion wrote (its state's lake manifests), none if it never ran
    or wrote no lake."""
    import psycopg

    with psycopg.connect(_libpq_url(warehouse_url), connect_timeout=10) as conn:
        table = f"{quote_ident(raw_schema)}.{quote_ident(STATE_TABLE)}"
        if conn.execute("select to_regclass(%s)", (table,)).fetchone()[0] is None:
            return []
        if not conn.execute("select 1 from information_schema.columns where table_schema = %s and table_name = %s"
                            " and column_name = 'lake_manifest'", (raw_schema, STATE_TABLE)).fetchone():
            return []
        rows = conn.execute(f"select distinct lake_manifest->>'lake' from {table} where lake_manifest is not null"
                            " order by 1").fetchall()
        return [r[0] for r in rows if r[0]]


def _libpq_url(url: str) -> str:
    # SQLAlchemy-style schemes (postgresql+psycopg://) are not libpq's.
    scheme, _, rest = url.partition("://")
    return f"postgresql://{rest}" if scheme.startswith("postgres") else url


def money(value: Decimal | float | int | None) -> str:
    return "" if value is None else f"{Decimal(value):,.2f}"


def count(value: int | None) -> str:
    return "" if value is None else f"{int(value):,}"


def day(value: date | datetime | None) -> str:
    return "" if value is None else value.strftime("%Y-%m-%d")


def month(value: date | None) -> str:
    return "" if value is None else value.strftime("%Y-%m")


def top_customers_table(rows: list[dict[str, Any]]) -> Table:
    table = Table(title=f"Top {len(rows)} customers by lifetime revenue", title_justify="left")
    for name in ("#", "customer", "country", "orders", "revenue", "first order", "last order"):
        table.add_column(name, justify="right" if name in {"#", "orders", "revenue"} else "left")
    for row in rows:
        table.add_row(
            str(row["revenue_rank"]), row["customer_name"], row["country"], count(row["order_count"]),
            money(row["lifetime_revenue"]), day(row["first_order_at"]), day(row["last_order_at"]),
        )
    return table


def sales_by_region_table(rows: list[dict[str, Any]]) -> Table:
    span = ""
    if rows:
        span = f" ({month(min(r['first_month'] for r in rows))} to {month(max(r['last_month'] for r in rows))})"
    table = Table(title=f"Sales by region, last 12 months{span}", title_justify="left", show_footer=bool(rows))
    total_revenue = sum((r["revenue"] for r in rows), Decimal(0))
    total_orders = sum(int(r["orders"]) for r in rows)
    table.add_column("region", footer="total")
    table.add_column("channel")
    table.add_column("countries", justify="right")
    table.add_column("revenue", justify="right", footer=money(total_revenue))
    table.add_column("orders", justify="right", footer=count(total_orders))
    table.add_column(
        "avg basket", justify="right",
        footer=money(round(total_revenue / total_orders, 2)) if total_orders else "",
    )
    table.add_column("share", justify="right", footer="100.0%" if total_revenue else "")
    for row in rows:
        share = f"{row['revenue'] / total_revenue:.1%}" if total_revenue else ""
        table.add_row(
            row["region"], row["channel"], count(row["countries"]), money(row["revenue"]),
            count(row["orders"]), money(row["average_basket"]), share,
        )
    return table


def best_sellers_table(rows: list[dict[str, Any]]) -> Table:
    table = Table(title=f"Top {len(rows)} best-selling products by revenue", title_justify="left")
    for name in ("#", "product", "category", "units", "revenue", "# in category"):
        table.add_column(name, justify="right" if name in {"#", "units", "revenue", "# in category"} else "left")
    for row in rows:
        table.add_row(
            str(row["revenue_rank"]), row["product_name"], row["category"], count(row["units_sold"]),
            money(row["revenue"]), str(row["category_revenue_rank"]),
        )
    return table


def lake_location(lakes: list[str], raw_schema: str = "raw") -> str:
    """Where the warehouse's own ingestion wrote raw files (``LakeConfig.describe()`` of each lake its
    state records: an S3 endpoint with bucket and prefix, or a local folder, whose files are counted),
    not a guess from this machine's settings: the report may read another warehouse."""
    if not lakes:
        return f"none recorded ({raw_schema}.{STATE_TABLE} names no lake: the ingestion has not run, or wrote none)"
    out = []
    for lake in lakes:
        if lake.startswith(("http://", "https://")):
            endpoint, _, rest = lake.partition("://")[2].partition("/")
            out.append(f"s3://{rest}/ (endpoint {lake.partition('://')[0]}://{endpoint})")
            continue
        folder = Path(lake)
        if not folder.exists():
            out.append(f"{folder}/ (not on this machine)")
            continue
        files = [p for p in folder.rglob("*") if p.is_file()]
        size = sum(p.stat().st_size for p in files)
        out.append(f"{folder}/ ({len(files):,} files, {size / 1e6:,.1f} MB)")
    return "; ".join(out)


def docs_location(project_dir: Path | None = None) -> str:
    from retailflow_pipeline.dbt import project_dir as default_project_dir

    index = (project_dir or default_project_dir()) / "target" / "index.html"
    if index.exists():
        return f"{index} (open it in a browser, or: python -m retailflow_pipeline.dbt docs serve)"
    return f"{index} (not generated yet: python -m retailflow_pipeline.dbt docs generate)"


def render(report: Report, console: Console, *, lake: str, docs: str) -> None:
    if not report.top_customers:
        console.print("The marts hold no revenue orders yet: seed MySQL, ingest, then dbt build.")
    else:
        console.print(top_customers_table(report.top_customers))
        console.print()
        console.print(sales_by_region_table(report.sales_by_region))
        console.print()
        console.print(best_sellers_table(report.best_sellers))
    console.print()
    console.print(f"Lake files: {lake}", soft_wrap=True)
    console.print(f"dbt docs:   {docs}", soft_wrap=True)


def _top_n(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if not 1 <= value <= 1000:
        raise argparse.ArgumentTypeError(f"{value} is not between 1 and 1000")
    return value


def main(argv: list[str] | None = None) -> int:
    from retailflow_pipeline.audit import scrub
    from retailflow_pipeline.connections import redact

    parser = OneLineParser(name="report", prog="python -m retailflow_pipeline.report",
                           description=__doc__.splitlines()[0])
    parser.add_argument("--warehouse-url", default=None,
                        help="postgresql://USER@HOST:PORT/DATABASE without a password (default"
                             " $RETAILFLOW_WAREHOUSE_URL, the only place for one: an argument shows in the process"
                             " list; a URL without one uses libpq's PGPASSWORD or ~/.pgpass)")
    parser.add_argument("--schema", default="marts", help="schema of the dbt marts (default marts)")
    parser.add_argument("--raw-schema", default=os.environ.get("RETAILFLOW_RAW_SCHEMA") or "raw",
                        help="raw schema whose ingestion state names the lake (default $RETAILFLOW_RAW_SCHEMA or raw)")
    parser.add_argument("--limit", type=_top_n, default=10, help="rows in the top-N tables, 1 to 1000 (default 10)")
    args = parser.parse_args(argv)
    name = "--warehouse-url" if args.warehouse_url else "RETAILFLOW_WAREHOUSE_URL"
    url = args.warehouse_url or os.environ.get("RETAILFLOW_WAREHOUSE_URL")
    if not url:
        parser.error("no warehouse: set RETAILFLOW_WAREHOUSE_URL or pass --warehouse-url")
    # named as the user gave it; on the command line it must carry no password
    problem = url_problem(url, name, WAREHOUSE_SHAPE, WAREHOUSE_SCHEMES,
                          password_env="RETAILFLOW_WAREHOUSE_URL" if args.warehouse_url else None)
    if problem:
        parser.error(problem)

    import psycopg

    try:
        report = fetch(url, schema=args.schema, limit=args.limit)
        lakes = recorded_lakes(url, args.raw_schema)
    except (psycopg.errors.UndefinedTable, psycopg.errors.InvalidSchemaName) as exc:
        print(f"report: the marts are missing ({exc.diag.message_primary}); run "
              "`python -m retailflow_pipeline.dbt build` first", file=sys.stderr)
        return 1
    except psycopg.OperationalError as exc:
        print(f"report: cannot reach the warehouse {redact(url)}: {scrub(str(exc), url)} (check {name}: host,"
              " port, database, user and password)", file=sys.stderr)
        return 1
    except psycopg.ProgrammingError as exc:
        if exc.sqlstate is None:  # refused by libpq before any server answered: the URL's options
            print(f"report: the warehouse URL ({name}) is not usable: {scrub(str(exc), url)}", file=sys.stderr)
            return 2
        # a marts schema of another shape
        print(f"report: cannot read the marts: {scrub(str(exc), url)}", file=sys.stderr)
        return 1
    # A pipe (make demo | tee) would get rich's 80-column default and wrap the tables.
    console = Console(width=None if sys.stdout.isatty() else 120)
    render(report, console, lake=lake_location(lakes, args.raw_schema), docs=docs_location())
    return 0


if __name__ == "__main__":
    sys.exit(main())
