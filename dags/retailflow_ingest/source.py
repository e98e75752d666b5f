"""The MySQL side: connection check, stream discovery (Airbyte's "catalog") and Arrow reads.

Reads go through connectorx, which decodes MySQL rows straight into Arrow in Rust and streams them as
record batches; each batch is cast to the Arrow types that map onto the warehouse column types (see
``ColumnType``). Every stream of a sync is read by one query inside one shared snapshot
(``open_snapshot``).
"""

from __future__ import annotations

import random
import re
import ssl
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from urllib.parse import unquote, urlsplit, urlunsplit

import connectorx as cx
import pyarrow as pa
import pyarrow.compute as pc
import pymysql

from retailflow_ingest.catalog import MYSQL_PORT
from retailflow_ingest.errors import MYSQL_SCHEMES, MYSQL_SHAPE, IngestError, split_url
from retailflow_ingest.spool import Spool, drain

#: the cursor column every incremental stream carries (schema.sql)
CURSOR = "updated_at"
_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


@dataclass(frozen=True)
class ColumnType:
    """One column: its name, the warehouse type Airbyte's Postgres destination gives it, and the Arrow
    type the COPY writer needs to produce exactly that type."""

    name: str
    pg_type: str
    arrow_type: pa.DataType


@dataclass(frozen=True)
class Stream:
    name: str
    primary_key: str
    columns: tuple[ColumnType, ...]
    cursor: str | None = CURSOR

    @property
    def column_names(self) -> list[str]:
        return [c.name for c in self.columns]

    @property
    def arrow_schema(self) -> pa.Schema:
        return pa.schema([(c.name, c.arrow_type) for c in self.columns])


def mysql_type(data_type: str, column_type: str, precision: int | None, scale: int | None) -> tuple[str, pa.DataType]:
    """Airbyte's MySQL source → Postgres destination mapping for the types the RetailFlow schema uses:
    integers → ``bigint``, decimals → ``decimal``, ``datetime`` → ``timestamp`` (no time zone),
    ``timestamp`` → ``timestamp with time zone``, ``date`` → ``date``, strings and enums → ``varchar``."""
    data_type = data_type.lower()
    if data_type in ("tinyint", "smallint", "mediumint", "int", "integer", "bigint", "year"):
        # bigint unsigned above 2^63 would not fit; the schema's ids never come close
        return "bigint", pa.int64()
    if data_type in ("decimal", "numeric"):
        return "decimal", pa.decimal128(precision or 38, scale or 0)
    if data_type == "datetime":
        return "timestamp", pa.timestamp("us")
    if data_type == "timestamp":
        return "timestamp with time zone", pa.timestamp("us", tz="UTC")
    if data_type == "date":
        return "date", pa.date32()
    if data_type in ("char", "varchar", "tinytext", "text", "mediumtext", "longtext", "enum", "set"):
        return "varchar", pa.string()
    raise IngestError(f"column type {column_type!r} is not supported by the local engine ({SUPPORTED_TYPES})")


#: the MySQL types ``mysql_type`` maps, as messages name them
SUPPORTED_TYPES = "it loads integers, decimal, datetime, timestamp, date, char, varchar, text and enum/set"


class _Connection(pymysql.connections.Connection):
    """PyMySQL's connection without its per-connect CA store load. With no TLS options, PyMySQL 1.2
    uses TLS when the server offers it ("preferred"), without verifying the certificate, and for that
    builds ``ssl.create_default_context()`` on every connect, which reads the system's CA store only
    to ignore it: 0.1-0.3 s per connection, the largest fixed cost of a small sync. This builds the
    same context (TLS client defaults, no hostname check, no verification) without the CA store, once
    (an ``ssl.SSLContext`` may be shared)."""

    _preferred: ssl.SSLContext | None = None
    _lock = threading.Lock()

    def _create_ssl_ctx(self, sslp):
        if sslp:  # explicit TLS options: PyMySQL's own handling
            return super()._create_ssl_ctx(sslp)
        with _Connection._lock:
            if _Connection._preferred is None:
                ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
                ctx.check_hostname = False
                ctx.verify_mode = ssl.CERT_NONE
                ctx.verify_flags &= ~ssl.VERIFY_X509_STRICT
                _Connection._preferred = ctx
        return _Connection._preferred


