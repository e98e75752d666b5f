"""The PostgreSQL side: Airbyte-shaped typed tables, the merge, the swap, and the cursor state.

Everything for one stream happens on one connection inside one transaction, so rows and cursor state
become visible together or not at all, and every commit waits for its WAL flush (a sync reported as
done survives a server crash). Full loads go into a new table, built beside the live one and swapped
in at the end, so readers keep the old rows until the commit. Rows travel as PostgreSQL's binary
``COPY`` format, encoded from Arrow record batches by pgpq (in Rust, without the GIL's per-value
work); a full load's COPY also freezes its rows (``FREEZE``: the table is new in the transaction), so
neither dbt's first read nor autovacuum has to rewrite every page to set hint bits.
"""

from __future__ import annotations

import io
import json
import random
import re
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from urllib.parse import urlsplit

import numpy as np
import psycopg
import pyarrow as pa
import pyarrow.compute as pc
import pgpq._pgpq as pgpq_encoders
from pgpq import ArrowToPostgresBinaryEncoder

from retailflow_ingest.catalog import POSTGRESQL_PORT
from retailflow_ingest.errors import WAREHOUSE_SCHEMES, WAREHOUSE_SHAPE, IngestError, split_url, without_password
from retailflow_ingest.source import Stream

#: Airbyte's meta columns, in the order and with the types destination-postgres 3.x declares them
#: (PostgresColumnUtils.DEFAULT_COLUMNS); they come before the stream's own columns.
META_COLUMNS = (
    ("_airbyte_raw_id", "varchar not null"),
    ("_airbyte_extracted_at", "timestamp with time zone not null"),
    ("_airbyte_meta", "jsonb not null"),
    ("_airbyte_generation_id", "bigint"),
)
#: cursor state of every stream, one row each, written in the same transaction as the stream's rows
STATE_TABLE = "_retailflow_ingest_state"
#: full refreshes requested and not yet completed, one row per stream, deleted by the stream's commit
PENDING_TABLE = "_retailflow_ingest_pending_refresh"
#: the sync ids this schema handed out for runs that write the lake (committed before any lake file):
#: lake retention removes a folder left without a manifest at once only if it is one of these
SYNCS_TABLE = "_retailflow_ingest_syncs"
#: the prefix of the table a full load builds before it is swapped in (never committed under it)
LOAD_PREFIX = "_retailflow_load_"
OLD_PREFIX = "_retailflow_old_"
#: how long the swap waits for readers of the old table (a long dbt query) before it tries again
SWAP_LOCK_TIMEOUT = "5s"
SWAP_ATTEMPTS = 12
#: the warehouse types the engine writes, as ``format_type`` names them, for schema comparisons
_PG_NAMES = {
    "bigint": "bigint",
    "decimal": "numeric",
    "timestamp": "timestamp without time zone",
    "timestamp with time zone": "timestamp with time zone",
    "date": "date",
    "varchar": "character varying",
}
#: ``may_change`` reads at most this many table rows per row of the batch (plus 1,000)
MAY_CHANGE_READ_FACTOR = 4
#: PostgreSQL's binary timestamps count µs from 2000-01-01; Arrow's from 1970-01-01
_EPOCH_2000_US = 946_684_800_000_000
_IDENT = re.compile(r"^[a-z_][a-z0-9_]*$")


def ident(name: str) -> str:
    if not _IDENT.match(name):
        raise IngestError(f"{name!r} is not a plain lowercase SQL identifier")
    return f'"{name}"'


def _trim_decimals(data: pa.Table) -> pa.Table:
    """Decimals as text without trailing fractional zeros (59.900000 → 59.9, 10.000000 → 10): the store
    CSV's coordinates as its text has them (Airbyte's CSV source infers them as JSON numbers)."""
    for i, field in enumerate(data.schema):
        if pa.types.is_decimal(field.type) and field.type.scale > 0:
            text = pc.cast(data.column(i), pa.string())
            text = pc.replace_substring_regex(text, r"(\.[0-9]*?)0+$", r"\1")
            text = pc.replace_substring_regex(text, r"\.$", "")
            data = data.set_column(i, field.name, text)
    return data


#: pgpq's encoder for each Arrow type the engine writes: the ones it picks by itself
_ENCODERS = {
    pa.int64(): pgpq_encoders.Int64EncoderBuilder,
    pa.string(): pgpq_encoders.StringEncoderBuilder,
    pa.date32(): pgpq_encoders.Date32EncoderBuilder,
}


