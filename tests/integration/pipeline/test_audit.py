"""The audit (``retailflow_pipeline.audit``) on real MariaDB and PostgreSQL: rows past the ingestion's
high-water mark are left out on both sides, every other row must match; and its MySQL statements read
the order lines in one pass, never once per order (the plans, as the server's EXPLAIN gives them).
"""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from urllib.parse import urlsplit

import pymysql
import pytest
from conftest import mysql_connect, pg_connect
from test_marts import generator, ingest_and_build

from retailflow_pipeline import audit
from support.databases import with_database

pytestmark = pytest.mark.integration


def seed_and_build(mysql_url: str, warehouse_url: str, target) -> int:
    """Generated history plus one order without lines (all before the ingestion); returns that order's id."""
    generator("seed", "--customers", "300", "--products", "60", "--orders", "2000", "--start", "2024-01-01",
              "--end", "2025-12-31", "--seed", "5", mysql_url=mysql_url)
    conn = mysql_connect(mysql_url, init_command="set time_zone = '+00:00'")
    with conn, conn.cursor() as cur:
        cur.execute("select max(order_id) + 1, min(customer_id) from orders join customers using (customer_id)")
        bare, customer = cur.fetchone()
        cur.execute("insert into orders (order_id, customer_id, channel, status, ordered_at)"
                    " values (%s, %s, 'online', 'paid', '2025-06-01 10:00:00')", (bare, customer))
    ingest_and_build(mysql_url, warehouse_url, target)
    return bare


def mysql_figures(mysql_url: str, sql: str, args: tuple = ()) -> tuple:
    conn = mysql_connect(mysql_url)
    with conn, conn.cursor() as cur:
        cur.execute(sql, args)
        return cur.fetchone()


def figures(report: audit.AuditReport, side: str = "mysql") -> dict[str, object]:
    return {c.name: getattr(c, side) for c in report.checks}


def test_lines_in_flight_leave_their_order_out_and_settled_differences_fail(mysql_url, warehouse_url, tmp_path):
    bare = seed_and_build(mysql_url, warehouse_url, tmp_path)
    settled = audit.compare(mysql_url, warehouse_url, settle=timedelta(0))
    assert settled.ok, settled.summary()
    orders, lines = mysql_figures(mysql_url, "select (select count(*) from orders), (select count(*) from order_items)")
    # every order counts, the one without lines too; every line counts
    assert (figures(settled)["orders rows"], figures(settled)["order_items rows"]) == (orders, lines)
    assert mysql_figures(mysql_url, "select count(*) from order_items where order_id = %s", (bare,)) == (0,)

    # a line changed after the ingestion: its order is in flight, left out of every figure on both sides
    order, line, total = mysql_figures(
        mysql_url, "select o.order_id, min(i.order_item_id), sum(i.quantity * i.unit_price) from orders o"
                   " join order_items i using (order_id) where o.status = 'delivered' group by o.order_id"
                   " having count(*) > 1 order by o.order_id limit 1")
    conn = mysql_connect(mysql_url, init_command="set time_zone = '+00:00'")
    with conn, conn.cursor() as cur:
        cur.execute("update order_items set quantity = quantity + 5 where order_item_id = %s", (line,))
    moved = audit.compare(mysql_url, warehouse_url, settle=timedelta(0))
    assert moved.ok, moved.summary()
    assert moved.in_flight["orders"] == 1
    (order_lines,) = mysql_figures(mysql_url, "select count(*) from order_items where order_id = %s", (order,))
    assert figures(moved) == {**figures(settled), "orders rows": orders - 1, "order_items rows": lines - order_lines,
                              "revenue": figures(settled)["revenue"] - total}

    # a settled order's revenue changed in the mart: the audit names the revenue, with both figures
    with pg_connect(warehouse_url) as pg:
        pg.execute("update marts.orders set revenue = revenue + 1 where order_id ="
                   " (select min(order_id) from marts.orders where revenue > 0 and order_id <> %s)", (order,))
    tampered = audit.compare(mysql_url, warehouse_url, settle=timedelta(0))
    assert [c.name for c in tampered.mismatches] == ["revenue"]
    assert figures(tampered, "marts")["revenue"] == figures(tampered)["revenue"] + Decimal(1)
    with pytest.raises(audit.AuditFailed, match=r"revenue: .* \[MISMATCH\]"):
        audit.check(mysql_url, warehouse_url, settle=timedelta(0))


def test_mysql_statements_read_the_lines_in_one_pass(mysql_url, warehouse_url, tmp_path, monkeypatch):
    seed_and_build(mysql_url, warehouse_url, tmp_path)
    conn = mysql_connect(mysql_url, init_command="set time_zone = '+00:00'")
    with conn, conn.cursor() as cur:  # lines in flight, so that the plans include their exclusion
        cur.execute("update order_items set quantity = quantity + 1 order by order_item_id desc limit 20")
        cur.execute("analyze table orders, order_items")
    statements: list[str] = []
    execute = pymysql.cursors.Cursor.execute

    def recording(self, query, args=None):
        statements.append(self.mogrify(query, args))
        return execute(self, query, args)

    monkeypatch.setattr(pymysql.cursors.Cursor, "execute", recording)
    report = audit.compare(mysql_url, warehouse_url, settle=timedelta(0))
    monkeypatch.undo()
    assert report.ok and report.in_flight["orders"] >= 1, report.summary()

    selects = [s for s in statements if s.lstrip().lower().startswith("select")]
    assert any("order_items" in s and "sum(" in s for s in selects), selects
    conn = mysql_connect(mysql_url)
    with conn, conn.cursor(pymysql.cursors.DictCursor) as cur:
        for sql in selects:
            cur.execute("explain " + sql)
            plan = cur.fetchall()
            per_order = [row for row in plan if row["select_type"] in ("DEPENDENT SUBQUERY", "LATERAL DERIVED")
                         or (row["table"] in ("order_items", "i") and row["type"] == "ref")]
            assert not per_order, f"{sql}\nreads order lines once per order: {per_order}"


