"""Defaults shared by the engine and its CLI (no heavy imports here: the CLI parses its arguments, and
fails on bad ones, before it loads Arrow and the database drivers)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

# The one module that knows where RetailFlow's files are (stdlib only, no task code): the engine's
# local-mode defaults come from the same home as the DAG tasks' paths.
from retailflow_pipeline import paths

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

#: default local lake: ``.lake/`` in ``$RETAILFLOW_HOME`` (the checkout by default; ignored by git)
DEFAULT_LOCAL_DIR = paths.local_lake_dir()


def default_stores_csv() -> Path:
    """The store locations CSV read unless told otherwise: ``$RETAILFLOW_DATA_DIR/store_locations.csv``
    (the image sets it), else ``data/`` of ``$RETAILFLOW_HOME`` (the checkout, whatever the working
    directory: a relative ``data/…`` failed from any other folder)."""
    return paths.stores_csv()
