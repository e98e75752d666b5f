"""Pieces of the ingestion engine that need no server: type mapping, record ids, stream selection, the
store locations CSV checks and the CLI's argument errors."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from datetime import datetime
from decimal import Decimal

import numpy as np
import pyarrow as pa
import pytest

from retailflow_ingest.engine import resolve_streams, uuid4_array
from retailflow_ingest.errors import IngestError
from retailflow_ingest.source import Stream, max_cursor, mysql_type
from retailflow_ingest.stores import parse


@pytest.mark.parametrize(
    ("data_type", "column_type", "precision", "scale", "expected"),
    [
        ("bigint", "bigint(20) unsigned", 20, 0, ("bigint", pa.int64())),
        ("int", "int(10) unsigned", 10, 0, ("bigint", pa.int64())),
        ("decimal", "decimal(10,2)", 10, 2, ("decimal", pa.decimal128(10, 2))),
        ("datetime", "datetime(6)", None, None, ("timestamp", pa.timestamp("us"))),
        ("timestamp", "timestamp(6)", None, None, ("timestamp with time zone", pa.timestamp("us", tz="UTC"))),
        ("date", "date", None, None, ("date", pa.date32())),
        ("enum", "enum('online','store')", None, None, ("varchar", pa.string())),
        ("char", "char(2)", None, None, ("varchar", pa.string())),
    ],
)
def test_mysql_types_map_like_airbyte(data_type, column_type, precision, scale, expected):
    assert mysql_type(data_type, column_type, precision, scale) == expected


def test_unsupported_column_type_is_refused():
    with pytest.raises(IngestError, match="'geometry' is not supported"):
        mysql_type("geometry", "geometry", None, None)


def test_record_ids_are_distinct_version_4_uuids():
    ids = uuid4_array(50_000, np.random.default_rng(7)).to_pylist()
    parsed = [uuid.UUID(i) for i in ids]
    assert len(set(ids)) == 50_000
    assert {u.version for u in parsed} == {4}
    assert all(str(u) == i for u, i in zip(parsed, ids, strict=True))


def test_max_cursor_breaks_ties_on_primary_key():
    stream = Stream("orders", "order_id", ())
    t1, t2 = datetime(2024, 1, 1), datetime(2024, 1, 2)
    chunk = pa.table({"order_id": [5, 9, 7, 1], "updated_at": [t2, t1, t2, t1]})
    assert max_cursor(chunk, stream) == (t2, 7)


def test_stream_selection():
    found = {"orders": Stream("orders", "order_id", ()), "customers": Stream("customers", "customer_id", ())}
    assert resolve_streams(None, found, "stores.csv") == ["customers", "orders", "store_locations"]
    assert resolve_streams(None, found, None) == ["customers", "orders"]
    with pytest.raises(IngestError, match=r"unknown stream\(s\) refunds; known: customers, orders, store_locations"):
        resolve_streams(["orders", "refunds"], found, None)
    with pytest.raises(IngestError, match="needs a store locations CSV"):
        resolve_streams(["store_locations"], found, None)


def test_a_source_without_the_pipelines_tables_is_an_error_not_an_empty_sync(caplog):
    """A database never seeded (or the wrong one in the URL) synced "0 rows read" and exited 0; a
    catalog table named that the source lacks was only 'unknown'. Both now say what to check."""
    with pytest.raises(IngestError, match=r"none of the pipeline's tables \(customers, order_items, orders, products\):"
                                          r" seed it first \(make seed\)"):
        resolve_streams(None, {"scratch": Stream("scratch", "id", ())}, "stores.csv")
    with pytest.raises(IngestError, match=r"unknown stream\(s\) customers; known: store_locations \(customers: the"
                                          r" pipeline's, but the source database has no such table; seed it first"):
        resolve_streams(["customers"], {}, "stores.csv")
    caplog.clear()
    with caplog.at_level("WARNING", logger="retailflow_ingest"):
        assert resolve_streams(None, {"orders": Stream("orders", "order_id", ())}, None) == ["orders"]
    assert [r.getMessage() for r in caplog.records if r.levelname == "WARNING"] == [
        "the source database lacks the pipeline's table(s) customers, order_items, products: they are not synced"]


def test_only_the_catalogs_tables_are_ingested_and_stray_ones_named_in_one_line(caplog):
    """An interrupted seed's shadow tables, or any table of the user's, are not the pipeline's streams."""
    found = {name: Stream(name, "id", ()) for name in
             ("orders", "customers", "orders__new", "customers__new", "scratch")}
    with caplog.at_level("INFO", logger="retailflow_ingest"):
        assert resolve_streams(None, found, None) == ["customers", "orders"]
    assert [r.getMessage() for r in caplog.records] == [
        "ignored 3 source table(s) outside the pipeline's catalog: customers__new, orders__new, scratch"
        " (name one with --streams to ingest it)",
        "the source database lacks the pipeline's table(s) order_items, products: they are not synced"]
    # named, a table outside the catalog is synced
    assert resolve_streams(["scratch"], found, None) == ["scratch"]


