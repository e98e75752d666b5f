"""The ingestion engine under faults, against real MariaDB and PostgreSQL: an interrupted full refresh,
live traffic during a sync, source schema changes, readers during a full refresh, a server-side
durability default, a re-created raw schema, killed runs in the lake, signals, a store CSV without
rows, and bad input or peers that are down."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from urllib.parse import unquote, urlsplit

import psycopg
import pytest
from ingest_support import STREAMS, assert_same_as_source, mysql, mysql_exec, seed, source_rows
from test_ingest_crash import cli, finish, kill_at

from retailflow_ingest import engine
from retailflow_ingest.engine import run
from retailflow_ingest.errors import IngestError
from retailflow_ingest.lake import LakeConfig
from support.ports import refusing_port

HEADER = "store_id,name,city,region,country,latitude,longitude,opened_at\n"


def query(warehouse_url: str, sql: str) -> list[tuple]:
    with psycopg.connect(warehouse_url) as conn:
        return [tuple(r) for r in conn.execute(sql).fetchall()]


def scalar(warehouse_url: str, sql: str):
    return query(warehouse_url, sql)[0][0]


def generations(warehouse_url: str) -> dict[str, set[int]]:
    return {s: {r[0] for r in query(warehouse_url, f"select distinct _airbyte_generation_id from raw.{s}")}
            for s in STREAMS}


# --- 1. a requested full refresh is remembered until every stream has completed it ------------------

def test_interrupted_full_refresh_is_finished_by_the_next_plain_run(mysql_url, warehouse_url):
    seed(mysql_url, items=6000)
    run(mysql_url, warehouse_url, stores_csv=None)
    # a re-seed: other rows, fewer of them, with timestamps older than every saved cursor
    mysql_exec(
        mysql_url,
        "delete from order_items", "delete from orders", "delete from customers",
        "insert into customers (customer_id, first_name, last_name, email, city, country, signed_up_at,"
        " created_at, updated_at) select seq, concat('New', seq), 'Reseed', concat('n', seq, '@example.com'),"
        " 'Oslo', 'NO', '2023-01-01', '2023-01-01', timestampadd(microsecond, seq, '2023-01-01') from seq_1_to_150",
        "insert into orders select seq, 1 + seq % 150, 'store', 1, 'returned', '2023-06-01', '2023-06-01',"
        " timestampadd(microsecond, seq, '2023-06-01') from seq_1_to_700",
        "insert into order_items select seq, 1 + seq % 700, 1 + seq % 50, 7, 1.50, '2023-06-01',"
        " timestampadd(microsecond, seq, '2023-06-01') from seq_1_to_5000",
    )
    # the full refresh is killed while orders is loading: whatever committed before stays, the rest not
    killed = kill_at(cli(mysql_url, warehouse_url, "orders:after_copy", "--full-refresh", "--parallel", "1"),
                     "fault hook: orders paused")
    assert "orders: full" not in killed
    assert scalar(warehouse_url, "select count(*) from raw.orders") == 1000  # the old rows, untouched
    done_before = {s for s in STREAMS if f"{s}: full," in killed}

    # a plain run finishes the refresh: every stream that had not completed it loads in full
    out = finish(cli(mysql_url, warehouse_url))
    for stream in STREAMS:
        assert (f"{stream}: full," in out) == (stream not in done_before), out
    assert_same_as_source(mysql_url, warehouse_url)
    # one new generation per stream, whichever run completed it
    assert generations(warehouse_url) == {s: {1} for s in STREAMS}
    assert query(warehouse_url, "select count(*) from raw._retailflow_ingest_pending_refresh") == [(0,)]

    # done: the next plain run is incremental again
    again = run(mysql_url, warehouse_url, stores_csv=None)
    assert {s: r.mode for s, r in again.streams.items()} == {s: "incremental" for s in STREAMS}


# --- 2. one consistent snapshot per sync across streams ---------------------------------------------

class Shop(threading.Thread):
    """Live traffic: new orders, each with its two lines in one transaction, as fast as MySQL takes them."""

    def __init__(self, mysql_url: str, first_order: int = 100_000):
        super().__init__(daemon=True)
        self.url, self.next_order, self.halt, self.orders = mysql_url, first_order, threading.Event(), 0

    def run(self) -> None:
        conn = mysql(self.url)
        conn.autocommit(False)
        with conn, conn.cursor() as cur:
            while not self.halt.is_set():
                o = self.next_order
                cur.execute(f"insert into orders values ({o}, 1, 'online', null, 'placed', now(6), now(6), now(6))")
                cur.execute(f"insert into order_items values ({o * 10}, {o}, 1, 1, 2.50, now(6), now(6)),"
                            f" ({o * 10 + 1}, {o}, 2, 3, 4.00, now(6), now(6))")
                cur.execute(f"update customers set city = 'Bergen' where customer_id = {1 + o % 200}")
                conn.commit()
                self.next_order += 1
                self.orders += 1


def broken_links(warehouse_url: str) -> tuple[int, int]:
    """(order lines whose order is missing, orders without any line) in the raw schema."""
    return (
        scalar(warehouse_url, "select count(*) from raw.order_items i where not exists"
                              " (select 1 from raw.orders o where o.order_id = i.order_id)"),
        scalar(warehouse_url, "select count(*) from raw.orders o where not exists"
                              " (select 1 from raw.order_items i where i.order_id = o.order_id)"),
    )


def test_one_snapshot_per_sync_under_live_traffic(mysql_url, warehouse_url):
    seed(mysql_url, orders=1000, items=2000)  # every seeded order has two lines
    shop = Shop(mysql_url)
    shop.start()
    try:
        while shop.orders < 20:
            threading.Event().wait(0.05)
        committed = max(r[0] for r in source_rows(mysql_url, "orders"))
        # small batches: many reads per stream, spread over the whole sync
        full = run(mysql_url, warehouse_url, stores_csv=None, batch_rows=300)
        assert broken_links(warehouse_url) == (0, 0)
        # every order committed before the sync started is in it
        assert scalar(warehouse_url, f"select count(*) from raw.orders where order_id <= {committed}") == \
            len([r for r in source_rows(mysql_url, "orders") if r[0] <= committed])

        committed = max(r[0] for r in source_rows(mysql_url, "orders"))
        incremental = run(mysql_url, warehouse_url, stores_csv=None, batch_rows=50)
        assert incremental.streams["orders"].mode == "incremental" and incremental.streams["orders"].inserted > 0
        assert broken_links(warehouse_url) == (0, 0)
        assert scalar(warehouse_url, f"select count(*) from raw.orders where order_id <= {committed}") == \
            len([r for r in source_rows(mysql_url, "orders") if r[0] <= committed])
    finally:
        shop.halt.set()
        shop.join(10)
    assert shop.orders > 20 and full.rows_read > 0
    # the high-water mark is the largest cursor committed, and it is what the state table holds
    hwm = incremental.streams["orders"].high_water_mark
    assert hwm == scalar(warehouse_url, "select max(updated_at) from raw.orders")
    assert hwm == scalar(warehouse_url, "select cursor_value from raw._retailflow_ingest_state where stream = 'orders'")
    run(mysql_url, warehouse_url, stores_csv=None)
    assert_same_as_source(mysql_url, warehouse_url)


# --- 3. schema evolution on incremental runs --------------------------------------------------------

def test_incremental_runs_follow_new_columns_and_explain_dropped_or_retyped_ones(mysql_url, warehouse_url):
    seed(mysql_url)
    run(mysql_url, warehouse_url, stores_csv=None)
    mysql_exec(mysql_url, "alter table orders add column coupon varchar(20) null after status",
               "update orders set coupon = 'SPRING' where order_id <= 10")
    second = run(mysql_url, warehouse_url, stores_csv=None)
    assert second.streams["orders"].mode == "incremental" and second.streams["orders"].updated == 10
    assert query(warehouse_url, "select coupon, count(*) from raw.orders group by 1 order by 1") == [
        ("SPRING", 10), (None, 990)]
    assert_same_as_source(mysql_url, warehouse_url)

    state = query(warehouse_url, "select stream, sync_id from raw._retailflow_ingest_state order by 1")
    mysql_exec(mysql_url, "alter table orders drop column coupon", "alter table products modify unit_price varchar(20)")
    with pytest.raises(IngestError) as failed:
        run(mysql_url, warehouse_url, stores_csv=None)
    message = str(failed.value)
    assert "\n" not in message
    assert "orders: column coupon was dropped in the source" in message
    assert "products: column unit_price changed type (numeric in the warehouse, varchar now)" in message
    assert message.endswith("run retailflow-ingest --full-refresh --streams orders products")
    assert query(warehouse_url, "select stream, sync_id from raw._retailflow_ingest_state order by 1") == state

    run(mysql_url, warehouse_url, stores_csv=None, streams=["orders", "products"], full_refresh=True)
    assert "coupon" not in [r[0] for r in query(warehouse_url, "select column_name from information_schema.columns"
                                                             " where table_schema = 'raw' and table_name = 'orders'")]
    assert_same_as_source(mysql_url, warehouse_url)


# --- 4. a full refresh never blocks readers; commits that move state are durable --------------------

def test_full_refresh_keeps_readers_on_the_old_table_until_its_commit(mysql_url, warehouse_url, monkeypatch):
    seed(mysql_url)
    run(mysql_url, warehouse_url, stores_csv=None)
    with psycopg.connect(warehouse_url) as conn:
        conn.execute("create view public.paid_orders as select order_id from raw.orders where status = 'paid'")
        conn.execute("create view public.paid_count as select count(*) as n from public.paid_orders")
        conn.execute("grant select on raw.orders to public")
    mysql_exec(mysql_url, "delete from order_items where order_id > 400", "delete from orders where order_id > 400")
    seen = {}

    def reader_during_load(stream, point, stop):
        if (stream, point) == ("orders", "after_copy"):
            with psycopg.connect(warehouse_url, autocommit=True) as reader:
                reader.execute("set lock_timeout = '3s'")
                seen["orders"] = reader.execute("select count(*) from raw.orders").fetchone()[0]
                seen["paid"] = reader.execute("select n from public.paid_count").fetchone()[0]

    monkeypatch.setattr(engine, "fault_hook", reader_during_load)
    run(mysql_url, warehouse_url, stores_csv=None, streams=["orders"], full_refresh=True)

    assert seen == {"orders": 1000, "paid": 1000}  # the old rows, read while the new table was loading
    assert scalar(warehouse_url, "select n from public.paid_count") == 400  # the views follow the new table
    assert scalar(warehouse_url, "select count(*) from raw.orders") == 400
    assert scalar(warehouse_url, "select has_table_privilege('public', 'raw.orders', 'select')") is True
    indexes = {r[0] for r in query(warehouse_url, "select indexname from pg_indexes where schemaname = 'raw'"
                                                  " and tablename = 'orders'")}
    assert indexes == {"orders_pk_idx", "orders_cursor_idx", "orders_extracted_at_idx"}
    leftovers = query(warehouse_url, "select relname from pg_class where relname like '\\_retailflow\\_%' and relkind = 'r'"
                                     " and relname not like '\\_retailflow\\_ingest\\_%'")
    assert leftovers == []


def test_commits_that_move_state_wait_for_the_wal_flush(mysql_url, warehouse_url):
    seed(mysql_url)
    run(mysql_url, warehouse_url, stores_csv=None)
    database = urlsplit(warehouse_url).path.lstrip("/")
    with psycopg.connect(warehouse_url, autocommit=True) as conn:
        # a server or database set to asynchronous commits: the engine must not inherit it
        conn.execute(f'alter database "{database}" set synchronous_commit = off')
        conn.execute("create table public.state_commits (stream text, mode text)")
        conn.execute("create function public.log_commit_mode() returns trigger language plpgsql as $$"
                     " begin insert into public.state_commits values (new.stream,"
                     " current_setting('synchronous_commit')); return new; end $$")
        conn.execute("create trigger log_commit_mode after insert or update on raw._retailflow_ingest_state"
                     " for each row execute function public.log_commit_mode()")
    mysql_exec(mysql_url, "update orders set status = 'shipped' where order_id <= 5")
    run(mysql_url, warehouse_url, stores_csv=None)
    run(mysql_url, warehouse_url, stores_csv=None, streams=["orders"], full_refresh=True)
    modes = query(warehouse_url, "select mode, count(*) from public.state_commits group by 1")
    assert modes == [("on", len(STREAMS) + 1)]


# --- 5. the lake: no path reused, commit markers, retention -----------------------------------------

def lake_files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_lake_paths_are_never_reused_across_schemas_and_warehouses(mysql_url, warehouse_url, tmp_path):
    seed(mysql_url)
    lake = LakeConfig(local_dir=tmp_path)
    first = run(mysql_url, warehouse_url, stores_csv=None, lake=lake)
    before = lake_files(tmp_path)
    with psycopg.connect(warehouse_url) as conn:
        conn.execute("drop schema raw cascade")  # the raw schema re-created from nothing
    second = run(mysql_url, warehouse_url, stores_csv=None, lake=lake)
    other = run(mysql_url, warehouse_url, schema="raw_elsewhere", stores_csv=None, lake=lake)  # another state

    assert len({first.sync_id, second.sync_id, other.sync_id}) == 3
    after = lake_files(tmp_path)
    assert {k: v for k, v in after.items() if k in before} == before  # nothing overwritten
    for result in (first, second, other):
        folder = tmp_path / "retailflow" / "raw" / "orders" / f"sync_id={result.sync_id}"
        assert sorted(p.name for p in folder.iterdir()) == ["_manifest.json", "part-00000.parquet"]


def test_lake_marks_commits_and_retention_removes_old_and_uncommitted_folders(mysql_url, warehouse_url, tmp_path):
    seed(mysql_url, items=9000)
    stream_dir = tmp_path / "retailflow" / "raw" / "order_items"
    # a run killed before its order_items commit leaves data files and no manifest
    killed = cli(mysql_url, warehouse_url, "order_items:before_commit", "--lake-keep", "2", lake_dir=tmp_path)
    kill_at(killed, "fault hook: order_items paused")
    (dead,) = [p for p in stream_dir.iterdir()]
    assert sorted(p.name for p in dead.iterdir()) == ["part-00000.parquet", "part-00001.parquet", "part-00002.parquet"]

    lake = LakeConfig(local_dir=tmp_path, keep=2)
    runs = [run(mysql_url, warehouse_url, stores_csv=None, lake=lake, batch_rows=4000, full_refresh=True)
            for _ in range(3)]
    mysql_exec(mysql_url, "update order_items set quantity = 9 where order_item_id <= 10")
    latest = run(mysql_url, warehouse_url, stores_csv=None, lake=lake, batch_rows=4000)

    kept = sorted(p.name for p in stream_dir.iterdir())
    assert kept == [f"sync_id={r.sync_id}" for r in (runs[1], runs[2], latest)]  # last 2 full loads + since
    manifest = json.loads((stream_dir / f"sync_id={runs[2].sync_id}" / "_manifest.json").read_text())
    assert (manifest["mode"], manifest["rows"], manifest["sync_id"]) == ("full", 9000, runs[2].sync_id)
    assert [f["name"] for f in manifest["files"]] == ["part-00000.parquet", "part-00001.parquet", "part-00002.parquet"]
    incremental = json.loads((stream_dir / f"sync_id={latest.sync_id}" / "_manifest.json").read_text())
    assert incremental["mode"] == "incremental" and incremental["rows"] >= 10
    assert incremental["high_water_mark"] == latest.streams["order_items"].high_water_mark.isoformat()
    readme = (tmp_path / "retailflow" / "raw" / "README.md").read_text()
    assert "Read only folders that hold a `_manifest.json`" in readme


def test_retention_leaves_a_running_sync_of_another_schema_sharing_the_prefix_alone(mysql_url, warehouse_url,
                                                                                     tmp_path):
    seed(mysql_url, items=9000)
    stream_dir = tmp_path / "retailflow" / "raw" / "order_items"
    # another pipeline (its own raw schema, so its own state and locks) writes to the same lake prefix
    # and is in the middle of its order_items sync: files written, manifest not yet
    other = cli(mysql_url, warehouse_url, "order_items:before_commit", "--schema", "raw_other",
                "--streams", "order_items", lake_dir=tmp_path)
    watchdog = threading.Timer(90, other.kill)
    watchdog.start()
    try:
        for line in other.stdout:
            if "fault hook: order_items paused" in line:
                break
        (running,) = list(stream_dir.iterdir())
        parts = ["part-00000.parquet", "part-00001.parquet", "part-00002.parquet"]
        assert sorted(p.name for p in running.iterdir()) == parts

        lake = LakeConfig(local_dir=tmp_path, keep=1)
        runs = [run(mysql_url, warehouse_url, stores_csv=None, streams=["order_items"], lake=lake, batch_rows=4000,
                    full_refresh=True) for _ in range(2)]
        assert sorted(p.name for p in running.iterdir()) == parts  # still being written by the other run
        assert sorted(p.name for p in stream_dir.iterdir()) == sorted([running.name, f"sync_id={runs[1].sync_id}"])
    finally:
        watchdog.cancel()
        other.kill()
        other.wait(30)
    # once the grace period is over the folder counts as dead, whoever made it
    run(mysql_url, warehouse_url, stores_csv=None, streams=["order_items"], batch_rows=4000,
        lake=LakeConfig(local_dir=tmp_path, keep=1, uncommitted_grace=timedelta(0)))
    assert not running.exists()


# --- 6. SIGINT and SIGTERM stop the engine ----------------------------------------------------------

def process_tree(pid: int) -> list[int]:
    """``pid`` and its descendants; a thread or process that ends while the tree is read is left out."""
    pids, todo = [], [pid]
    while todo:
        p = todo.pop()
        pids.append(p)
        try:
            tasks = list(Path(f"/proc/{p}/task").iterdir())
        except (FileNotFoundError, ProcessLookupError):
            continue
        for task in tasks:
            try:
                todo += [int(c) for c in (task / "children").read_text().split()]
            except (FileNotFoundError, ProcessLookupError):
                continue
    return pids


@pytest.mark.parametrize(("signum", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_signal_rolls_back_streams_in_flight_and_keeps_committed_ones(mysql_url, warehouse_url, signum, code):
    seed(mysql_url, items=8000)
    proc = cli(mysql_url, warehouse_url, "orders:after_copy", "--parallel", "1")
    seen = []
    for line in proc.stdout:
        seen.append(line)
        if "fault hook: orders paused" in line:
            break
    # no password of either URL is on the command line of the engine or anything it started
    secrets = [unquote(urlsplit(u).password) for u in (mysql_url, warehouse_url)]
    read = []
    for pid in process_tree(proc.pid):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
        except (FileNotFoundError, ProcessLookupError):  # it has ended
            continue
        read.append(pid)
        assert not any(s in cmdline for s in secrets), f"a password is in the argv of process {pid}"
    assert proc.pid in read, "the paused engine's own command line was read"
    os.kill(proc.pid, signum)
    out, _ = proc.communicate(timeout=60)
    out = "".join(seen) + out

    assert proc.returncode == code, out
    assert "Traceback" not in out
    assert "orders           rolled back" in out
    assert "not started" in out and "stream(s) not committed" in out
    committed = [s for s in STREAMS if f"{s}: full," in out]
    # one stream at a time, the largest first: order_items committed before orders paused
    assert committed and "orders" not in committed, out
    tables = {r[0] for r in query(warehouse_url, "select table_name from information_schema.tables"
                                                 " where table_schema = 'raw'")}
    assert tables & set(STREAMS) == set(committed)
    for stream in committed:
        assert scalar(warehouse_url, f"select count(*) from raw.{stream}") == len(source_rows(mysql_url, stream))


# --- 7. the store CSV ------------------------------------------------------------------------------

def test_store_csv_without_rows_never_replaces_the_table(mysql_url, warehouse_url, tmp_path):
    csv = tmp_path / "stores.csv"
    csv.write_text(HEADER + "1,Central,Zürich,Europe,CH,47.37,8.54,2019-04-01\n2,Harbour,Hamburg,Europe,DE,53.55,9.99,2020-06-15\n")
    run(mysql_url, warehouse_url, streams=["store_locations"], stores_csv=csv)
    env = {"RETAILFLOW_MYSQL_URL": mysql_url, "RETAILFLOW_WAREHOUSE_URL": warehouse_url, "PATH": ""}
    command = [sys.executable, "-m", "retailflow_ingest.cli", "--streams", "store_locations",
               "--stores-csv", str(csv), "--no-lake"]
    for text in (HEADER, HEADER + "\n,,,,,,,\n"):
        csv.write_text(text)
        done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=120)
        assert done.returncode == 2, done.stdout + done.stderr
        assert done.stderr.count("\n") == 1 and "no store to load" in done.stderr and "--allow-empty-stores" in done.stderr
        assert scalar(warehouse_url, "select count(*) from raw.store_locations") == 2

    csv.write_text(HEADER)
    done = subprocess.run([*command, "--allow-empty-stores"], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    assert scalar(warehouse_url, "select count(*) from raw.store_locations") == 0


def test_store_csv_quarantines_empty_required_fields_and_empty_rows(mysql_url, warehouse_url, tmp_path):
    csv = tmp_path / "stores.csv"
    csv.write_text(HEADER + "1,Central,Zürich,Europe,CH,47.37,8.54,2019-04-01\n"
                   "2,Harbour,Hamburg,,DE,53.55,9.99,2020-06-15\n"
                   "3,Fjord,Oslo,Europe,,59.91,10.75,2021-01-01\n"
                   ",,,,,,,\n"
                   "\n"
                   "4,,,Europe,NO,59.91,10.75,2021-01-01\n"
                   "5,Docks,Bergen,Europe,NO,60.39,5.32,2022-02-02\n")
    result = run(mysql_url, warehouse_url, streams=["store_locations"], stores_csv=csv)
    stores = result.streams["store_locations"]
    assert (stores.rows_read, stores.inserted, stores.quarantined) == (7, 2, 5)
    assert stores.rows_read == stores.inserted + stores.quarantined
    assert query(warehouse_url, "select store_id from raw.store_locations order by 1") == [(1,), (5,)]
    assert query(warehouse_url, "select line_number, reason from raw.store_locations_quarantine order by 1") == [
        (3, "missing region"), (4, "missing country"), (5, "empty row"), (6, "empty row"), (7, "missing name, city"),
    ]


# --- 8. bad input and peers that are down: one line, exit 2, nothing created -------------------------

@pytest.fixture
def closed_port() -> Iterator[int]:
    """A loopback port where nothing answers, held for the test (``refusing_port``): the down peers'."""
    with refusing_port() as port:
        yield port


