"""One ingestion run: every selected stream, each in its own warehouse transaction."""

from __future__ import annotations

import logging
import os
import queue
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa

from retailflow_pipeline.ingest import stores
from retailflow_pipeline.ingest.errors import IngestError
from retailflow_pipeline.ingest.lake import Lake, LakeConfig
from retailflow_pipeline.ingest.source import MySQLSource, Stream, max_cursor
from retailflow_pipeline.ingest.warehouse import Batch, Warehouse

log = logging.getLogger("retailflow_pipeline.ingest")

#: how far before the saved cursor an incremental read starts; covers rows whose ``updated_at`` was
#: set by a transaction that committed after a later one had already been read
DEFAULT_LOOKBACK = timedelta(minutes=5)
#: rows per read from MySQL (one Arrow chunk, one COPY, one lake file)
DEFAULT_BATCH_ROWS = 250_000
#: fault injection for crash tests: ``<stream>:<point>`` makes the run stop there (points:
#: ``after_copy``, ``before_commit``) and sleep until killed
FAULT_ENV = "RETAILFLOW_INGEST_FAULT"
STORES = stores.STREAM.name


@dataclass
class StreamResult:
    stream: str
    mode: str  #: "full" or "incremental"
    rows_read: int = 0
    inserted: int = 0
    updated: int = 0
    rows_in_table: int = 0
    quarantined: int = 0
    seconds: float = 0.0
    lake_files: list[str] = field(default_factory=list)

    @property
    def rows_per_second(self) -> float:
        return self.rows_read / self.seconds if self.seconds else 0.0


@dataclass
class IngestResult:
    sync_id: int
    streams: dict[str, StreamResult] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def rows_read(self) -> int:
        return sum(s.rows_read for s in self.streams.values())

    def summary(self) -> str:
        lines = [f"{'stream':<16} {'mode':<12} {'read':>10} {'inserted':>10} {'updated':>9} {'in table':>10}"
                 f" {'quarant.':>8} {'seconds':>8} {'rows/s':>9}"]
        for s in self.streams.values():
            lines.append(
                f"{s.stream:<16} {s.mode:<12} {s.rows_read:>10,} {s.inserted:>10,} {s.updated:>9,}"
                f" {s.rows_in_table:>10,} {s.quarantined:>8,} {s.seconds:>8.2f} {s.rows_per_second:>9,.0f}"
            )
        lines.append(f"sync {self.sync_id}: {self.rows_read:,} rows read in {self.seconds:.2f} s")
        return "\n".join(lines)


_HEX_PAIRS = np.array([int.from_bytes(f"{i:02x}".encode(), "little") for i in range(256)], dtype="<u2")


def uuid4_array(n: int, rng: np.random.Generator) -> pa.Array:
    """``n`` random (version 4) UUID strings built with numpy: about 20x cheaper than ``uuid.uuid4()`` in
    a loop, and than ``gen_random_uuid()`` as a column default during COPY."""
    raw = rng.integers(0, 256, size=(n, 16), dtype=np.uint8)
    raw[:, 6] = (raw[:, 6] & 0x0F) | 0x40
    raw[:, 8] = (raw[:, 8] & 0x3F) | 0x80
    pairs = _HEX_PAIRS[raw].view(np.uint8)
    out = np.empty((n, 36), dtype=np.uint8)
    out[:, [8, 13, 18, 23]] = ord("-")
    for dst, src, width in ((0, 0, 8), (9, 8, 4), (14, 12, 4), (19, 16, 4), (24, 20, 12)):
        out[:, dst : dst + width] = pairs[:, src : src + width]
    offsets = np.arange(0, 36 * (n + 1), 36, dtype=np.int32)
    return pa.StringArray.from_buffers(n, pa.py_buffer(offsets), pa.py_buffer(out))


