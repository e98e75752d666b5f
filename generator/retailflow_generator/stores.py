"""The store network: about 40 stores in real cities, written to `data/store_locations.csv` (of the checkout).

The network is fixed (it does not depend on `--seed`): orders generated with any seed refer to the
same store ids, 1..N in opening order.
"""

from __future__ import annotations

import csv
import io
import os
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np

from .catalog import STORE_CSV_HEADER
from .db import GeneratorError, UsageError
from .geography import REGIONS, places

STORE_COUNT = 40
#: fixed so that the committed CSV and the store ids in generated orders always agree
_NETWORK_SEED = 20080415
_FIRST_OPENING = date(2008, 3, 1)
_LAST_OPENING = date(2024, 9, 30)


@dataclass(frozen=True)
class Store:
    store_id: int
    name: str
    city: str
    region: str
    country: str
    latitude: float
    longitude: float
    opened_at: date
    #: relative footfall: share of in-store orders among the stores open at a given time
    weight: float
    #: IANA time zone of the store's city (from Faker's geo data; not a CSV column: the network is
    #: fixed, so the generator derives it from the same place the CSV row comes from)
    timezone: str = "UTC"


def _apportion(total: int, weights: list[float], minimum: int = 1) -> list[int]:
    """Split `total` in proportion to `weights` (largest remainder), at least `minimum` each."""
    shares = np.asarray(weights, dtype=float)
    shares = shares / shares.sum() * (total - minimum * len(weights))
    counts = np.floor(shares).astype(int)
    remainder = total - minimum * len(weights) - counts.sum()
    for i in np.argsort(-(shares - counts), kind="stable")[:remainder]:
        counts[i] += 1
    return [int(c) + minimum for c in counts]


def build_stores(count: int = STORE_COUNT) -> list[Store]:
    """The store network, identical on every call."""
    rng = np.random.default_rng(_NETWORK_SEED)
    drafts = []
    per_region = _apportion(count, [r.weight for r in REGIONS])
    for region, n_region in zip(REGIONS, per_region):
        per_country = _apportion(n_region, [c.weight for c in region.countries], minimum=0)
        for country, n_country in zip(region.countries, per_country):
            candidates = places(country.code)
            picks = rng.choice(len(candidates), size=min(n_country, len(candidates)), replace=False)
            for i in sorted(picks):
                place = candidates[i]
                city, lat, lon = place.name, place.latitude, place.longitude
                # flagship stores in the big markets see more footfall; sizes are heavy-tailed
                size = float(rng.lognormal(mean=0.0, sigma=0.45))
                weight = region.weight / n_region * size
                # stores open over the years: mostly in the first decade, a few recent ones
                span = (_LAST_OPENING - _FIRST_OPENING).days
                opened = _FIRST_OPENING + timedelta(days=int(rng.beta(1.3, 2.2) * span))
                drafts.append((opened, city, region.name, country.code, lat, lon, weight, place.timezone))
    drafts.sort(key=lambda d: (d[0], d[3], d[1]))
    stores = []
    for store_id, (opened, city, region_name, code, lat, lon, weight, tz) in enumerate(drafts, start=1):
        stores.append(
            Store(
                store_id=store_id,
                name=f"RetailFlow {city}",
                city=city,
                region=region_name,
                country=code,
                latitude=round(lat, 5),
                longitude=round(lon, 5),
                opened_at=opened,
                weight=round(weight, 6),
                timezone=tz,
            )
        )
    return stores


def stores_csv(stores: list[Store]) -> str:
    """The CSV text (header + one line per store, `\\n` line endings)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(STORE_CSV_HEADER)
    for s in stores:
        writer.writerow(
            (
                s.store_id,
                s.name,
                s.city,
                s.region,
                s.country,
                f"{s.latitude:.5f}",
                f"{s.longitude:.5f}",
                s.opened_at.isoformat(),
            )
        )
    return out.getvalue()


def write_csv(path: str | Path, stores: list[Store]) -> Path:
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(stores_csv(stores), encoding="utf-8")
    except OSError as exc:
        raise GeneratorError(f"cannot write {path}: {exc.strerror or exc}") from None
    return path


class LakeError(GeneratorError):
    """The lake (S3 endpoint) refused the upload or is unreachable."""


def check_lake(endpoint: str, bucket: str):
    """Refuse a malformed `--lake` endpoint, an empty bucket or missing credentials (bad input,
    UsageError: exit 2) before anything is written; returns the endpoint's parts."""
    shape = "an http(s)://HOST[:PORT] endpoint, e.g. http://127.0.0.1:9000"
    try:
        parts = urlsplit(endpoint)
        port = parts.port  # raises if not a number from 0 to 65535
        host = parts.hostname
    except ValueError:
        raise UsageError(f"--lake must be {shape}") from None
    if parts.scheme not in ("http", "https") or not host or port == 0 or parts.username or parts.password \
            or parts.path.strip("/") or parts.query or parts.fragment:
        # not echoed: a malformed URL may hold a key
        raise UsageError(f"--lake must be {shape}")
    if not bucket:
        raise UsageError("--bucket must not be empty")
    if not os.environ.get("RETAILFLOW_LAKE_ACCESS_KEY") or not os.environ.get("RETAILFLOW_LAKE_SECRET_KEY"):
        raise UsageError("set RETAILFLOW_LAKE_ACCESS_KEY and RETAILFLOW_LAKE_SECRET_KEY to upload to the lake")
    return parts


def upload_to_lake(path: Path, endpoint: str, bucket: str, prefix: str) -> str:
    """Upload the CSV to `s3://bucket/prefix/<file name>` on an S3 endpoint (MinIO); returns the URI.

    Credentials come from RETAILFLOW_LAKE_ACCESS_KEY / RETAILFLOW_LAKE_SECRET_KEY so that they never
    appear on a command line.
    """
    import urllib3
    from minio import Minio
    from minio.error import MinioException
    from urllib3.exceptions import HTTPError

    parts = check_lake(endpoint, bucket)
    access_key = os.environ["RETAILFLOW_LAKE_ACCESS_KEY"]
    secret_key = os.environ["RETAILFLOW_LAKE_SECRET_KEY"]
    client = Minio(
        parts.netloc,
        access_key=access_key,
        secret_key=secret_key,
        secure=parts.scheme == "https",
        region=os.environ.get("RETAILFLOW_LAKE_REGION", "us-east-1"),
        # a couple of quick retries: minio's default backs off for ~15 s before reporting a dead endpoint
        http_client=urllib3.PoolManager(
            timeout=urllib3.Timeout(connect=5, read=60),
            retries=urllib3.Retry(total=2, backoff_factor=0.2, status_forcelist=(500, 502, 503, 504)),
        ),
    )
    key = "/".join(p for p in (prefix.strip("/"), path.name) if p)
    try:
        if not client.bucket_exists(bucket):
            client.make_bucket(bucket)
        client.fput_object(bucket, key, str(path), content_type="text/csv")
    except (MinioException, HTTPError, OSError) as exc:
        reason = getattr(exc, "reason", None) or exc
        raise LakeError(f"upload to {endpoint} failed: {reason}") from exc
    return f"s3://{bucket}/{key}"
