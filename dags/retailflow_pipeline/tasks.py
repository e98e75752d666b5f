"""The work of each task of the RetailFlow DAGs; the DAG files in ``dags/`` only wire these together.

Each function takes the pipeline's settings as the ``load_settings`` task returned them (a JSON-safe
dict in XCom, never a secret) and returns a small JSON-safe summary for XCom and the logs.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import urllib.request
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from retailflow_pipeline import connections, paths
from retailflow_pipeline.catalog import DEFAULT_PREFIX, STORE_LOCATIONS_STREAM
from retailflow_pipeline.errors import NotConfigured
from retailflow_pipeline.settings import PipelineSettings, load

log = logging.getLogger(__name__)

#: sync modes the local engine runs as a full reload
FULL_REFRESH_MODES = {"full_refresh_overwrite", "full_refresh_append"}


class StepSkipped(Exception):
    """The step has nothing to do here (not configured); the DAG turns it into a skip, logging why."""


def load_settings(prefix: str | None = None) -> dict[str, Any]:
    settings = load(prefix or DEFAULT_PREFIX)
    log.info("pipeline %s: engine %s, settings from %s, raw schema %s, streams %s", settings.label,
             settings.engine, settings.origin, settings.raw_schema, ", ".join(s.name for s in settings.streams))
    return settings.to_dict()


def choose_engine(settings: Mapping[str, Any]) -> str:
    """``airbyte`` or ``direct`` (the branch the ingestion takes)."""
    return PipelineSettings.from_dict(settings).engine


# ------------------------------------------------------------------------------ direct ingestion


def _lake(settings: PipelineSettings):
    from retailflow_ingest.lake import LakeConfig

    lake = settings.lake
    if lake is None:
        return None
    if not lake.endpoint:
        return LakeConfig(bucket=lake.bucket, prefix=lake.prefix)
    access = secret = None
    try:
        conn = connections.airflow_connection(lake.conn_id)
        access, secret = conn.login, conn.password
    except Exception as exc:  # noqa: BLE001 - a missing connection falls back to RETAILFLOW_LAKE_* keys
        log.info("lake connection %s not usable (%s); using RETAILFLOW_LAKE_ACCESS_KEY/SECRET_KEY", lake.conn_id,
                 type(exc).__name__)
    return LakeConfig(bucket=lake.bucket, prefix=lake.prefix, endpoint=lake.endpoint, access_key=access,
                      secret_key=secret, region=lake.region)


def _store_csv(settings: PipelineSettings, workdir: Path) -> Path | None:
    """The store locations CSV: the data folder's file, or the lake object / URL the spec names."""
    store = settings.store_locations
    if store is None:
        return None
    if store.url:
        target = workdir / "store_locations.csv"
        with urllib.request.urlopen(store.url, timeout=60) as resp, open(target, "wb") as out:  # noqa: S310
            shutil.copyfileobj(resp, out)
        return target
    if store.s3_key and settings.lake and settings.lake.endpoint:
        from retailflow_ingest.lake import Lake

        target = workdir / "store_locations.csv"
        Lake.download_object(_lake(settings), store.s3_key, target)
        return target
    return paths.stores_csv()


def ingest_direct(settings: Mapping[str, Any], full_refresh: bool = False) -> dict[str, Any]:
    """The local ingestion engine: MySQL and the store CSV into the raw schema, raw files to the lake."""
    from retailflow_ingest.engine import run
    from retailflow_ingest.errors import IngestFailed

    s = PipelineSettings.from_dict(settings)
    mysql_url = connections.mysql_url(s.mysql)
    warehouse_url = connections.warehouse_url(s.warehouse)
    lake = _lake(s)
    log.info("ingesting %s into %s (schema %s, %s), lake %s", connections.redact(mysql_url),
             connections.redact(warehouse_url), s.raw_schema, "full refresh" if full_refresh else "incremental",
             lake.describe() if lake else "off")
    # Streams the spec syncs as full refreshes are reloaded whole; the others are incremental.
    reload = [st.name for st in s.streams if full_refresh or st.sync_mode in FULL_REFRESH_MODES]
    incremental = [st.name for st in s.streams if st.name not in reload]
    summary: dict[str, Any] = {"streams": {}, "sync_ids": []}
    with tempfile.TemporaryDirectory(prefix="retailflow-ingest-") as tmp:
        csv = _store_csv(s, Path(tmp))
        for names, full in ((reload, True), (incremental, False)):
            if not names:
                continue
            with_stores = csv is not None and STORE_LOCATIONS_STREAM not in summary["streams"]
            streams = names + ([STORE_LOCATIONS_STREAM] if with_stores else [])
            try:
                result = run(mysql_url, warehouse_url, schema=s.raw_schema, streams=streams, stores_csv=csv,
                             lake=lake, full_refresh=full)
            except IngestFailed as exc:  # the task fails; its log says which streams committed all the same
                for line in exc.result.summary().splitlines():
                    log.info("%s", line)
                raise
            for line in result.summary().splitlines():
                log.info("%s", line)
            summary["sync_ids"].append(result.sync_id)
            for name, r in result.streams.items():
                summary["streams"][name] = {"mode": r.mode, "read": r.rows_read, "inserted": r.inserted,
                                            "updated": r.updated, "rows": r.rows_in_table,
                                            "quarantined": r.quarantined}
    return summary