def _encoder(schema: pa.Schema, jsonb: set[str]) -> ArrowToPostgresBinaryEncoder:
    """pgpq's binary COPY encoder for ``schema``; the columns in ``jsonb`` (strings) as ``jsonb``. pgpq
    takes its encoders for every column or for none."""
    if not jsonb:
        return ArrowToPostgresBinaryEncoder(schema)
    builders = {}
    for column in schema:
        if column.name in jsonb:
            builders[column.name] = pgpq_encoders.StringEncoderBuilder.new_with_output(column, pgpq_encoders.Jsonb())
        elif pa.types.is_timestamp(column.type):
            builders[column.name] = pgpq_encoders.TimestampMicrosecondEncoderBuilder(column)
        elif pa.types.is_decimal128(column.type):
            builders[column.name] = pgpq_encoders.Decimal128EncoderBuilder(column)
        else:
            builders[column.name] = _ENCODERS[column.type](column)
    return ArrowToPostgresBinaryEncoder.new_with_encoders(schema, builders)


def literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


@dataclass(frozen=True)
class Batch:
    """The meta values every row written by one stream's sync carries."""

    extracted_at: datetime
    sync_id: int
    generation_id: int

    @property
    def meta_json(self) -> str:
        return json.dumps({"changes": [], "sync_id": self.sync_id})

    @property
    def meta_sql(self) -> str:
        return literal(self.meta_json) + "::jsonb"

    @property
    def extracted_at_sql(self) -> str:
        return literal(self.extracted_at.isoformat()) + "::timestamptz"


@dataclass(frozen=True)
class State:
    cursor: tuple[datetime, int] | None
    generation_id: int
    sync_id: int
    rows_in_table: int
    lake_manifest: dict | None = None
    #: the source table's identity when the cursor was saved (``source.IDENTITY_SQL``; None: unknown)
    source_identity: str | None = None


@dataclass
class Inspection:
    """What the warehouse holds before a sync, read without writing anything."""

    states: dict[str, State] = field(default_factory=dict)
    pending: set[str] = field(default_factory=set)
    #: stream → [(column, format_type)] of its table, for streams whose table exists
    columns: dict[str, list[tuple[str, str]]] = field(default_factory=dict)
    #: the state and pending-refresh tables exist in their current shape (``prepare`` creates nothing)
    ready: bool = False


