"""The audit: the marts must hold what MySQL holds, at the ingestion's high-water mark.

Checked, MySQL (the source) against the dbt marts:

- rows of ``orders`` (``marts.orders``), ``order_items`` (the ``item_count`` of ``marts.orders``),
  ``customers`` (``marts.customers``) and ``products`` (``marts.product_sales``);
- the revenue total under the project's revenue rule (the statuses in ``vars.revenue_statuses`` of
  ``dbt/dbt_project.yml``, the one place the rule is decided): ``sum(quantity * unit_price)`` of the
  items of revenue orders in MySQL, ``sum(revenue)`` of ``marts.orders``.

Live traffic keeps writing while this runs, so both sides are compared **as of the high-water mark
of each stream**: the cursor the ingestion committed (``<raw>._retailflow_ingest_state`` of the local
engine) or, for Airbyte's tables, the largest ``updated_at`` the raw table holds, minus a settle
window (default 30 s) for transactions that committed after rows stamped later. A row whose MySQL
``updated_at`` is past that mark is *in flight*: it may or may not have reached the warehouse yet,
so its key is left out on both sides (an order is also in flight when one of its items is). Every
other row must be identical on both sides, so any difference is a real one, and the error names the
table and both figures.

Cost: one pass over each table, linear in the data. MySQL is read in one consistent snapshot (a
read-only transaction), so the in-flight keys and the figures come from the same state of the
source however the traffic moves. The in-flight keys are read through the ``(updated_at, <pk>)``
indexes (a range above the cut-off: as many rows as are in flight). The orders are counted over
``ix_orders_updated`` alone; the order lines and the revenue in one scan of ``order_items`` in its
primary-key order, each line looking its order up by primary key (``STRAIGHT_JOIN``: left to itself,
the optimizer starts from ``orders`` and reads each order's lines through ``ix_order_items_order``, one
random read per line). Orders in flight because of one of their lines are left out by ``NOT IN`` a
subquery over the lines in flight, which the server materializes once (no subquery per order). In
PostgreSQL the in-flight keys are an array joined to the mart (``not exists`` over ``unnest``: a hash
anti-join), not searched once per row.
"""

from __future__ import annotations

import argparse
import logging
import re
from collections.abc import Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from retailflow_ingest.errors import (
    MYSQL_SCHEMES,
    MYSQL_SHAPE,
    WAREHOUSE_SCHEMES,
    WAREHOUSE_SHAPE,
    OneLineParser,
    url_problem,
    without_password,
)
from retailflow_pipeline.catalog import CURSORS, STREAM_NAMES
from retailflow_pipeline.connections import redact

log = logging.getLogger(__name__)

#: how far below each stream's high-water mark the comparison is made
DEFAULT_SETTLE = timedelta(seconds=30)
#: the widest settle window. It only has to outlast a transaction that commits after rows stamped
#: later (seconds; the default is 30 s): a week is far beyond any transaction a shop's database keeps
#: open, and still leaves every older row compared. A wider one is a mistake (1e12 s, 31,700 years,
#: puts the cut-off before year 1 and overflows the dates), and its "ok" would cover almost nothing.
MAX_SETTLE = timedelta(days=7)
#: the raw streams whose cursors bound the comparison: the catalog's source tables
STREAMS = STREAM_NAMES
STATE_TABLE = "_retailflow_ingest_state"


class AuditError(RuntimeError):
    """The audit cannot be made (a malformed URL, a peer that cannot be read, no ingestion state to
    compare at, a source without RetailFlow's tables): one line saying what to check, never a password."""


class NoIngestionState(AuditError):
    """The raw schema holds no high-water mark for a stream: comparing would compare nothing."""


class AuditFailed(AssertionError):
    """MySQL and the marts disagree; ``str()`` names each table and both figures."""

    def __init__(self, report: "AuditReport"):
        self.report = report
        lines = [f"audit failed ({len(report.mismatches)} of {len(report.checks)} checks):"]
        lines += [f"  {c.describe()}" for c in report.mismatches]
        lines.append(f"  compared as of {report.describe_marks()}")
        super().__init__("\n".join(lines))


