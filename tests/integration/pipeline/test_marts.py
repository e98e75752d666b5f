"""The marts give the same three answers as independent SQL on the MySQL source.

Seed MySQL with the generator, ingest with the local engine, ``dbt build``; compare sales by region,
top customers and product sales with queries written here against MySQL (and the store CSV). Then
let the generator's live mode add orders and move statuses, ingest incrementally, build again and
compare again.
"""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from collections import defaultdict
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path

import psycopg
import pymysql
import pytest
from psycopg.rows import dict_row

from retailflow_pipeline import dbt as runner

pytestmark = pytest.mark.integration

REPO_ROOT = Path(__file__).resolve().parents[3]
STORES_CSV = REPO_ROOT / "data" / "store_locations.csv"
GENERATOR = Path(sys.executable).with_name("retailflow-generator")
# The documented revenue rule (dbt/README.md), restated here so the check does not read dbt's var.
REVENUE_STATUSES = ("paid", "shipped", "delivered")
CENT = Decimal("0.01")

ORDER_TOTALS_MYSQL = f"""
select o.order_id, o.customer_id, o.channel, o.store_id, c.country as customer_country,
       date(date_format(o.ordered_at, '%%Y-%%m-01')) as month, o.ordered_at,
       coalesce(t.total, 0) as total
from orders o
join customers c on c.customer_id = o.customer_id
left join (
    select order_id, sum(quantity * unit_price) as total from order_items group by order_id
) t on t.order_id = o.order_id
where o.status in ({", ".join(["%s"] * len(REVENUE_STATUSES))})
"""

PRODUCT_SALES_MYSQL = f"""
select i.product_id, sum(i.quantity) as units, sum(i.quantity * i.unit_price) as revenue
from order_items i
join orders o on o.order_id = i.order_id
where o.status in ({", ".join(["%s"] * len(REVENUE_STATUSES))})
group by i.product_id
"""


def mysql_rows(url: str, sql: str) -> list[dict]:
    from urllib.parse import unquote, urlsplit

    parts = urlsplit(url)
    conn = pymysql.connect(
        host=parts.hostname, port=parts.port or 3306, user=unquote(parts.username),
        password=unquote(parts.password or ""), database=parts.path.lstrip("/"),
        cursorclass=pymysql.cursors.DictCursor,
    )
    with conn, conn.cursor() as cur:
        cur.execute(sql, REVENUE_STATUSES)
        return list(cur.fetchall())


def expected_answers(mysql_url: str) -> dict[str, object]:
    """The three dashboard answers, computed from MySQL and the store CSV only."""
    with STORES_CSV.open(newline="") as f:
        stores = {int(r["store_id"]): (r["region"], r["country"]) for r in csv.DictReader(f)}
    by_region: dict[tuple, list] = defaultdict(lambda: [Decimal(0), 0])
    by_customer: dict[int, list] = {}
    for o in mysql_rows(mysql_url, ORDER_TOTALS_MYSQL):
        region, country = ("Online", o["customer_country"]) if o["channel"] == "online" else stores[o["store_id"]]
        cell = by_region[(region, country, o["month"])]
        cell[0] += o["total"]
        cell[1] += 1
        c = by_customer.setdefault(o["customer_id"], [Decimal(0), 0, o["ordered_at"], o["ordered_at"]])
        c[0] += o["total"]
        c[1] += 1
        c[2] = min(c[2], o["ordered_at"])
        c[3] = max(c[3], o["ordered_at"])
    sales = {
        key: (revenue, orders, (revenue / orders).quantize(CENT, ROUND_HALF_UP))
        for key, (revenue, orders) in by_region.items()
    }
    ranked = sorted(by_customer.items(), key=lambda kv: (-kv[1][0], kv[0]))
    customers = [(rank, cid, *values) for rank, (cid, values) in enumerate(ranked, start=1)]
    products = sorted(
        ((p["product_id"], int(p["units"]), p["revenue"]) for p in mysql_rows(mysql_url, PRODUCT_SALES_MYSQL)),
        key=lambda p: (-p[2], -p[1], p[0]),
    )
    return {
        "sales_by_region": sales,
        "top_customers": customers,
        "product_sales": [(rank, *p) for rank, p in enumerate(products, start=1)],
    }


