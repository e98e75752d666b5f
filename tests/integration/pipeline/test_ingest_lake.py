"""Raw files to the lake, per stream and run: to a local folder, and through the minio SDK to an S3 API
(moto's S3 server on loopback, the stand-in for MinIO, which has no server binary here)."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from ingest_support import STREAMS, mysql_exec, seed, source_rows
from minio import Minio
from moto.server import ThreadedMotoServer

from retailflow_ingest.engine import run
from retailflow_ingest.lake import LakeConfig

STORES_CSV = Path(__file__).resolve().parents[3] / "data" / "store_locations.csv"


@pytest.fixture
def s3_endpoint(monkeypatch) -> Iterator[str]:
    """moto's S3 server on loopback: the S3 stand-in for MinIO, fresh per test, on a port it binds itself."""
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    _, port = server.get_host_and_port()
    monkeypatch.setenv("RETAILFLOW_LAKE_ACCESS_KEY", "lake-test-key")
    monkeypatch.setenv("RETAILFLOW_LAKE_SECRET_KEY", "lake-test-secret")
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


def test_local_lake_holds_one_folder_per_stream_and_run(mysql_url, warehouse_url, tmp_path):
    seed(mysql_url, items=9000)
    lake = LakeConfig(bucket="retailflow", prefix="raw", local_dir=tmp_path)
    first = run(mysql_url, warehouse_url, stores_csv=STORES_CSV, lake=lake, batch_rows=4000)

    run_dir = tmp_path / "retailflow" / "raw" / "order_items" / f"sync_id={first.sync_id}"
    parts = sorted(p.name for p in run_dir.iterdir())
    assert parts == ["_manifest.json", "part-00000.parquet", "part-00001.parquet", "part-00002.parquet"]
    table = pq.ParquetDataset(run_dir).read()
    assert table.num_rows == 9000
    assert sorted(table.column("order_item_id").to_pylist()) == [r[0] for r in source_rows(mysql_url, "order_items")]
    csv_copy = tmp_path / "retailflow" / "raw" / "store_locations" / f"sync_id={first.sync_id}" / "store_locations.csv"
    assert csv_copy.read_bytes() == STORES_CSV.read_bytes()

    second = run(mysql_url, warehouse_url, stores_csv=None, lake=lake, streams=["orders"])
    second_dir = tmp_path / "retailflow" / "raw" / "orders" / f"sync_id={second.sync_id}"
    assert second_dir.is_dir() and second.sync_id > first.sync_id


def test_s3_lake_through_minio_sdk(mysql_url, warehouse_url, s3_endpoint):
    seed(mysql_url)
    lake = LakeConfig(bucket="retailflow-lake", prefix="landing/mysql", endpoint=s3_endpoint)
    result = run(mysql_url, warehouse_url, stores_csv=STORES_CSV, lake=lake)

    client = Minio(s3_endpoint.removeprefix("http://"), access_key="lake-test-key", secret_key="lake-test-secret",
                   secure=False)
    keys = sorted(o.object_name for o in client.list_objects("retailflow-lake", prefix="landing/", recursive=True))
    sync = f"sync_id={result.sync_id}"
    streams = ("customers", "order_items", "orders", "products")
    assert keys == sorted(
        [f"landing/mysql/{s}/{sync}/part-00000.parquet" for s in streams]
        + [f"landing/mysql/{s}/{sync}/_manifest.json" for s in (*streams, "store_locations")]
        + [f"landing/mysql/store_locations/{sync}/store_locations.csv", "landing/mysql/README.md"]
    )
    body = client.get_object("retailflow-lake", f"landing/mysql/orders/{sync}/part-00000.parquet").read()
    assert pq.read_table(io.BytesIO(body)).num_rows == 1000
    assert result.streams["orders"].lake_files == [f"s3://retailflow-lake/landing/mysql/orders/{sync}/part-00000.parquet"]


def test_a_manifest_the_lake_refuses_after_the_commit_is_a_warning_and_the_next_run_writes_it(
        mysql_url, warehouse_url, tmp_path, monkeypatch):
    """The warehouse has committed the stream (rows and state) before its manifest is written: a lake that
    refuses that write must not report the stream as failed with "its table and cursor are unchanged"
    (they changed). The run says what happened, and the next run with the lake writes the manifest
    from the committed state."""
    from retailflow_ingest.lake import Lake

    seed(mysql_url)
    lake = LakeConfig(bucket="retailflow", prefix="raw", local_dir=tmp_path)
    write = Lake.commit

    def refuse_products(self, stream, manifest):
        if stream == "products":
            raise OSError("the lake refused the write")
        return write(self, stream, manifest)

    monkeypatch.setattr(Lake, "commit", refuse_products)
    first = run(mysql_url, warehouse_url, stores_csv=None, lake=lake)
    assert sorted(first.streams) == sorted(STREAMS) and not first.incomplete, first.summary()
    assert [w for w in first.warnings if w.startswith("products: committed, but its lake manifest could not be"
                                                     " written (the lake refused the write)")], first.warnings
    products = tmp_path / "retailflow" / "raw" / "products" / f"sync_id={first.sync_id}"
    assert (products / "part-00000.parquet").is_file() and not (products / "_manifest.json").exists()
    assert (tmp_path / "retailflow" / "raw" / "orders" / f"sync_id={first.sync_id}" / "_manifest.json").is_file()

    monkeypatch.setattr(Lake, "commit", write)
    run(mysql_url, warehouse_url, stores_csv=None, lake=lake, streams=["orders"])
    assert json.loads((products / "_manifest.json").read_text())["sync_id"] == first.sync_id


def test_an_incremental_folder_says_whether_the_lake_holds_the_sync_before_it(mysql_url, warehouse_url, tmp_path):
    """A table is rebuilt from the lake as its newest full folder plus the incremental folders after it
    (LAKE_README.md). A sync run without the lake (``--no-lake``) still moves the cursor on, so the next
    folder in the lake lacks what changed in between: that folder's manifest says so (``follows`` null)
    and the run warns; a folder that does follow the one before names its sync id."""
    seed(mysql_url)
    lake = LakeConfig(bucket="retailflow", prefix="raw", local_dir=tmp_path)

    def manifest(result):
        folder = tmp_path / "retailflow" / "raw" / "products" / f"sync_id={result.sync_id}"
        return json.loads((folder / "_manifest.json").read_text())

    full = run(mysql_url, warehouse_url, stores_csv=None, lake=lake, streams=["products"])
    mysql_exec(mysql_url, "update products set name = 'changed first' where product_id = 7")
    next_one = run(mysql_url, warehouse_url, stores_csv=None, lake=lake, streams=["products"])
    assert manifest(next_one)["follows"] == full.sync_id and not next_one.warnings
    mysql_exec(mysql_url, "update products set name = 'changed without the lake' where product_id = 8")
    missed = run(mysql_url, warehouse_url, stores_csv=None, streams=["products"])
    mysql_exec(mysql_url, "update products set name = 'changed later' where product_id = 9")
    after_gap = run(mysql_url, warehouse_url, stores_csv=None, lake=lake, streams=["products"])
    assert manifest(after_gap)["mode"] == "incremental" and manifest(after_gap)["follows"] is None
    assert after_gap.warnings == [
        f"products: its previous sync (id {missed.sync_id}) wrote no folder in this lake, so the lake lacks the rows"
        " changed then: a table rebuilt from the lake is incomplete until the stream's next full load into it"
        " (--full-refresh --streams products)"]
    assert manifest(full)["follows"] is None and not full.warnings
