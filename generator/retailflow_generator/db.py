"""MySQL access: connection from a URL, the schema, and bulk loads with `LOAD DATA LOCAL INFILE`."""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from importlib.resources import files
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pymysql

from .catalog import PORTS, PRIMARY_KEYS, TABLES


class GeneratorError(RuntimeError):
    """A problem the user can fix (unreachable database, non-empty tables): exit code 1."""


class UsageError(GeneratorError):
    """Bad input, refused before any database is touched: exit code 2 (as argparse's own errors)."""


#: the URL shape messages name (never a URL itself: it carries the password), and the schemes taken
MYSQL_SHAPE = "mysql://USER:PASSWORD@HOST:PORT/DATABASE"
MYSQL_SCHEMES = ("mysql", "mysql+pymysql", "mariadb")


# The twin of retailflow_ingest.errors.url_problem (dags/retailflow_ingest/errors.py), which the
# ingestion engine, the audit, the report and governance use: this package is installed on its own and
# cannot import that one. Same faults, same words (ports 1 to 65535); tests/unit/pipeline/test_url_checks.py
# fails when the two drift apart, so change both together.
def url_problem(url: str, what: str, shape: str, schemes: tuple[str, ...], *, needs_database: bool = False,
                password_env: str | None = None) -> str | None:
    """Why ``url`` is not a URL of ``shape``, or None: its scheme one of ``schemes``, a host, a port
    from 1 to 65535 if any, with ``needs_database`` a database. With ``password_env`` the URL came on
    a command line, which every user can read: a password in it is a problem too (it belongs in
    ``password_env``), and the shape named is the one without. ``what`` names the URL as the user gave
    it (``the MySQL URL``, ``--mysql-url``). The answer never quotes the URL nor any part of it: a
    password with a stray ``/`` or ``#`` ends up in the host or port.

    Where ``shape`` has a user, a ``/``, ``?``, ``#`` or ``@`` written as such in the user or password
    is the fault named (each must be percent-encoded): a ``/``, ``?`` or ``#`` ends the host part
    before its ``@``, making the password a host or port, and a second ``@`` is split differently by
    urllib (the last) and libpq (the first). It shows as two ``@`` in the host part or one after it
    (in the path, the query or the fragment: an ``@`` in the database or a parameter is written %40 too,
    else a password holding ``?`` or ``/`` and an ``@`` after it would pass for a parameter)."""
    if password_env:
        shape = shape.replace(":PASSWORD@", "@")

    def fault(text: str) -> str:
        return f"{what} {text}: it must look like {shape}"

    carries_password = (f"{what} carries a password, which every user can read in the process list;"
                        f" set ${password_env} instead")
    scheme, sep, rest = url.partition("://")
    if not sep or scheme.lower() not in schemes:
        starts = [f"{s}://" for s in schemes]
        either = starts[0] if len(starts) == 1 else f"{', '.join(starts[:-1])} or {starts[-1]}"
        return fault(f"does not start with {either}")

    # the host part ends at the first / ? or #, as urlsplit splits it
    host_part = re.split(r"[/?#]", rest, maxsplit=1)[0]
    after = rest[len(host_part):]
    # any @ but the one that ends the user and password: libpq splits at the first (and looks for it up
    # to the first /, past a ? or #), urllib at the last; a URL is taken only where both agree
    if "@" in shape and (host_part.count("@") > 1 or "@" in after):
        if password_env and ":" in rest.partition("@")[0]:
            return carries_password
        held = ("its user holds a /, #, ?, @ or :, which must be percent-encoded: / as %2F, # as %23,"
                " ? as %3F, @ as %40, : as %3A") if password_env else (
                "its user or password holds a /, #, ? or @, which must be percent-encoded: / as %2F,"
                " # as %23, ? as %3F, @ as %40; a : in the user as %3A")
        return fault(f"is malformed ({held}; an @ in the database or a parameter is written %40)")
    try:
        parts = urlsplit(url)
    except ValueError as exc:  # raised for the host's brackets only; its text quotes the host
        return fault("is malformed (an unbalanced [ or ] in its host)" if "IPv6 URL" in str(exc)
                     else "is malformed (its host in [ ] is not an IP address)")
    try:
        port = parts.port
    except ValueError:  # its text quotes the "port", which is the password when a / in it cut the URL short
        port = 0
    if port == 0:  # 0 parses, but no server listens on it
        return fault("is malformed (its port is not a number from 1 to 65535)")
    if not parts.hostname:
        return fault("names no host")
    if any(c.isspace() or not c.isprintable() for c in parts.hostname):
        return fault("is malformed (a space or control character in its host)")
    if needs_database and not parts.path.strip("/"):
        return fault("names no database")
    # libpq also takes a password as a parameter (?password=...)
    parameters = [unquote(pair.partition("=")[0]) for pair in re.split(r"[&;]", parts.query)]
    if password_env and (parts.password or "password" in parameters):
        return carries_password
    # libpq refuses a % not followed by two hex digits and quotes the whole value in its message,
    # the password included; urllib and pymysql keep it as it stands: a URL is taken only where all agree
    if re.search(r"%(?![0-9A-Fa-f]{2})", url):
        return fault("is malformed (a % in it is not followed by two hexadecimal digits: a % must start a"
                     " percent-encoding such as %25 for % itself)")
    return None