def test_store_csv_checks(tmp_path):
    path = tmp_path / "s.csv"
    path.write_text(
        "store_id,name,city,region,country,latitude,longitude,opened_at\n"
        "1,A,Oslo,Europe,NO,59.9,10.7,2020-01-01\n"
        "x,B,Oslo,Europe,NO,59.9,10.7,2020-01-01\n"
        "\n"
        "2,C,Oslo,Europe,NO,north,10.7,2020-01-01\n"
        "3,D,Oslo,Europe,NO,-90,-180,2020-02-30\n"
        "4,,Oslo,Europe,NO,-90,-180,2020-02-28\n"
    )
    parsed = parse(path)
    assert parsed.good.to_pylist() == [
        {"store_id": 1, "name": "A", "city": "Oslo", "region": "Europe", "country": "NO",
         "latitude": Decimal("59.900000"), "longitude": Decimal("10.700000"), "opened_at": "2020-01-01"},
    ]
    assert [(r.line_number, r.reason) for r in parsed.rejected] == [
        (3, "store_id 'x' is not an integer"),
        (4, "empty row"),
        (5, "latitude 'north' is not a number"),
        (6, "opened_at '2020-02-30' is not a YYYY-MM-DD date"),
        (7, "missing name"),
    ]
    assert parsed.rows_read == 6 == parsed.good.num_rows + len(parsed.rejected)


def test_store_csv_quarantines_numbers_python_reads_but_the_file_does_not_mean(tmp_path):
    """A store_id beyond the bigint column, once an OverflowError that stopped the whole run before any
    stream, and what int(), Decimal() and date.fromisoformat() read as a number or date though no one
    wrote one (``4_1``, Arabic-Indic digits, ``nan``, an ISO week) are each one quarantined line."""
    path = tmp_path / "s.csv"
    path.write_text(
        "store_id,name,city,region,country,latitude,longitude,opened_at\n"
        "9223372036854775807,A,Oslo,Europe,NO,59.9,10.7,2020-01-01\n"
        "+7,B,Oslo,Europe,NO,-.5,1E1,2020-01-01\n"
        "99999999999999999999,C,Oslo,Europe,NO,59.9,10.7,2020-01-01\n"
        "-9223372036854775809,D,Oslo,Europe,NO,59.9,10.7,2020-01-01\n"
        "4_1,E,Oslo,Europe,NO,59.9,10.7,2020-01-01\n"
        "\u0664\u0662,F,Oslo,Europe,NO,59.9,10.7,2020-01-01\n"
        "10,G,Oslo,Europe,NO,1_0,10.7,2020-01-01\n"
        "11,H,Oslo,Europe,NO,nan,10.7,2020-01-01\n"
        "12,I,Oslo,Europe,NO,59.9,-inf,2020-01-01\n"
        "13,J,Oslo,Europe,NO,\u0664\u0662,10.7,2020-01-01\n"
        "14,K,Oslo,Europe,NO,59.9,10.7,2020-W01-1\n",
        encoding="utf-8",
    )
    parsed = parse(path)
    assert [(r["store_id"], r["latitude"], r["longitude"]) for r in parsed.good.to_pylist()] == [
        (9223372036854775807, Decimal("59.900000"), Decimal("10.700000")),
        (7, Decimal("-0.500000"), Decimal("10.000000")),
    ]
    assert [(r.line_number, r.reason) for r in parsed.rejected] == [
        (4, "store_id 99999999999999999999 is out of range [-9223372036854775808, 9223372036854775807]"),
        (5, "store_id -9223372036854775809 is out of range [-9223372036854775808, 9223372036854775807]"),
        (6, "store_id '4_1' is not an integer"),
        (7, "store_id '\u0664\u0662' is not an integer"),
        (8, "latitude '1_0' is not a number"),
        (9, "latitude 'nan' is not a number"),
        (10, "longitude '-inf' is not a number"),
        (11, "latitude '\u0664\u0662' is not a number"),
        (12, "opened_at '2020-W01-1' is not a YYYY-MM-DD date"),
    ]


