"""Helpers for the ingestion engine's integration tests: deterministic source rows written with SQL
(MariaDB's ``seq_1_to_N`` sequence tables) and the comparison of warehouse tables with the source."""

from __future__ import annotations

from urllib.parse import unquote, urlsplit

import psycopg
import pymysql

STREAMS = {
    "customers": "customer_id",
    "products": "product_id",
    "orders": "order_id",
    "order_items": "order_item_id",
}


def mysql(url: str) -> pymysql.connections.Connection:
    parts = urlsplit(url)
    return pymysql.connect(
        host=parts.hostname, port=parts.port or 3306, user=unquote(parts.username or ""),
        password=unquote(parts.password or ""), database=parts.path.lstrip("/"), autocommit=True,
    )


def mysql_exec(url: str, *statements: str) -> None:
    conn = mysql(url)
    with conn, conn.cursor() as cur:
        for stmt in statements:
            cur.execute(stmt)


def seed(url: str, customers: int = 200, products: int = 50, orders: int = 1000, items: int = 3000) -> None:
    """Rows with historical timestamps; ``updated_at`` increases with the id, a microsecond apart."""
    mysql_exec(
        url,
        "insert into customers (customer_id, first_name, last_name, email, city, country, signed_up_at,"
        " created_at, updated_at) select seq, concat('First', seq), 'Müller', concat('c', seq, '@example.com'),"
        " 'Zürich', 'CH', '2024-01-01 09:30:00.123456', '2024-01-01',"
        f" timestampadd(microsecond, seq, '2024-01-01') from seq_1_to_{customers}",
        "insert into products select seq, concat('SKU-', seq), concat('Product ', seq), 'toys', seq * 1.25,"
        f" '2024-01-01', timestampadd(microsecond, seq, '2024-01-01') from seq_1_to_{products}",
        f"insert into orders select seq, 1 + seq % {customers}, if(seq % 2, 'online', 'store'),"
        " if(seq % 2, null, 1 + seq % 5), 'paid', '2024-02-01 12:00:00', '2024-02-01',"
        f" timestampadd(microsecond, seq, '2024-02-01') from seq_1_to_{orders}",
        f"insert into order_items select seq, 1 + seq % {orders}, 1 + seq % {products}, 1 + seq % 3, 9.99,"
        f" '2024-02-01', timestampadd(microsecond, seq, '2024-02-01') from seq_1_to_{items}",
    )


def source_rows(url: str, stream: str) -> list[tuple]:
    conn = mysql(url)
    with conn, conn.cursor() as cur:
        cur.execute(f"select * from `{stream}` order by `{STREAMS[stream]}`")
        return list(cur.fetchall())


def source_columns(url: str, stream: str) -> list[str]:
    conn = mysql(url)
    with conn, conn.cursor() as cur:
        cur.execute(f"select * from `{stream}` limit 0")
        return [d[0] for d in cur.description]


def warehouse_rows(url: str, stream: str, columns: list[str], schema: str = "raw") -> list[tuple]:
    with psycopg.connect(url) as conn:
        cols = ", ".join(f'"{c}"' for c in columns)
        return [tuple(r) for r in conn.execute(f'select {cols} from "{schema}"."{stream}" order by 1').fetchall()]


def assert_same_as_source(mysql_url: str, warehouse_url: str, schema: str = "raw") -> None:
    """Every stream holds exactly the source's rows: none missing, none extra, none duplicated."""
    for stream in STREAMS:
        columns = source_columns(mysql_url, stream)
        expected = source_rows(mysql_url, stream)
        actual = warehouse_rows(warehouse_url, stream, columns, schema)
        assert len(actual) == len(expected), f"{stream}: {len(actual)} rows in the warehouse, {len(expected)} in MySQL"
        assert actual == expected, f"{stream}: warehouse rows differ from MySQL"
