"""The local ingestion engine against real MariaDB and PostgreSQL: Airbyte-shaped tables, incremental
deduplicated syncs, late commits, the store locations CSV and its quarantine, and clear errors."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import threading
import time
import uuid
from datetime import timedelta
from pathlib import Path

import psycopg
import pytest
from ingest_support import (
    STREAMS,
    assert_same_as_source,
    mysql,
    mysql_exec,
    seed,
    source_columns,
    source_rows,
    warehouse_rows,
)

from retailflow_ingest.engine import run
from retailflow_ingest.errors import IngestError

REPO = Path(__file__).resolve().parents[3]
STORES_CSV = REPO / "data" / "store_locations.csv"

AIRBYTE_META = [
    ("_airbyte_raw_id", "character varying", "NO"),
    ("_airbyte_extracted_at", "timestamp with time zone", "NO"),
    ("_airbyte_meta", "jsonb", "NO"),
    ("_airbyte_generation_id", "bigint", "YES"),
]


def columns(warehouse_url: str, table: str, schema: str = "raw") -> list[tuple[str, str, str]]:
    with psycopg.connect(warehouse_url) as conn:
        return [
            tuple(r)
            for r in conn.execute(
                "select column_name, data_type, is_nullable from information_schema.columns"
                " where table_schema = %s and table_name = %s order by ordinal_position",
                (schema, table),
            ).fetchall()
        ]


def query(warehouse_url: str, sql: str, *params) -> list[tuple]:
    with psycopg.connect(warehouse_url) as conn:
        return [tuple(r) for r in conn.execute(sql, params).fetchall()]


@pytest.fixture
def stores_csv(tmp_path: Path) -> Path:
    path = tmp_path / "stores.csv"
    path.write_text(
        "store_id,name,city,region,country,latitude,longitude,opened_at\n"
        "1,Central,Zürich,Europe,CH,47.376887,8.541694,2019-04-01\n"
        "2,Harbour,Hamburg,Europe,DE,53.551086,9.993682,2020-06-15\n"
        ",Nameless,Oslo,Europe,NO,59.9139,10.7522,2021-01-01\n"
        "2,Again,Berlin,Europe,DE,52.52,13.405,2021-01-01\n"
        "3,Pole,Nowhere,Europe,NO,91.5,10.0,2021-01-01\n"
        "4,Edge,Fiji,Oceania,FJ,-17.7,181,2021-01-01\n"
        "5,Soon,Lyon,Europe,FR,45.764,4.8357,01/02/2021\n"
        "6,Short,Paris\n"
        '7,"Quoted, Inc.",Paris,Europe,FR,48.8566,2.3522,2022-02-28\n'
    )
    return path


def test_full_load_writes_airbyte_typed_tables(mysql_url, warehouse_url):
    seed(mysql_url)
    result = run(mysql_url, warehouse_url, stores_csv=STORES_CSV)

    assert_same_as_source(mysql_url, warehouse_url)
    assert {s: r.rows_read for s, r in result.streams.items() if s in STREAMS} == {
        "customers": 200, "products": 50, "orders": 1000, "order_items": 3000,
    }
    # Airbyte's destination-postgres 3.x layout: meta columns first, then the stream's, mapped types
    assert columns(warehouse_url, "orders") == AIRBYTE_META + [
        ("order_id", "bigint", "YES"),
        ("customer_id", "bigint", "YES"),
        ("channel", "character varying", "YES"),
        ("store_id", "bigint", "YES"),
        ("status", "character varying", "YES"),
        ("ordered_at", "timestamp without time zone", "YES"),
        ("created_at", "timestamp without time zone", "YES"),
        ("updated_at", "timestamp without time zone", "YES"),
    ]
    assert [c[1] for c in columns(warehouse_url, "products")[4:]] == [
        "bigint", "character varying", "character varying", "character varying", "numeric",
        "timestamp without time zone", "timestamp without time zone",
    ]
    assert columns(warehouse_url, "store_locations") == AIRBYTE_META + [
        ("store_id", "bigint", "YES"), ("name", "character varying", "YES"), ("city", "character varying", "YES"),
        ("region", "character varying", "YES"), ("country", "character varying", "YES"),
        ("latitude", "numeric", "YES"), ("longitude", "numeric", "YES"), ("opened_at", "character varying", "YES"),
    ]
    meta = query(
        warehouse_url,
        "select _airbyte_raw_id, _airbyte_meta, _airbyte_generation_id, _airbyte_extracted_at from raw.order_items",
    )
    assert len({m[0] for m in meta}) == 3000
    assert all(uuid.UUID(m[0]).version == 4 for m in meta)
    assert {json.dumps(m[1], sort_keys=True) for m in meta} == {
        json.dumps({"changes": [], "sync_id": result.sync_id}, sort_keys=True)
    }
    assert {m[2] for m in meta} == {0}
    assert all(m[3].tzinfo is not None for m in meta)
    # no defaults are left behind on the table once the load is done
    assert query(
        warehouse_url,
        "select count(*) from information_schema.columns where table_schema = 'raw' and column_default is not null"
        " and table_name in ('customers', 'products', 'orders', 'order_items', 'store_locations')",
    ) == [(0,)]
    indexes = {r[0] for r in query(warehouse_url, "select indexname from pg_indexes where tablename = 'orders'")}
    assert indexes == {"orders_pk_idx", "orders_cursor_idx", "orders_extracted_at_idx"}


def test_incremental_sync_keeps_latest_version_per_key(mysql_url, warehouse_url):
    seed(mysql_url)
    first = run(mysql_url, warehouse_url, stores_csv=None)
    mysql_exec(
        mysql_url,
        # 100 orders move on (ON UPDATE bumps updated_at), 20 new orders with their items arrive
        "update orders set status = 'shipped' where order_id <= 100",
        "insert into orders select 1000 + seq, 1, 'online', null, 'placed', now(6), now(6), now(6) from seq_1_to_20",
        "insert into order_items select 3000 + seq, 1000 + seq, 1, 2, 4.50, now(6), now(6) from seq_1_to_20",
    )
    second = run(mysql_url, warehouse_url, stores_csv=None)

    assert_same_as_source(mysql_url, warehouse_url)
    orders = second.streams["orders"]
    assert orders.mode == "incremental"
    assert (orders.inserted, orders.updated, orders.rows_in_table) == (20, 100, 1020)
    assert second.streams["order_items"].inserted == 20
    # re-read by the lookback window, unchanged: left as they were
    assert (second.streams["customers"].inserted, second.streams["customers"].updated) == (0, 0)
    assert query(warehouse_url, "select count(*), count(distinct order_id) from raw.orders") == [(1020, 1020)]
    # incremental merges keep MySQL's decimal scale (4.50 stays 4.50), as full loads do (below)
    prices = "select unit_price::text, count(*) from raw.order_items group by 1 order by 1"
    assert query(warehouse_url, prices) == [("4.50", 20), ("9.99", 3000)]
    # rows written by this sync carry its sync_id; untouched rows keep the first one
    by_sync = dict(query(
        warehouse_url, "select (_airbyte_meta->>'sync_id')::bigint, count(*) from raw.orders group by 1"
    ))
    assert by_sync == {first.sync_id: 900, second.sync_id: 120}
    states = dict(query(warehouse_url, "select stream, sync_id from raw._retailflow_ingest_state"))
    assert states == {s: second.sync_id for s in STREAMS}
    # new keys are copied straight into the table, changed ones merged: a stream's rows of one sync
    # carry the same meta values either way (one extraction time per stream)
    meta = ("select _airbyte_meta::text, _airbyte_generation_id, count(*), count(distinct _airbyte_extracted_at)"
            " from raw.{} where (_airbyte_meta->>'sync_id')::bigint = %s group by 1, 2")
    expected_meta = f'{{"changes": [], "sync_id": {second.sync_id}}}'
    assert query(warehouse_url, meta.format("orders"), second.sync_id) == [(expected_meta, 0, 120, 1)]
    assert query(warehouse_url, meta.format("order_items"), second.sync_id) == [(expected_meta, 0, 20, 1)]

    # nothing changed: nothing written
    third = run(mysql_url, warehouse_url, stores_csv=None)
    assert sum(r.inserted + r.updated for r in third.streams.values()) == 0
    assert_same_as_source(mysql_url, warehouse_url)

    run(mysql_url, warehouse_url, stores_csv=None, streams=["order_items"], full_refresh=True)
    assert query(warehouse_url, prices) == [("4.50", 20), ("9.99", 3000)]
    # new rows after a full refresh belong to its generation, like the merged ones
    mysql_exec(mysql_url, "insert into order_items select 4000 + seq, 1, 1, 1, 1.25, now(6), now(6) from seq_1_to_5",
               "update order_items set quantity = 3 where order_item_id = 7")
    fifth = run(mysql_url, warehouse_url, stores_csv=None, streams=["order_items"])
    assert (fifth.streams["order_items"].inserted, fifth.streams["order_items"].updated) == (5, 1)
    assert query(warehouse_url, "select _airbyte_generation_id, count(*) from raw.order_items"
                 " where (_airbyte_meta->>'sync_id')::bigint = %s group by 1", fifth.sync_id) == [(1, 6)]
    assert_same_as_source(mysql_url, warehouse_url)


def test_rows_the_lookback_reads_again_unchanged_are_not_merged(mysql_url, warehouse_url, monkeypatch):
    """The lookback re-reads every row stamped in its window, so a sync every minute with the 5-minute
    window read each change five times and staged and merged it each time (probed by key, compared,
    left as it was): the sync's cost grew with the window, not with the changes. Only rows the table
    lacks or holds with an older cursor reach the staging table and the merge now; the outcome is
    the same."""
    from retailflow_ingest.warehouse import Warehouse

    seed(mysql_url)  # the 1,000 orders are stamped within a millisecond: the lookback re-reads them all
    run(mysql_url, warehouse_url, stores_csv=None, streams=["orders"])
    mysql_exec(mysql_url, "update orders set status = 'shipped' where order_id <= 100",
               "insert into orders select 1000 + seq, 1, 'online', null, 'placed', now(6), now(6), now(6)"
               " from seq_1_to_20")
    with psycopg.connect(warehouse_url) as conn:  # a key the table lacks, below its largest: merged back in
        conn.execute("delete from raw.orders where order_id = 500")
    staged = []
    merge = Warehouse.merge

    def counted(self, cur, stream, stage, batch, rows=0, in_table=0):
        staged.append(cur.execute(f'select count(*) from "{stage}"').fetchone()[0])
        return merge(self, cur, stream, stage, batch, rows, in_table)

    monkeypatch.setattr(Warehouse, "merge", counted)
    second = run(mysql_url, warehouse_url, stores_csv=None, streams=["orders"])
    orders = second.streams["orders"]
    assert orders.rows_read == 1020
    assert staged == [101], staged  # the 100 changed orders and order 500; not the 899 others read again
    assert (orders.inserted, orders.updated) == (21, 100)
    columns_ = source_columns(mysql_url, "orders")
    assert warehouse_rows(warehouse_url, "orders", columns_) == source_rows(mysql_url, "orders")


def test_a_sync_keeps_the_callers_objects_out_of_its_full_collections_and_gives_them_back(
        mysql_url, warehouse_url, monkeypatch, tmp_path):
    """A full garbage collection walks every object in the process while every thread waits for the
    GIL: one fell inside most syncs of a fresh process, 23-25 ms in a 1% incremental tick of 0.14-0.25
    s. The objects alive before a sync (the modules, an Airflow task's own) are left out of the
    collections inside it, and given back when it ends, whether it succeeds or fails: nothing stays
    frozen in the caller, and a caller that froze its own objects keeps them frozen."""
    import gc

    from retailflow_ingest.warehouse import Warehouse

    seed(mysql_url)
    run(mysql_url, warehouse_url, stores_csv=None, streams=["orders"])
    mysql_exec(mysql_url, "update orders set status = 'shipped' where order_id <= 100")
    held = [[n] for n in range(200_000)]  # the caller's objects, as a worker holds them
    gc.collect()
    frozen = gc.get_freeze_count()
    walked = []

    def watch(phase, info):
        if phase == "start" and info["generation"] == 2:
            walked.append(len(gc.get_objects(generation=2)))

    merge = Warehouse.merge

    def collecting(self, *args, **kwargs):  # a full collection in the middle of the sync
        gc.collect()
        return merge(self, *args, **kwargs)

    monkeypatch.setattr(Warehouse, "merge", collecting)
    gc.callbacks.append(watch)
    try:
        second = run(mysql_url, warehouse_url, stores_csv=None, streams=["orders"])
    finally:
        gc.callbacks.remove(watch)
    assert second.streams["orders"].updated == 100
    assert walked, "no full collection ran inside the sync"
    assert max(walked) < len(held), walked
    assert gc.get_freeze_count() == frozen
    # a run that fails inside the sync (the CSV is read after the freeze, before anything is written)
    with pytest.raises(IngestError, match="store locations CSV not found"):
        run(mysql_url, warehouse_url, stores_csv=tmp_path / "missing.csv", streams=["store_locations"])
    assert gc.get_freeze_count() == frozen
    # a caller that froze its objects itself (as Airflow's LocalExecutor forks its workers) keeps them frozen
    gc.freeze()
    try:
        caller = gc.get_freeze_count()
        assert caller > 0
        mysql_exec(mysql_url, "update orders set status = 'delivered' where order_id <= 10")
        third = run(mysql_url, warehouse_url, stores_csv=None, streams=["orders"])
        assert third.streams["orders"].updated == 10
        # still frozen (given back, the count is 0); a few of those objects may have been freed meanwhile
        assert gc.get_freeze_count() > caller // 2, (gc.get_freeze_count(), caller)
    finally:
        gc.unfreeze()


def test_a_dense_cursor_range_keeps_the_batch_instead_of_reading_the_table(mysql_url, warehouse_url):
    """One UPDATE stamps all its rows alike: a batch's cursor range can hold far more of the table's
    rows than the batch. The read of the table's keys stops at four times the batch (plus 1,000), and a
    read that reaches it keeps every row of the batch for the merge, so each batch's work stays
    proportional to the batch instead of to the rows sharing its cursors."""
    from datetime import datetime

    import pyarrow as pa

    from retailflow_ingest.source import MySQLSource
    from retailflow_ingest.warehouse import Warehouse

    seed(mysql_url, orders=3000, items=3000)
    run(mysql_url, warehouse_url, stores_csv=None, streams=["orders"])
    stream = MySQLSource(mysql_url).discover()["orders"]
    stamped = datetime(2024, 3, 1, 12, 0, 0, 250000)
    again = pa.table({"order_id": pa.array(range(1, 11), pa.int64()),
                      "updated_at": pa.array([stamped] * 10, pa.timestamp("us"))})
    warehouse = Warehouse(warehouse_url)
    with psycopg.connect(warehouse_url) as conn, conn.cursor() as cur:
        # 500 rows share the batch's cursor: read, and the ten rows the table holds unchanged are left out
        cur.execute("update raw.orders set updated_at = %s where order_id <= 500", (stamped,))
        assert warehouse.may_change(cur, stream, again).num_rows == 0
        # 3,000 rows share it, more than 4 x 10 + 1,000: the read stops, and the batch goes to the merge whole
        cur.execute("update raw.orders set updated_at = %s", (stamped,))
        assert warehouse.may_change(cur, stream, again).num_rows == 10
        conn.rollback()


def test_full_load_writes_its_rows_frozen(mysql_url, warehouse_url):
    """A full load's COPY freezes its rows (the table is new in its transaction): every page is
    all-visible from the commit on, so readers set no hint bits, index-only scans skip the heap, and
    vacuum has nothing to freeze later. Without FREEZE no page is all-visible until a vacuum."""
    seed(mysql_url)
    for refresh in (False, True):  # the first load creates the tables; a full refresh builds new ones
        run(mysql_url, warehouse_url, stores_csv=None, streams=["order_items"], full_refresh=refresh)
        with psycopg.connect(warehouse_url, autocommit=True) as conn:
            conn.execute("analyze raw.order_items")  # refreshes relallvisible from the visibility map
            pages, visible = conn.execute(
                "select relpages, relallvisible from pg_class where oid = 'raw.order_items'::regclass").fetchone()
        assert pages > 0 and visible == pages


def test_full_refresh_starts_new_generation_and_keeps_dependent_views(mysql_url, warehouse_url):
    seed(mysql_url)
    run(mysql_url, warehouse_url, stores_csv=None)
    with psycopg.connect(warehouse_url) as conn:
        conn.execute("create view public.paid_orders as select order_id from raw.orders where status = 'paid'")
    mysql_exec(mysql_url, "delete from order_items where order_id > 500", "delete from orders where order_id > 500")

    run(mysql_url, warehouse_url, stores_csv=None, full_refresh=True)

    assert_same_as_source(mysql_url, warehouse_url)
    assert query(warehouse_url, "select distinct _airbyte_generation_id from raw.orders") == [(1,)]
    assert query(warehouse_url, "select count(*) from public.paid_orders") == [(500,)]


def test_late_commit_with_older_cursor_is_picked_up_by_lookback(mysql_url, warehouse_url):
    seed(mysql_url)
    run(mysql_url, warehouse_url, stores_csv=None, streams=["orders", "customers"])
    # a transaction stamped updated_at before the last sync read, but committed only after it
    mysql_exec(
        mysql_url,
        "insert into orders values (5001, 1, 'online', null, 'placed', '2024-02-01', '2024-02-01',"
        " '2024-02-01 00:00:00.000500')",
    )
    missed = run(mysql_url, warehouse_url, stores_csv=None, streams=["orders"], lookback=timedelta(0))
    assert missed.streams["orders"].inserted == 0  # a strict cursor alone loses it

    caught = run(mysql_url, warehouse_url, stores_csv=None, streams=["orders"], lookback=timedelta(minutes=5))
    assert (caught.streams["orders"].inserted, caught.streams["orders"].updated) == (1, 0)
    assert warehouse_rows(warehouse_url, "orders", ["order_id"])[-1] == (5001,)
    assert len(warehouse_rows(warehouse_url, "orders", ["order_id"])) == len(source_rows(mysql_url, "orders"))


def test_store_locations_csv_quarantines_bad_rows(mysql_url, warehouse_url, stores_csv):
    env = {"RETAILFLOW_MYSQL_URL": mysql_url, "RETAILFLOW_WAREHOUSE_URL": warehouse_url, "PATH": ""}
    done = subprocess.run(
        [sys.executable, "-m", "retailflow_ingest.cli", "--streams", "store_locations",
         "--stores-csv", str(stores_csv), "--no-lake"],
        capture_output=True, text=True, env=env, timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "store_locations: 9 rows read, 3 loaded, 6 quarantined" in done.stdout

    assert query(warehouse_url, "select store_id, name, latitude::text, opened_at::text from raw.store_locations"
                 " order by 1") == [
        (1, "Central", "47.376887", "2019-04-01"),
        (2, "Harbour", "53.551086", "2020-06-15"),
        (7, "Quoted, Inc.", "48.8566", "2022-02-28"),
    ]
    quarantined = query(
        warehouse_url, "select line_number, raw_line, reason from raw.store_locations_quarantine order by 1"
    )
    assert [(q[0], q[2]) for q in quarantined] == [
        (4, "missing store_id"),
        (5, "duplicate store_id 2 (first on line 3)"),
        (6, "latitude 91.5 is out of range [-90, 90]"),
        (7, "longitude 181 is out of range [-180, 180]"),
        (8, "opened_at '01/02/2021' is not a YYYY-MM-DD date"),
        (9, "expected 8 fields, got 3"),
    ]
    assert quarantined[0][1] == ",Nameless,Oslo,Europe,NO,59.9139,10.7522,2021-01-01"

    # a fixed file replaces both the table and the quarantine
    stores_csv.write_text("store_id,name,city,region,country,latitude,longitude,opened_at\n"
                          "9,Only,Oslo,Europe,NO,59.9,10.7,2023-03-03\n")
    run(mysql_url, warehouse_url, streams=["store_locations"], stores_csv=stores_csv)
    assert query(warehouse_url, "select store_id from raw.store_locations") == [(9,)]
    assert query(warehouse_url, "select count(*) from raw.store_locations_quarantine") == [(0,)]


def test_committed_store_locations_file_loads_cleanly(mysql_url, warehouse_url):
    result = run(mysql_url, warehouse_url, streams=["store_locations"], stores_csv=STORES_CSV)
    lines = len(STORES_CSV.read_text().splitlines()) - 1
    assert (result.streams["store_locations"].inserted, result.streams["store_locations"].quarantined) == (lines, 0)


def tables_in(warehouse_url: str) -> list[str]:
    return [r[0] for r in query(warehouse_url, "select table_name from information_schema.tables"
                                               " where table_schema = 'raw'")]


def test_bad_input_fails_clearly_before_writing(mysql_url, warehouse_url, tmp_path):
    seed(mysql_url)
    with pytest.raises(IngestError, match=r"unknown stream\(s\) payments; known: customers, order_items"):
        run(mysql_url, warehouse_url, streams=["orders", "payments"])
    with pytest.raises(IngestError, match="store locations CSV not found: .*missing.csv"):
        run(mysql_url, warehouse_url, stores_csv=tmp_path / "missing.csv")
    assert tables_in(warehouse_url) == []

    closed = "mysql://retail:x@127.0.0.1:9/retail"
    with pytest.raises(IngestError, match=r"cannot connect to the source mysql://retail@127.0.0.1:9/retail"):
        run(closed, warehouse_url)
    with pytest.raises(IngestError, match=r"cannot connect to the warehouse postgresql://warehouse@127.0.0.1:9/"):
        run(mysql_url, "postgresql://warehouse:x@127.0.0.1:9/warehouse", stores_csv=None)

    env = {"RETAILFLOW_MYSQL_URL": mysql_url, "RETAILFLOW_WAREHOUSE_URL": warehouse_url, "PATH": ""}
    done = subprocess.run(
        [sys.executable, "-m", "retailflow_ingest.cli", "--streams", "nope"],
        capture_output=True, text=True, timeout=60, env=env,
    )
    assert done.returncode == 2
    assert "retailflow-ingest: unknown stream(s) nope" in done.stderr
    assert "Traceback" not in done.stderr
    assert tables_in(warehouse_url) == []


def test_a_source_database_without_the_shops_tables_is_refused_not_synced_as_empty(mysql_url, warehouse_url):
    """A database never seeded, or the wrong one in the URL: the command said "0 rows read" and exited 0,
    as if the shop had no orders. It now says what to check, exit 2, and writes nothing."""
    mysql_exec(mysql_url, "set foreign_key_checks = 0", *(f"drop table {t}" for t in STREAMS))
    env = {"RETAILFLOW_MYSQL_URL": mysql_url, "RETAILFLOW_WAREHOUSE_URL": warehouse_url, "PATH": ""}
    done = subprocess.run([sys.executable, "-m", "retailflow_ingest.cli", "--no-lake"], capture_output=True,
                          text=True, timeout=60, env=env)
    assert done.returncode == 2, done.stdout + done.stderr
    assert "retailflow-ingest: the source database has none of the pipeline's tables" in done.stderr
    assert "seed it first (make seed)" in done.stderr and "Traceback" not in done.stderr
    assert tables_in(warehouse_url) == []


def test_the_command_prints_its_whole_summary_before_it_exits(mysql_url, warehouse_url):
    """``retailflow-ingest`` (its console script) leaves without the interpreter's teardown: what it
    printed into a pipe (block-buffered: no PYTHONUNBUFFERED here) must still arrive, every line."""
    seed(mysql_url)
    command = [str(Path(sys.executable).with_name("retailflow-ingest")), "--no-lake", "--stores-csv", "none"]
    env = {"RETAILFLOW_MYSQL_URL": mysql_url, "RETAILFLOW_WAREHOUSE_URL": warehouse_url, "PATH": ""}
    for mode in ("full", "incremental"):
        done = subprocess.run(command, capture_output=True, text=True, timeout=120, env=env)
        assert done.returncode == 0, done.stderr
        lines = done.stdout.splitlines()
        # the summary table: one line per stream, then the sync's line, last
        assert sorted(line.split()[:2] for line in lines if line.split()[:1] in ([s] for s in STREAMS)) == sorted(
            [s, mode] for s in STREAMS
        )
        assert re.fullmatch(r"sync \d+: [\d,]+ rows read in [\d.]+ s", lines[-1])
    assert_same_as_source(mysql_url, warehouse_url)


def test_a_table_retyped_while_a_sync_waits_for_its_lock_stops_that_stream_clearly(mysql_url, warehouse_url):
    """The plan compares the table's columns before the stream's lock; rows are then COPY'd in binary,
    typed by it. A table another sync rebuilt with another column type meanwhile stops the stream
    with a clear error and nothing written, instead of a COPY of mistyped values."""
    seed(mysql_url)
    run(mysql_url, warehouse_url, stores_csv=None, streams=["orders"])
    mysql_exec(mysql_url, "insert into orders select 2000 + seq, 1, 'online', null, 'placed', now(6), now(6), now(6)"
                          " from seq_1_to_5")
    outcome: dict = {}

    def sync() -> None:
        try:
            outcome["result"] = run(mysql_url, warehouse_url, stores_csv=None, streams=["orders"])
        except Exception as exc:  # the assertion below reads it
            outcome["error"] = exc

    with psycopg.connect(warehouse_url, autocommit=True) as other:
        other.execute("select pg_advisory_lock(hashtext('raw.orders'))")  # another sync of the stream runs
        syncing = threading.Thread(target=sync)
        syncing.start()
        deadline = time.monotonic() + 30
        waiting = ("select count(*) from pg_locks where locktype = 'advisory' and not granted"
                   " and database = (select oid from pg_database where datname = current_database())")
        while other.execute(waiting).fetchone()[0] == 0:  # this database's only: other suites run beside
            assert time.monotonic() < deadline and syncing.is_alive(), outcome
            time.sleep(0.05)
        other.execute("alter table raw.orders alter column store_id type numeric")  # and rebuilt the table
        other.execute("select pg_advisory_unlock(hashtext('raw.orders'))")
        syncing.join(60)
    error = outcome.get("error")
    assert isinstance(error, IngestError) and "another sync changed its table meanwhile" in str(error), outcome
    assert query(warehouse_url, "select count(*) from raw.orders where order_id > 2000") == [(0,)]


def test_a_timestamp_cursor_column_syncs_in_full_and_then_incrementally(mysql_url, warehouse_url, monkeypatch):
    """``updated_at timestamp`` (MySQL's usual idiom, beside the shop's ``datetime``) arrives as UTC-aware
    values; comparing the largest with the source's clock (naive UTC) failed every sync of the table.
    The readers' sessions start in another zone here, as on a server whose zone is not UTC: MySQL shows
    a ``timestamp`` in the session's zone, and the loaded instants must still be MySQL's."""
    from retailflow_ingest import source

    monkeypatch.setattr(source, "SNAPSHOT_SESSION", ("set session time_zone = '+05:00'", *source.SNAPSHOT_SESSION))
    mysql_exec(
        mysql_url,
        "create table events (id bigint primary key, kind varchar(10) not null,"
        " updated_at timestamp(6) not null default current_timestamp(6) on update current_timestamp(6),"
        " key ix_events_updated (updated_at))",
        "insert into events (id, kind) select seq, 'seen' from seq_1_to_50",
    )
    first = run(mysql_url, warehouse_url, stores_csv=None, streams=["events"])
    assert (first.streams["events"].mode, first.streams["events"].inserted) == ("full", 50), first.summary()
    mysql_exec(mysql_url, "update events set kind = 'clicked' where id <= 5",
               "insert into events (id, kind) select 50 + seq, 'seen' from seq_1_to_3")
    second = run(mysql_url, warehouse_url, stores_csv=None, streams=["events"])
    events = second.streams["events"]
    assert (events.mode, events.inserted, events.updated, events.rows_in_table) == ("incremental", 3, 5, 53)
    # the same instants as MySQL holds them
    with mysql(mysql_url) as conn, conn.cursor() as cur:
        cur.execute("select id, kind, unix_timestamp(updated_at) from events order by id")
        source = [(i, k, float(t)) for i, k, t in cur.fetchall()]
    loaded = query(warehouse_url, "select id, kind, extract(epoch from updated_at)::float8 from raw.events order by id")
    assert [(i, k) for i, k, _ in loaded] == [(i, k) for i, k, _ in source]
    assert all(abs(mine - theirs) < 1e-6 for (_, _, mine), (_, _, theirs) in zip(loaded, source, strict=True))
    assert columns(warehouse_url, "events")[-1] == ("updated_at", "timestamp with time zone", "YES")


def test_a_pipeline_table_with_a_column_the_engine_cannot_load_is_refused_by_name(mysql_url, warehouse_url):
    """One ``double`` column added to products made discovery drop the table, and the run said "the source
    database lacks the pipeline's table(s) products" and went on without it, exit 0. It now names the
    column and its type, exit 2, and writes nothing."""
    seed(mysql_url)
    mysql_exec(mysql_url, "alter table products add column weight double")
    env = {"RETAILFLOW_MYSQL_URL": mysql_url, "RETAILFLOW_WAREHOUSE_URL": warehouse_url, "PATH": ""}
    for extra in ([], ["--streams", "products", "orders"]):
        done = subprocess.run([sys.executable, "-m", "retailflow_ingest.cli", "--no-lake", *extra],
                              capture_output=True, text=True, timeout=60, env=env)
        assert done.returncode == 2, done.stdout + done.stderr
        assert done.stderr.count("\n") == 1 and "products: cannot be synced, column weight double:" in done.stderr
        assert "lacks" not in done.stderr and "unknown stream" not in done.stderr, done.stderr
    assert tables_in(warehouse_url) == []
    # a table outside the pipeline's catalog with such a column is still only ignored
    mysql_exec(mysql_url, "alter table products drop column weight", "create table scratch (id bigint primary key,"
               " v double, updated_at datetime(6) not null default current_timestamp(6))")
    result = run(mysql_url, warehouse_url, stores_csv=None)
    assert sorted(result.streams) == sorted(STREAMS)


def test_a_password_mysql_cannot_send_is_refused_without_showing_any_of_it(mysql_url):
    """PyMySQL sends the password in latin-1; for one it cannot encode it raised a UnicodeEncodeError
    naming the character and its position in the password, as a traceback."""
    import traceback
    from urllib.parse import urlsplit

    from retailflow_ingest.source import MySQLSource

    parts = urlsplit(mysql_url)
    source = MySQLSource(f"mysql://retail:Zq9%E2%82%ACsecret@{parts.hostname}:{parts.port}/retail")
    with pytest.raises(IngestError, match="holds a character outside latin-1") as refused:
        source.connect()
    report = "".join(traceback.format_exception(refused.value))
    assert not any(piece in report for piece in ("Zq9", "secret", "\\u20ac", "\u20ac", "position")), report


def test_a_stream_that_fails_after_others_committed_exits_1_with_the_summary(mysql_url, warehouse_url):
    """A materialized view on raw.customers stops that stream's swap while the other streams commit. The
    command exited 2 ("bad input, nothing created") with one line and no summary: it now prints the
    summary (what committed, what failed) and exits 1, and the committed streams stay committed."""
    seed(mysql_url)
    run(mysql_url, warehouse_url, stores_csv=None)
    with psycopg.connect(warehouse_url, autocommit=True) as conn:
        conn.execute("create materialized view raw.customer_count as select count(*) from raw.customers")
    env = {"RETAILFLOW_MYSQL_URL": mysql_url, "RETAILFLOW_WAREHOUSE_URL": warehouse_url, "PATH": ""}
    done = subprocess.run([sys.executable, "-m", "retailflow_ingest.cli", "--no-lake", "--stores-csv", "none",
                           "--full-refresh"], capture_output=True, text=True, timeout=120, env=env)
    assert done.returncode == 1, done.stdout + done.stderr
    summary = done.stdout.splitlines()
    committed = {line.split()[0] for line in summary if re.match(r"\S+ +full +\d", line)}
    assert committed == set(STREAMS) - {"customers"}, done.stdout
    assert any(re.match(r"customers +failed: customers: .*customer_count", line) for line in summary), done.stdout
    assert "stream(s) not committed" in summary[-1], done.stdout
    assert re.fullmatch(r"retailflow-ingest: customers failed, its table and cursor are unchanged: raw\.customer_count"
                        r" depend\(s\) on .* not views; .*\n", done.stderr), done.stderr
    generations = dict(query(warehouse_url, "select stream, generation_id from raw._retailflow_ingest_state"))
    assert generations == {**{s: 1 for s in STREAMS}, "customers": 0}