def test_store_csv_quoted_field_may_span_lines(tmp_path):
    path = tmp_path / "s.csv"
    path.write_text(
        "store_id,name,city,region,country,latitude,longitude,opened_at\n"
        '1,"Harbour\nFront",Oslo,Europe,NO,59.9,10.7,2020-01-01\n'
        "2,B,Oslo,Europe,NO,95,10.7,2020-01-01\n"
    )
    parsed = parse(path)
    assert [(r["store_id"], r["name"]) for r in parsed.good.to_pylist()] == [(1, "Harbour\nFront")]
    # the rejected row is named by its physical line, after the two lines of the first record
    assert [(r.line_number, r.reason) for r in parsed.rejected] == [(4, "latitude 95 is out of range [-90, 90]")]


def test_store_csv_that_is_not_utf8_is_refused_clearly(tmp_path):
    path = tmp_path / "s.csv"
    path.write_bytes(b"store_id,name,city,region,country,latitude,longitude,opened_at\n1,Caf\xe9,Oslo,E,NO,1,1,2020-01-01\n")
    with pytest.raises(IngestError, match="not UTF-8 text"):
        parse(path)


def test_a_folder_given_as_the_store_csv_is_named_as_one(tmp_path):
    with pytest.raises(IngestError, match=f"store locations CSV {tmp_path} is a folder: name the file"):
        parse(tmp_path)


def test_store_csv_with_wrong_header_or_missing_is_refused(tmp_path):
    with pytest.raises(IngestError, match="store locations CSV not found"):
        parse(tmp_path / "nope.csv")
    bad = tmp_path / "bad.csv"
    bad.write_text("id,name\n1,A\n")
    with pytest.raises(IngestError, match="the header must be store_id,name,city"):
        parse(bad)


def test_cli_without_urls_explains_what_is_missing():
    done = subprocess.run(
        [sys.executable, "-m", "retailflow_ingest.cli"], capture_output=True, text=True, env={"PATH": ""},
        timeout=60,
    )
    assert done.returncode == 2
    assert done.stderr == "retailflow-ingest: no source: set RETAILFLOW_MYSQL_URL (or pass --mysql-url)\n"


def test_a_lake_folder_named_on_the_command_line_wins_over_the_environments_endpoint(tmp_path, monkeypatch):
    """``--lake-dir`` and ``--lake-endpoint`` exclude each other; with $RETAILFLOW_LAKE_ENDPOINT set (the
    chart's pods and a shell that sourced the cluster's settings have it), ``--lake-dir`` was accepted and
    the files went to the endpoint instead."""
    from retailflow_ingest.cli import lake_config, parser

    monkeypatch.setenv("RETAILFLOW_LAKE_ENDPOINT", "http://minio:9000")
    folder = lake_config(parser().parse_args(["--lake-dir", str(tmp_path)]))
    assert (folder.endpoint, folder.local_dir) == (None, tmp_path)
    assert lake_config(parser().parse_args([])).endpoint == "http://minio:9000"
    assert lake_config(parser().parse_args(["--lake-endpoint", "https://s3.shop:443"])).endpoint == "https://s3.shop:443"
    assert lake_config(parser().parse_args(["--no-lake"])) is None
    monkeypatch.delenv("RETAILFLOW_LAKE_ENDPOINT")
    assert lake_config(parser().parse_args([])).endpoint is None


def test_malformed_urls_and_impossible_options_are_one_line_errors_without_the_password(capsys):
    """A port that is not a number or out of range, an unclosed IPv6 bracket: Python's ValueError
    traceback before; a reserved schema (pg_*) failed at the server, a lookback over a year overflowed
    the dates. All are refused up front, exit 2, and no message carries the URL's password."""
    from retailflow_ingest.cli import parser
    from retailflow_ingest.source import MySQLSource
    from retailflow_ingest.warehouse import Warehouse

    for make, url, problem in [(MySQLSource, "mysql://u:pw-7c1e@127.0.0.1:abc/retail", "port is not a number"),
                               (MySQLSource, "mysql://u:pw-7c1e@[::1/retail", "unbalanced [ or ]"),
                               (Warehouse, "postgresql://u:pw-7c1e@127.0.0.1:99999/warehouse", "from 1 to 65535"),
                               # a / in the password ends the host part: the "port" is the password
                               (Warehouse, "postgresql://u:pw-7c1e/x@127.0.0.1/warehouse",
                                "its user or password holds a /, #, ? or @, which must be percent-encoded")]:
        with pytest.raises(IngestError) as err:
            make(url)
        assert problem in str(err.value) and "must look like" in str(err.value) and "pw-7c1e" not in str(err.value)
    assert Warehouse("postgresql://db.shop/warehouse").describe() == "postgresql://@db.shop:5432/warehouse"
    for argv, said in [(["--schema", "pg_temp"], "PostgreSQL reserves it"),
                       (["--lookback-seconds", "1e300"], "more than a year")]:
        with pytest.raises(SystemExit) as done:
            parser().parse_args(argv)
        assert done.value.code == 2 and said in capsys.readouterr().err


