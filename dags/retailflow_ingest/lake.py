"""Raw extracts to the lake: one Parquet file per batch read, per stream and sync, and a manifest that
marks a folder as committed.

Layout (the same on S3 and on disk)::

    <bucket>/<prefix>/README.md                                         (what readers must know)
    <bucket>/<prefix>/<stream>/sync_id=<n>/part-<k>.parquet             (MySQL streams)
    <bucket>/<prefix>/store_locations/sync_id=<n>/store_locations.csv   (the CSV as read)
    <bucket>/<prefix>/<stream>/sync_id=<n>/_manifest.json               (written after the commit)

With an endpoint the files go through the ``minio`` SDK to that S3 API (MinIO in the cluster);
without one they go under a local folder (default ``.lake/`` at the repository root). Data files are
written before the warehouse commit and the manifest after it, so a folder without a manifest belongs
to a sync that did not commit (or is still running) and readers skip it. A manifest missed by a crash
right after the commit is written by the next run (the warehouse's state table keeps a copy). Sync ids
are never reused (see ``warehouse.new_sync_id``) and no file is ever overwritten. Retention
(``keep``) removes the folders older than the last ``keep`` full loads of each stream (counting only
the folders of its own warehouse and schema, named in each manifest), and folders left without a
manifest by syncs that died: at once for syncs of its own warehouse and schema that are not running,
after ``uncommitted_grace`` (default 24 hours) for others, which may be running syncs of another
pipeline sharing the prefix.
"""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlsplit

import pyarrow as pa

from retailflow_ingest.errors import IngestError
from retailflow_ingest.settings import DEFAULT_LOCAL_DIR, DEFAULT_UNCOMMITTED_GRACE

#: the file that marks a sync folder as committed
MANIFEST = "_manifest.json"
#: the lake's own README, written at ``<bucket>/<prefix>/README.md`` when it is missing
README = Path(__file__).with_name("LAKE_README.md")
_FOLDER = re.compile(r"^sync_id=(\d+)$")


def sync_id_time(sync_id: int) -> float:
    """The Unix time (seconds) a sync id was made (``warehouse.new_sync_id``: milliseconds << 11)."""
    return (sync_id >> 11) / 1000


@dataclass(frozen=True)
class LakeConfig:
    """Where raw files go. ``endpoint`` (``http(s)://host:port``) selects S3; otherwise ``local_dir``.
    S3 credentials default to ``RETAILFLOW_LAKE_ACCESS_KEY`` / ``RETAILFLOW_LAKE_SECRET_KEY``.
    ``keep``: keep the folders of the last ``keep`` full loads of each stream (and the incremental
    syncs since), remove older ones and those left uncommitted; 0 keeps everything."""

    bucket: str = "retailflow"
    prefix: str = "raw"
    endpoint: str | None = None
    local_dir: Path = DEFAULT_LOCAL_DIR
    access_key: str | None = field(default=None, repr=False)
    secret_key: str | None = field(default=None, repr=False)
    region: str | None = None
    keep: int = 0
    #: how old (by its sync id's time) a folder without a manifest must be before retention removes it
    #: when no sync of this warehouse and schema made it (another pipeline sharing the prefix may still
    #: be writing it)
    uncommitted_grace: timedelta = DEFAULT_UNCOMMITTED_GRACE

    def describe(self) -> str:
        # a folder by its absolute path: `--lake-dir .lake` from the checkout is the default lake
        where = self.endpoint if self.endpoint else str(Path(self.local_dir).absolute())
        return f"{where}/{self.bucket}/{self.prefix}"