@dataclass(frozen=True)
class MySQLTarget:
    host: str
    port: int
    user: str
    password: str = field(repr=False)  # a repr lands in tracebacks and logs
    database: str

    @classmethod
    def from_url(cls, url: str | None) -> MySQLTarget:
        """The target of a ``mysql://USER:PASSWORD@HOST:PORT/DATABASE`` URL. Anything malformed is bad
        input (UsageError, exit 2), refused before anything connects, and never echoed: it may hold a
        password."""
        if not url:
            raise UsageError("no database: set RETAILFLOW_MYSQL_URL (or pass --mysql-url without a password)")
        problem = url_problem(url, "the MySQL URL", MYSQL_SHAPE, MYSQL_SCHEMES, needs_database=True)
        if problem:
            raise UsageError(problem)
        parts = urlsplit(url)
        return cls(
            host=parts.hostname,
            port=parts.port or PORTS["mysql"],
            user=unquote(parts.username or ""),
            password=unquote(parts.password or ""),
            database=unquote(parts.path.lstrip("/")),
        )

    def describe(self) -> str:
        """Where, without the password."""
        return f"mysql://{self.user}@{self.host}:{self.port}/{self.database}"


def connect(target: MySQLTarget) -> pymysql.connections.Connection:
    try:
        return pymysql.connect(
            host=target.host,
            port=target.port,
            user=target.user,
            password=target.password,
            database=target.database,
            charset="utf8mb4",
            autocommit=False,
            local_infile=True,
            connect_timeout=10,
            # timestamps are UTC (see schema.sql): ON UPDATE current_timestamp(6) must be UTC too
            init_command="set time_zone = '+00:00'",
        )
    except pymysql.err.MySQLError as exc:
        raise GeneratorError(f"cannot connect to {target.describe()}: {exc.args[-1] if exc.args else exc}") from exc


def schema_statements() -> list[str]:
    text = files("retailflow_generator").joinpath("schema.sql").read_text(encoding="utf-8")
    lines = [line for line in text.splitlines() if not line.lstrip().startswith("--")]
    return [stmt.strip() for stmt in "\n".join(lines).split(";") if stmt.strip()]


#: suffixes of the tables `seed --truncate` loads into and of the ones it swaps out
SHADOW = "__new"
RETIRED = "__old"


def shadow_statements(suffix: str = SHADOW) -> list[str]:
    """The schema with every table (and every reference) renamed `<table><suffix>`."""
    names = "|".join(TABLES)
    out = []
    for statement in schema_statements():
        statement = re.sub(rf"create table if not exists ({names})\b", rf"create table \1{suffix}", statement)
        out.append(re.sub(rf"references ({names})\b", rf"references \1{suffix}", statement))
    return out