@dataclass
class Check:
    name: str  #: "orders rows", "revenue", …
    source: str  #: the MySQL side, e.g. "MySQL orders"
    target: str  #: the mart side, e.g. "marts.orders"
    mysql: Any
    marts: Any

    @property
    def ok(self) -> bool:
        return self.mysql == self.marts

    def describe(self) -> str:
        figure = _money if self.name == "revenue" else _count
        state = "ok" if self.ok else "MISMATCH"
        return (f"{self.name}: {self.source} = {figure(self.mysql)}, {self.target} = {figure(self.marts)}"
                f" [{state}]")


@dataclass
class AuditReport:
    checks: list[Check] = field(default_factory=list)
    #: stream -> (high-water mark, where it came from); the comparison cut-off is mark - settle
    marks: dict[str, tuple[datetime | None, str]] = field(default_factory=dict)
    settle_seconds: float = DEFAULT_SETTLE.total_seconds()
    in_flight: dict[str, int] = field(default_factory=dict)

    @property
    def mismatches(self) -> list[Check]:
        return [c for c in self.checks if not c.ok]

    @property
    def ok(self) -> bool:
        return not self.mismatches

    def describe_marks(self) -> str:
        parts = []
        for stream, (mark, origin) in self.marks.items():
            when = mark.isoformat(sep=" ", timespec="seconds") if mark else "nothing ingested"
            parts.append(f"{stream} {when} ({origin}, {self.in_flight.get(stream, 0)} in flight)")
        return f"high-water mark - {self.settle_seconds:g} s: " + "; ".join(parts)

    def summary(self) -> str:
        return "\n".join([*(c.describe() for c in self.checks), f"as of {self.describe_marks()}"])

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe figures (XCom): each check with both sides, and the marks."""
        return {
            "ok": self.ok,
            "checks": [{**asdict(c), "mysql": _json(c.mysql), "marts": _json(c.marts), "ok": c.ok} for c in self.checks],
            "marks": {s: (m.isoformat() if m else None) for s, (m, _) in self.marks.items()},
            "in_flight": self.in_flight,
        }


def _json(value: Any) -> Any:
    return str(value) if isinstance(value, Decimal) else value


def _count(value: Any) -> str:
    return f"{int(value):,}"


def _money(value: Any) -> str:
    return f"{Decimal(value):,.2f}"


def revenue_statuses(project_dir: Path | None = None) -> list[str]:
    """The revenue rule, read from the dbt project's ``vars.revenue_statuses``."""
    import yaml

    from retailflow_pipeline.dbt import project_dir as default_project_dir

    project = yaml.safe_load(((project_dir or default_project_dir()) / "dbt_project.yml").read_text())
    statuses = project.get("vars", {}).get("revenue_statuses")
    if not statuses or not all(isinstance(s, str) for s in statuses):
        raise ValueError("dbt_project.yml has no vars.revenue_statuses list")
    return list(statuses)


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def high_water_marks(pg, raw_schema: str) -> dict[str, tuple[datetime | None, str]]:
    """Per stream: the committed ingestion cursor, else the largest cursor value in the raw table.

    Raises ``NoIngestionState`` when the schema is missing, or a stream has neither a row in the
    state nor a raw table: with no mark every MySQL row would be in flight, and the audit would pass
    by comparing nothing (a misspelt schema against full marts: ``0 = 0 [ok]``)."""
    problem = f"raw schema {raw_schema} has no ingestion state"
    if pg.execute("select 1 from pg_namespace where nspname = %s", (raw_schema,)).fetchone() is None:
        raise NoIngestionState(f"{problem}: the warehouse has no schema {raw_schema} (is it the schema the"
                               " ingestion writes, and has the ingestion run?)")
    marks: dict[str, tuple[datetime | None, str]] = {}
    state = pg.execute("select to_regclass(%s)", (f"{_ident(raw_schema)}.{STATE_TABLE}",)).fetchone()[0]
    cursors: dict[str, datetime | None] = {}
    if state is not None:
        rows = pg.execute(f"select stream, cursor_value from {_ident(raw_schema)}.{STATE_TABLE}").fetchall()
        cursors = dict(rows)
    for stream in STREAMS:
        if cursors.get(stream) is not None:
            marks[stream] = (cursors[stream], "ingestion state")
            continue
        table = pg.execute("select to_regclass(%s)", (f"{_ident(raw_schema)}.{_ident(stream)}",)).fetchone()[0]
        if table is None:
            marks[stream] = (None, "no raw table")
            continue
        cursor = CURSORS[stream]
        top = pg.execute(f"select max({_ident(cursor)}) from {_ident(raw_schema)}.{_ident(stream)}").fetchone()[0]
        marks[stream] = (top, f"max {cursor} of the raw table")
    missing = [stream for stream, (_, origin) in marks.items() if origin == "no raw table"]
    if missing:
        raise NoIngestionState(f"{problem}: neither {STATE_TABLE} nor a raw table for {', '.join(missing)}"
                               " (is it the schema the ingestion writes, and has the ingestion run?)")
    return marks


