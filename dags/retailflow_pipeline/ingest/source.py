"""The MySQL side: connection check, stream discovery (Airbyte's "catalog") and Arrow reads.

Reads go through connectorx, which decodes MySQL rows straight into Arrow in Rust; each chunk is then
cast to the Arrow types that map onto the warehouse column types (see ``ColumnType``).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from urllib.parse import unquote, urlsplit, urlunsplit

import connectorx as cx
import pyarrow as pa
import pyarrow.compute as pc
import pymysql

from retailflow_pipeline.ingest.errors import IngestError

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
    raise IngestError(f"column type {column_type!r} is not supported by the local engine")


class MySQLSource:
    """A MySQL/MariaDB database named by a ``mysql://USER:PASSWORD@HOST:PORT/DATABASE`` URL."""

    def __init__(self, url: str):
        parts = urlsplit(url)
        if parts.scheme not in ("mysql", "mysql+pymysql", "mariadb") or not parts.hostname or len(parts.path) < 2:
            raise IngestError("the MySQL URL must look like mysql://USER:PASSWORD@HOST:PORT/DATABASE")
        self.host = parts.hostname
        self.port = parts.port or 3306
        self.user = unquote(parts.username or "")
        self.password = unquote(parts.password or "")
        self.database = unquote(parts.path.lstrip("/"))
        self.cx_url = urlunsplit(("mysql", parts.netloc, parts.path, "", ""))
        self.estimated_rows: dict[str, int] = {}
        self.clock_at_discovery: datetime | None = None

    def describe(self) -> str:
        return f"mysql://{self.user}@{self.host}:{self.port}/{self.database}"

    def connect(self) -> pymysql.connections.Connection:
        try:
            return pymysql.connect(
                host=self.host,
                port=self.port,
                user=self.user,
                password=self.password,
                database=self.database,
                connect_timeout=10,
                autocommit=True,
            )
        except pymysql.MySQLError as exc:
            raise IngestError(f"cannot connect to the source {self.describe()}: {exc.args[-1]}") from exc

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
                # InnoDB's row estimates, to start the largest tables first, and the server's clock
                # in UTC, the time zone of every updated_at (see schema.sql), before any read
                cur.execute(
                    "select table_name, table_rows, utc_timestamp(6) from information_schema.tables"
                    " where table_schema = %s",
                    (self.database,),
                )
                tables = cur.fetchall()
                self.estimated_rows = {name: rows or 0 for name, rows, _ in tables}
                if tables:
                    self.clock_at_discovery = tables[0][2]
        finally:
            conn.close()
        by_table: dict[str, list[ColumnType]] = {}
        unsupported: set[str] = set()
        keys: dict[str, list[str]] = {}
        for table, column, data_type, column_type, precision, scale, is_key in columns:
            if is_key:
                keys.setdefault(table, []).append(column)
            try:
                pg_type, arrow_type = mysql_type(data_type, column_type, precision, scale)
            except IngestError:
                unsupported.add(table)  # not a stream; naming it in --streams reports it unknown
                continue
            by_table.setdefault(table, []).append(ColumnType(column, pg_type, arrow_type))
        streams = {}
        for table, cols in by_table.items():
            if table in unsupported:
                continue
            pk = keys.get(table, [])
            pk_types = [c.pg_type for c in cols if c.name in pk]
            # chunked reads page on an integer key and order by (updated_at, key)
            if pk_types != ["bigint"] or CURSOR not in (c.name for c in cols) or not _IDENT.match(table):
                continue
            streams[table] = Stream(table, pk[0], tuple(cols))
        return streams

    def read(self, query: str, stream: Stream) -> pa.Table:
        try:
            table = cx.read_sql(self.cx_url, query, return_type="arrow")
        except RuntimeError as exc:
            raise IngestError(f"reading {stream.name} from {self.describe()} failed: {exc}") from exc
        if table.num_rows == 0:
            return stream.arrow_schema.empty_table()
        return table.select(stream.column_names).cast(stream.arrow_schema)

    def full_chunks(self, stream: Stream, batch_rows: int) -> Iterator[pa.Table]:
        """The whole table in primary-key order: a clustered-index scan, the cheapest full read."""
        cols = ", ".join(f"`{c}`" for c in stream.column_names)
        pk = stream.primary_key
        last = None
        while True:
            where = "" if last is None else f"where `{pk}` > {int(last)} "
            chunk = self.read(f"select {cols} from `{stream.name}` {where}order by `{pk}` limit {batch_rows}", stream)
            if chunk.num_rows:
                yield chunk
            if chunk.num_rows < batch_rows:
                return
            last = pc.max(chunk[pk]).as_py()

    def incremental_chunks(
        self, stream: Stream, since: tuple[datetime, int] | None, lookback: timedelta, batch_rows: int
    ) -> Iterator[pa.Table]:
        """Rows at or after the cursor, in ``(updated_at, pk)`` order (the ``ix_*_updated`` index).

        The first chunk starts ``lookback`` before the saved cursor so that rows committed late with an
        older ``updated_at`` are still picked up; later chunks continue strictly after the last row read.
        """
        cols = ", ".join(f"`{c}`" for c in stream.column_names)
        pk, cur = stream.primary_key, stream.cursor
        if since is None:
            where = ""
        elif lookback > timedelta(0):
            where = f"where `{cur}` >= '{_sql_ts(since[0] - lookback)}' "
        else:
            where = _after(cur, pk, since)
        while True:
            chunk = self.read(
                f"select {cols} from `{stream.name}` {where}order by `{cur}`, `{pk}` limit {batch_rows}", stream
            )
            if chunk.num_rows:
                yield chunk
            if chunk.num_rows < batch_rows:
                return
            where = _after(cur, pk, max_cursor(chunk, stream))


def _sql_ts(value: datetime) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S.%f")


def _after(cursor: str, pk: str, since: tuple[datetime, int]) -> str:
    ts = _sql_ts(since[0])
    return f"where (`{cursor}` > '{ts}' or (`{cursor}` = '{ts}' and `{pk}` > {int(since[1])})) "


def max_cursor(chunk: pa.Table, stream: Stream) -> tuple[datetime, int] | None:
    """The largest ``(updated_at, pk)`` pair in a chunk."""
    if chunk.num_rows == 0:
        return None
    top = pc.max(chunk[stream.cursor])
    pks = pc.filter(chunk[stream.primary_key], pc.equal(chunk[stream.cursor], top))
    return top.as_py(), pc.max(pks).as_py()