def drop_tables(conn: pymysql.connections.Connection, suffix: str) -> None:
    """Drop `<table><suffix>` for the four tables if they exist (children first)."""
    with conn.cursor() as cur:
        cur.execute("drop table if exists " + ", ".join(f"`{t}{suffix}`" for t in reversed(TABLES)))


def abandon(conn: pymysql.connections.Connection) -> None:
    """Close a connection that may be broken: a Ctrl-C inside PyMySQL (pure Python) can land between
    a packet's header and its body, after which every call on the connection fails in its own way
    (``ValueError``, ``IndexError``, …). Nothing is sent; the server rolls its transaction back."""
    try:
        conn._force_close()
    except Exception:  # already closed
        pass


def end_session(conn: pymysql.connections.Connection, thread_id: int, wait: float = 30.0) -> None:
    """Kill the server session ``thread_id`` (one of this user's) and wait until it is gone, so that
    its statement has finished or been rolled back and its locks are released."""
    import time

    with conn.cursor() as cur:
        try:
            cur.execute(f"kill {int(thread_id)}")
        except pymysql.err.MySQLError:
            pass  # already ended
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            cur.execute("select count(*) from information_schema.processlist where id = %s", (int(thread_id),))
            if not cur.fetchone()[0]:
                return
            time.sleep(0.05)


def leftover_tables(conn: pymysql.connections.Connection) -> dict[str, list[str]]:
    """The seed's own tables with a suffix (``SHADOW``, ``RETIRED``) in the database, by suffix."""
    names = {f"{t}{suffix}": suffix for t in TABLES for suffix in (SHADOW, RETIRED)}
    with conn.cursor() as cur:
        cur.execute("select table_name from information_schema.tables where table_schema = database()")
        found = [r[0] for r in cur.fetchall() if r[0] in names]
    return {suffix: sorted(n for n in found if names[n] == suffix) for suffix in (SHADOW, RETIRED)}


def swap_in_shadow_tables(conn: pymysql.connections.Connection) -> bool:
    """Atomically replace the four tables by their shadows (one RENAME TABLE), then drop the old
    ones; True once swapped.

    RENAME TABLE of several tables is atomic in MariaDB and MySQL: a reader sees either every old
    table or every new one. Old tables left by an interruption after the swap are dropped by the
    next seed."""
    pairs = [f"`{t}` to `{t}{RETIRED}`, `{t}{SHADOW}` to `{t}`" for t in TABLES]
    with conn.cursor() as cur:
        cur.execute("rename table " + ", ".join(pairs))
    try:
        drop_tables(conn, RETIRED)
    except pymysql.err.MySQLError:
        pass  # the new data is in; the next seed drops the leftovers
    return True


def ensure_schema(conn: pymysql.connections.Connection) -> None:
    """Create the four tables if they are missing (DDL: commits on its own, writes no rows)."""
    with conn.cursor() as cur:
        for statement in schema_statements():
            cur.execute(statement)
    conn.commit()


def missing_tables(conn: pymysql.connections.Connection) -> list[str]:
    """Which of the four tables the database does not have (yet)."""
    with conn.cursor() as cur:
        cur.execute("select table_name from information_schema.tables where table_schema = database()")
        present = {r[0] for r in cur.fetchall()}
    return [t for t in TABLES if t not in present]


def row_counts(conn: pymysql.connections.Connection) -> dict[str, int]:
    """Rows per table; a missing table counts 0 (and is not created here)."""
    missing = set(missing_tables(conn))
    counts = {}
    with conn.cursor() as cur:
        for table in TABLES:
            if table in missing:
                counts[table] = 0
                continue
            cur.execute(f"select count(*) from {table}")
            counts[table] = int(cur.fetchone()[0])
    return counts