class MySQLSource:
    """A MySQL/MariaDB database named by a ``mysql://USER:PASSWORD@HOST:PORT/DATABASE`` URL."""

    def __init__(self, url: str):
        parts = split_url(url, "the MySQL URL", MYSQL_SHAPE, MYSQL_SCHEMES, needs_database=True)
        self.host = parts.hostname
        self.port = parts.port or MYSQL_PORT
        self.user = unquote(parts.username or "")
        self.password = unquote(parts.password or "")
        self.database = unquote(parts.path.lstrip("/"))
        self.cx_url = urlunsplit(("mysql", parts.netloc, parts.path, "", ""))
        self.estimated_rows: dict[str, int] = {}
        #: each table's identity at discovery (``identity``), saved with its cursor
        self.identities: dict[str, str | None] = {}
        #: the tables discovery found but cannot sync, and why (``discover``)
        self.not_streams: dict[str, str] = {}

    def describe(self) -> str:
        return f"mysql://{self.user}@{self.host}:{self.port}/{self.database}"

    def connect(self, utc: bool = False) -> pymysql.connections.Connection:
        """A connection to the source. ``utc``: its session in UTC, for reading cursor values (a
        ``timestamp`` column's come out in the session's zone). Discovery and the snapshot's identity
        check keep the server's zone: a table's identity (``IDENTITY_SQL``, its creation time) is shown
        in it, and identities saved by earlier syncs must compare equal."""
        try:
            return _Connection(
                host=self.host,
                port=self.port,
                user=self.user,
                password=self.password,
                database=self.database,
                connect_timeout=10,
                autocommit=True,
                init_command=f"set time_zone = '{UTC_OFFSET}'" if utc else None,
            )
        except pymysql.MySQLError as exc:
            raise IngestError(f"cannot connect to the source {self.describe()}: {exc.args[-1]}") from exc
        except UnicodeEncodeError:
            # PyMySQL sends the user and password in latin-1; its error names the character and where it
            # sits in the password, so it is neither shown nor chained
            raise IngestError(f"cannot connect to the source {self.describe()}: its user or password holds a"
                              " character outside latin-1, which MySQL's client protocol here cannot send") from None

    def discover(self) -> dict[str, Stream]:
        """Every table with a single-column integer primary key and an ``updated_at`` cursor column."""
        conn = self.connect()
        try:
            with conn.cursor() as cur:
                cur.execute(
                    "select table_name, column_name, data_type, column_type, numeric_precision, numeric_scale,"
                    " column_key = 'PRI' from information_schema.columns where table_schema = %s"
                    " order by table_name, ordinal_position",
                    (self.database,),
                )
                columns = cur.fetchall()
                # InnoDB's row estimates, to start the largest tables first, and each table's identity
                cur.execute(
                    f"select table_name, table_rows, {IDENTITY_SQL} from information_schema.tables"
                    " where table_schema = %s",
                    (self.database,),
                )
                found = cur.fetchall()
                self.estimated_rows = {name: rows or 0 for name, rows, _ in found}
                self.identities = {name: identity for name, _, identity in found}
        finally:
            conn.close()
        by_table: dict[str, list[ColumnType]] = {}
        unsupported: dict[str, list[str]] = {}
        keys: dict[str, list[str]] = {}
        for table, column, data_type, column_type, precision, scale, is_key in columns:
            if is_key:
                keys.setdefault(table, []).append(column)
            try:
                pg_type, arrow_type = mysql_type(data_type, column_type, precision, scale)
            except IngestError:
                unsupported.setdefault(table, []).append(f"{column} {column_type}")
                continue
            by_table.setdefault(table, []).append(ColumnType(column, pg_type, arrow_type))
        streams, self.not_streams = {}, {}
        for table in dict.fromkeys([*by_table, *unsupported]):
            cols = by_table.get(table, [])
            pk = keys.get(table, [])
            pk_types = [c.pg_type for c in cols if c.name in pk]
            # chunked reads page on an integer key and order by (updated_at, key)
            if table in unsupported:
                why = (f"column{'s' if len(unsupported[table]) > 1 else ''} {', '.join(unsupported[table])}: types"
                       f" the local engine does not load ({SUPPORTED_TYPES})")
            elif len(pk) != 1 or pk_types != ["bigint"]:
                why = "its primary key is not one integer column" if pk else "it has no primary key"
            elif CURSOR not in (c.name for c in cols):
                why = f"it has no {CURSOR} column (the incremental cursor)"
            elif not _IDENT.match(table):
                why = "its name is not a plain identifier (letters, digits, _)"
            else:
                streams[table] = Stream(table, pk[0], tuple(cols))
                continue
            self.not_streams[table] = why
        return streams

    def rows_at(self, cursors: dict[str, tuple[Stream, tuple[datetime, int]]]) -> dict[str, datetime | None]:
        """The source's ``updated_at`` now of the row each saved cursor points at (its primary key), or
        None where that row is gone: one indexed lookup per stream."""
        if not cursors:
            return {}
        conn = self.connect(utc=True)
        found = {}
        try:
            with conn.cursor() as cur:
                for name, (stream, cursor) in cursors.items():
                    cur.execute(f"select `{stream.cursor}` from `{stream.name}` where `{stream.primary_key}` = %s",
                                (int(cursor[1]),))
                    row = cur.fetchone()
                    found[name] = row[0] if row else None
        except pymysql.MySQLError as exc:
            raise IngestError(f"cannot read the source {self.describe()}: {exc.args[-1]}") from exc
        finally:
            conn.close()
        return found

    def full_query(self, stream: Stream) -> str:
        """The whole table: a clustered-index scan, the cheapest full read."""
        cols = ", ".join(f"`{c}`" for c in stream.column_names)
        return f"select {cols} from `{stream.name}`"

    def incremental_query(self, stream: Stream, since: tuple[datetime, int] | None, lookback: timedelta) -> str:
        """Rows at or after the cursor, in ``(updated_at, pk)`` order (the ``ix_*_updated`` index).

        The read starts ``lookback`` before the saved cursor so that rows committed late with an older
        ``updated_at`` are still picked up; with no lookback it continues strictly after the cursor.
        """
        cols = ", ".join(f"`{c}`" for c in stream.column_names)
        pk, cur = stream.primary_key, stream.cursor
        if since is None:
            where = ""
        elif lookback > timedelta(0):
            where = f"where `{cur}` >= '{_sql_ts(since[0] - lookback)}' "
        else:
            where = _after(cur, pk, since)
        return f"select {cols} from `{stream.name}` {where}order by `{cur}`, `{pk}`"

    def open_snapshot(self, queries: dict[str, tuple[Stream, str]], batch_rows: int) -> Snapshot:
        """Start one reader per stream, all inside the same consistent snapshot of the source.

        InnoDB snapshots belong to a connection, and each reader has its own. To make them one
        snapshot, a coordinator connection holds ``LOCK TABLES … READ`` on every table of the sync
        while each reader starts ``START TRANSACTION WITH CONSISTENT SNAPSHOT`` and returns its first
        batch (so its snapshot exists); then it unlocks. The lock is granted only while no transaction
        is writing to those tables, and holds new writers back, so no commit falls between the readers'
        snapshots: an order and its lines, written in one transaction, are either both in the sync or
        both in the next one. Writers wait for the lock for well under a second. (mydumper
        synchronises its threads the same way, with ``FLUSH TABLES WITH READ LOCK``, which needs the
        RELOAD privilege; ``LOCK TABLES`` needs only the database's LOCK TABLES privilege.)
        """
        snapshot = Snapshot(self.describe())
        if not queries:
            return snapshot
        conn = self.connect()
        try:
            with conn.cursor() as cur:
                self._lock_tables(cur, [stream.name for stream, _ in queries.values()])
                try:
                    self._check_identities(cur, [stream.name for stream, _ in queries.values()])
                    cur.execute("select utc_timestamp(6)")
                    snapshot.clock = cur.fetchone()[0]
                    # all readers start at once (each connects and prepares its query; the calls
                    # release the GIL), and each one's first batch proves its snapshot exists
                    with ThreadPoolExecutor(max_workers=len(queries), thread_name_prefix="snapshot") as pool:
                        started = {name: pool.submit(self._start_reader, stream, query, batch_rows)
                                   for name, (stream, query) in queries.items()}
                        for name, future in started.items():
                            snapshot.readers[name] = future.result()
                        for future in [pool.submit(r.wait_started) for r in snapshot.readers.values()]:
                            future.result()
                finally:
                    cur.execute("unlock tables")
        except BaseException:
            snapshot.close()
            raise
        finally:
            conn.close()
        return snapshot

    def _check_identities(self, cur, tables: list[str]) -> None:
        """Under the snapshot's lock: every table is still the one discovery saw (and the plan was made
        for). A table swapped in between (``RENAME TABLE``) is refused: a plain run then reloads it."""
        cur.execute(f"select table_name, {IDENTITY_SQL} from information_schema.tables where table_schema = %s",
                    (self.database,))
        now = dict(cur.fetchall())
        changed = [t for t in tables if t in self.identities and now.get(t) != self.identities[t]]
        if changed:
            raise IngestError(f"{', '.join(changed)}: replaced in the source while this sync started"
                              " (nothing was written); run again")

    def _lock_tables(self, cur, tables: list[str]) -> None:
        """``LOCK TABLES … READ NOWAIT``, retried: it never waits while holding a lock, so it cannot form
        a deadlock with a writer that holds one of the tables and wants another (the server would pick
        the writer as the victim); it gets through in a gap between write transactions."""
        statement = f"lock tables {', '.join(f'`{t}` read' for t in tables)} nowait"
        deadline = time.monotonic() + LOCK_WAIT_SECONDS
        while True:
            try:
                cur.execute(statement)
                return
            except pymysql.MySQLError as exc:
                if exc.args[0] not in (1205, 1213) or time.monotonic() > deadline:
                    raise IngestError(
                        f"cannot take a consistent snapshot of {self.describe()} (LOCK TABLES … READ, tried for"
                        f" {LOCK_WAIT_SECONDS} s; the user needs the LOCK TABLES privilege): {exc.args[-1]}"
                    ) from exc
                time.sleep(random.uniform(0.002, 0.02))

    def _start_reader(self, stream: Stream, query: str, batch_rows: int) -> StreamReader:
        try:
            reader = ArrowStream(self.cx_url, query, batch_rows, list(SNAPSHOT_SESSION))
        except (RuntimeError, OSError, pa.ArrowException) as exc:
            raise IngestError(f"reading {stream.name} from {self.describe()} failed: {exc}") from exc
        return StreamReader(stream, reader, self.describe())