def test_lake_retention_counts_and_removes_only_its_own_committed_folders(tmp_path):
    import json
    import time

    from retailflow_ingest.lake import Lake, LakeConfig

    lake = Lake(LakeConfig(local_dir=tmp_path, keep=1))
    now_ms = int(time.time() * 1000)
    mine_old, theirs_old, mine_new, theirs_dead, mine_now = (
        (now_ms - minutes * 60_000) << 11 for minutes in (50, 40, 30, 20, 10))
    for sync_id, owner in ((mine_old, "a"), (theirs_old, "b"), (mine_new, "a"), (mine_now, "a")):
        lake.sync_id = sync_id
        lake.put_bytes("orders", "part-00000.parquet", b"x")
        lake.commit("orders", {"sync_id": sync_id, "mode": "full", "owner": owner})
    lake.sync_id = theirs_dead
    lake.put_bytes("orders", "part-00000.parquet", b"x")  # no manifest: maybe still running elsewhere

    removed = lake.prune("orders", before=mine_now, owner="a")
    assert removed == [mine_old, mine_new]  # b's folders are b's to keep or remove
    assert lake.sync_folders("orders") == [theirs_old, theirs_dead, mine_now]
    # past the grace period a folder without a manifest is dead, whoever made it
    assert lake.prune("orders", before=mine_now, owner="a", now=time.time() + 25 * 3600) == [theirs_dead]
    assert json.loads((tmp_path / "retailflow" / "raw" / "orders" / f"sync_id={theirs_old}" / "_manifest.json")
                      .read_text())["owner"] == "b"


def test_the_engine_starts_from_compiled_bytecode():
    """``make sync`` leaves the engine's libraries compiled. Where Python may not write ``.pyc`` files
    (PYTHONDONTWRITEBYTECODE, set here), every ``retailflow-ingest`` run would otherwise compile numpy,
    pyarrow, psycopg and the rest again before it connects: 0.4-0.9 s, most of a small sync's wall time."""
    probe = (
        "import os, sys, retailflow_ingest.engine\n"
        "print('\\n'.join(sorted(name for name, module in list(sys.modules.items())\n"
        "    if (getattr(module, '__file__', None) or '').endswith('.py') and 'site-packages' in module.__file__\n"
        "    and not os.path.exists(module.__cached__))))"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60,
                          env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"})
    uncompiled = done.stdout.split()
    assert uncompiled == [], f"{len(uncompiled)} modules load from source, e.g. {uncompiled[:5]}: run `make sync`"


def test_a_table_the_engine_cannot_load_is_refused_only_where_the_run_would_sync_it():
    found = {"customers": Stream("customers", "customer_id", ()), "orders": Stream("orders", "order_id", ())}
    why = {"products": "column weight double: types the local engine does not load",
           "scratch": "it has no primary key",
           # a MySQL table named like the store CSV's stream is never read: the stream is the CSV
           "store_locations": "it has no updated_at column (the incremental cursor)"}
    with pytest.raises(IngestError, match=r"^products: cannot be synced, column weight double: .* \(nothing was written\)$"):
        resolve_streams(None, found, "stores.csv", catalog=["customers", "orders", "products"], not_streams=why)
    with pytest.raises(IngestError, match=r"^scratch: cannot be synced, it has no primary key"):
        resolve_streams(["orders", "scratch"], found, None, not_streams=why)
    assert resolve_streams(["orders", "store_locations"], found, "stores.csv", not_streams=why) == [
        "orders", "store_locations"]
    assert resolve_streams(None, found, "stores.csv", catalog=["customers", "orders"], not_streams=why) == [
        "customers", "orders", "store_locations"]