def max_ids(conn: pymysql.connections.Connection) -> dict[str, int]:
    ids = {}
    with conn.cursor() as cur:
        for table, key in PRIMARY_KEYS.items():
            cur.execute(f"select coalesce(max({key}), 0) from {table}")
            ids[table] = int(cur.fetchone()[0])
    return ids


def load_data_sql(table: str, columns: list[str], extra_set: str = "") -> str:
    cols = ", ".join(columns)
    return (
        f"load data local infile %s into table {table} character set utf8mb4 "
        rf"fields terminated by '\t' escaped by '\\' lines terminated by '\n' ({cols})"
        + (f" set {extra_set}" if extra_set else "")
    )


class MemoryFile:
    """A load file with no name on disk (memfd), so no exit, not even SIGKILL, leaves it behind.

    The client reads it through `/proc/self/fd/<n>`; it is gone once closed (or the process ends).
    """

    def __init__(self, data: bytes):
        if hasattr(os, "memfd_create"):
            self._fd = os.memfd_create("retailflow-seed", os.MFD_CLOEXEC)
        else:  # pragma: no cover - not Linux: an unnamed temporary file does the same
            import tempfile

            self._fd = os.dup(tempfile.TemporaryFile().fileno())
        view = memoryview(data)
        while view:
            view = view[os.write(self._fd, view):]

    @property
    def path(self) -> str:
        return f"/proc/self/fd/{self._fd}"

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


def load_file(conn: pymysql.connections.Connection, sql: str, path: str | Path, expected_rows: int) -> None:
    """Run one LOAD DATA LOCAL and insist that every row landed.

    With LOCAL the server cannot stop the client mid-file, so MySQL downgrades bad rows (duplicate
    keys, conversion errors) to warnings and skips them; a count or warning mismatch is an error here.
    """
    with conn.cursor() as cur:
        loaded = cur.execute(sql, (str(path),))
        warnings = cur.warning_count
        if warnings:
            cur.execute("show warnings limit 3")
            detail = "; ".join(str(row[2]) for row in cur.fetchall())
            raise GeneratorError(f"loading {expected_rows} rows produced {warnings} warnings: {detail}")
    if loaded != expected_rows:
        raise GeneratorError(f"loaded {loaded} rows where {expected_rows} were generated")


class Loader:
    """Loads chunks on one background thread so that generating chunk n+1 overlaps the server's
    work on chunk n. At most `depth` chunks wait; each one's memory file is closed once loaded."""

    def __init__(self, conn: pymysql.connections.Connection, depth: int = 2, check: Callable[[], None] | None = None):
        self._conn = conn
        self._check = check  # called before each chunk (on the caller's thread): raises to stop
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="load-data")
        self._pending: list[Future] = []
        self._depth = depth

    def _load(self, sql: str, file: MemoryFile, expected_rows: int, on_done) -> None:
        try:
            load_file(self._conn, sql, file.path, expected_rows)
        finally:
            file.close()
        if on_done:
            on_done()

    def submit(self, sql: str, data: bytes, expected_rows: int, on_done: Callable[[], None] | None = None) -> None:
        """Queue a load of `data` (tab-separated rows); `on_done` runs (on the loader thread) once
        its rows are in."""
        if self._check is not None:
            self._check()
        file = MemoryFile(data)
        self._pending.append((self._pool.submit(self._load, sql, file, expected_rows, on_done), file))
        while len(self._pending) > self._depth:
            self._pending.pop(0)[0].result()

    def drain(self) -> None:
        while self._pending:
            self._pending.pop(0)[0].result()

    def close(self) -> None:
        """Stop: chunks not yet started are dropped, the one loading is waited for (errors
        discarded: the caller is already failing or done)."""
        for future, file in self._pending:
            if future.cancel():
                file.close()
        for future, _file in self._pending:
            if not future.cancelled():
                future.exception()
        self._pending.clear()
        self._pool.shutdown(wait=True)


def env_url() -> str | None:
    return os.environ.get("RETAILFLOW_MYSQL_URL")
