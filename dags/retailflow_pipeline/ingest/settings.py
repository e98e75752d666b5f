"""Defaults shared by the engine and its CLI (no heavy imports here: the CLI parses its arguments, and
fails on bad ones, before it loads Arrow and the database drivers)."""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path

#: how far before the saved cursor an incremental read starts; covers rows whose ``updated_at`` was
#: set by a transaction that committed after a later one had already been read
DEFAULT_LOOKBACK = timedelta(minutes=5)
#: rows per Arrow batch read from MySQL (one lake file; COPY streams them without a break)
DEFAULT_BATCH_ROWS = 50_000
#: retention default of the CLI: the lake keeps the folders of the last N full loads of each stream
DEFAULT_LAKE_KEEP = 5
#: lake retention leaves a folder without a manifest that no sync of its own warehouse and schema made
#: (another pipeline sharing the prefix may still be writing it) until it is this old
DEFAULT_UNCOMMITTED_GRACE = timedelta(hours=24)

_CHECKOUT = Path(__file__).resolve().parents[3]
#: default local lake: ``.lake/`` at the repository root (ignored by git), or in the working
#: directory when the package is installed outside a checkout
DEFAULT_LOCAL_DIR = (_CHECKOUT if (_CHECKOUT / "dags" / "pyproject.toml").is_file() else Path.cwd()) / ".lake"


def default_stores_csv() -> Path:
    """The store locations CSV read unless told otherwise: ``$RETAILFLOW_DATA_DIR/store_locations.csv``
    (the image sets it), else the checkout's ``data/`` whatever the working directory (a relative
    ``data/…`` failed from any other folder), else ``./data/`` outside a checkout."""
    data = os.environ.get("RETAILFLOW_DATA_DIR")
    if data:
        return Path(data) / "store_locations.csv"
    root = _CHECKOUT if (_CHECKOUT / "dags" / "pyproject.toml").is_file() else Path.cwd()
    return root / "data" / "store_locations.csv"