#: a table's identity as information_schema shows it without extra privileges: its creation time,
#: which a new table swapped in by ``RENAME TABLE`` (what ``seed --truncate`` does), a ``TRUNCATE`` or
#: a rebuild changes (InnoDB's own table id needs the PROCESS privilege). Seconds only: the engine
#: also checks the row at the saved cursor (``rows_at``).
IDENTITY_SQL = "cast(create_time as char)"
#: the session time zone of every connection to the source: UTC
UTC_OFFSET = "+00:00"
#: the reader connections' session: one snapshot each, read-only, started before the query runs
SNAPSHOT_SESSION = (
    "set session transaction isolation level repeatable read",
    # ``timestamp`` columns come out in the session's time zone and literals compare in it; the
    # engine's cursor and the source's clock are UTC (``datetime`` columns are not converted)
    f"set session time_zone = '{UTC_OFFSET}'",
    # a reader may sit idle while other streams are written; the server must not drop it meanwhile
    "set session net_write_timeout = 86400",
    "start transaction with consistent snapshot, read only",
)
#: how long the snapshot waits for writers to commit before giving up with a clear error
LOCK_WAIT_SECONDS = 30


class ArrowStream:
    """One query's rows as Arrow record batches from connectorx, as ``cx.read_sql(...,
    return_type="arrow_stream")`` gives them, plus how long each read waited for connectorx's decoder.

    ``read_sql`` wraps connectorx's batch iterator in a ``pyarrow.RecordBatchReader``, whose every read
    releases the GIL and takes it back (twice): under load that alone can take several milliseconds,
    so the time of a whole read cannot tell a batch that was waiting in connectorx's channel from one
    that was not yet decoded. Here the iterator (``connectorx.read_sql``'s own steps: the native
    ``_read_sql`` and ``reconstruct_arrow_rb``'s conversion, connectorx 0.4.6) is called directly:
    its ``__next__`` holds the GIL from start to end, so ``waited`` is the time it spent on the channel
    and nothing else. The drain (``spool.drain``) paces its reads by it."""

    def __init__(self, url: str, query: str, batch_rows: int, pre_execution: list[str]):
        url, protocol = cx.rewrite_conn(url)
        self._results = cx._read_sql(url, "arrow_stream", queries=[query], protocol=protocol, partition_query=None,
                                     pre_execution_queries=pre_execution, batch_size=batch_rows)
        names, chunks = self._results.schema_ptr()
        # imported (and so released) as connectorx's reconstruct_arrow_rb imports them
        for chunk in chunks:
            pa.RecordBatch.from_arrays([pa.Array._import_from_c(*column) for column in chunk], names)
        self._names = names
        #: seconds the last ``read_next_batch`` spent in connectorx's iterator (waiting for its decoder)
        self.waited = 0.0

    def read_next_batch(self) -> pa.RecordBatch:
        if self._results is None:  # not the end of the table: a reader closed before it
            raise RuntimeError("read from a closed connectorx stream")
        began = time.monotonic()
        try:
            pointers = next(self._results)
        finally:
            self.waited = time.monotonic() - began
        return pa.RecordBatch.from_arrays([pa.Array._import_from_c(*column) for column in pointers.to_ptrs()],
                                          self._names)

    def close(self) -> None:
        """Drop the iterator: connectorx's decoder stops at its next send, and its connection closes."""
        self._results = None


