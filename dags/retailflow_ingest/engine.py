"""One ingestion run: every selected stream read from one source snapshot, each written in its own
warehouse transaction."""

from __future__ import annotations

import gc
import logging
import os
import queue
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from retailflow_ingest import stores
from retailflow_ingest.catalog import PRIMARY_KEYS
from retailflow_ingest.errors import IngestCancelled, IngestError, IngestFailed, first_line
from retailflow_ingest.lake import Lake, LakeConfig
from retailflow_ingest.settings import DEFAULT_BATCH_ROWS, DEFAULT_LOOKBACK, default_stores_csv
from retailflow_ingest.source import MySQLSource, Snapshot, Stream, StreamReader, max_cursor
from retailflow_ingest.warehouse import Batch, Inspection, Warehouse, schema_changes

log = logging.getLogger("retailflow_ingest")

#: fault injection for crash tests: ``<stream>:<point>[:<seconds>]`` pauses the stream there (points:
#: ``after_copy``, ``before_commit``) for ``seconds`` (default: an hour, i.e. until killed)
FAULT_ENV = "RETAILFLOW_INGEST_FAULT"
STORES = stores.STREAM.name
#: the store locations CSV a run reads unless told otherwise (``settings.default_stores_csv``)
DEFAULT_STORES_CSV = default_stores_csv()
#: the source tables a run syncs unless told otherwise: the pipeline's streams (local defaults)
CATALOG = tuple(PRIMARY_KEYS)


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
    #: the largest cursor (``updated_at``) value committed for the stream, as saved in the state table;
    #: None for streams without a cursor (store_locations) or with no rows yet
    high_water_mark: datetime | None = None
    generation_id: int = 0
    #: warnings about the stream's data (store_locations: regions and countries new since the last load)
    notes: list[str] = field(default_factory=list)
    #: store_locations: lines were quarantined or stores left the table, so orders may name a missing one
    stores_lost: bool = False
    #: an incremental sync into the lake: the sync id of the stream's previous sync, when that one wrote
    #: its folder in the same lake (for the manifest; None: the lake missed the syncs before this one)
    follows: int | None = None

    @property
    def rows_per_second(self) -> float:
        return self.rows_read / self.seconds if self.seconds else 0.0


@dataclass
class IngestResult:
    sync_id: int
    streams: dict[str, StreamResult] = field(default_factory=dict)
    seconds: float = 0.0
    #: streams that did not commit in this run, and why ("rolled back", "not started", "failed: …")
    incomplete: dict[str, str] = field(default_factory=dict)
    #: streams reloaded in full because their source table was replaced since the last sync, and why
    reloaded: dict[str, str] = field(default_factory=dict)
    #: warnings about the data loaded (a new region, orders naming a store that is not loaded)
    warnings: list[str] = field(default_factory=list)

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
        for name, why in self.incomplete.items():
            lines.append(f"{name:<16} {why}")
        for name, why in self.reloaded.items():
            lines.append(f"{name:<16} reloaded in full: {why}")
        lines += [f"warning: {w}" for w in self.warnings]
        lines.append(f"sync {self.sync_id}: {self.rows_read:,} rows read in {self.seconds:.2f} s"
                     + (f", {len(self.incomplete)} stream(s) not committed" if self.incomplete else ""))
        return "\n".join(lines)


#: glibc's ``mallopt`` parameter ``M_MMAP_THRESHOLD`` and the value the engine fixes it at (glibc's
#: own starting value)
_M_MMAP_THRESHOLD, _MMAP_THRESHOLD = -3, 128 * 1024