# ---------------------------------------------------------------------------------- Airbyte path


def airbyte_syncs(settings: Mapping[str, Any]) -> list[dict[str, str]]:
    """Keyword arguments of one ``AirbyteTriggerSyncOperator`` per connection the operator recorded.

    Empty when Airbyte triggers its own syncs (``syncTrigger: airbyte``): the DAG then builds on
    whatever Airbyte last synced.
    """
    s = PipelineSettings.from_dict(settings)
    if s.airbyte is None:
        raise ValueError(f"pipeline {s.label} has engine {s.engine}: no Airbyte connections to trigger")
    if s.sync_trigger != "airflow":
        log.info("Airbyte schedules the syncs of %s itself (syncTrigger: %s): nothing to trigger", s.label,
                 s.sync_trigger)
        return []
    if not s.airbyte.connections:
        raise ValueError(f"the operator recorded no Airbyte connection for {s.label} yet ({s.prefix}airbyte)")
    for role, cid in sorted(s.airbyte.connections.items()):
        log.info("will trigger Airbyte connection %s (%s)", cid, role)
    return [{"connection_id": cid, "airbyte_conn_id": s.airbyte.conn_id}
            for _, cid in sorted(s.airbyte.connections.items())]


def airbyte_waits(settings: Mapping[str, Any], job_ids: list[int | str]) -> list[dict[str, Any]]:
    """Keyword arguments of one ``AirbyteJobSensor`` per triggered job."""
    s = PipelineSettings.from_dict(settings)
    assert s.airbyte is not None
    return [{"airbyte_job_id": int(j), "airbyte_conn_id": s.airbyte.conn_id} for j in job_ids]


# ------------------------------------------------------------------- dashboards and governance


#: endings of the environment variables whose values are secrets (``RETAILFLOW_*``); a ``*_URL`` may
#: carry a password
SECRET_ENV_ENDINGS = ("_PASSWORD", "_TOKEN", "_SECRET", "_SECRET_KEY")


def mask_environment_secrets(env: Mapping[str, str]) -> None:
    """Hand the secrets a step reads from the environment to Airflow's log masker, so that a task log
    (a peer's answer, a workflow's output) shows ``***`` instead. Airflow masks what it gives out itself
    (connections' passwords, sensitive variables), not what a task reads from its own environment."""
    try:
        from airflow.sdk.log import mask_secret
    except ImportError:  # outside Airflow (make governance, make dashboards): no task log
        return
    for name, value in env.items():
        if not name.startswith("RETAILFLOW_") or not value:
            continue
        if name.endswith(SECRET_ENV_ENDINGS):
            mask_secret(value)
        elif name.endswith("_URL"):
            try:
                password = urlsplit(value).password
            except ValueError:
                continue
            if password:
                mask_secret(password)
                mask_secret(unquote(password))


def optional_step(step: Callable[[Mapping[str, str]], dict[str, Any]], env: Mapping[str, str]) -> dict[str, Any]:
    """Run ``step(env)``; ``StepSkipped`` when it raises ``NotConfigured`` (its peer is not set up here).
    The secrets it reads from ``env`` are masked in the task's log first."""
    mask_environment_secrets(env)
    try:
        return step(env)
    except NotConfigured as exc:
        raise StepSkipped(str(exc) or f"{step.__module__}.{step.__name__} is not configured") from None


def refresh_dashboards(env: Mapping[str, str] = os.environ) -> dict[str, Any]:
    """Import the dashboard bundle into Superset (``dashboards.refresh``); skipped without a Superset."""
    from retailflow_pipeline import dashboards

    return optional_step(dashboards.refresh, env)


def run_governance(env: Mapping[str, str] = os.environ) -> dict[str, Any]:
    """Run the OpenMetadata workflows (``governance.run``); skipped without an OpenMetadata server."""
    from retailflow_pipeline import governance

    return optional_step(governance.run, env)


# ------------------------------------------------------------------------------------- audit


def run_audit(settings: Mapping[str, Any], settle_seconds: float | None = None) -> dict[str, Any]:
    """Compare MySQL with the marts at the ingestion's high-water mark; raises on any difference."""
    from datetime import timedelta

    from retailflow_pipeline import audit

    s = PipelineSettings.from_dict(settings)
    kwargs: dict[str, Any] = {"raw_schema": s.raw_schema}
    if settle_seconds is not None:
        if not 0 <= settle_seconds <= audit.MAX_SETTLE.total_seconds():  # NaN and infinity too
            raise audit.AuditError(f"RETAILFLOW_AUDIT_SETTLE_SECONDS must be 0 to"
                                   f" {audit.MAX_SETTLE.total_seconds():g} s (a week), not {settle_seconds:g}")
        kwargs["settle"] = timedelta(seconds=settle_seconds)
    report = audit.check(connections.mysql_url(s.mysql), connections.warehouse_url(s.warehouse), **kwargs)
    return report.to_dict()