class StreamReader:
    """One stream's rows, as Arrow record batches of at most ``batch_rows`` rows, from one query that
    runs inside the sync's snapshot. connectorx decodes in a Rust thread, ahead of the consumer and
    without limit; once the query has started, a drain thread takes its batches out as they come into
    a ``Spool`` that keeps ``memory_batches`` of them in memory and the rest on disk (``spool.py``), so
    memory does not grow with the table, however far the COPY lags behind or however long the stream
    waits for its turn."""

    def __init__(self, stream: Stream, reader: ArrowStream, where: str, memory_batches: int = 2,
                 spill_dir: str | None = None):
        self.stream, self._reader, self._where = stream, reader, where
        self.spool = Spool(memory_batches, spill_dir)
        self._drain: threading.Thread | None = None

    def wait_started(self) -> None:
        """Block until the query has run (its first batch, or its end, has arrived), then start the
        drain."""
        try:
            first = self._reader.read_next_batch()
        except StopIteration:
            self.spool.finish()
            self._close_reader()
            return
        except (RuntimeError, OSError, pa.ArrowException) as exc:
            raise IngestError(f"reading {self.stream.name} from {self._where} failed: {exc}") from exc
        self.spool.put(first)  # even empty: a stream with no rows still yields one (empty) chunk
        # the decoder's pace counts from its first batch: the time before it (connecting, the snapshot,
        # the query's start) would make it look several times slower than it is
        self._drain = threading.Thread(target=drain, args=(self._reader, self.spool, time.monotonic()),
                                       name=f"drain-{self.stream.name}", daemon=True)
        self._drain.start()

    def _typed(self, batch: pa.RecordBatch) -> pa.Table:
        return pa.Table.from_batches([batch]).select(self.stream.column_names).cast(self.stream.arrow_schema)

    def batches(self) -> Iterator[pa.Table]:
        while True:
            try:
                batch = self.spool.get()
            except (RuntimeError, OSError, pa.ArrowException) as exc:
                raise IngestError(f"reading {self.stream.name} from {self._where} failed: {exc}") from exc
            if batch is None:
                return
            yield self._typed(batch)

    def _close_reader(self) -> None:
        try:
            self._reader.close()
        except Exception:  # closing is best effort: the connection ends with the process anyway
            pass

    def close(self) -> None:
        self.spool.close()
        if self._drain is None:  # never started: no thread owns the reader
            self._close_reader()