def _fix_mmap_threshold() -> None:
    """Serve large blocks (connectorx's Arrow buffers, the spool's reads: 0.1-10 MB each) from
    ``mmap``, so that each one goes back to the system when it is freed. By default glibc raises its
    mmap threshold every time such a block is freed (up to 32 MB) and serves later ones from its
    heaps, whose freed pages stay resident and fragment as a load goes on: after a 3M-order load the
    process kept ~200 MB resident with no batch alive, and its peak came out 25-60 MB higher than at
    1M orders. A fixed threshold also turns that adjustment off (``mallopt(3)``). Process-wide and
    harmless to run twice; nothing happens where the C library is not glibc."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD)
    except (OSError, AttributeError):  # not glibc: its allocator has its own policy
        pass


class _Cancelled(Exception):
    """Raised inside a stream when the run is asked to stop; its transaction rolls back."""


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


def _prefetch(items: Iterable, stop: threading.Event, depth: int = 2) -> Iterator:
    """Run ``items`` in a background thread, ``depth`` ahead: reading from MySQL (connectorx, numpy and
    the lake writes release the GIL) overlaps the COPY into PostgreSQL. Stops when ``stop`` is set."""
    q: queue.Queue = queue.Queue(maxsize=depth)
    done = object()
    halt = threading.Event()

    def produce() -> None:
        try:
            for item in items:
                while not halt.is_set():
                    try:
                        q.put(item, timeout=0.2)
                        break
                    except queue.Full:
                        continue
                if halt.is_set():
                    return
            q.put(done)
        except BaseException as exc:  # handed to the consumer, which re-raises it
            q.put(exc)

    thread = threading.Thread(target=produce, name="ingest-reader", daemon=True)
    thread.start()
    try:
        while True:
            try:
                item = q.get(timeout=0.2)
            except queue.Empty:
                if stop.is_set():
                    raise _Cancelled() from None
                continue
            if item is done:
                return
            if isinstance(item, BaseException):
                raise item
            if stop.is_set():
                raise _Cancelled()
            yield item
    finally:
        halt.set()
        while thread.is_alive():
            try:
                q.get_nowait()
            except queue.Empty:
                thread.join(0.05)


def _env_fault(stream: str, point: str, stop: threading.Event) -> None:
    spec = os.environ.get(FAULT_ENV, "").split(":")
    if len(spec) >= 2 and spec[:2] == [stream, point]:
        print(f"fault hook: {stream} paused at {point}", flush=True)
        if stop.wait(float(spec[2]) if len(spec) > 2 else 3600):
            raise _Cancelled()


#: called at each fault point with (stream, point, stop); tests may replace it
fault_hook: Callable[[str, str, threading.Event], None] = _env_fault


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


def resolve_streams(requested: list[str] | None, discovered: dict[str, Stream], stores_csv,
                    catalog: Iterable[str] | None = None, not_streams: dict[str, str] | None = None) -> list[str]:
    """The streams a run syncs: those ``requested`` (any discovered table may be named), or else the
    ``catalog``'s tables found in the source (default: the catalog's source tables, ``catalog.PRIMARY_KEYS``), plus
    the store CSV. Other source tables (a seed's ``__new`` shadows, a user's scratch table) are not
    the pipeline's: they are ignored, in one line. A table the run would sync that the source has but
    the engine cannot load (``not_streams``: an unsupported column type, no integer key or cursor) is
    refused with the reason, before anything is written."""
    known = sorted(discovered) + [STORES]
    wanted = set(CATALOG if catalog is None else catalog)
    # a MySQL table named like the store CSV's stream is never read: the stream is the CSV
    blocked = {name: why for name, why in (not_streams or {}).items()
               if name != STORES and name in (wanted if requested is None else requested)}
    if blocked:
        raise IngestError("; ".join(f"{name}: cannot be synced, {why}" for name, why in sorted(blocked.items()))
                          + ": change the table in the source, or leave it out with --streams (nothing was written)")
    if requested is None:
        stray = sorted(set(discovered) - wanted)
        if stray:
            log.info("ignored %d source table(s) outside the pipeline's catalog: %s (name one with --streams to"
                     " ingest it)", len(stray), ", ".join(stray))
        if not wanted & set(discovered):  # a fresh or wrong database: "0 rows read" would pass for a sync
            raise IngestError(f"the source database has none of the pipeline's tables ({', '.join(sorted(wanted))}):"
                              " seed it first (make seed), or check which database RETAILFLOW_MYSQL_URL names")
        missing = sorted(wanted - set(discovered))
        if missing:
            log.warning("the source database lacks the pipeline's table(s) %s: they are not synced", ", ".join(missing))
        return sorted(wanted & set(discovered)) + ([STORES] if stores_csv is not None else [])
    unknown = [s for s in requested if s not in known]
    if unknown:
        absent = [s for s in unknown if s in wanted]
        why = (f" ({', '.join(absent)}: the pipeline's, but the source database has no such table; seed it"
               " first (make seed), or check which database RETAILFLOW_MYSQL_URL names)" if absent else "")
        raise IngestError(f"unknown stream(s) {', '.join(unknown)}; known: {', '.join(known)}{why}")
    if STORES in requested and stores_csv is None:
        raise IngestError("stream store_locations needs a store locations CSV (--stores-csv)")
    return list(dict.fromkeys(requested))


def check_options(*, batch_rows, parallel, lookback) -> None:
    """Numeric options, checked before anything connects."""
    if isinstance(batch_rows, bool) or not isinstance(batch_rows, int) or batch_rows < 1:
        raise IngestError(f"batch rows must be a whole number of at least 1, not {batch_rows!r}")
    if isinstance(parallel, bool) or not isinstance(parallel, int) or parallel < 1:
        raise IngestError(f"parallel must be a whole number of at least 1, not {parallel!r}")
    if not isinstance(lookback, timedelta) or lookback < timedelta(0):
        raise IngestError(f"the lookback must be 0 seconds or more, not {lookback!r}")


@dataclass
class _Plan:
    """What a MySQL stream will do, decided from the warehouse before the snapshot is taken."""

    stream: Stream
    full: bool
    since: tuple[datetime, int] | None = None
    added: list = field(default_factory=list)
    #: why the source table counts as replaced since the last sync (then ``full``), or None
    replaced: str | None = None
    #: the source table's identity, saved with the cursor
    identity: str | None = None


def _cursor_rows_to_check(wanted: list[str], discovered: dict[str, Stream], found: Inspection,
                          full_refresh: bool) -> dict[str, tuple[Stream, tuple[datetime, int]]]:
    """The streams whose saved cursor points at a source row (an incremental run of a synced table)."""
    if full_refresh:
        return {}
    return {name: (discovered[name], found.states[name].cursor) for name in wanted
            if name != STORES and name in found.states and found.columns.get(name) and name not in found.pending
            # a cursor capped at the source's clock carries no key (pk 0): no row to look at
            and found.states[name].cursor is not None and found.states[name].cursor[1]}


def replaced_since(stream: Stream, state, identity: str | None, at_cursor: datetime | None, checked: bool,
                   same_shape: bool) -> str | None:
    """Why a synced source table counts as replaced since its cursor was saved, or None.

    - The row the cursor points at is gone, or its cursor value went back: a row's ``updated_at`` only
      moves forward, so rows vanished below the high-water mark (a re-seed, a reload, deletes) and an
      incremental read from the cursor would miss what replaced them.
    - The table's identity changed (``RENAME TABLE`` of a new table into its place, ``TRUNCATE``, a
      rebuild) while its columns stayed the same (an ``ALTER`` that adds or changes columns changes it
      too, and is handled as a schema change)."""
    if checked and state.cursor is not None:
        value, pk = state.cursor
        where = f"its row at the high-water mark ({stream.primary_key} {pk}, {stream.cursor} {value.isoformat(' ')})"
        if at_cursor is None:
            return f"{where} is gone from the source"
        if at_cursor < value:
            return f"{where} now has an older {stream.cursor} ({at_cursor.isoformat(' ')})"
    if same_shape and identity and state.source_identity and identity != state.source_identity:
        return (f"the source table was re-created or rebuilt (its creation time is {identity}, {state.source_identity}"
                " at the last sync: RENAME TABLE, TRUNCATE and ALTER TABLEs that rebuild it change it)")
    return None


def _plan(wanted: list[str], discovered: dict[str, Stream], found: Inspection, full_refresh: bool,
          identities: dict[str, str | None] | None = None,
          at_cursor: dict[str, datetime | None] | None = None) -> dict[str, _Plan]:
    identities, at_cursor = identities or {}, at_cursor or {}
    plans, problems = {}, []
    for name in wanted:
        if name == STORES:
            continue
        stream, state = discovered[name], found.states.get(name)
        table = found.columns.get(name)
        full = full_refresh or name in found.pending or state is None or not table
        plan = _Plan(stream, full, None if full else state.cursor, identity=identities.get(name))
        if not full:
            added, issues = schema_changes(stream, table)
            plan.replaced = replaced_since(stream, state, plan.identity, at_cursor.get(name), name in at_cursor,
                                           same_shape=not added and not issues)
            if plan.replaced:
                plan.full, plan.since = True, None
            else:
                plan.added = added
                problems += [f"{name}: {issue}" for issue in issues]
        plans[name] = plan
    if problems:
        streams = sorted({p.split(":")[0] for p in problems})
        raise IngestError(f"{'; '.join(problems)}: the table must be rebuilt, run retailflow-ingest --full-refresh"
                          f" --streams {' '.join(streams)}")
    return plans


def run(
    mysql_url: str,
    warehouse_url: str,
    *,
    schema: str = "raw",
    streams: list[str] | None = None,
    stores_csv: str | Path | None = DEFAULT_STORES_CSV,
    lake: LakeConfig | None = None,
    full_refresh: bool = False,
    lookback: timedelta = DEFAULT_LOOKBACK,
    batch_rows: int = DEFAULT_BATCH_ROWS,
    parallel: int = 2,
    allow_empty_stores: bool = False,
    stop: threading.Event | None = None,
) -> IngestResult:
    """Sync MySQL tables (and the store locations CSV) into Airbyte-shaped typed tables in ``schema``.

    ``streams``: names to sync (default: the catalog's tables found in the source, ``CATALOG``, plus
    ``store_locations`` unless ``stores_csv`` is None; other tables are ignored, in one line). ``lake``: where raw files go (None: no lake files). ``full_refresh``:
    reload everything and start a new ``_airbyte_generation_id``; the request is remembered until every
    stream has completed it, so a later plain run finishes an interrupted one. ``parallel``: streams
    written at once, each on its own connection. ``allow_empty_stores``: let a CSV with no loadable
    row empty the table. ``stop``: set it (a signal handler does) to stop soon: streams in flight roll
    back, committed ones stay, and ``IngestCancelled`` carries the partial result.

    Raises ``IngestError`` on bad input or an unreachable peer before anything is written. A stream
    that fails leaves its table and cursor as they were while the others go on and commit; then
    ``IngestFailed`` (an ``IngestError``) is raised with the result and each failure.
    """
    check_options(batch_rows=batch_rows, parallel=parallel, lookback=lookback)
    _fix_mmap_threshold()
    stop = stop if stop is not None else threading.Event()
    started = time.monotonic()
    source = MySQLSource(mysql_url)
    warehouse = Warehouse(warehouse_url, schema)
    # idle warehouse connections, reused across streams
    idle: queue.SimpleQueue = queue.SimpleQueue()
    opened: list = []
    warming = _Warming(warehouse)
    snapshot: Snapshot | None = None
    # the objects alive before the sync (the modules: Arrow, psycopg, numpy, the caller's own) stay out
    # of the collector's full collections until it ends: a full collection walks every one of them
    # while every thread waits for the GIL, and one fell inside most syncs of a fresh process (23-25 ms
    # in a 1% incremental tick of 0.14-0.25 s on 1.44M rows, 44 ms in a full load). Given back at the
    # end, so nothing stays frozen in the caller (an Airflow task process calls run() twice). A caller
    # that froze its own objects already (Airflow's LocalExecutor forks its workers with them frozen)
    # keeps its freeze: gc.unfreeze() would give back all of them, not only the sync's
    frozen_here = gc.get_freeze_count() == 0
    if frozen_here:
        gc.freeze()
    try:
        # discovering the source and reading the warehouse's state are independent: both at once
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="discover") as ahead:
            discovering = ahead.submit(source.discover)
            try:
                opened.append(warehouse.connect())
                found, warehouse_error = warehouse.inspect(opened[0]), None
            except IngestError as exc:
                found, warehouse_error = None, exc
            discovered = discovering.result()  # a source that is down is reported first
        wanted = resolve_streams(streams, discovered, stores_csv, not_streams=source.not_streams)
        parsed = stores.parse(stores_csv) if STORES in wanted else None
        if parsed is not None and parsed.good.num_rows == 0 and not allow_empty_stores:
            raise IngestError(
                f"{stores_csv}: no store to load ({parsed.rows_read} data row(s), {len(parsed.rejected)} quarantined);"
                " raw.store_locations is left as it is (pass --allow-empty-stores to empty it)"
            )
        if warehouse_error is not None:
            raise warehouse_error
        at_cursor = source.rows_at(_cursor_rows_to_check(wanted, discovered, found, full_refresh))
        plans = _plan(wanted, discovered, found, full_refresh, source.identities, at_cursor)
        replaced = {name: p.replaced for name, p in plans.items() if p.replaced}
        for name, why in replaced.items():
            log.warning("%s: %s; reloading it in full (a new generation) instead of reading on from the cursor",
                        name, why)
        lake_writer = Lake(lake) if lake is not None else None
        # the streams' warehouse connections open while the snapshot is taken
        warming.start(min(parallel, len(wanted)) - 1)
        # every peer is checked and nothing is written yet; the snapshot is the sync's moment
        snapshot = source.open_snapshot(
            {name: (p.stream, source.full_query(p.stream) if p.full else
                    source.incremental_query(p.stream, p.since, lookback)) for name, p in plans.items()},
            batch_rows,
        )
        # a reload of a replaced table is a full refresh like a requested one: remembered until it commits
        sync_id = warehouse.prepare(opened[0], [n for n in plans] if full_refresh else list(replaced),
                                    record=lake_writer is not None, found=found)
        if lake_writer is not None:
            lake_writer.start(sync_id)
            _recover_manifests(lake_writer, found)
        idle.put(opened[0])
        result = IngestResult(sync_id, reloaded=replaced)
        log.info("sync %d: %s → %s schema %s%s", sync_id, source.describe(), warehouse.describe(), schema,
                 f", lake {lake_writer.describe()}" if lake_writer else "")
        active: dict[str, object] = {}
        active_lock = threading.Lock()

        def sync(name: str) -> StreamResult | None:
            if stop.is_set():
                return None
            try:
                conn = idle.get_nowait()
            except queue.Empty:
                conn = warming.take() or warehouse.connect()
                with active_lock:
                    opened.append(conn)
            with active_lock:
                active[name] = conn
            try:
                if name == STORES:
                    done = _sync_stores(conn, warehouse, parsed, sync_id, lake_writer, stop)
                else:
                    done = _sync_table(conn, warehouse, plans[name], snapshot.readers[name], snapshot.clock,
                                       sync_id, lake_writer, stop)
                if lake_writer is not None and lake_writer.config.keep:
                    _prune(conn, warehouse, lake_writer, name, sync_id)
            finally:
                with active_lock:
                    active.pop(name, None)
            idle.put(conn)  # only after success: a failed stream's connection may be broken
            return done

        # streams are independent transactions: while one builds its indexes or merges (one PostgreSQL
        # core) the next one reads and loads; the largest starts first so the others fit in its shadow
        order = sorted(wanted, key=lambda n: -source.estimated_rows.get(n, 0))
        failures: list[tuple[str, BaseException]] = []
        pool = ThreadPoolExecutor(max_workers=parallel, thread_name_prefix="ingest")
        futures = {name: pool.submit(sync, name) for name in order}
        try:
            pending = set(futures.values())
            while pending and not stop.is_set():
                _, pending = wait(pending, timeout=0.25, return_when=FIRST_COMPLETED)
        except BaseException:  # KeyboardInterrupt or a task runner's own exception: stop, then re-raise
            stop.set()
            _cancel(active, active_lock)
            pool.shutdown(wait=True, cancel_futures=True)
            raise
        if stop.is_set():
            _cancel(active, active_lock)
        pool.shutdown(wait=True, cancel_futures=True)
        for name in wanted:
            future = futures[name]
            if future.cancelled():
                result.incomplete[name] = "not started"
                continue
            try:
                done = future.result()
            except _Cancelled:
                result.incomplete[name] = "rolled back"
                continue
            except Exception as exc:  # the other streams still commit; the first failure is raised
                log.error("%s: failed, its table and cursor are unchanged: %s", name, exc)
                if stop.is_set():  # the run is stopping: reported as stopped, the failure is kept in its line
                    result.incomplete[name] = f"failed, then the run was stopped: {first_line(exc)[:100]}"
                    continue
                result.incomplete[name] = f"failed: {first_line(exc)[:120]}"
                failures.append((name, exc))
                continue
            if done is None:
                result.incomplete[name] = "not started"
            else:
                result.streams[name] = done
        result.warnings = [note for done in result.streams.values() for note in done.notes]
        # only when this load may have lost a store: a query over every order is not free on each run
        if STORES in result.streams and result.streams[STORES].stores_lost:
            result.warnings += _orders_without_store(warehouse, parsed)
        for warning in result.warnings:
            log.warning("%s", warning)
        result.seconds = time.monotonic() - started
    finally:
        if frozen_here:
            gc.unfreeze()
        if snapshot is not None:
            snapshot.close()
        for conn in [*opened, *warming.close()]:
            try:
                conn.close()
            except Exception:  # a connection broken by a cancelled statement may refuse to close cleanly
                pass
    if stop.is_set():
        raise IngestCancelled(result)
    if failures:
        raise IngestFailed(result, failures) from failures[0][1]
    return result


class _Warming:
    """Warehouse connections opened ahead, in background threads, for the streams to take."""

    def __init__(self, warehouse: Warehouse):
        self.warehouse = warehouse
        self.futures: list = []
        self.lock = threading.Lock()
        self.pool: ThreadPoolExecutor | None = None

    def start(self, count: int) -> None:
        if count <= 0:
            return
        self.pool = ThreadPoolExecutor(max_workers=count, thread_name_prefix="connect")
        self.futures = [self.pool.submit(self.warehouse.connect) for _ in range(count)]

    def take(self):
        """A connection opened ahead, or None (none left, or it failed: the caller connects itself and
        reports the failure)."""
        with self.lock:
            if not self.futures:
                return None
            future = self.futures.pop()
        try:
            return future.result()
        except Exception:
            return None

    def close(self) -> list:
        """The connections never taken, to be closed."""
        with self.lock:
            left, self.futures = self.futures, []
        if self.pool is not None:
            self.pool.shutdown(wait=True)
        conns = []
        for future in left:
            try:
                conns.append(future.result())
            except Exception:  # never used: its error does not matter
                pass
        return conns


def _cancel(active: dict, lock: threading.Lock) -> None:
    """Interrupt the statements in flight (a COPY, an index build, a merge) so their streams roll back
    now instead of after they finish."""
    with lock:
        conns = list(active.values())
    for conn in conns:
        try:
            conn.cancel()
        except Exception:  # the statement may have just finished; its stream sees the stop flag anyway
            pass


def _recover_manifests(lake: Lake, found: Inspection) -> None:
    """Write the manifests of committed syncs that a crash right after their commit left without one."""
    for stream, state in found.states.items():
        manifest = state.lake_manifest
        if manifest and manifest.get("lake") == lake.describe() and not lake.has_manifest(stream, manifest["sync_id"]):
            lake.commit(stream, manifest)
            log.info("%s: lake manifest of sync %s written (its run stopped after the commit)", stream,
                     manifest["sync_id"])


def _prune(conn, warehouse: Warehouse, lake: Lake, name: str, sync_id: int) -> None:
    """Retention for one stream, after its commit. A folder left without a manifest is removed at once
    only if a sync of this warehouse and schema made it and this stream's lock is free (then none of
    its syncs is writing files); the folders of other warehouses or schemas sharing the prefix are
    theirs: committed ones are never counted or removed here, uncommitted ones only after the grace
    period (``LakeConfig.uncommitted_grace``)."""
    try:
        with conn.cursor() as cur:
            cur.execute(f"select pg_try_advisory_xact_lock({warehouse.lock_key(name)})")
            free = bool(cur.fetchone()[0])
            removed = lake.prune(name, before=sync_id, owner=warehouse.owner(),
                                 dead_ok=lambda ids: warehouse.own_syncs(cur, ids) if free else set())
        conn.commit()
    except Exception as exc:  # the sync committed; retention tries again next run
        conn.rollback()
        log.warning("%s: lake retention failed, the next run tries again: %s", name, exc)
        return
    if removed:
        log.info("%s: lake retention removed %d folder(s) (keep %d full loads)", name, len(removed), lake.config.keep)


def _in_transaction(conn, body: Callable[[object], StreamResult]) -> StreamResult:
    try:
        with conn.cursor() as cur:
            result = body(cur)
        conn.commit()
        return result
    except BaseException:
        try:
            conn.rollback()
        except Exception:  # a cancelled or broken connection: the server rolls back when it closes
            pass
        raise


def _manifest(lake: Lake, result: StreamResult, sync_id: int, files: list[tuple[str, int]], owner: str) -> dict:
    return {
        "stream": result.stream, "sync_id": sync_id, "mode": result.mode, "generation_id": result.generation_id,
        "rows": sum(n for _, n in files), "files": [{"name": Path(f).name, "rows": n} for f, n in files],
        "high_water_mark": result.high_water_mark.isoformat() if result.high_water_mark else None,
        "committed_at": datetime.now(UTC).isoformat(), "lake": lake.describe(), "owner": owner,
        "follows": result.follows,
    }


def _check_lake_continues(result: StreamResult, state, lake: Lake, owner: str) -> None:
    """An incremental sync's folder holds only what changed since the stream's previous sync: the lake
    can rebuild the table from it only if that sync wrote its folder in the same lake (its manifest,
    kept in the state, says where). Records the previous folder's sync id in ``result.follows``, or
    warns that the lake missed a sync (a run with ``--no-lake`` or another lake, or the first one into
    this lake since a full load)."""
    before = state.lake_manifest or {}
    if before.get("lake") == lake.describe() and before.get("owner") == owner:
        result.follows = before.get("sync_id")
        return
    result.notes.append(
        f"{result.stream}: its previous sync (id {state.sync_id}) wrote no folder in this lake, so the lake lacks"
        " the rows changed then: a table rebuilt from the lake is incomplete until the stream's next full load"
        f" into it (--full-refresh --streams {result.stream})")


def _end_transaction(cur, warehouse: Warehouse, result: StreamResult, cursor: tuple[datetime, int] | None,
                     batch: Batch, source_identity: str | None, lake: Lake | None, files: list[tuple[str, int]],
                     started: float, stop: threading.Event) -> StreamResult:
    """The last steps of a stream's transaction, before its commit: the new state (cursor, generation,
    lake manifest) saved, the ``before_commit`` fault point, a requested stop honoured."""
    manifest = _manifest(lake, result, batch.sync_id, files, warehouse.owner()) if lake is not None else None
    warehouse.save_state(cur, result.stream, cursor, batch, result.rows_in_table, manifest, source_identity)
    fault_hook(result.stream, "before_commit", stop)
    if stop.is_set():
        raise _Cancelled()
    result.seconds = time.monotonic() - started
    result.lake_files = [f for f, _ in files]
    return result


def _commit(conn, body: Callable[[object], StreamResult], warehouse: Warehouse, sync_id: int, lake: Lake | None,
            files: list[tuple[str, int]]) -> StreamResult:
    """Run a stream's transaction; once it has committed, its lake folder's manifest is written. The
    stream has synced whether or not that write succeeds: the state committed with the rows holds the
    manifest, and the next run with this lake writes it (``_recover_manifests``), so a failed write is
    a warning, not a failed stream."""
    result = _in_transaction(conn, body)
    if lake is not None:
        try:
            lake.commit(result.stream, _manifest(lake, result, sync_id, files, warehouse.owner()))
        except Exception as exc:  # the lake's storage refused or is down: the warehouse has committed
            result.notes.append(f"{result.stream}: committed, but its lake manifest could not be written"
                                f" ({first_line(exc)[:200]}); the next run with this lake writes it")
    return result


def _sync_table(conn, warehouse: Warehouse, plan: _Plan, reader: StreamReader, clock: datetime | None,
                sync_id: int, lake: Lake | None, stop: threading.Event) -> StreamResult:
    stream = plan.stream
    rng = np.random.default_rng()
    files: list[tuple[str, int]] = []

    def body(cur) -> StreamResult:
        started = time.monotonic()
        state, pending = warehouse.lock_and_read_state(cur, stream.name)
        live = warehouse.column_types(cur, stream.name)
        if not plan.full and (pending or state is None or not live):
            raise IngestError(f"{stream.name}: another sync changed its state meanwhile; run again")
        if not plan.full:
            # the plan compared the columns before the lock; rows are COPY'd in binary, typed by that plan
            added, problems = schema_changes(stream, live)
            if problems or [c.name for c in added] != [c.name for c in plan.added]:
                raise IngestError(f"{stream.name}: another sync changed its table meanwhile; run again")
        generation = 0 if state is None else state.generation_id + (1 if pending else 0)
        batch = Batch(datetime.now(UTC), sync_id, generation)
        result = StreamResult(stream.name, "full" if plan.full else "incremental", generation_id=generation)
        if lake is not None and not plan.full:
            _check_lake_continues(result, state, lake, warehouse.owner())
        if plan.full:
            loaded = warehouse.start_full_load(cur, stream, batch)
        else:
            stage = warehouse.start_incremental(cur, stream)
            log.info("%s: incremental from %s", stream.name, plan.since[0].isoformat() if plan.since else "the beginning")
        top: list = [None]
        progress = _Progress(stream.name)

        def prepared() -> Iterator[pa.Table]:
            for part, chunk in enumerate(reader.batches()):
                if lake is not None:
                    files.append(lake.put_table(stream.name, part, chunk))
                high = max_cursor(chunk, stream)
                if high is not None and (top[0] is None or high > top[0]):
                    top[0] = high
                yield chunk.add_column(0, "_airbyte_raw_id", uuid4_array(chunk.num_rows, rng))

        def counted() -> Iterator[pa.Table]:
            for chunk in _prefetch(prepared(), stop):
                result.rows_read += chunk.num_rows
                progress.add(chunk.num_rows)
                yield chunk

        if plan.full:
            _copy_stream(cur, warehouse, loaded, counted(), stream, staging=False)
            fault_hook(stream.name, "after_copy", stop)
            warehouse.finish_full_load(cur, stream, loaded)
            result.inserted = result.rows_read
        elif plan.added:  # the table gains columns only just before the merge: everything is staged
            _copy_stream(cur, warehouse, stage, counted(), stream, staging=True)
            fault_hook(stream.name, "after_copy", stop)
            warehouse.add_columns(cur, stream, plan.added)
            result.inserted, result.updated = warehouse.merge(cur, stream, stage, batch, result.rows_read,
                                                              state.rows_in_table)
        else:
            new, staged = _copy_incremental(cur, warehouse, stream, stage, counted(), batch)
            fault_hook(stream.name, "after_copy", stop)
            inserted, result.updated = (warehouse.merge(cur, stream, stage, batch, staged, state.rows_in_table)
                                        if staged else (0, 0))
            result.inserted = new + inserted
        # rows stamped before the snapshot may commit after it; capping the saved cursor at the
        # source's clock at the snapshot makes the next run's lookback pick them up
        cursor = top[0]
        if cursor is None:
            cursor = None if plan.full else state.cursor
        elif clock is not None and cursor > (clock, 0):
            cursor = (clock, 0)
        result.high_water_mark = cursor[0] if cursor else None
        result.rows_in_table = result.inserted + (0 if plan.full else state.rows_in_table)
        return _end_transaction(cur, warehouse, result, cursor, batch, plan.identity, lake, files, started, stop)

    try:
        result = _commit(conn, body, warehouse, sync_id, lake, files)
    finally:
        # a failed stream stops its reader now, not when the other streams are done: its drain would
        # otherwise go on copying the rest of the table into the spool's file
        reader.close()
    result.seconds = max(result.seconds, 1e-9)
    log.info("%s: %s, %s rows read, %s inserted, %s updated, %s in table, %.2f s (%s rows/s)",
             stream.name, result.mode, f"{result.rows_read:,}", f"{result.inserted:,}", f"{result.updated:,}",
             f"{result.rows_in_table:,}", result.seconds, f"{result.rows_per_second:,.0f}")
    return result


def _copy_stream(cur, warehouse: Warehouse, table: str, chunks: Iterator[pa.Table], stream: Stream, *,
                 staging: bool) -> None:
    """One COPY for the whole stream, fed batch by batch while the reader thread fetches the next: into
    the full load's table, new in this transaction (so its rows are written frozen), or into the
    temporary ``staging`` table of an incremental sync."""
    schema = pa.schema([("_airbyte_raw_id", pa.string())] + list(stream.arrow_schema))
    batches = (batch for chunk in chunks for batch in chunk.to_batches())
    warehouse.copy_batches(cur, table, schema, batches, temporary=staging, freeze=not staging)


def _copy_incremental(cur, warehouse: Warehouse, stream: Stream, stage: str, chunks: Iterator[pa.Table],
                      batch: Batch) -> tuple[int, int]:
    """An incremental sync's rows, batch by batch: those with a key above the table's largest go straight
    into the table (new rows: nothing to merge), the others into the staging table for the merge,
    except those the table already holds with the same or a later cursor (re-read by the lookback,
    unchanged: ``Warehouse.may_change``); a COPY of its own for each part of each batch (a
    connection runs one COPY at a time), while the reader fetches the next batch. Returns (rows
    written to the table, rows staged)."""
    above = warehouse.max_key(cur, stream)
    written = staged = 0
    for chunk in chunks:
        if above is not None:
            key = chunk[stream.primary_key]
            new = pc.greater(key, pa.scalar(above, key.type))
            old, chunk = chunk.filter(pc.invert(new)), chunk.filter(new)
            if old.num_rows:
                old = warehouse.may_change(cur, stream, old)
            if old.num_rows:
                _copy_stream(cur, warehouse, stage, iter([old]), stream, staging=True)
                staged += old.num_rows
        if chunk.num_rows:
            warehouse.copy_new_rows(cur, stream, chunk, batch)
            written += chunk.num_rows
    return written, staged


def _orders_without_store(warehouse: Warehouse, parsed: stores.ParsedStores | None) -> list[str]:
    """Orders in the raw schema whose store is not in ``store_locations`` (its line quarantined, or
    missing from the CSV): dbt's relationships test on ``stg_retail__orders.store_id`` fails on them and
    the models downstream are skipped, so the ingest says so first. Best effort: never fails the run."""
    try:
        conn = warehouse.connect()
    except IngestError:
        return []
    try:
        with conn.cursor() as cur:
            if not (warehouse.existing_columns(cur, "orders") and warehouse.existing_columns(cur, STORES)):
                return []
            cur.execute(
                f"select o.store_id, count(*) from {warehouse.table('orders')} o where o.store_id is not null"
                f" and not exists (select 1 from {warehouse.table(STORES)} s where s.store_id = o.store_id)"
                " group by 1 order by 2 desc, 1"
            )
            missing = cur.fetchall()
    except Exception as exc:  # a warning only: the sync itself has committed
        log.warning("store_locations: cannot check the orders' stores: %s", exc)
        return []
    finally:
        conn.close()
    if not missing:
        return []
    quarantined = stores.quarantined_ids(parsed.rejected) if parsed is not None else {}
    parts = []
    for store_id, orders in missing[:5]:
        why = quarantined.get(store_id)
        where = (f"quarantined, line {why.line_number}: {why.reason}" if why else "not in the CSV")
        parts.append(f"store {store_id} ({orders:,} orders; {where})")
    more = f" and {len(missing) - 5} more" if len(missing) > 5 else ""
    total = sum(n for _, n in missing)
    return [f"store_locations: {total:,} order(s) name a store that is not loaded: {'; '.join(parts)}{more}."
            f" dbt's relationships test on stg_retail__orders.store_id will fail: fix the line(s) (see"
            f" {warehouse.table(stores.QUARANTINE_TABLE)}) and ingest again"]


def _sync_stores(conn, warehouse: Warehouse, parsed: stores.ParsedStores, sync_id: int,
                 lake: Lake | None, stop: threading.Event) -> StreamResult:
    """The CSV has no cursor: every run reloads it whole (Airbyte's full refresh | overwrite)."""
    stream = stores.STREAM
    files: list[tuple[str, int]] = []

    def body(cur) -> StreamResult:
        started = time.monotonic()
        state, _ = warehouse.lock_and_read_state(cur, stream.name)
        generation = 0 if state is None else state.generation_id
        batch = Batch(datetime.now(UTC), sync_id, generation)
        result = StreamResult(stream.name, "full", rows_read=parsed.rows_read, generation_id=generation)
        result.stores_lost = bool(parsed.rejected)
        if warehouse.existing_columns(cur, stream.name):
            cur.execute(f"select store_id, region, country from {warehouse.table(stream.name)}")
            before = cur.fetchall()
            result.notes = stores.new_places(parsed, {r for _, r, _ in before}, {c for _, _, c in before})
            result.stores_lost |= bool({i for i, _, _ in before} - set(parsed.good.column("store_id").to_pylist()))
        if lake is not None:
            files.append((lake.put_bytes(stream.name, "store_locations.csv", parsed.raw), parsed.rows_read))
        loaded = warehouse.start_full_load(cur, stream, batch)
        good = parsed.good.add_column(
            0, "_airbyte_raw_id", uuid4_array(parsed.good.num_rows, np.random.default_rng())
        )
        warehouse.ingest_text(cur, loaded, good)
        warehouse.finish_full_load(cur, stream, loaded)
        quarantine = warehouse.table(stores.QUARANTINE_TABLE)
        cur.execute(
            f"create table if not exists {quarantine} (line_number bigint not null, raw_line varchar,"
            " reason varchar not null, _airbyte_extracted_at timestamp with time zone not null,"
            " sync_id bigint not null)"
        )
        cur.execute(f"delete from {quarantine}")  # not TRUNCATE: readers keep the old rows until the commit
        if parsed.rejected:
            rows = stores.quarantine_table(parsed.rejected)
            rows = rows.append_column(
                "_airbyte_extracted_at", pa.array([batch.extracted_at] * rows.num_rows, pa.timestamp("us", tz="UTC"))
            ).append_column("sync_id", pa.array([sync_id] * rows.num_rows, pa.int64()))
            warehouse.ingest(cur, stores.QUARANTINE_TABLE, rows)
        result.inserted = parsed.good.num_rows
        result.quarantined = len(parsed.rejected)
        result.rows_in_table = parsed.good.num_rows
        return _end_transaction(cur, warehouse, result, None, batch, None, lake, files, started, stop)

    result = _commit(conn, body, warehouse, sync_id, lake, files)
    for rejected in parsed.rejected:
        log.warning("store_locations: line %d quarantined: %s", rejected.line_number, rejected.reason)
    log.info("store_locations: %d rows read, %d loaded, %d quarantined (%s)", result.rows_read, result.inserted,
             result.quarantined, warehouse.table(stores.QUARANTINE_TABLE))
    return result


def configure_logging(stream=sys.stdout) -> None:
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", "%H:%M:%S"))
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    log.propagate = False
