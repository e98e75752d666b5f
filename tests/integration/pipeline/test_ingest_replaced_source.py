"""A replaced source table is never missed: a re-seed (new tables swapped in with ``RENAME TABLE``,
rows with timestamps below the high-water mark) is reloaded in full, and said so, instead of an
incremental run that reads 0 rows and leaves the old data in the warehouse."""

from __future__ import annotations

import time

import psycopg
import pytest
from ingest_support import STREAMS, assert_same_as_source, mysql, mysql_exec, seed
from test_ingest_crash import cli, finish

from retailflow_ingest.engine import run
from retailflow_ingest.errors import IngestError
from retailflow_ingest.source import MySQLSource
from retailflow_generator import cli as generator

pytestmark = pytest.mark.integration

SMALL = ["--customers", "300", "--products", "40", "--orders", "1500", "--start", "2025-01-01",
         "--end", "2025-03-31"]


def query(warehouse_url: str, sql: str) -> list[tuple]:
    with psycopg.connect(warehouse_url) as conn:
        return [tuple(r) for r in conn.execute(sql).fetchall()]


def next_server_second(url: str, timeout_s: float = 5.0) -> None:
    """Wait until the MySQL server's clock is in a later whole second than when called: a table created
    after it has another ``information_schema`` create_time (whole seconds) than one created before."""
    conn = mysql(url)
    with conn, conn.cursor() as cur:
        cur.execute("select unix_timestamp()")
        (start,) = cur.fetchone()
        deadline = time.monotonic() + timeout_s
        while True:
            cur.execute("select unix_timestamp()")
            if cur.fetchone()[0] > start:
                return
            assert time.monotonic() < deadline, f"the MySQL server's clock stayed at {start} for {timeout_s} s"
            time.sleep(0.01)


def swap_in(url: str, table: str, fill: str) -> None:
    """Replace ``table`` as ``seed --truncate`` does: a new table loaded beside it, renamed into its
    place in one ``RENAME TABLE``, the old one dropped."""
    mysql_exec(
        url,
        "set foreign_key_checks = 0",
        f"create table {table}__new like {table}",
        f"insert into {table}__new {fill}",
        f"rename table {table} to {table}__old, {table}__new to {table}",
        f"drop table {table}__old",
    )


def test_a_reseeded_source_is_reloaded_in_full_and_said_so(mysql_url, warehouse_url, monkeypatch):
    """The user's loop: seed, ingest, seed again with another seed, ingest. The second seed's rows
    carry historical timestamps below every saved cursor; an incremental read from the cursor would
    read 0 rows and keep the first seed's data."""
    monkeypatch.setenv("RETAILFLOW_MYSQL_URL", mysql_url)  # the generator takes a password only from there
    assert generator.main(["seed", *SMALL, "--seed", "1"]) == 0
    finish(cli(mysql_url, warehouse_url))
    assert generator.main(["seed", *SMALL, "--seed", "2", "--truncate"]) == 0

    out = finish(cli(mysql_url, warehouse_url))

    assert_same_as_source(mysql_url, warehouse_url)  # not the first seed's rows
    for stream in STREAMS:
        assert f"{stream}: full," in out, out
        assert f"{stream:<16} reloaded in full: " in out, out
    # the reload is a full refresh: a new generation, and the next run is incremental again
    assert {r[0] for r in query(warehouse_url, "select distinct _airbyte_generation_id from raw.orders")} == {1}
    again = run(mysql_url, warehouse_url, stores_csv=None)
    assert {s: r.mode for s, r in again.streams.items()} == {s: "incremental" for s in STREAMS}
    assert again.reloaded == {}


def test_rows_vanished_below_the_high_water_mark_reload_that_stream_only(mysql_url, warehouse_url):
    seed(mysql_url)
    run(mysql_url, warehouse_url, stores_csv=None)
    # orders replaced by fewer, older rows: the row the saved cursor points at is gone
    swap_in(mysql_url, "orders", "select seq, 1, 'store', 1, 'returned', '2023-06-01', '2023-06-01',"
                                 " timestampadd(microsecond, seq, '2023-06-01') from seq_1_to_700")

    result = run(mysql_url, warehouse_url, stores_csv=None)

    assert result.streams["orders"].mode == "full"
    assert "its row at the high-water mark (order_id 1000," in result.reloaded["orders"]
    assert "is gone from the source" in result.reloaded["orders"]
    assert {s: r.mode for s, r in result.streams.items() if s != "orders"} == {
        s: "incremental" for s in STREAMS if s != "orders"}
    assert query(warehouse_url, "select count(*), max(status) from raw.orders") == [(700, "returned")]


def test_a_table_swapped_in_with_the_same_cursor_values_is_reloaded(mysql_url, warehouse_url):
    """The row at the cursor is still there, unchanged; only the table's identity tells the new table
    (statuses changed without their updated_at) from the old one."""
    seed(mysql_url)
    run(mysql_url, warehouse_url, stores_csv=None)
    next_server_second(mysql_url)  # information_schema's create_time has whole seconds
    swap_in(mysql_url, "orders", "select order_id, customer_id, channel, store_id, 'cancelled', ordered_at,"
                                 " created_at, updated_at from orders")

    result = run(mysql_url, warehouse_url, stores_csv=None)

    assert result.streams["orders"].mode == "full"
    assert "the source table was re-created or rebuilt" in result.reloaded["orders"]
    assert query(warehouse_url, "select distinct status from raw.orders") == [("cancelled",)]


def test_a_table_swapped_in_while_the_sync_starts_is_refused_in_one_line(mysql_url, warehouse_url, monkeypatch):
    seed(mysql_url)
    run(mysql_url, warehouse_url, stores_csv=None)
    next_server_second(mysql_url)  # the swapped-in table's create_time (whole seconds) must differ
    real_rows_at = MySQLSource.rows_at

    def swap_after_planning(self, cursors):
        found = real_rows_at(self, cursors)
        swap_in(mysql_url, "customers", "select * from customers")
        return found

    monkeypatch.setattr(MySQLSource, "rows_at", swap_after_planning)
    with pytest.raises(IngestError, match=r"^customers: replaced in the source while this sync started"
                                          r" \(nothing was written\); run again$"):
        run(mysql_url, warehouse_url, stores_csv=None)
    monkeypatch.setattr(MySQLSource, "rows_at", real_rows_at)
    result = run(mysql_url, warehouse_url, stores_csv=None)  # the next run reloads it
    assert result.streams["customers"].mode == "full"


def test_an_interrupted_seeds_shadow_tables_are_not_ingested(mysql_url, warehouse_url):
    seed(mysql_url)
    mysql_exec(mysql_url, "create table orders__new like orders", "insert into orders__new select * from orders")

    out = finish(cli(mysql_url, warehouse_url))

    assert "ignored 1 source table(s) outside the pipeline's catalog: orders__new" in out
    assert query(warehouse_url, "select count(*) from pg_tables where tablename like '%\\_\\_new'") == [(0,)]
    assert_same_as_source(mysql_url, warehouse_url)
