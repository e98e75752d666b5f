"""`stores --lake`: the CSV lands in the lake bucket. moto's S3 server is the stand-in for MinIO."""

import boto3
import pytest
from moto.server import ThreadedMotoServer
from retailflow_generator import cli
from retailflow_generator.stores import build_stores, stores_csv


@pytest.fixture(scope="module")
def s3_standin():
    """moto's threaded S3 server on loopback: a stand-in for MinIO, speaking the same S3 API."""
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


def test_stores_uploads_the_csv_to_the_lake(s3_standin, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("RETAILFLOW_LAKE_ACCESS_KEY", "lake-access")
    monkeypatch.setenv("RETAILFLOW_LAKE_SECRET_KEY", "lake-secret")
    out = tmp_path / "store_locations.csv"
    code = cli.main(["stores", "--out", str(out), "--lake", s3_standin, "--bucket", "lake", "--prefix", "raw/stores"])
    assert code == 0
    summary = capsys.readouterr().out
    assert "uploaded to s3://lake/raw/stores/store_locations.csv" in summary
    s3 = boto3.client("s3", endpoint_url=s3_standin, aws_access_key_id="lake-access",
                      aws_secret_access_key="lake-secret", region_name="us-east-1")
    body = s3.get_object(Bucket="lake", Key="raw/stores/store_locations.csv")["Body"].read().decode()
    assert body == out.read_text() == stores_csv(build_stores())


def test_stores_without_lake_credentials_is_a_clear_error(s3_standin, tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("RETAILFLOW_LAKE_ACCESS_KEY", raising=False)
    monkeypatch.delenv("RETAILFLOW_LAKE_SECRET_KEY", raising=False)
    code = cli.main(["stores", "--out", str(tmp_path / "s.csv"), "--lake", s3_standin])
    assert code == 2, "missing credentials are bad input, as a missing database URL"
    assert "RETAILFLOW_LAKE_ACCESS_KEY" in capsys.readouterr().err
    assert not (tmp_path / "s.csv").exists(), "refused before the CSV is written"


def test_stores_with_an_unreachable_lake_is_a_clear_error(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("RETAILFLOW_LAKE_ACCESS_KEY", "lake-access")
    monkeypatch.setenv("RETAILFLOW_LAKE_SECRET_KEY", "lake-secret")
    code = cli.main(["stores", "--out", str(tmp_path / "s.csv"), "--lake", "http://127.0.0.1:1"])
    err = capsys.readouterr().err
    assert code == 1 and "upload to http://127.0.0.1:1 failed" in err and "Traceback" not in err
    assert (tmp_path / "s.csv").exists(), "the CSV is still written locally"