def _prefetch(items: Iterable, depth: int = 2) -> Iterator:
    """Run ``items`` in a background thread, ``depth`` ahead: reading from MySQL (connectorx, numpy and
    the lake writes release the GIL) overlaps the COPY into PostgreSQL."""
    q: queue.Queue = queue.Queue(maxsize=depth)
    done = object()
    stop = threading.Event()

    def produce() -> None:
        try:
            for item in items:
                if stop.is_set():
                    return
                q.put(item)
            q.put(done)
        except BaseException as exc:  # handed to the consumer, which re-raises it
            q.put(exc)

    thread = threading.Thread(target=produce, name="ingest-reader", daemon=True)
    thread.start()
    try:
        while True:
            item = q.get()
            if item is done:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        while thread.is_alive():
            try:
                q.get_nowait()
            except queue.Empty:
                thread.join(0.05)


def _fault(stream: str, point: str) -> None:
    if os.environ.get(FAULT_ENV) == f"{stream}:{point}":
        print(f"fault hook: {stream} paused at {point}", flush=True)
        time.sleep(3600)


class _Progress:
    def __init__(self, stream: str, every: float = 2.0):
        self.stream, self.every = stream, every
        self.start = self.last = time.monotonic()
        self.rows = 0

    def add(self, rows: int) -> None:
        self.rows += rows
        now = time.monotonic()
        if now - self.last >= self.every:
            self.last = now
            log.info("%s: %s rows read (%s rows/s)", self.stream, f"{self.rows:,}",
                     f"{self.rows / (now - self.start):,.0f}")


def resolve_streams(requested: list[str] | None, discovered: dict[str, Stream], stores_csv) -> list[str]:
    known = sorted(discovered) + [STORES]
    if requested is None:
        return sorted(discovered) + ([STORES] if stores_csv is not None else [])
    unknown = [s for s in requested if s not in known]
    if unknown:
        raise IngestError(f"unknown stream(s) {', '.join(unknown)}; known: {', '.join(known)}")
    if STORES in requested and stores_csv is None:
        raise IngestError("stream store_locations needs a store locations CSV (--stores-csv)")
    return list(dict.fromkeys(requested))


def run(
    mysql_url: str,
    warehouse_url: str,
    *,
    schema: str = "raw",
    streams: list[str] | None = None,
    stores_csv: str | Path | None = "data/store_locations.csv",
    lake: LakeConfig | None = None,
    full_refresh: bool = False,
    lookback: timedelta = DEFAULT_LOOKBACK,
    batch_rows: int = DEFAULT_BATCH_ROWS,
    parallel: int = 2,
) -> IngestResult:
    """Sync MySQL tables (and the store locations CSV) into Airbyte-shaped typed tables in ``schema``.

    ``streams``: names to sync (default: every discovered table, plus ``store_locations`` unless
    ``stores_csv`` is None). ``lake``: where raw files go (None: no lake files). ``full_refresh``:
    reload everything and start a new ``_airbyte_generation_id``. ``parallel``: streams synced at
    once, each on its own connection. Raises ``IngestError`` on bad input
    before anything is written; a stream that fails leaves its table and cursor as they were.
    """
    started = time.monotonic()
    source = MySQLSource(mysql_url)
    warehouse = Warehouse(warehouse_url, schema)
    discovered = source.discover()
    wanted = resolve_streams(streams, discovered, stores_csv)
    parsed = stores.parse(stores_csv) if STORES in wanted else None
    # idle warehouse connections by kind (bulk: ADBC, light: psycopg), reused across streams
    idle: dict[bool, queue.SimpleQueue] = {True: queue.SimpleQueue(), False: queue.SimpleQueue()}
    opened = [warehouse.connect(bulk=False)]
    try:
        sync_id = warehouse.prepare(opened[0])
        synced = set() if full_refresh else warehouse.synced_streams(opened[0])
    except BaseException:
        opened[0].close()
        raise
    idle[False].put(opened[0])
    lake_writer = Lake(lake, sync_id) if lake is not None else None
    result = IngestResult(sync_id)
    log.info("sync %d: %s → %s schema %s%s", sync_id, source.describe(), warehouse.describe(), schema,
             f", lake {lake.describe()}" if lake else "")

    def sync(name: str) -> StreamResult:
        # a stream that will probably load in full gets the bulk driver; either driver is correct
        # for either mode, the choice is only about speed
        bulk = name != STORES and name not in synced
        try:
            conn = idle[bulk].get_nowait()
        except queue.Empty:
            conn = warehouse.connect(bulk=bulk)
            opened.append(conn)
        if name == STORES:
            done = _sync_stores(conn, warehouse, parsed, sync_id, lake_writer)
        else:
            done = _sync_table(conn, warehouse, source, discovered[name], sync_id, lake_writer,
                               full_refresh=full_refresh, lookback=lookback, batch_rows=batch_rows)
        idle[bulk].put(conn)  # only after success: a failed stream's connection may be broken
        return done

    # streams are independent transactions: while one builds its indexes or merges (one PostgreSQL
    # core) the next one reads and loads; the largest starts first so the others fit in its shadow
    workers = max(1, parallel)
    order = sorted(wanted, key=lambda n: -source.estimated_rows.get(n, 0))
    failures: list[tuple[str, BaseException]] = []
    try:
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="ingest") as pool:
            futures = {name: pool.submit(sync, name) for name in order}
            for name in wanted:
                try:
                    result.streams[name] = futures[name].result()
                except Exception as exc:  # the other streams still commit; the first failure is raised
                    log.error("%s: failed, its table and cursor are unchanged: %s", name, exc)
                    failures.append((name, exc))
    finally:
        for conn in opened:
            conn.close()
    result.seconds = time.monotonic() - started
    if failures:
        raise failures[0][1]
    return result