def test_bad_input_and_down_peers_give_one_line_and_exit_2(mysql_url, warehouse_url, tmp_path, closed_port):
    seed(mysql_url)
    port = closed_port
    base = {**os.environ, "RETAILFLOW_MYSQL_URL": mysql_url, "RETAILFLOW_WAREHOUSE_URL": warehouse_url,
            "RETAILFLOW_LAKE_ACCESS_KEY": "k", "RETAILFLOW_LAKE_SECRET_KEY": "s"}
    no_pw = urlsplit(mysql_url)
    cases = {
        "batch rows 0": (["--batch-rows", "0"], {}),
        "batch rows text": (["--batch-rows", "many"], {}),
        "parallel 0": (["--parallel", "0"], {}),
        "negative lookback": (["--lookback-seconds", "-1"], {}),
        "lookback nan": (["--lookback-seconds", "nan"], {}),
        "negative keep": (["--lake-keep", "-1"], {}),
        "S3 lake down": (["--lake-endpoint", f"http://127.0.0.1:{port}"], {}),
        "lake folder not writable": (["--lake-dir", "/proc/retailflow-lake"], {}),
        "password in argv": (["--mysql-url", mysql_url], {}),
        "MySQL down": ([], {"RETAILFLOW_MYSQL_URL": f"mysql://{no_pw.netloc.rsplit('@')[0]}@127.0.0.1:{port}/x"}),
        "PostgreSQL down": ([], {"RETAILFLOW_WAREHOUSE_URL": f"postgresql://w:x@127.0.0.1:{port}/warehouse"}),
        "missing CSV": (["--stores-csv", str(tmp_path / "nope.csv")], {}),
    }
    procs = {
        name: subprocess.Popen([sys.executable, "-m", "retailflow_ingest.cli", *args],
                               env={**base, **env}, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for name, (args, env) in cases.items()
    }
    for name, proc in procs.items():
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 2, f"{name}: exit {proc.returncode}: {out}{err}"
        assert err.count("\n") == 1 and err.startswith("retailflow-ingest: "), f"{name}: {err!r}"
    assert query(warehouse_url, "select count(*) from information_schema.schemata where schema_name = 'raw'") == [(0,)]

    for bad in ({"batch_rows": 0}, {"parallel": 0}, {"batch_rows": 2.5}):
        with pytest.raises(IngestError, match="must be a whole number"):
            run(mysql_url, warehouse_url, stores_csv=None, **bad)