def compare(
    mysql_url: str,
    warehouse_url: str,
    *,
    raw_schema: str = "raw",
    marts_schema: str = "marts",
    settle: timedelta = DEFAULT_SETTLE,
    statuses: Sequence[str] | None = None,
    mysql_name: str = "the MySQL URL",
    warehouse_name: str = "the warehouse URL",
) -> AuditReport:
    """Compare MySQL with the marts; returns the figures (``.ok``), raises nothing on a mismatch.

    Raises ``AuditError`` (one line, what to check) when the comparison cannot be made: first of all
    for a malformed URL, named as the caller names it (``mysql_name``, ``warehouse_name``)."""
    import psycopg

    check_urls(mysql_url, warehouse_url, mysql_name, warehouse_name)
    if not timedelta(0) <= settle <= MAX_SETTLE:
        raise AuditError(f"the settle window must be 0 to {MAX_SETTLE.total_seconds():g} s (a week),"
                         f" not {settle.total_seconds():g} s")
    statuses = list(statuses or revenue_statuses())
    report = AuditReport(settle_seconds=settle.total_seconds())
    try:
        pg_conn = psycopg.connect(_libpq(warehouse_url), autocommit=True, connect_timeout=10)
    except psycopg.Error as exc:
        raise AuditError(f"cannot connect to the warehouse {redact(warehouse_url)}:"
                         f" {scrub(str(exc), warehouse_url)} (check the warehouse URL: host, port, database,"
                         " user and password)") from None
    with pg_conn as pg:
        report.marks = high_water_marks(pg, raw_schema)
        # Far in the past when nothing was ingested: every MySQL row is then in flight.
        cutoff = {s: (m - settle if m else datetime(1, 1, 1)) for s, (m, _) in report.marks.items()}

        my = _mysql_connect(mysql_url)
        try:
            with my.cursor() as cur, _source_tables(mysql_url):
                # one snapshot for every read below: a row that changes meanwhile is seen as it was
                cur.execute("set transaction isolation level repeatable read")
                cur.execute("start transaction with consistent snapshot, read only")
                flux_orders = _ids(cur, "select order_id from orders where updated_at > %s"
                                        " union select order_id from order_items where updated_at > %s",
                                   (cutoff["orders"], cutoff["order_items"]))
                flux_customers = _ids(cur, "select customer_id from customers where updated_at > %s",
                                      (cutoff["customers"],))
                flux_products = _ids(cur, "select product_id from products where updated_at > %s",
                                     (cutoff["products"],))
                # orders whose lines are in flight: a subquery the server materializes once
                items_in_flight = "select order_id from order_items where updated_at > %s"
                cur.execute(f"select count(*) from orders where updated_at <= %s"
                            f" and order_id not in ({items_in_flight})", (cutoff["orders"], cutoff["order_items"]))
                (my_orders,) = cur.fetchone()
                marks = ", ".join(["%s"] * len(statuses))
                cur.execute(
                    "select count(*),"
                    f" coalesce(sum(case when o.status in ({marks}) then i.quantity * i.unit_price end), 0)"
                    " from order_items as i straight_join orders as o on o.order_id = i.order_id"
                    f" where o.updated_at <= %s and o.order_id not in ({items_in_flight})",
                    (*statuses, cutoff["orders"], cutoff["order_items"]),
                )
                my_items, my_revenue = cur.fetchone()
                cur.execute("select count(*) from customers where updated_at <= %s", (cutoff["customers"],))
                (my_customers,) = cur.fetchone()
                cur.execute("select count(*) from products where updated_at <= %s", (cutoff["products"],))
                (my_products,) = cur.fetchone()
                cur.execute("commit")
        finally:
            my.close()
        report.in_flight = {"orders": len(flux_orders), "customers": len(flux_customers),
                            "products": len(flux_products)}

        m = _ident(marts_schema)
        try:
            mart_orders, mart_items, mart_revenue = pg.execute(
                f"select count(*), coalesce(sum(item_count), 0), coalesce(sum(revenue), 0) from {m}.orders as t"
                f" where {_not_in_flight('order_id')}", (flux_orders,),
            ).fetchone()
            (mart_customers,) = pg.execute(
                f"select count(*) from {m}.customers as t where {_not_in_flight('customer_id')}", (flux_customers,),
            ).fetchone()
            (mart_products,) = pg.execute(
                f"select count(*) from {m}.product_sales as t where {_not_in_flight('product_id')}", (flux_products,),
            ).fetchone()
        except (psycopg.errors.UndefinedTable, psycopg.errors.InvalidSchemaName) as exc:
            raise AuditError(f"the marts are missing ({exc.diag.message_primary}): run the pipeline (make ingest"
                             " dbt-build) first, or check the marts schema") from None

    report.checks = [
        Check("orders rows", "MySQL orders", f"{marts_schema}.orders", int(my_orders), int(mart_orders)),
        Check("order_items rows", "MySQL order_items", f"{marts_schema}.orders (sum of item_count)",
              int(my_items), int(mart_items)),
        Check("customers rows", "MySQL customers", f"{marts_schema}.customers", int(my_customers), int(mart_customers)),
        Check("products rows", "MySQL products", f"{marts_schema}.product_sales", int(my_products), int(mart_products)),
        Check("revenue", f"MySQL order_items of {'/'.join(statuses)} orders", f"{marts_schema}.orders (sum of revenue)",
              Decimal(my_revenue), Decimal(mart_revenue)),
    ]
    return report


