"""Raw extracts to the lake: one Parquet file per chunk read, per stream and run.

Layout (the same on S3 and on disk)::

    <bucket>/<prefix>/<stream>/sync_id=<n>/part-<k>.parquet      (MySQL streams)
    <bucket>/<prefix>/store_locations/sync_id=<n>/store_locations.csv   (the CSV as read)

With an endpoint the files go through the ``minio`` SDK to that S3 API (MinIO in the cluster);
without one they go under a local folder (default ``.lake/`` at the repository root). Files are
written before the warehouse commit, so a run that dies leaves its files behind and the next run
writes new ones under its own ``sync_id``: the lake is at-least-once, the warehouse exactly-once.
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import pyarrow as pa
import pyarrow.parquet as pq

from retailflow_pipeline.ingest.errors import IngestError

_CHECKOUT = Path(__file__).resolve().parents[3]
#: default local lake: ``.lake/`` at the repository root (ignored by git), or in the working
#: directory when the package is installed outside a checkout
DEFAULT_LOCAL_DIR = (_CHECKOUT if (_CHECKOUT / "dags" / "pyproject.toml").is_file() else Path.cwd()) / ".lake"


@dataclass(frozen=True)
class LakeConfig:
    """Where raw files go. ``endpoint`` (``http(s)://host:port``) selects S3; otherwise ``local_dir``.
    S3 credentials default to ``RETAILFLOW_LAKE_ACCESS_KEY`` / ``RETAILFLOW_LAKE_SECRET_KEY``."""

    bucket: str = "retailflow"
    prefix: str = "raw"
    endpoint: str | None = None
    local_dir: Path = DEFAULT_LOCAL_DIR
    access_key: str | None = field(default=None, repr=False)
    secret_key: str | None = field(default=None, repr=False)
    region: str | None = None

    def describe(self) -> str:
        where = self.endpoint if self.endpoint else str(self.local_dir)
        return f"{where}/{self.bucket}/{self.prefix}"


class Lake:
    def __init__(self, config: LakeConfig, sync_id: int):
        self.config = config
        self.sync_id = sync_id
        self._client = None
        if config.endpoint:
            self._client = self._s3_client(config)

    @staticmethod
    def _s3_client(config: LakeConfig):
        from minio import Minio
        from minio.error import MinioException

        parts = urlsplit(config.endpoint)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise IngestError(f"the lake endpoint must look like http(s)://HOST:PORT, not {config.endpoint!r}")
        access = config.access_key or os.environ.get("RETAILFLOW_LAKE_ACCESS_KEY")
        secret = config.secret_key or os.environ.get("RETAILFLOW_LAKE_SECRET_KEY")
        if not access or not secret:
            raise IngestError("the S3 lake needs RETAILFLOW_LAKE_ACCESS_KEY and RETAILFLOW_LAKE_SECRET_KEY")
        client = Minio(parts.netloc, access_key=access, secret_key=secret, secure=parts.scheme == "https",
                       region=config.region)
        try:
            if not client.bucket_exists(config.bucket):
                client.make_bucket(config.bucket)
        except (MinioException, OSError) as exc:
            raise IngestError(f"cannot use the lake bucket {config.bucket!r} at {config.endpoint}: {exc}") from exc
        return client

    def key(self, stream: str, name: str) -> str:
        parts = [p for p in (self.config.prefix.strip("/"), stream, f"sync_id={self.sync_id}", name) if p]
        return "/".join(parts)

    def put_table(self, stream: str, part: int, table: pa.Table) -> str:
        buf = io.BytesIO()
        pq.write_table(table, buf)
        return self.put_bytes(stream, f"part-{part:05d}.parquet", buf.getvalue())

    def put_bytes(self, stream: str, name: str, data: bytes) -> str:
        key = self.key(stream, name)
        if self._client is not None:
            self._client.put_object(self.config.bucket, key, io.BytesIO(data), len(data))
            return f"s3://{self.config.bucket}/{key}"
        path = Path(self.config.local_dir) / self.config.bucket / key
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(path.suffix + ".tmp")
        tmp.write_bytes(data)
        tmp.replace(path)
        return str(path)