def _in_transaction(conn, body: Callable[[object], StreamResult]) -> StreamResult:
    try:
        with conn.cursor() as cur:
            result = body(cur)
        conn.commit()
        return result
    except BaseException:
        conn.rollback()
        raise


def _sync_table(conn, warehouse: Warehouse, source: MySQLSource, stream: Stream, sync_id: int, lake: Lake | None,
                *, full_refresh: bool, lookback: timedelta, batch_rows: int) -> StreamResult:
    rng = np.random.default_rng()

    def body(cur) -> StreamResult:
        started = time.monotonic()
        state = warehouse.lock_and_read_state(cur, stream.name)
        full = full_refresh or state is None or not warehouse.existing_columns(cur, stream.name)
        generation = 0 if state is None else state.generation_id + (1 if full_refresh else 0)
        batch = Batch(datetime.now(UTC), sync_id, generation)
        result = StreamResult(stream.name, "full" if full else "incremental")
        # rows changed while this read runs may be skipped by it; capping the saved cursor at the
        # source's clock from before the run's first read makes the next run pick them up
        upper = (source.clock_at_discovery, 0)
        if full:
            chunks = source.full_chunks(stream, batch_rows)
            warehouse.start_full_load(cur, stream, batch)
        else:
            since = state.cursor
            chunks = source.incremental_chunks(stream, since, lookback, batch_rows)
            stage = warehouse.start_incremental(cur, stream)
            log.info("%s: incremental from %s (lookback %s)", stream.name,
                     since[0].isoformat() if since else "the beginning", lookback)

        def prepared() -> Iterator[tuple[pa.Table, tuple | None]]:
            for part, chunk in enumerate(chunks):
                if lake is not None:
                    result.lake_files.append(lake.put_table(stream.name, part, chunk))
                top = max_cursor(chunk, stream)
                if full:
                    chunk = chunk.add_column(0, "_airbyte_raw_id", uuid4_array(chunk.num_rows, rng))
                yield chunk, top

        progress = _Progress(stream.name)
        cursor = None
        for chunk, top in _prefetch(prepared()):
            warehouse.ingest(cur, stream.name if full else stage, chunk, temporary=not full)
            result.rows_read += chunk.num_rows
            progress.add(chunk.num_rows)
            cursor = top if cursor is None or (top is not None and top > cursor) else cursor
        _fault(stream.name, "after_copy")
        if full:
            warehouse.finish_full_load(cur, stream)
            result.inserted = result.rows_read
        else:
            result.inserted, result.updated = warehouse.merge(cur, stream, stage, batch)
        if cursor is None:
            cursor = None if full else state.cursor
        elif cursor > upper:
            cursor = upper
        result.rows_in_table = result.inserted + (0 if full else state.rows_in_table)
        warehouse.save_state(cur, stream.name, cursor, batch, result.rows_in_table)
        _fault(stream.name, "before_commit")
        result.seconds = time.monotonic() - started
        return result

    result = _in_transaction(conn, body)
    result.seconds = max(result.seconds, 1e-9)
    log.info("%s: %s, %s rows read, %s inserted, %s updated, %s in table, %.2f s (%s rows/s)",
             stream.name, result.mode, f"{result.rows_read:,}", f"{result.inserted:,}", f"{result.updated:,}",
             f"{result.rows_in_table:,}", result.seconds, f"{result.rows_per_second:,.0f}")
    return result