def new_sync_id(previous: int = 0) -> int:
    """A sync id no other warehouse or re-created schema hands out again: milliseconds since the epoch
    times 2048 plus 11 random bits (below 2^53, so JSON readers keep it exact until 2109), and above
    every id this schema has used. The time part also dates a lake folder without listing it."""
    return max((time.time_ns() // 1_000_000) << 11 | random.getrandbits(11), previous + 1)


def schema_changes(stream: Stream, existing: list[tuple[str, str]]) -> tuple[list, list[str]]:
    """Compare a stream's source columns with its warehouse table: (columns to add, problems). Added
    columns are added, as Airbyte propagates them; a dropped or retyped column needs a full refresh."""
    have = {name: pg for name, pg in existing if not name.startswith("_airbyte_")}
    added = [c for c in stream.columns if c.name not in have]
    problems = []
    for name in have:
        if name not in {c.name for c in stream.columns}:
            problems.append(f"column {name} was dropped in the source")
    for c in stream.columns:
        if c.name in have and have[c.name] != _PG_NAMES.get(c.pg_type, c.pg_type):
            problems.append(f"column {c.name} changed type ({have[c.name]} in the warehouse, {c.pg_type} now)")
    return added, problems


class Warehouse:
    def __init__(self, url: str, schema: str = "raw"):
        parts = split_url(url, "the warehouse URL", WAREHOUSE_SHAPE, WAREHOUSE_SCHEMES)
        self.url = url
        self.schema = schema
        self.q_schema = ident(schema)
        self._where = f"postgresql://{parts.username or ''}@{parts.hostname}:{parts.port or POSTGRESQL_PORT}{parts.path}"

    def describe(self) -> str:
        return self._where

    def connect(self):
        """A connection for one stream's transaction (or the run's bookkeeping)."""
        try:
            return psycopg.connect(self.url, connect_timeout=10)
        except Exception as exc:  # the driver raises its own error classes for every failure
            # libpq may quote a value of the URL, password and all; not chained, as a traceback (an
            # Airflow task's log) would print the driver's own text after this one
            raise IngestError(f"cannot connect to the warehouse {self.describe()}:"
                              f" {without_password(str(exc), self.url)}") from None

    def table(self, name: str) -> str:
        return f"{self.q_schema}.{ident(name)}"

    def inspect(self, conn) -> Inspection:
        """States, pending full refreshes and table columns, read without creating anything."""
        found = Inspection()
        with conn.cursor() as cur:
            cur.execute(f"select to_regclass({literal(self.schema + '.' + STATE_TABLE)}) is not null,"
                        f" to_regclass({literal(self.schema + '.' + PENDING_TABLE)}) is not null")
            has_state, has_pending = cur.fetchone()
            if has_state:
                cur.execute(f"select * from {self.table(STATE_TABLE)} limit 0")
                names = [d[0] for d in cur.description]
                manifest, identity = "lake_manifest" in names, "source_identity" in names
                found.ready = manifest and identity and has_pending
                cur.execute(
                    "select stream, cursor_value, cursor_pk, generation_id, sync_id, rows_in_table,"
                    f" {'lake_manifest' if manifest else 'null'}::text,"
                    f" {'source_identity' if identity else 'null'}::text from {self.table(STATE_TABLE)}"
                )
                for stream, value, pk, generation, sync_id, rows, lake, source in cur.fetchall():
                    found.states[stream] = State(None if value is None else (value, pk), generation, sync_id,
                                                 rows or 0, json.loads(lake) if lake else None, source)
            if has_pending:
                cur.execute(f"select stream from {self.table(PENDING_TABLE)}")
                found.pending = {r[0] for r in cur.fetchall()}
            cur.execute(
                "select c.relname, a.attname, format_type(a.atttypid, a.atttypmod) from pg_class c"
                " join pg_namespace n on n.oid = c.relnamespace join pg_attribute a on a.attrelid = c.oid"
                f" where n.nspname = {literal(self.schema)} and c.relkind in ('r', 'p') and a.attnum > 0"
                " and not a.attisdropped order by c.relname, a.attnum"
            )
            for table, column, pg_type in cur.fetchall():
                found.columns.setdefault(table, []).append((column, pg_type))
        conn.commit()
        return found

    def prepare(self, conn, refresh: list[str], record: bool = False, found: Inspection | None = None) -> int:
        """Create the raw schema and state tables if needed (not if ``found`` says they are there),
        record the full refreshes requested (they stay pending until each stream has completed one),
        and return this run's sync id (with ``record``, kept in ``SYNCS_TABLE``: the run writes the
        lake)."""
        if found is not None and found.ready and not refresh and not record:
            # a plain run on a prepared schema writes nothing here: its id is above every saved one (a
            # concurrent run may draw the same millisecond: 11 random bits tell them apart)
            return new_sync_id(max((s.sync_id for s in found.states.values()), default=0))
        with conn.cursor() as cur:
            cur.execute(f"create schema if not exists {self.q_schema}")
            cur.execute(
                f"create table if not exists {self.table(STATE_TABLE)} ("
                " stream varchar primary key,"
                " cursor_value timestamp,"
                " cursor_pk bigint,"
                " generation_id bigint not null,"
                " sync_id bigint not null,"
                " rows_in_table bigint,"
                " synced_at timestamp with time zone not null default now())"
            )
            cur.execute(f"alter table {self.table(STATE_TABLE)} add column if not exists lake_manifest jsonb")
            cur.execute(f"alter table {self.table(STATE_TABLE)} add column if not exists source_identity varchar")
            cur.execute(
                f"create table if not exists {self.table(PENDING_TABLE)} (stream varchar primary key,"
                " requested_sync_id bigint not null, requested_at timestamp with time zone not null default now())"
            )
            cur.execute(f"select coalesce(max(sync_id), 0) from {self.table(STATE_TABLE)}")
            sync_id = new_sync_id(cur.fetchone()[0])
            if record:
                cur.execute(f"create table if not exists {self.table(SYNCS_TABLE)} (sync_id bigint primary key,"
                            " started_at timestamp with time zone not null default now())")
                cur.execute(f"insert into {self.table(SYNCS_TABLE)} (sync_id) values ({sync_id})")
            for stream in refresh:
                cur.execute(
                    f"insert into {self.table(PENDING_TABLE)} (stream, requested_sync_id) values"
                    f" ({literal(stream)}, {sync_id}) on conflict (stream) do update set"
                    " requested_sync_id = excluded.requested_sync_id, requested_at = excluded.requested_at"
                )
        conn.commit()
        return sync_id

    # --- inside a stream's transaction -------------------------------------------------------------

    def own_syncs(self, cur, sync_ids: list[int]) -> set[int]:
        """Which of ``sync_ids`` this schema handed out (``prepare(record=True)``)."""
        if not sync_ids:
            return set()
        cur.execute(f"select to_regclass({literal(self.schema + '.' + SYNCS_TABLE)}) is not null")
        if not cur.fetchone()[0]:
            return set()
        cur.execute(f"select sync_id from {self.table(SYNCS_TABLE)} where sync_id in ({', '.join(map(str, map(int, sync_ids)))})")
        return {r[0] for r in cur.fetchall()}

    def owner(self) -> str:
        """Names the warehouse and schema whose syncs write a lake folder (kept in its manifest)."""
        return f"{self.describe()}#{self.schema}"

    def lock_key(self, stream: str) -> str:
        return f"hashtext({literal(self.schema + '.' + stream)})"

    def lock_and_read_state(self, cur, stream: str) -> tuple[State | None, bool]:
        """Serialise concurrent runs per stream, then read the committed cursor and whether a full
        refresh is pending. The commit that moves the state waits for its WAL flush whatever the
        server's or database's default: a sync reported as done is never lost in a crash."""
        # read committed (PostgreSQL's default, whatever the database's or role's): the reads below and
        # ``max_key`` see what a sync of the same stream committed while this one waited for the lock
        cur.execute("set transaction isolation level read committed")
        cur.execute("set local synchronous_commit = on")
        cur.execute(f"select pg_advisory_xact_lock({self.lock_key(stream)})")
        cur.fetchall()
        cur.execute(
            f"select cursor_value, cursor_pk, generation_id, sync_id, rows_in_table, lake_manifest::text"
            f" from {self.table(STATE_TABLE)} where stream = {literal(stream)}"
        )
        row = cur.fetchone()
        cur.execute(f"select count(*) from {self.table(PENDING_TABLE)} where stream = {literal(stream)}")
        pending = cur.fetchone()[0] > 0
        if row is None:
            return None, pending
        cursor = None if row[0] is None else (row[0], row[1])
        return State(cursor, row[2], row[3], row[4] or 0, json.loads(row[5]) if row[5] else None), pending

    def column_types(self, cur, stream: str) -> list[tuple[str, str]]:
        """The stream's table's columns with their types (``format_type``), in order; empty if there is none."""
        cur.execute(
            "select attname, format_type(atttypid, atttypmod) from pg_attribute where attrelid ="
            f" to_regclass({literal(self.schema + '.' + stream)}) and attnum > 0 and not attisdropped order by attnum"
        )
        return [(r[0], r[1]) for r in cur.fetchall()]

    def existing_columns(self, cur, stream: str) -> list[str]:
        return [name for name, _ in self.column_types(cur, stream)]

    def start_full_load(self, cur, stream: Stream, batch: Batch) -> str:
        """An empty table to COPY into, with no index yet: the stream's own table if there is none, else
        a new one beside it, swapped in by ``finish_full_load``. The meta values shared by every row of
        the batch are column defaults during the load, so the COPY carries only ``_airbyte_raw_id``
        and the stream's columns. Returns the table's name."""
        name = stream.name if not self.existing_columns(cur, stream.name) else LOAD_PREFIX + stream.name
        columns = [f"{ident(n)} {t}" for n, t in META_COLUMNS] + [f"{ident(c.name)} {c.pg_type}" for c in stream.columns]
        cur.execute(f"drop table if exists {self.table(LOAD_PREFIX + stream.name)}")
        cur.execute(f"create table {self.table(name)} ({', '.join(columns)})")
        self._set_defaults(cur, self.table(name), batch)
        return name

    def finish_full_load(self, cur, stream: Stream, loaded: str) -> None:
        """Index the loaded table, then, if it was built beside the live one, swap it in."""
        self._drop_defaults(cur, self.table(loaded))
        # sorting a million keys in memory instead of spilling to disk: the default 64MB is too small
        cur.execute("set local maintenance_work_mem = '256MB'")
        self.create_indexes(cur, stream, loaded)
        if loaded != stream.name:
            self._swap(cur, stream, loaded)

    def _swap(self, cur, stream: Stream, loaded: str) -> None:
        """Put the loaded table in the live one's place, as Airbyte's Direct-Load overwrite does. Only
        this step locks the live table (ACCESS EXCLUSIVE, until the commit a moment later): readers see
        the old rows until then. Views on the table (dbt's staging models) are rebound to the new one
        with their own definitions, so they, their grants and whatever depends on them stay; the old
        table's grants are copied."""
        live, old = self.table(stream.name), self.table(OLD_PREFIX + stream.name)
        cur.execute(f"set local lock_timeout = '{SWAP_LOCK_TIMEOUT}'")
        for attempt in range(SWAP_ATTEMPTS):
            cur.execute("savepoint swap_lock")
            try:
                cur.execute(f"lock table {live} in access exclusive mode")
                break
            except psycopg.errors.LockNotAvailable as exc:
                cur.execute("rollback to savepoint swap_lock")
                if attempt == SWAP_ATTEMPTS - 1:
                    raise IngestError(f"{stream.name}: cannot swap in the new table, {live} stays busy: {exc}") from exc
        cur.execute("reset lock_timeout")
        cur.execute("select set_config('search_path', 'pg_catalog', true)")  # views' definitions fully qualified
        cur.execute(
            "select distinct v.relkind, quote_ident(n.nspname) || '.' || quote_ident(v.relname),"
            " pg_get_viewdef(v.oid) from pg_depend d join pg_rewrite r on r.oid = d.objid"
            " join pg_class v on v.oid = r.ev_class join pg_namespace n on n.oid = v.relnamespace"
            f" where d.classid = 'pg_rewrite'::regclass and d.refobjid = {literal(self.schema + '.' + stream.name)}::regclass"
            " and v.oid <> d.refobjid"
        )
        dependents = cur.fetchall()
        others = [name for kind, name, _ in dependents if kind != "v"]
        if others:
            raise IngestError(f"{stream.name}: {', '.join(others)} depend(s) on {live} and are not views; drop them"
                              " before a full load (or recreate them after it)")
        cur.execute(f"select relacl::text[] from pg_class where oid = {literal(self.schema + '.' + stream.name)}::regclass")
        acl = cur.fetchone()[0]
        cur.execute(f"alter table {live} rename to {ident(OLD_PREFIX + stream.name)}")
        for index in self.index_names(stream):
            cur.execute(f"drop index if exists {self.q_schema}.{ident(index)}")
        cur.execute(f"alter table {self.table(loaded)} rename to {ident(stream.name)}")
        for index, temporary in zip(self.index_names(stream), self.index_names(stream, loaded), strict=True):
            cur.execute(f"alter index {self.q_schema}.{ident(temporary)} rename to {ident(index)}")
        for _, view, definition in dependents:
            try:
                cur.execute("savepoint rebind")
                cur.execute(f"create or replace view {view} as {definition}")
            except Exception as exc:
                raise IngestError(f"{stream.name}: the view {view} cannot be rebound to the new table ({exc});"
                                  " drop it (dbt recreates it) and run again") from exc
        if acl:
            owner = f"(select relowner from pg_class where oid = {literal(self.schema + '.' + stream.name)}::regclass)"
            cur.execute(
                "select case when a.grantee = 0 then 'public' else quote_ident(a.grantee::regrole::text) end,"
                f" a.privilege_type, a.is_grantable from aclexplode({literal('{' + ','.join(acl) + '}')}::aclitem[]) a"
                f" where a.grantee <> {owner}"
            )
            for who, privilege, grantable in cur.fetchall():
                cur.execute(f"grant {privilege} on {live} to {who}{' with grant option' if grantable else ''}")
        cur.execute(f"drop table {old}")

    def add_columns(self, cur, stream: Stream, columns) -> None:
        """New source columns, added to the live table (nullable, null in the rows already there)."""
        for column in columns:
            cur.execute(f"alter table {self.table(stream.name)} add column if not exists {ident(column.name)} {column.pg_type}")

    def start_incremental(self, cur, stream: Stream) -> str:
        """A temporary staging table for the new rows (with their record ids), dropped at commit."""
        stage = f"_stage_{stream.name}"
        columns = ", ".join(["_airbyte_raw_id varchar"] + [f"{ident(c.name)} {c.pg_type}" for c in stream.columns])
        cur.execute(f"create temporary table {ident(stage)} ({columns}) on commit drop")
        return stage

    def max_key(self, cur, stream: Stream):
        """The largest primary key in the stream's table (None when it is empty): the last entry of its
        primary-key index. Read under the stream's lock, no other sync adds keys until the commit, and
        the engine never deletes a row: a key above it is not in the table."""
        cur.execute(f"select max({ident(stream.primary_key)}) from {self.table(stream.name)}")
        return cur.fetchone()[0]

    def may_change(self, cur, stream: Stream, rows: pa.Table) -> pa.Table:
        """Of ``rows`` (keys the table may hold), those the merge may change: a row the table already
        holds with the same or a later cursor (the lookback read it again, unchanged) is left out, as
        the merge would leave it untouched, so it is neither staged nor probed. A sync every minute with
        the 5-minute lookback reads each change about five times; the staging and the merge now see it
        once.

        The table's keys and cursors between the rows' earliest and latest cursor come from one range
        read of the cursor index, inside the stream's transaction, as one ``bytea`` of their binary
        forms (16 bytes a row; psycopg's per-row work cost four times as much). A key it does not
        return is kept, and the merge decides as before, so the range may miss nothing the merge needs;
        a range holding more than ``MAY_CHANGE_READ_FACTOR`` times the batch's rows keeps them all."""
        if rows.num_rows == 0 or not stream.cursor:
            return rows
        kind = rows.schema.field(stream.cursor).type
        # µs since the Unix epoch (naive values as written, aware ones in UTC), as PostgreSQL's binary
        # form counts them from 2000-01-01
        cursor_us = pc.cast(pc.cast(rows[stream.cursor], pa.timestamp("us", kind.tz)), pa.int64())
        bounds = pc.min_max(cursor_us)
        if not bounds["min"].is_valid:
            return rows
        pg_type = next(c.pg_type for c in stream.columns if c.name == stream.cursor)
        send = "timestamptz_send" if "time zone" in pg_type else "timestamp_send"
        key, cursor = ident(stream.primary_key), ident(stream.cursor)
        at = [f"{pg_type} 'epoch' + {int(bounds[end].as_py())} * interval '1 microsecond'" for end in ("min", "max")]
        # at most `limit` rows: many rows of the table may share the batch's cursor range (one UPDATE
        # stamps all its rows alike), and each batch of such a sync would read them all again. A read
        # that reaches the limit keeps every row (the merge decides, as without this read), so the work
        # stays proportional to the batch
        limit = MAY_CHANGE_READ_FACTOR * rows.num_rows + 1000
        cur.execute(f"select count(*), string_agg(int8send(k) || c, ''::bytea) from (select {key}::bigint as k,"
                    f" {send}({cursor}) as c from {self.table(stream.name)} where {cursor} between {at[0]} and {at[1]}"
                    f" limit {limit}) r", binary=True)
        count, held = cur.fetchone()
        if not held or count >= limit:
            return rows
        pairs = np.frombuffer(held, dtype=np.dtype([("key", ">i8"), ("cursor", ">i8")]))
        keys = pa.array(pairs["key"].astype(np.int64))
        cursors = pa.array(pairs["cursor"].astype(np.int64) + _EPOCH_2000_US)
        found = pc.take(cursors, pc.index_in(pc.cast(rows[stream.primary_key], pa.int64()), value_set=keys))
        # kept: a key not returned, or one the table holds with an older cursor; a null cursor read
        # again is left out where the table holds the key (the merge's comparison is null: no update)
        return rows.filter(pc.or_kleene(pc.is_null(found), pc.less(found, cursor_us)))

    def copy_new_rows(self, cur, stream: Stream, rows: pa.Table, batch: Batch) -> None:
        """COPY rows whose keys are above ``max_key`` straight into the stream's table, with the sync's
        meta values: what the merge would insert for them, without staging them and probing the table
        for each (9.4k new order lines, the insert alone: 76 ms against 117 ms, medians of 16). The rows
        come with their ``_airbyte_raw_id`` first, as for the stage."""
        meta = (
            ("_airbyte_extracted_at", pa.scalar(batch.extracted_at, pa.timestamp("us", tz="UTC"))),
            ("_airbyte_meta", pa.scalar(batch.meta_json, pa.string())),
            ("_airbyte_generation_id", pa.scalar(batch.generation_id, pa.int64())),
        )
        for position, (name, value) in enumerate(meta, start=1):
            rows = rows.add_column(position, name, pa.repeat(value, rows.num_rows))
        self.copy_batches(cur, stream.name, rows.schema, rows.to_batches(), jsonb=["_airbyte_meta"])

    def merge(self, cur, stream: Stream, stage: str, batch: Batch, staged: int = 0, in_table: int = 0) -> tuple[int, int]:
        """Upsert the staged rows: the latest version per primary key replaces an older one (by cursor);
        rows re-read by the lookback window with an unchanged cursor leave the target untouched.
        Returns (inserted, updated)."""
        target = self.table(stream.name)
        pk, cur_col = ident(stream.primary_key), ident(stream.cursor)
        cols = [ident(c) for c in stream.column_names]
        # the record ids come staged (numpy draws them: gen_random_uuid() costs 2 µs a row, more than
        # the rest of the insert)
        meta_values = ["p._airbyte_raw_id", batch.extracted_at_sql, batch.meta_sql, str(batch.generation_id)]
        meta_names = [ident(n) for n, _ in META_COLUMNS]
        assignments = ", ".join(
            [f"{n} = {v}" for n, v in zip(meta_names, meta_values, strict=True)] + [f"{c} = p.{c}" for c in cols]
        )
        # a temporary table has no statistics, and the CTEs would hide them anyway: up to about a quarter
        # of the table, probing the index per key is the faster plan (1M rows, random keys: 0.31 s
        # against the planner's 0.37 s at 5%, 0.84 s against 0.72 s at 30%; a sync's keys are mostly
        # recent, so its probes hit cached pages). Then the plan is set and the stage needs no ANALYZE
        # (40 ms for 30k rows); a larger batch gets statistics and the planner's choice.
        small = staged * 4 < in_table
        if small:
            cur.execute("set local enable_mergejoin = off")
            cur.execute("set local enable_hashjoin = off")
        else:
            cur.execute(f"analyze {ident(stage)}")
        # compiling the statement (its estimated cost passes jit_above_cost) takes longer than running it
        cur.execute("set local jit = off")
        cur.execute("set local work_mem = '64MB'")  # the dedup sort of a few 10k rows stays in memory
        # one probe of the target per staged key: the row found (by its ctid) is updated if older, a key
        # not found is inserted
        cur.execute(
            f"with deduped as (select distinct on ({pk}) * from {ident(stage)} order by {pk}, {cur_col} desc),"
            f" probed as materialized (select d.*, t.ctid as _retailflow_tid, t.{cur_col} as _retailflow_cursor"
            f"  from deduped d left join {target} t on t.{pk} = d.{pk}),"
            f" updated as (update {target} as t set {assignments} from probed p where p._retailflow_tid is not null"
            f"  and t.ctid = p._retailflow_tid and (p._retailflow_cursor is null or p._retailflow_cursor < p.{cur_col}) returning 1),"
            f" inserted as (insert into {target} ({', '.join(meta_names + cols)})"
            f"  select {', '.join(meta_values + ['p.' + c for c in cols])} from probed p"
            "  where p._retailflow_tid is null returning 1)"
            " select (select count(*) from inserted), (select count(*) from updated)"
        )
        inserted, updated = cur.fetchone()
        if small:
            cur.execute("reset enable_mergejoin")
            cur.execute("reset enable_hashjoin")
        return inserted, updated

    def save_state(self, cur, stream: str, cursor: tuple[datetime, int] | None, batch: Batch, rows: int,
                   lake_manifest: dict | None = None, source_identity: str | None = None) -> None:
        """The stream's new cursor (its high-water mark), generation, lake manifest and the identity of
        the source table it was read from; a pending full refresh of it is done. Called last in the
        stream's transaction."""
        cursor_sql = ("null", "null") if cursor is None else (literal(cursor[0].isoformat()), str(int(cursor[1])))
        manifest_sql = "null" if lake_manifest is None else literal(json.dumps(lake_manifest)) + "::jsonb"
        identity_sql = "null" if source_identity is None else literal(source_identity)
        cur.execute(
            f"insert into {self.table(STATE_TABLE)} as s"
            " (stream, cursor_value, cursor_pk, generation_id, sync_id, rows_in_table, synced_at, lake_manifest,"
            " source_identity)"
            f" values ({literal(stream)}, {cursor_sql[0]}, {cursor_sql[1]}, {batch.generation_id}, {batch.sync_id},"
            f" {rows}, now(), {manifest_sql}, {identity_sql})"
            " on conflict (stream) do update set cursor_value = excluded.cursor_value,"
            " cursor_pk = excluded.cursor_pk, generation_id = excluded.generation_id, sync_id = excluded.sync_id,"
            " rows_in_table = excluded.rows_in_table, synced_at = excluded.synced_at,"
            " lake_manifest = excluded.lake_manifest, source_identity = excluded.source_identity"
        )
        cur.execute(f"delete from {self.table(PENDING_TABLE)} where stream = {literal(stream)}")

    def ingest(self, cur, table: str, data: pa.Table) -> None:
        """COPY an Arrow table into ``table`` (matching columns by name), inside the open transaction."""
        self.copy_batches(cur, table, data.schema, data.to_batches())

    def ingest_text(self, cur, table: str, data: pa.Table) -> None:
        """COPY an Arrow table in CSV form, decimals without trailing fractional zeros (the store CSV)."""
        import pyarrow.csv as pa_csv  # loaded by runs that load the store CSV only

        buf = io.BytesIO()
        pa_csv.write_csv(_trim_decimals(data), buf, pa_csv.WriteOptions(include_header=False))
        columns = ", ".join(ident(c) for c in data.column_names)
        with cur.copy(f"copy {self.table(table)} ({columns}) from stdin (format csv)") as copy:
            copy.write(buf.getbuffer())

    def copy_batches(self, cur, table: str, schema: pa.Schema, batches: Iterable[pa.RecordBatch], *,
                     temporary: bool = False, freeze: bool = False, jsonb: Iterable[str] = ()) -> None:
        """One binary ``COPY`` into ``table`` (columns matched by name) fed batch by batch, so the next
        batch can be read while this one is written. ``freeze``: the table was created or emptied in
        this transaction (PostgreSQL refuses it otherwise). ``jsonb``: string columns written as
        ``jsonb`` (its binary form). An exception raised by ``batches`` aborts the COPY and is raised
        as it is."""
        target = ident(table) if temporary else self.table(table)
        columns = ", ".join(ident(name) for name in schema.names)
        encoder = _encoder(schema, set(jsonb))
        with cur.copy(f"copy {target} ({columns}) from stdin (format binary{', freeze' if freeze else ''})") as copy:
            copy.write(encoder.write_header())
            for batch in batches:
                copy.write(encoder.write_batch(batch))
            copy.write(encoder.finish())

    # --- indexes and defaults ----------------------------------------------------------------------

    @staticmethod
    def index_names(stream: Stream, table: str | None = None) -> list[str]:
        base = table or stream.name
        names = [f"{base}_pk_idx", f"{base}_extracted_at_idx"]
        if stream.cursor:
            names.append(f"{base}_cursor_idx")
        return names

    def create_indexes(self, cur, stream: Stream, table: str | None = None) -> None:
        """The indexes destination-postgres creates for a deduped stream: primary key, cursor and
        ``_airbyte_extracted_at`` (plain b-tree indexes, no constraints)."""
        target = self.table(table or stream.name)
        pk_idx, extracted_idx, *cursor_idx = self.index_names(stream, table)
        cur.execute(f"create index if not exists {ident(pk_idx)} on {target} ({ident(stream.primary_key)})")
        if cursor_idx:
            cur.execute(f"create index if not exists {ident(cursor_idx[0])} on {target} ({ident(stream.cursor)})")
        cur.execute(f"create index if not exists {ident(extracted_idx)} on {target} (_airbyte_extracted_at)")

    @staticmethod
    def _set_defaults(cur, target: str, batch: Batch) -> None:
        cur.execute(
            f"alter table {target}"
            f" alter column _airbyte_extracted_at set default {batch.extracted_at_sql},"
            f" alter column _airbyte_meta set default {batch.meta_sql},"
            f" alter column _airbyte_generation_id set default {batch.generation_id}"
        )

    @staticmethod
    def _drop_defaults(cur, target: str) -> None:
        cur.execute(
            f"alter table {target} alter column _airbyte_extracted_at drop default,"
            " alter column _airbyte_meta drop default,"
            " alter column _airbyte_generation_id drop default"
        )