class Lake:
    """One lake, checked when it is opened (bucket reachable, or folder writable) so that a lake that
    is down fails the run before the warehouse is touched."""

    def __init__(self, config: LakeConfig):
        if not isinstance(config.keep, int) or config.keep < 0:
            raise IngestError(f"the lake's keep must be a whole number of full loads, 0 or more, not {config.keep!r}")
        self.config = config
        self.sync_id: int | None = None
        self._client = self._s3_client(config) if config.endpoint else None
        if self._client is None:
            root = Path(config.local_dir) / config.bucket
            try:
                root.mkdir(parents=True, exist_ok=True)
                probe = root / ".write-test"
                probe.write_bytes(b"")
                probe.unlink()
            except OSError as exc:
                raise IngestError(f"cannot write the lake folder {root}: {exc.strerror or exc}") from exc

    @staticmethod
    def _s3_client(config: LakeConfig):
        import urllib3
        from minio import Minio

        parts = urlsplit(config.endpoint)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise IngestError(f"the lake endpoint must look like http(s)://HOST:PORT, not {config.endpoint!r}")
        access = config.access_key or os.environ.get("RETAILFLOW_LAKE_ACCESS_KEY")
        secret = config.secret_key or os.environ.get("RETAILFLOW_LAKE_SECRET_KEY")
        if not access or not secret:
            raise IngestError("the S3 lake needs RETAILFLOW_LAKE_ACCESS_KEY and RETAILFLOW_LAKE_SECRET_KEY")
        # the SDK's default pool retries a refused connection for seconds; fail fast and say why
        http = urllib3.PoolManager(
            timeout=urllib3.Timeout(connect=5, read=120),
            retries=urllib3.Retry(total=2, connect=1, backoff_factor=0.2, status_forcelist=[500, 502, 503, 504]),
        )
        client = Minio(parts.netloc, access_key=access, secret_key=secret, secure=parts.scheme == "https",
                       region=config.region, http_client=http)
        try:
            if not client.bucket_exists(config.bucket):
                client.make_bucket(config.bucket)
        except Exception as exc:  # urllib3, minio and socket errors alike: one line, no traceback
            reason = getattr(exc, "reason", None) or exc
            raise IngestError(f"cannot use the lake bucket {config.bucket!r} at {config.endpoint}: "
                              f"{str(reason).splitlines()[0][:300]}") from exc
        return client

    @classmethod
    def download_object(cls, config: LakeConfig, key: str, target: Path) -> None:
        """Copy one object of the S3 lake's bucket, any key (not only the engine's folders), to ``target``."""
        cls._s3_client(config).fget_object(config.bucket, key, str(target))

    def describe(self) -> str:
        return self.config.describe()

    # --- keys and raw access -----------------------------------------------------------------------

    def _key(self, *parts: str) -> str:
        return "/".join(p for p in (self.config.prefix.strip("/"), *parts) if p)

    def folder(self, stream: str, sync_id: int) -> str:
        return self._key(stream, f"sync_id={sync_id}")

    def _path(self, key: str) -> Path:
        return Path(self.config.local_dir) / self.config.bucket / key

    def _uri(self, key: str) -> str:
        return f"s3://{self.config.bucket}/{key}" if self._client is not None else str(self._path(key))

    def _exists(self, key: str) -> bool:
        if self._client is None:
            return self._path(key).exists()
        from minio.error import S3Error

        try:
            self._client.stat_object(self.config.bucket, key)
            return True
        except S3Error as exc:
            if exc.code in ("NoSuchKey", "NotFound", "NoSuchObject"):
                return False
            raise

    def _read(self, key: str) -> bytes | None:
        if self._client is None:
            path = self._path(key)
            return path.read_bytes() if path.is_file() else None
        from minio.error import S3Error

        try:
            response = self._client.get_object(self.config.bucket, key)
        except S3Error as exc:
            if exc.code in ("NoSuchKey", "NotFound", "NoSuchObject"):
                return None
            raise
        try:
            return response.read()
        finally:
            response.close()
            response.release_conn()

    def _write(self, key: str, data: bytes) -> str:
        """Write a new object; an existing one is never replaced."""
        if self._exists(key):
            raise IngestError(f"the lake already holds {self._uri(key)}; it is never overwritten")
        if self._client is not None:
            self._client.put_object(self.config.bucket, key, io.BytesIO(data), len(data))
            return self._uri(key)
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_bytes(data)
        try:
            os.link(tmp, path)  # fails if the path exists: no overwrite even between check and write
        except FileExistsError:
            raise IngestError(f"the lake already holds {path}; it is never overwritten") from None
        finally:
            tmp.unlink()
        return str(path)

    # --- a sync's files ----------------------------------------------------------------------------

    def start(self, sync_id: int) -> None:
        self.sync_id = sync_id
        key = self._key("README.md")
        if not self._exists(key):
            try:
                self._write(key, README.read_bytes())
            except IngestError:
                pass  # another run wrote it meanwhile

    def put_table(self, stream: str, part: int, table: pa.Table) -> tuple[str, int]:
        import pyarrow.parquet as pq  # loaded by runs that write the lake only

        buf = io.BytesIO()
        pq.write_table(table, buf)
        return self.put_bytes(stream, f"part-{part:05d}.parquet", buf.getvalue()), table.num_rows

    def put_bytes(self, stream: str, name: str, data: bytes) -> str:
        return self._write(f"{self.folder(stream, self.sync_id)}/{name}", data)

    def commit(self, stream: str, manifest: dict) -> str:
        """Mark the stream's folder of ``manifest["sync_id"]`` as committed (after the warehouse commit)."""
        key = f"{self.folder(stream, manifest['sync_id'])}/{MANIFEST}"
        if self._exists(key):
            return self._uri(key)
        return self._write(key, json.dumps(manifest, indent=2, default=str).encode())

    def has_manifest(self, stream: str, sync_id: int) -> bool:
        return self._exists(f"{self.folder(stream, sync_id)}/{MANIFEST}")

    # --- retention ---------------------------------------------------------------------------------

    def sync_folders(self, stream: str) -> list[int]:
        prefix = self._key(stream) + "/"
        if self._client is None:
            root = self._path(prefix)
            names = [p.name for p in root.iterdir() if p.is_dir()] if root.is_dir() else []
        else:
            names = [o.object_name[len(prefix):].strip("/")
                     for o in self._client.list_objects(self.config.bucket, prefix=prefix, recursive=False) if o.is_dir]
        return sorted(int(m.group(1)) for m in map(_FOLDER.match, names) if m)

    def _remove_folder(self, stream: str, sync_id: int) -> None:
        key = self.folder(stream, sync_id)
        if self._client is None:
            shutil.rmtree(self._path(key), ignore_errors=True)
            return
        from minio.deleteobjects import DeleteObject

        objects = [DeleteObject(o.object_name)
                   for o in self._client.list_objects(self.config.bucket, prefix=key + "/", recursive=True)]
        for error in self._client.remove_objects(self.config.bucket, objects):
            raise IngestError(f"cannot remove {error.name} from the lake: {error.message}")

    def prune(self, stream: str, *, before: int, owner: str | None = None,
              dead_ok: Callable[[list[int]], set[int]] = lambda ids: set(), now: float | None = None) -> list[int]:
        """Apply ``keep`` to one stream, below sync ``before``: remove the committed folders of ``owner``
        (manifests without an owner count as its own) older than its ``keep``-th newest full load, and
        folders without a manifest that ``dead_ok`` names (the caller's own syncs that cannot be
        running) or that are older than ``uncommitted_grace``. A folder without a manifest may belong to
        a sync still running for another warehouse or schema sharing the prefix: it is left alone until
        the grace period has passed. Returns the sync ids removed."""
        if self.config.keep <= 0:
            return []
        committed: dict[int, dict] = {}
        dead: list[int] = []
        for sync_id in self.sync_folders(stream):
            if sync_id >= before:
                continue
            body = self._read(f"{self.folder(stream, sync_id)}/{MANIFEST}")
            if body is None:
                dead.append(sync_id)
            else:
                manifest = json.loads(body)
                if manifest.get("owner") in (None, owner):
                    committed[sync_id] = manifest
        now = time.time() if now is None else now
        grace = self.config.uncommitted_grace.total_seconds()
        expired = {s for s in dead if now - sync_id_time(s) > grace}
        dead = sorted(expired | (dead_ok(sorted(set(dead) - expired)) & set(dead)))
        fulls = sorted((s for s, m in committed.items() if m.get("mode") == "full"), reverse=True)
        current = self._read(f"{self.folder(stream, before)}/{MANIFEST}")
        if current is not None and json.loads(current).get("mode") == "full":
            fulls.insert(0, before)
        removed = []
        if len(fulls) >= self.config.keep:
            oldest_kept = fulls[self.config.keep - 1]
            removed += [s for s in committed if s < oldest_kept]
        removed += dead
        for sync_id in sorted(removed):
            self._remove_folder(stream, sync_id)
        return sorted(removed)