def mart_answers(warehouse_url: str) -> dict[str, object]:
    with psycopg.connect(warehouse_url, row_factory=dict_row) as conn:
        sales_rows = conn.execute("select * from marts.sales_by_region").fetchall()
        sales = {
            (r["region"], r["country"], r["month"]): (r["revenue"], r["orders"], r["average_basket"])
            for r in sales_rows
        }
        assert len(sales) == len(sales_rows), "sales_by_region has more than one row per region, country and month"
        customers = [
            (r["revenue_rank"], r["customer_id"], r["lifetime_revenue"], r["order_count"],
             r["first_order_at"], r["last_order_at"])
            for r in conn.execute("select * from marts.top_customers order by revenue_rank")
        ]
        products = [
            (r["revenue_rank"], r["product_id"], r["units_sold"], r["revenue"])
            for r in conn.execute("select * from marts.product_sales where units_sold > 0 order by revenue_rank")
        ]
    return {"sales_by_region": sales, "top_customers": customers, "product_sales": products}


def generator(*args: str, mysql_url: str) -> None:
    """`retailflow-generator ARGS` aimed at ``mysql_url``, which (password and all) goes through the
    environment: the generator refuses a password on its command line, where `ps` shows it."""
    done = subprocess.run([str(GENERATOR), *args], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "RETAILFLOW_MYSQL_URL": mysql_url})
    assert done.returncode == 0, done.stderr


def ingest_and_build(mysql_url: str, warehouse_url: str, target: Path) -> None:
    from retailflow_ingest.engine import run as ingest

    ingest(mysql_url, warehouse_url, stores_csv=STORES_CSV)
    assert runner.run(["build"], warehouse_url=warehouse_url, target_path=target, log_path=target) == 0


def assert_same_answers(expected: dict, actual: dict) -> None:
    assert actual["sales_by_region"] == expected["sales_by_region"]
    assert actual["top_customers"] == expected["top_customers"]
    assert actual["product_sales"] == expected["product_sales"]


def audit(mysql_url: str, warehouse_url: str, monkeypatch, capsys) -> tuple[int, str, str]:
    """``make audit`` (``python -m retailflow_pipeline.audit``): (exit code, stdout, stderr)."""
    from retailflow_pipeline import audit

    monkeypatch.setenv("RETAILFLOW_MYSQL_URL", mysql_url)
    monkeypatch.setenv("RETAILFLOW_WAREHOUSE_URL", warehouse_url)
    capsys.readouterr()
    code = audit.main([])
    out, err = capsys.readouterr()
    return code, out, err


def test_marts_match_mysql_after_seed_and_after_live_changes(mysql_url, warehouse_url, tmp_path, monkeypatch,
                                                            capsys):
    generator(
        "seed", "--customers", "400", "--products", "80", "--orders", "4000", "--start", "2024-01-01",
        "--end", "2025-12-31", "--seed", "11", mysql_url=mysql_url,
    )
    ingest_and_build(mysql_url, warehouse_url, tmp_path)
    seeded = expected_answers(mysql_url)
    assert len(seeded["sales_by_region"]) > 24 and len(seeded["top_customers"]) > 100
    assert {region for region, _, _ in seeded["sales_by_region"]} > {"Online"}
    assert_same_answers(seeded, mart_answers(warehouse_url))

    generator("live", "--iterations", "5", "--interval", "0.2", "--rate", "200", "--seed", "12", mysql_url=mysql_url)
    changed = expected_answers(mysql_url)
    assert changed != seeded, "live mode changed nothing: the second comparison would prove nothing"
    ingest_and_build(mysql_url, warehouse_url, tmp_path)
    assert_same_answers(changed, mart_answers(warehouse_url))

    # the same audit the DAG runs, by hand: agreeing, then a mart that lost an order
    code, out, err = audit(mysql_url, warehouse_url, monkeypatch, capsys)
    assert (code, err) == (0, ""), out
    assert "orders rows: MySQL orders = " in out and "audit: ok" in out
    with psycopg.connect(warehouse_url, autocommit=True) as conn:
        conn.execute("delete from marts.orders where order_id = (select min(order_id) from marts.orders)")
    code, out, err = audit(mysql_url, warehouse_url, monkeypatch, capsys)
    assert code == 1 and "orders rows: " in out and "[MISMATCH]" in out
    assert err.startswith("audit: ") and "checks differ" in err
    # no marts at all: one line, exit 2
    with psycopg.connect(warehouse_url, autocommit=True) as conn:
        conn.execute("drop schema marts cascade")
    code, out, err = audit(mysql_url, warehouse_url, monkeypatch, capsys)
    assert code == 2 and out == "" and len(err.splitlines()) == 1 and "run the pipeline" in err, err
