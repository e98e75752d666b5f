"""Which ``retail_pipeline`` runs are due: each ``RetailPipeline``'s own ``spec.schedule``.

The schedule of a pipeline lives in its ``P`` + ``pipeline`` variable (written by the operator, changed
whenever the spec changes), so it cannot be a DAG's parse-time ``schedule`` without reading variables
at import. Instead the ``retail_pipeline_schedules`` DAG runs every minute, and for each pipeline's
prefix triggers the run for the latest tick of that pipeline's cron expression, once: the run id
names the pipeline and the tick, and a run that already exists is left alone (Airflow's
``catchup=False``: the latest tick only).

The prefixes are those the operator lists in the ``retailpipelines`` variable (every RetailPipeline
using this Airflow, ``{prefix: "namespace/name"}``), then ``$RETAILFLOW_PIPELINE_PREFIXES``
(comma-separated, default ``retailflow_``) for pipelines written by hand.
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Callable, Mapping
from datetime import datetime, timezone
from typing import Any

from retailflow_pipeline.settings import DEFAULT_PREFIX, SettingsError, load

log = logging.getLogger(__name__)

PIPELINE_DAG_ID = "retail_pipeline"
#: written by the operator (operator/README.md): ``{variable prefix: "namespace/name"}``
REGISTRY_KEY = "retailpipelines"


def registered(get: Callable[[str], Any]) -> list[str]:
    """The prefixes in the operator's ``retailpipelines`` variable; none if it is missing or unreadable."""
    raw = get(REGISTRY_KEY)
    if raw is None:
        return []
    try:
        value = json.loads(raw) if isinstance(raw, str) else raw
    except ValueError:
        value = None
    if not isinstance(value, dict):
        log.warning("variable %s is not a JSON object of prefixes; ignored", REGISTRY_KEY)
        return []
    return sorted(k for k in value if isinstance(k, str) and k)


def prefixes(env: Mapping[str, str] = os.environ, get: Callable[[str], Any] | None = None) -> list[str]:
    raw = env.get("RETAILFLOW_PIPELINE_PREFIXES") or DEFAULT_PREFIX
    listed = registered(get) if get is not None else []
    return list(dict.fromkeys(listed + [p.strip() for p in raw.split(",") if p.strip()]))


def latest_tick(cron: str, now: datetime) -> datetime:
    """The last time at or before ``now`` (UTC) that ``cron`` fires."""
    from croniter import croniter

    if not croniter.is_valid(cron):
        raise SettingsError(f"schedule {cron!r} is not a cron expression")
    now = now.astimezone(timezone.utc).replace(second=0, microsecond=0)
    if croniter.match(cron, now):
        return now
    return croniter(cron, now).get_prev(datetime).astimezone(timezone.utc)


def run_id(prefix: str, tick: datetime) -> str:
    safe = re.sub(r"[^A-Za-z0-9_.-]", "-", prefix.rstrip("_"))
    return f"scheduled__{safe}__{tick.strftime('%Y-%m-%dT%H:%M:%SZ')}"


def due_runs(now: datetime, env: Mapping[str, str] = os.environ,
             get: Callable[[str], Any] | None = None) -> list[dict[str, Any]]:
    """Keyword arguments of one ``TriggerDagRunOperator`` per pipeline with a schedule."""
    if get is None:
        from airflow.sdk import Variable

        def get(key: str) -> Any:
            return Variable.get(key, default=None)

    out = []
    for prefix in prefixes(env, get):
        settings = load(prefix, get)
        if settings.origin != "variables":
            log.info("%s: no %spipeline variable (no RetailPipeline uses this prefix); nothing to schedule",
                     prefix, prefix)
            continue
        if not settings.schedule:
            log.info("%s: %s has no schedule", prefix, settings.label)
            continue
        tick = latest_tick(settings.schedule, now)
        log.info("%s: %s runs on %r; latest tick %s", prefix, settings.label, settings.schedule, tick.isoformat())
        out.append({
            "trigger_run_id": run_id(prefix, tick),
            "logical_date": tick.isoformat(),
            "conf": {"variable_prefix": prefix},
        })
    return out