@dataclass
class Snapshot:
    """The readers of one sync, all started inside the same snapshot, and the source's clock (UTC)
    while it was taken."""

    where: str
    clock: datetime | None = None
    readers: dict[str, StreamReader] = field(default_factory=dict)

    def close(self) -> None:
        for reader in self.readers.values():
            reader.close()


def _sql_ts(value: datetime) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S.%f")


def _after(cursor: str, pk: str, since: tuple[datetime, int]) -> str:
    ts = _sql_ts(since[0])
    return f"where (`{cursor}` > '{ts}' or (`{cursor}` = '{ts}' and `{pk}` > {int(since[1])})) "


def max_cursor(chunk: pa.Table, stream: Stream) -> tuple[datetime, int] | None:
    """The largest ``(updated_at, pk)`` pair in a chunk, its time naive and in UTC, as the state table
    and the source's clock (``utc_timestamp``) hold it: a ``timestamp`` cursor column arrives as
    UTC-aware Arrow values (``mysql_type``), a ``datetime`` one as naive."""
    if chunk.num_rows == 0:
        return None
    top = pc.max(chunk[stream.cursor])
    pks = pc.filter(chunk[stream.primary_key], pc.equal(chunk[stream.cursor], top))
    value = top.as_py()
    if value.tzinfo is not None:
        value = value.astimezone(timezone.utc).replace(tzinfo=None)
    return value, pc.max(pks).as_py()
