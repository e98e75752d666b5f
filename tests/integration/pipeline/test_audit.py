"""The audit (``retailflow_pipeline.audit``) on real MariaDB and PostgreSQL: rows past the ingestion's
high-water mark are left out on both sides, every other row must match; and its MySQL statements read
the order lines in one pass, never once per order (the plans, as the server's EXPLAIN gives them).
"""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pymysql
import pytest
from conftest import mysql_connect, pg_connect
from test_marts import generator, ingest_and_build

from retailflow_pipeline import audit

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
