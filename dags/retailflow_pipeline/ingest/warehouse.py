"""The PostgreSQL side: Airbyte-shaped typed tables, the merge, and the cursor state.

Everything for one stream happens on one connection inside one transaction, so rows and cursor state
become visible together or not at all. Full loads use ADBC (``adbc_ingest`` is a binary ``COPY``
from Arrow within the open transaction); incremental syncs use psycopg (``COPY … (format csv)``
from pyarrow's CSV writer), whose connection is cheaper to open.
"""

from __future__ import annotations

import io
import json
import re
from dataclasses import dataclass
from datetime import datetime
from urllib.parse import urlsplit

import adbc_driver_postgresql.dbapi as adbc_pg
import psycopg
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv

from retailflow_pipeline.ingest.errors import IngestError
from retailflow_pipeline.ingest.source import Stream

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
#: one value per run, shared by its streams: the ``sync_id`` in ``_airbyte_meta``
SYNC_SEQUENCE = "_retailflow_ingest_sync_id"
_IDENT = re.compile(r"^[a-z_][a-z0-9_]*$")


def ident(name: str) -> str:
    if not _IDENT.match(name):
        raise IngestError(f"{name!r} is not a plain lowercase SQL identifier")
    return f'"{name}"'


def _trim_decimals(data: pa.Table) -> pa.Table:
    """Decimals as text without trailing fractional zeros (9.90 → 9.9, 10.00 → 10): what ADBC's binary
    numeric writer stores, so both load paths leave identical values."""
    for i, field in enumerate(data.schema):
        if pa.types.is_decimal(field.type) and field.type.scale > 0:
            text = pc.cast(data.column(i), pa.string())
            text = pc.replace_substring_regex(text, r"(\.[0-9]*?)0+$", r"\1")
            text = pc.replace_substring_regex(text, r"\.$", "")
            data = data.set_column(i, field.name, text)
    return data


def literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


@dataclass(frozen=True)
class Batch:
    """The meta values every row written by one stream's sync carries."""

    extracted_at: datetime
    sync_id: int
    generation_id: int

    @property
    def meta_sql(self) -> str:
        return literal(json.dumps({"changes": [], "sync_id": self.sync_id})) + "::jsonb"

    @property
    def extracted_at_sql(self) -> str:
        return literal(self.extracted_at.isoformat()) + "::timestamptz"


@dataclass(frozen=True)
class State:
    cursor: tuple[datetime, int] | None
    generation_id: int
    sync_id: int
    rows_in_table: int


