"""The local ingestion engine: what Airbyte does in the cluster, small enough for a laptop and tests.

``engine.run(mysql_url, warehouse_url, ...)`` (and the ``retailflow-ingest`` CLI, ``cli.py``) syncs the
pipeline's MySQL tables (``engine.CATALOG``, the source tables of ``catalog.json``, or those named;
each needs a single-column integer primary key and an ``updated_at`` column), plus
``data/store_locations.csv``, into the warehouse's raw schema, and copies the raw rows to the lake. Other tables in the source are ignored, named in one log line.

What matches Airbyte's Postgres destination 3.x (Direct Load, typed final tables, no raw tables),
as read in airbytehq/airbyte ``destination-postgres`` (``PostgresColumnUtils``, ``PostgresDataType``,
``PostgresDirectLoadSqlGenerator``) and docs.airbyte.com (Postgres destination, metadata fields):

- one table ``<schema>.<stream>`` per stream; the meta columns first, in Airbyte's order and types:
  ``_airbyte_raw_id varchar not null`` (a random UUID per record), ``_airbyte_extracted_at timestamp
  with time zone not null``, ``_airbyte_meta jsonb not null`` (``{"changes": [], "sync_id": <n>}``),
  ``_airbyte_generation_id bigint``; then the stream's columns, same names, all nullable;
- type mapping: integers → ``bigint``, decimals → ``decimal`` (unconstrained numeric), ``datetime`` →
  ``timestamp`` (no time zone), ``timestamp`` → ``timestamp with time zone``, ``date`` → ``date``,
  strings, chars and enums → ``varchar``; decimals keep the scale MySQL gives them (``9.90``);
- ``incremental_deduped_history``: one row per primary key, the latest by cursor; a newer version
  replaces the row (new ``_airbyte_raw_id``, ``_airbyte_extracted_at`` and ``_airbyte_meta``), an
  older or equal one leaves it untouched (Airbyte's upsert compares the cursor the same way);
- indexes as destination-postgres creates them: plain b-tree indexes on the primary key, on the cursor
  and on ``_airbyte_extracted_at``; no primary-key constraint;
- ``_airbyte_generation_id`` starts at 0 and goes up by one with each completed full refresh;
  ``sync_id`` rises with every run (all streams of a run share it);
- a full load writes a new table and swaps it in at the end (Direct-Load overwrite), so readers keep
  the old rows until the commit; a column added in the source is added to the table by the next
  incremental sync, as Airbyte propagates column changes.

Differences (none visible to the dbt project):

- index names are ``<stream>_pk_idx``, ``<stream>_cursor_idx``, ``<stream>_extracted_at_idx``;
- cursor state lives in ``<schema>._retailflow_ingest_state`` and full refreshes not yet completed
  in ``<schema>._retailflow_ingest_pending_refresh`` (Airbyte keeps both in its own database);
- sync ids are made from the clock (milliseconds × 2048 + 11 random bits, above any earlier id of
  the schema) instead of Airbyte's job ids, so they are unique across warehouses and re-created
  schemas and never reuse a lake path;
- the CSV stream ``store_locations`` is typed by the engine (``store_id bigint``, text columns
  ``varchar``, coordinates ``decimal``, ``opened_at`` text) and reloaded whole on every run; rows that
  fail validation go to ``<schema>.store_locations_quarantine`` (line number, raw line, reason);
- at the swap, views on the table (dbt's staging models) are rebound to the new table with their own
  definitions, and its grants are copied; Airbyte would need ``drop_cascade`` for the views.

Snapshot: every MySQL stream of a sync is read by one query inside one InnoDB snapshot shared by all
reader connections (``source.MySQLSource.open_snapshot``): no sync holds an order without its lines or
a line without its order, and whatever committed before the snapshot is in it.

Cursor and late commits: an incremental read takes rows with ``updated_at`` at or after the saved
cursor minus a lookback window (default 5 minutes), in ``(updated_at, primary key)`` order. A row whose
``updated_at`` was stamped by a transaction that committed after the snapshot is therefore picked up
by the next run, as long as that transaction took less than the lookback; re-read rows with an
unchanged cursor are no-ops in the merge. The saved cursor (the high-water mark, also
``StreamResult.high_water_mark``) is capped at the source's clock when the snapshot was taken.

Speed: connectorx decodes MySQL rows into Arrow in Rust and streams record batches; a reader thread
casts them, adds record ids and writes the lake files while the previous batch is being written; a full
load sends all batches through one binary ``COPY`` (encoded by pgpq, rows written frozen) and builds
the indexes afterwards; an incremental sync copies rows with a key above the table's largest (new
rows) the same way straight into the table, and the others into a staging table, which it merges.
Two streams are written at once, the largest first; their warehouse connections open
while the snapshot is taken.

Crash safety: each stream is one PostgreSQL transaction (load, indexes or merge, state update,
commit), and the commit waits for its WAL flush. Killed anywhere, a stream keeps its previous rows
and cursor and the next run redoes it; a requested full refresh stays pending until each stream has
committed one. Lake files are written before the commit and the folder's manifest after it; readers
skip folders without one. Retention removes only its own warehouse and schema's committed folders, and
folders without a manifest at once only when they are its own syncs' (``<schema>._retailflow_ingest_syncs``)
and no sync of the stream runs; others after a grace period (``lake.py``).
"""

from __future__ import annotations

from retailflow_ingest.errors import IngestCancelled, IngestError

# Only the errors here: the engine's modules load Arrow and the database drivers, so callers import
# what they call from its module (``retailflow_ingest.engine.run``, ``retailflow_ingest.lake.LakeConfig``)
# and the CLI checks its arguments before loading them.
__all__ = ["IngestCancelled", "IngestError"]
