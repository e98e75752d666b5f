"""Raw files to the lake, per stream and run: to a local folder, and through the minio SDK to an S3 API
(moto's S3 server on loopback, the stand-in for MinIO, which has no server binary here)."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from ingest_support import seed, source_rows
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