class Warehouse:
    def __init__(self, url: str, schema: str = "raw"):
        parts = urlsplit(url)
        if parts.scheme not in ("postgresql", "postgres") or not parts.hostname:
            raise IngestError("the warehouse URL must look like postgresql://USER:PASSWORD@HOST:PORT/DATABASE")
        self.url = url
        self.schema = schema
        self.q_schema = ident(schema)
        self._where = f"postgresql://{parts.username}@{parts.hostname}:{parts.port or 5432}{parts.path}"

    def describe(self) -> str:
        return self._where

    def connect(self, bulk: bool = True):
        """An ADBC connection for bulk loads (binary COPY straight from Arrow), or a psycopg one for
        small syncs: it connects several times faster, which dominates an incremental run."""
        try:
            if bulk:
                return adbc_pg.connect(self.url)
            return psycopg.connect(self.url, connect_timeout=10)
        except Exception as exc:  # each driver raises its own error classes for every failure
            raise IngestError(f"cannot connect to the warehouse {self.describe()}: {exc}") from exc

    def table(self, name: str) -> str:
        return f"{self.q_schema}.{ident(name)}"

    def prepare(self, conn) -> int:
        """Create the raw schema, state table and sync sequence if needed; return this run's sync id."""
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
            cur.execute(f"create sequence if not exists {self.table(SYNC_SEQUENCE)}")
            cur.execute(f"select nextval('{self.schema}.{SYNC_SEQUENCE}')")
            sync_id = cur.fetchone()[0]
        conn.commit()
        return sync_id

    def synced_streams(self, conn) -> set[str]:
        """Streams with a saved state and a table: the next sync reads them incrementally."""
        with conn.cursor() as cur:
            cur.execute(
                f"select s.stream from {self.table(STATE_TABLE)} s join information_schema.tables t"
                f" on t.table_schema = {literal(self.schema)} and t.table_name = s.stream"
            )
            names = {r[0] for r in cur.fetchall()}
        conn.commit()
        return names

    # --- inside a stream's transaction -------------------------------------------------------------

    def lock_and_read_state(self, cur, stream: str) -> State | None:
        """Serialise concurrent runs per stream, then read the committed cursor."""
        # rows and cursor commit together, so losing the last commit in a server crash only means the
        # next run redoes that sync; not waiting for the WAL flush saves a disk round trip per stream
        cur.execute("set local synchronous_commit = off")
        cur.execute(f"select pg_advisory_xact_lock(hashtext({literal(self.schema + '.' + stream)}))")
        cur.fetchall()
        cur.execute(
            f"select cursor_value, cursor_pk, generation_id, sync_id, rows_in_table from {self.table(STATE_TABLE)}"
            f" where stream = {literal(stream)}"
        )
        row = cur.fetchone()
        if row is None:
            return None
        cursor = None if row[0] is None else (row[0], row[1])
        return State(cursor, row[2], row[3], row[4] or 0)

    def existing_columns(self, cur, stream: str) -> list[str]:
        cur.execute(
            "select attname from pg_attribute where attrelid ="
            f" to_regclass({literal(self.schema + '.' + stream)}) and attnum > 0 and not attisdropped order by attnum"
        )
        return [r[0] for r in cur.fetchall()]

    def start_full_load(self, cur, stream: Stream, batch: Batch) -> None:
        """An empty target ready for COPY: created, or truncated in place (dbt's views on it survive),
        with indexes dropped for the bulk load. The meta values shared by every row of the batch are
        column defaults for the duration of the load, so the COPY carries only ``_airbyte_raw_id`` and
        the stream's columns."""
        target = self.table(stream.name)
        existing = self.existing_columns(cur, stream.name)
        if not existing:
            columns = [f"{ident(n)} {t}" for n, t in META_COLUMNS] + [
                f"{ident(c.name)} {c.pg_type}" for c in stream.columns
            ]
            cur.execute(f"create table {target} ({', '.join(columns)})")
        else:
            cur.execute(f"truncate table {target}")
            for column in stream.columns:
                if column.name not in existing:
                    cur.execute(f"alter table {target} add column {ident(column.name)} {column.pg_type}")
            for index in self.index_names(stream):
                cur.execute(f"drop index if exists {self.q_schema}.{ident(index)}")
        self._set_defaults(cur, target, batch)

    def finish_full_load(self, cur, stream: Stream) -> None:
        target = self.table(stream.name)
        self._drop_defaults(cur, target)
        # sorting a million keys in memory instead of spilling to disk: the default 64MB is too small
        cur.execute("set local maintenance_work_mem = '256MB'")
        self.create_indexes(cur, stream)

    def start_incremental(self, cur, stream: Stream) -> str:
        """A temporary staging table for the new rows, dropped at commit."""
        stage = f"_stage_{stream.name}"
        columns = ", ".join(f"{ident(c.name)} {c.pg_type}" for c in stream.columns)
        cur.execute(f"create temporary table {ident(stage)} ({columns}) on commit drop")
        return stage

    def merge(self, cur, stream: Stream, stage: str, batch: Batch) -> tuple[int, int]:
        """Upsert the staged rows: the latest version per primary key replaces an older one (by cursor);
        rows re-read by the lookback window with an unchanged cursor leave the target untouched.
        Returns (inserted, updated)."""
        target = self.table(stream.name)
        pk, cur_col = ident(stream.primary_key), ident(stream.cursor)
        cols = [ident(c) for c in stream.column_names]
        meta_values = ["gen_random_uuid()::varchar", batch.extracted_at_sql, batch.meta_sql, str(batch.generation_id)]
        meta_names = [ident(n) for n, _ in META_COLUMNS]
        assignments = ", ".join(
            [f"{n} = {v}" for n, v in zip(meta_names, meta_values, strict=True)] + [f"{c} = d.{c}" for c in cols]
        )
        cur.execute(
            f"with deduped as (select distinct on ({pk}) * from {ident(stage)} order by {pk}, {cur_col} desc),"
            f" updated as (update {target} as t set {assignments} from deduped d"
            f"  where t.{pk} = d.{pk} and (t.{cur_col} is null or t.{cur_col} < d.{cur_col}) returning 1),"
            f" inserted as (insert into {target} ({', '.join(meta_names + cols)})"
            f"  select {', '.join(meta_values + ['d.' + c for c in cols])} from deduped d"
            f"  where not exists (select 1 from {target} t where t.{pk} = d.{pk}) returning 1)"
            " select (select count(*) from inserted), (select count(*) from updated)"
        )
        inserted, updated = cur.fetchone()
        return inserted, updated

    def save_state(self, cur, stream: str, cursor: tuple[datetime, int] | None, batch: Batch, rows: int) -> None:
        cursor_sql = ("null", "null") if cursor is None else (literal(cursor[0].isoformat()), str(int(cursor[1])))
        cur.execute(
            f"insert into {self.table(STATE_TABLE)} as s"
            " (stream, cursor_value, cursor_pk, generation_id, sync_id, rows_in_table, synced_at) values"
            f" ({literal(stream)}, {cursor_sql[0]}, {cursor_sql[1]}, {batch.generation_id}, {batch.sync_id},"
            f" {rows}, now())"
            " on conflict (stream) do update set cursor_value = excluded.cursor_value,"
            " cursor_pk = excluded.cursor_pk, generation_id = excluded.generation_id, sync_id = excluded.sync_id,"
            " rows_in_table = excluded.rows_in_table, synced_at = excluded.synced_at"
        )

    def ingest(self, cur, table: str, data: pa.Table, *, temporary: bool = False) -> None:
        """COPY an Arrow table into ``table`` (matching columns by name), inside the open transaction."""
        if isinstance(cur, psycopg.Cursor):
            buf = io.BytesIO()
            pa_csv.write_csv(_trim_decimals(data), buf, pa_csv.WriteOptions(include_header=False))
            target = ident(table) if temporary else self.table(table)
            columns = ", ".join(ident(c) for c in data.column_names)
            with cur.copy(f"copy {target} ({columns}) from stdin (format csv)") as copy:
                copy.write(buf.getbuffer())
        elif temporary:
            cur.adbc_ingest(table, data, mode="append", temporary=True)
        else:
            cur.adbc_ingest(table, data, mode="append", db_schema_name=self.schema)

    # --- indexes and defaults ----------------------------------------------------------------------

    @staticmethod
    def index_names(stream: Stream) -> list[str]:
        names = [f"{stream.name}_pk_idx", f"{stream.name}_extracted_at_idx"]
        if stream.cursor:
            names.append(f"{stream.name}_cursor_idx")
        return names

    def create_indexes(self, cur, stream: Stream) -> None:
        """The indexes destination-postgres creates for a deduped stream: primary key, cursor and
        ``_airbyte_extracted_at`` (plain b-tree indexes, no constraints)."""
        target = self.table(stream.name)
        pk_idx, extracted_idx, *cursor_idx = self.index_names(stream)
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
