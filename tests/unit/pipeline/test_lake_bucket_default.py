"""The generator's `stores --lake` and `retailflow-ingest` write one lake: the same bucket by default
(the generator's was `retailflow-lake`, the engine's `retailflow`, so the store CSV and the raw files
landed in two buckets of one MinIO), and both follow `RETAILFLOW_LAKE_BUCKET`."""

import pytest
from retailflow_generator.cli import build_parser

from retailflow_ingest.cli import parser


@pytest.mark.parametrize("configured", [None, "shop-lake"])
def test_the_store_csv_goes_to_the_bucket_the_engine_writes(monkeypatch, configured):
    if configured is None:
        monkeypatch.delenv("RETAILFLOW_LAKE_BUCKET", raising=False)
    else:
        monkeypatch.setenv("RETAILFLOW_LAKE_BUCKET", configured)
    generator = build_parser().parse_args(["stores"]).bucket
    engine = parser().parse_args([]).lake_bucket
    assert generator == engine == (configured or "retailflow")