def _not_in_flight(key: str) -> str:
    """Rows of ``t`` whose ``key`` is not in the array parameter: an anti-join with the array's rows
    (a hash anti-join), where ``not (key = any(array))`` would search the array once per row."""
    return f"not exists (select from unnest(%s::bigint[]) as in_flight(id) where in_flight.id = t.{key})"


def _ids(cur, sql: str, args: tuple) -> list[int]:
    cur.execute(sql, args)
    return [int(row[0]) for row in cur.fetchall()]


def _mysql_connect(mysql_url: str):
    from retailflow_ingest.errors import IngestError
    from retailflow_ingest.source import MySQLSource

    try:
        return MySQLSource(mysql_url).connect()
    except IngestError as exc:  # it names the source without the password
        raise AuditError(f"{scrub(str(exc), mysql_url)} (check the MySQL URL: host, port, database, user and"
                         " password)") from None


@contextmanager
def _source_tables(mysql_url: str):
    """MySQL's "table doesn't exist" (1146) as a hint: the URL names a database without RetailFlow's tables."""
    import pymysql

    try:
        yield
    except pymysql.err.ProgrammingError as exc:
        if not exc.args or exc.args[0] != 1146:
            raise
        table = re.search(r"Table '(?:[^'.]*\.)?([^']*)'", str(exc.args[-1]))
        raise AuditError(f"the source {redact(mysql_url)} has no table {table.group(1) if table else '?'}:"
                         " check that the MySQL URL names RetailFlow's source database (make seed creates"
                         " and fills its tables)") from None


def check_urls(mysql_url: str, warehouse_url: str, mysql_name: str, warehouse_name: str) -> None:
    """``AuditError`` naming the first URL that is malformed, without showing it: the engine's check
    (``retailflow_ingest.errors.url_problem``), so that only then may ``connections.redact`` show one."""
    problem = (url_problem(warehouse_url, warehouse_name, WAREHOUSE_SHAPE, WAREHOUSE_SCHEMES)
               or url_problem(mysql_url, mysql_name, MYSQL_SHAPE, MYSQL_SCHEMES, needs_database=True))
    if problem:
        raise AuditError(problem)


