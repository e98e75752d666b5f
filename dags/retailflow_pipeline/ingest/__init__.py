"""The local ingestion engine: what Airbyte does in the cluster, small enough for a laptop and tests.

``run(mysql_url, warehouse_url, ...)`` (and the ``retailflow-ingest`` CLI) syncs every MySQL table
with a single-column primary key and an ``updated_at`` column, plus ``data/store_locations.csv``,
into the warehouse's raw schema, and copies the raw rows to the lake.

What matches Airbyte's Postgres destination 3.x (Direct Load, typed final tables, no raw tables),
as read in airbytehq/airbyte ``destination-postgres`` (``PostgresColumnUtils``, ``PostgresDataType``,
``PostgresDirectLoadSqlGenerator``) and docs.airbyte.com (Postgres destination, metadata fields):

- one table ``<schema>.<stream>`` per stream; the meta columns first, in Airbyte's order and types:
  ``_airbyte_raw_id varchar not null`` (a random UUID per record), ``_airbyte_extracted_at timestamp
  with time zone not null``, ``_airbyte_meta jsonb not null`` (``{"changes": [], "sync_id": <n>}``),
  ``_airbyte_generation_id bigint``; then the stream's columns, same names, all nullable;
- type mapping: integers → ``bigint``, decimals → ``decimal`` (unconstrained numeric), ``datetime`` →
  ``timestamp`` (no time zone), ``timestamp`` → ``timestamp with time zone``, ``date`` → ``date``,
  strings, chars and enums → ``varchar``; decimals are stored without trailing fractional zeros
  (``9.90`` as ``9.9``: equal values, the way a JSON number carries them);
- ``incremental_deduped_history``: one row per primary key, the latest by cursor; a newer version
  replaces the row (new ``_airbyte_raw_id``, ``_airbyte_extracted_at`` and ``_airbyte_meta``), an
  older or equal one leaves it untouched (Airbyte's upsert compares the cursor the same way);
- indexes as destination-postgres creates them: plain b-tree indexes on the primary key, on the cursor
  and on ``_airbyte_extracted_at``; no primary-key constraint;
- ``_airbyte_generation_id`` starts at 0 and goes up by one on each full refresh; ``sync_id`` rises with
  every run (all streams of a run share it).

Differences (none visible to the dbt project):

- index names are ``<stream>_pk_idx``, ``<stream>_cursor_idx``, ``<stream>_extracted_at_idx``;
- cursor state lives in ``<schema>._retailflow_ingest_state`` (Airbyte keeps it in its own database),
  the sync counter in the sequence ``<schema>._retailflow_ingest_sync_id``;
- the CSV stream ``store_locations`` is typed by the engine (``store_id bigint``, text columns
  ``varchar``, coordinates ``decimal``, ``opened_at date``) and reloaded whole on every run; rows that
  fail validation go to ``<schema>.store_locations_quarantine`` (line number, raw line, reason);
- a full load of an existing table truncates it in place instead of swapping in a new table, so views
  built on it (dbt's staging models) survive; Airbyte would need ``drop_cascade`` for that.

Cursor and late commits: an incremental read takes rows with ``updated_at`` at or after the saved
cursor minus a lookback window (default 5 minutes), in ``(updated_at, primary key)`` order, the primary
key breaking ties between chunks. A row whose ``updated_at`` was stamped by a transaction that committed
after a later row had been read is therefore picked up by the next run, as long as that transaction
took less than the lookback; re-read rows with an unchanged cursor are no-ops in the merge. The saved
cursor is also capped at the source's clock when the read started, so rows changed during a long full
load are read again by the next run.

Speed: reads go MySQL → Arrow through connectorx (decoded in Rust), in chunks read ahead by a thread
while the previous chunk is written; full loads COPY Arrow into PostgreSQL in binary through ADBC, with
the indexes built afterwards; incremental syncs use psycopg (its connection opens several times
faster) with a CSV COPY into a staging table. Two streams run at once, the largest first.

Crash safety: each stream is one PostgreSQL transaction (COPY into the table or a temporary staging
table, merge, state update, commit). Killed anywhere, a stream keeps its previous rows and cursor and
the next run redoes it. Lake files are written before the commit, so they are at-least-once.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from retailflow_pipeline.ingest.errors import IngestCancelled, IngestError

if TYPE_CHECKING:
    from retailflow_pipeline.ingest.engine import IngestResult, StreamResult, run
    from retailflow_pipeline.ingest.lake import LakeConfig

__all__ = ["IngestCancelled", "IngestError", "IngestResult", "LakeConfig", "StreamResult", "run"]
_LAZY = {"IngestResult": "engine", "StreamResult": "engine", "run": "engine", "LakeConfig": "lake"}


def __getattr__(name: str):
    # the engine's modules load Arrow and the database drivers: only when first used (the CLI checks
    # its arguments first)
    if name in _LAZY:
        return getattr(importlib.import_module(f"retailflow_pipeline.ingest.{_LAZY[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