def _sync_stores(conn, warehouse: Warehouse, parsed: stores.ParsedStores, sync_id: int,
                 lake: Lake | None) -> StreamResult:
    """The CSV has no cursor: every run reloads it whole (Airbyte's full refresh | overwrite)."""
    stream = stores.STREAM

    def body(cur) -> StreamResult:
        started = time.monotonic()
        state = warehouse.lock_and_read_state(cur, stream.name)
        batch = Batch(datetime.now(UTC), sync_id, 0 if state is None else state.generation_id)
        result = StreamResult(stream.name, "full", rows_read=parsed.good.num_rows + len(parsed.rejected))
        if lake is not None:
            result.lake_files.append(lake.put_bytes(stream.name, "store_locations.csv", parsed.raw))
        warehouse.start_full_load(cur, stream, batch)
        good = parsed.good.add_column(
            0, "_airbyte_raw_id", uuid4_array(parsed.good.num_rows, np.random.default_rng())
        )
        warehouse.ingest(cur, stream.name, good)
        warehouse.finish_full_load(cur, stream)
        quarantine = warehouse.table(stores.QUARANTINE_TABLE)
        cur.execute(
            f"create table if not exists {quarantine} (line_number bigint not null, raw_line varchar,"
            " reason varchar not null, _airbyte_extracted_at timestamp with time zone not null,"
            " sync_id bigint not null)"
        )
        cur.execute(f"truncate table {quarantine}")
        if parsed.rejected:
            rows = stores.quarantine_table(parsed.rejected)
            rows = rows.append_column(
                "_airbyte_extracted_at", pa.array([batch.extracted_at] * rows.num_rows, pa.timestamp("us", tz="UTC"))
            ).append_column("sync_id", pa.array([sync_id] * rows.num_rows, pa.int64()))
            warehouse.ingest(cur, stores.QUARANTINE_TABLE, rows)
        result.inserted = parsed.good.num_rows
        result.quarantined = len(parsed.rejected)
        result.rows_in_table = parsed.good.num_rows
        warehouse.save_state(cur, stream.name, None, batch, result.rows_in_table)
        result.seconds = time.monotonic() - started
        return result

    result = _in_transaction(conn, body)
    for rejected in parsed.rejected:
        log.warning("store_locations: line %d quarantined: %s", rejected.line_number, rejected.reason)
    log.info("store_locations: %d rows loaded, %d quarantined (%s)", result.inserted, result.quarantined,
             warehouse.table(stores.QUARANTINE_TABLE))
    return result


def configure_logging(stream=sys.stdout) -> None:
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", "%H:%M:%S"))
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    log.propagate = False