# ------------------------------------------------------------------------------------ bad input


def one_order_on_both_sides(mysql_url: str, warehouse_url: str) -> None:
    """One customer, product, order and line in MySQL, and the marts holding the same (built by hand:
    what is checked here is what the audit says before it compares, not dbt)."""
    conn = mysql_connect(mysql_url, init_command="set time_zone = '+00:00'")
    with conn, conn.cursor() as cur:
        cur.execute("insert into customers (customer_id, first_name, last_name, email, city, country, signed_up_at)"
                    " values (1, 'Ada', 'L', 'ada@example.com', 'London', 'GB', '2025-01-01')")
        cur.execute("insert into products (product_id, sku, name, category, unit_price) values (1, 'S1', 'Shoe',"
                    " 'Footwear', 5.00)")
        cur.execute("insert into orders (order_id, customer_id, channel, status, ordered_at)"
                    " values (1, 1, 'online', 'delivered', '2025-06-01')")
        cur.execute("insert into order_items (order_item_id, order_id, product_id, quantity, unit_price)"
                    " values (1, 1, 1, 2, 5.00)")
    with pg_connect(warehouse_url) as pg:
        pg.execute("create schema marts")
        pg.execute("create table marts.orders as select 1::bigint as order_id, 1 as item_count, 10.00::numeric as revenue")
        pg.execute("create table marts.customers as select 1::bigint as customer_id")
        pg.execute("create table marts.product_sales as select 1::bigint as product_id")
        pg.execute("create schema raw")
        pg.execute(f"create table raw.{audit.STATE_TABLE} (stream varchar primary key, cursor_value timestamp)")
        pg.execute(f"insert into raw.{audit.STATE_TABLE} select s, '2100-01-01' from unnest(%s::text[]) as s",
                   (list(audit.STREAMS),))


def run_cli(argv: list[str], monkeypatch, capsys, **env: str) -> tuple[int, str, str]:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    code = audit.main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def test_a_raw_schema_without_ingestion_state_is_an_error_not_a_pass(mysql_url, warehouse_url, monkeypatch, capsys):
    one_order_on_both_sides(mysql_url, warehouse_url)
    urls = {"RETAILFLOW_MYSQL_URL": mysql_url, "RETAILFLOW_WAREHOUSE_URL": warehouse_url}
    code, out, err = run_cli([], monkeypatch, capsys, **urls)
    assert code == 0 and "orders rows: MySQL orders = 1, marts.orders = 1 [ok]" in out, out + err

    # a schema that is not there, by option, by name with a quote, or by $RETAILFLOW_RAW_SCHEMA: no "0 = 0 [ok]"
    for argv, env in ((["--raw-schema", "nosuch"], {}), (["--raw-schema", 'a"b'], {}),
                      ([], {"RETAILFLOW_RAW_SCHEMA": "nosuch"})):
        code, out, err = run_cli(argv, monkeypatch, capsys, **urls, **env)
        name = argv[1] if argv else "nosuch"
        assert (code, out) == (2, ""), (argv, env, out, err)
        assert err.startswith(f"audit: raw schema {name} has no ingestion state: the warehouse has no schema {name}")
        assert "check --raw-schema" in err and err.count("\n") == 1, err
        monkeypatch.delenv("RETAILFLOW_RAW_SCHEMA", raising=False)

    # the DAG's task calls check(): it raises, so the task fails
    with pytest.raises(audit.NoIngestionState, match="raw schema nosuch has no ingestion state"):
        audit.check(mysql_url, warehouse_url, raw_schema="nosuch")

    # a schema that is there but holds neither the state nor a raw table
    with pg_connect(warehouse_url) as pg:
        pg.execute("create schema landing")
    with pytest.raises(audit.NoIngestionState, match="neither _retailflow_ingest_state nor a raw table for customers,"
                                                      " products, orders, order_items"):
        audit.compare(mysql_url, warehouse_url, raw_schema="landing")


def test_what_cannot_be_read_says_what_to_check_without_the_password(mysql_url, warehouse_url, monkeypatch, capsys):
    one_order_on_both_sides(mysql_url, warehouse_url)
    mysql_password = urlsplit(mysql_url).password
    pg_password = urlsplit(warehouse_url).password
    urls = {"RETAILFLOW_MYSQL_URL": mysql_url, "RETAILFLOW_WAREHOUSE_URL": warehouse_url}

    # a warehouse database that does not exist: most likely a wrong URL, not a pipeline that never ran
    missing = with_database(warehouse_url, urlsplit(warehouse_url).path.strip("/") + "_nosuch")
    code, out, err = run_cli([], monkeypatch, capsys, **{**urls, "RETAILFLOW_WAREHOUSE_URL": missing})
    assert (code, out) == (2, "") and err.count("\n") == 1, err
    assert "cannot connect to the warehouse postgresql://" in err and "_nosuch" in err and "does not exist" in err
    assert "check the warehouse URL" in err and "run the pipeline" not in err, err
    assert pg_password not in err

    # a source database without RetailFlow's tables
    conn = mysql_connect(mysql_url)
    with conn, conn.cursor() as cur:
        cur.execute("drop table order_items, orders, products, customers")
    code, out, err = run_cli([], monkeypatch, capsys, **urls)
    assert (code, out) == (2, "") and err.count("\n") == 1, err
    assert err.startswith("audit: the source mysql://") and "has no table orders" in err, err
    assert "check that the MySQL URL names RetailFlow's source database" in err and mysql_password not in err, err