def scrub(text: str, *urls: str) -> str:
    """``text`` (a driver's message) on one line, with each of ``urls`` shown by ``connections.redact``
    and its password, wherever the driver quoted it (libpq quotes the URI, or a part of it), as ***."""
    text = " ".join(text.split())
    for url in urls:
        try:
            shown = redact(url)
        except ValueError:
            shown = "(the URL)"
        for form in (url, _libpq(url)):
            text = text.replace(form, shown)
        try:  # the password, as written and decoded, before the @ or as a ?password= parameter
            text = without_password(text, url)
        except ValueError:  # a URL urllib cannot split: it has no password urllib could find
            pass
    return text


def _libpq(url: str) -> str:
    scheme, _, rest = url.partition("://")
    return f"postgresql://{rest}" if scheme.startswith("postgres") else url


def check(mysql_url: str, warehouse_url: str, **kwargs: Any) -> AuditReport:
    """``compare()``, logging every figure; raises ``AuditFailed`` on any mismatch."""
    report = compare(mysql_url, warehouse_url, **kwargs)
    for line in report.summary().splitlines():
        log.info("%s", line)
    if not report.ok:
        raise AuditFailed(report)
    return report


def _settle_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not 0 <= value <= MAX_SETTLE.total_seconds():  # NaN and infinity fail too
        raise argparse.ArgumentTypeError(f"{text} is not between 0 and {MAX_SETTLE.total_seconds():g} s (a week):"
                                         " the window only has to outlast transactions still committing")
    return value


def main(argv: list[str] | None = None) -> int:
    """``python -m retailflow_pipeline.audit`` (``make audit``): the pipeline's audit by hand.

    Exit codes: 0 MySQL and the marts agree; 1 they differ (each mismatch named); 2 bad input or a
    peer that cannot be read (one line, saying what to check)."""
    import os
    import sys

    parser = OneLineParser(
        name="audit",
        prog="python -m retailflow_pipeline.audit",
        description="Audit the marts against MySQL (row counts and revenue) at the ingestion's high-water mark."
                    " The databases are $RETAILFLOW_MYSQL_URL and $RETAILFLOW_WAREHOUSE_URL.")
    parser.add_argument("--raw-schema", default=os.environ.get("RETAILFLOW_RAW_SCHEMA", "raw"),
                        help="raw schema holding the ingestion's state (default $RETAILFLOW_RAW_SCHEMA or raw)")
    parser.add_argument("--marts-schema", default="marts", help="schema of the dbt marts (default marts)")
    parser.add_argument("--settle-seconds", type=_settle_seconds, default=DEFAULT_SETTLE.total_seconds(),
                        help="compare this far below each high-water mark, 0 to"
                             f" {MAX_SETTLE.total_seconds():g} (a week; default %(default)g)")
    args = parser.parse_args(argv)
    mysql_url, warehouse_url = os.environ.get("RETAILFLOW_MYSQL_URL"), os.environ.get("RETAILFLOW_WAREHOUSE_URL")
    prog = "audit"
    if not mysql_url or not warehouse_url:
        print(f"{prog}: set RETAILFLOW_MYSQL_URL and RETAILFLOW_WAREHOUSE_URL (make audit reads .env.local)",
              file=sys.stderr)
        return 2
    try:
        report = compare(mysql_url, warehouse_url, raw_schema=args.raw_schema, marts_schema=args.marts_schema,
                         settle=timedelta(seconds=args.settle_seconds), mysql_name="RETAILFLOW_MYSQL_URL",
                         warehouse_name="RETAILFLOW_WAREHOUSE_URL")
    except NoIngestionState as exc:
        print(f"{prog}: {exc}; check --raw-schema (default $RETAILFLOW_RAW_SCHEMA or raw)", file=sys.stderr)
        return 2
    except AuditError as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:  # a peer failing mid-way: one line, not a traceback, and no password
        print(f"{prog}: cannot audit: {scrub(str(exc), mysql_url, warehouse_url)[:300]}", file=sys.stderr)
        return 2
    print(report.summary())
    if not report.ok:
        print(f"{prog}: {len(report.mismatches)} of {len(report.checks)} checks differ: the marts do not hold what"
              " MySQL holds (run make ingest and make dbt-build, or a full refresh: make ingest"
              " INGEST_ARGS=--full-refresh)", file=sys.stderr)
        return 1
    print(f"{prog}: ok, the marts hold what MySQL holds")
    return 0


if __name__ == "__main__":
    import sys

    sys.exit(main())
