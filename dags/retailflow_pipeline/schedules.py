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

Local mode has no RetailPipeline: its schedule is the ``retailflow_local_schedule`` variable (a
five-field cron expression, UTC), which ``make schedule`` sets (``python -m
retailflow_pipeline.schedules "0 * * * *"``; ``off`` removes it) while unpausing the two DAGs.
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Callable, Mapping
from datetime import datetime, timezone
from typing import Any

from retailflow_pipeline.catalog import DEFAULT_PREFIX, REGISTRY_VARIABLE
from retailflow_pipeline.settings import SettingsError, load

log = logging.getLogger(__name__)

PIPELINE_DAG_ID = "retail_pipeline"
SCHEDULES_DAG_ID = "retail_pipeline_schedules"
#: local mode's schedule (no RetailPipeline writes one): a cron expression, set by ``make schedule``
LOCAL_SCHEDULE_KEY = "retailflow_local_schedule"


def registered(get: Callable[[str], Any]) -> list[str]:
    """The prefixes in the operator's ``retailpipelines`` variable; none if it is missing or unreadable."""
    raw = get(REGISTRY_VARIABLE)
    if raw is None:
        return []
    try:
        value = json.loads(raw) if isinstance(raw, str) else raw
    except ValueError:
        value = None
    if not isinstance(value, dict):
        log.warning("variable %s is not a JSON object of prefixes; ignored", REGISTRY_VARIABLE)
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
    local = get(LOCAL_SCHEDULE_KEY)
    for prefix in prefixes(env, get):
        settings = load(prefix, get)
        schedule = settings.schedule
        if settings.origin != "variables":
            if not local or prefix != DEFAULT_PREFIX:
                log.info("%s: no %spipeline variable (no RetailPipeline uses this prefix) and no %s; nothing to"
                         " schedule", prefix, prefix, LOCAL_SCHEDULE_KEY)
                continue
            schedule = local  # local mode: the local defaults on make schedule's cron
        if not schedule:
            log.info("%s: %s has no schedule", prefix, settings.label)
            continue
        tick = latest_tick(schedule, now)
        log.info("%s: %s runs on %r; latest tick %s", prefix, settings.label, schedule, tick.isoformat())
        out.append({
            "trigger_run_id": run_id(prefix, tick),
            "logical_date": tick.isoformat(),
            "conf": {"variable_prefix": prefix},
        })
    return out


def main(argv: list[str] | None = None) -> int:
    """``make schedule``: run the local pipeline on a cron schedule in the local Airflow (``off``: stop)."""
    import argparse
    import sys

    from retailflow_pipeline.runs import AirflowAPI, default_url

    p = argparse.ArgumentParser(prog="python -m retailflow_pipeline.schedules",
                                description="Run retail_pipeline on a cron schedule in the local Airflow.")
    p.add_argument("cron", help='five cron fields in UTC, e.g. "0 * * * *" (hourly); "off" stops the schedule')
    p.add_argument("--url", default=default_url())
    args = p.parse_args(argv)
    password = os.environ.get("RETAILFLOW_AIRFLOW_ADMIN_PASSWORD")
    if not password:
        p.error("RETAILFLOW_AIRFLOW_ADMIN_PASSWORD is not set (make airflow writes it to .env.local)")
    off = args.cron.strip().lower() == "off"
    if not off:
        try:
            latest_tick(args.cron, datetime.now(timezone.utc))
        except (SettingsError, ValueError) as exc:
            p.error(str(exc))
        if len(args.cron.split()) != 5:
            p.error(f"schedule {args.cron!r}: give five cron fields (minute hour day-of-month month day-of-week)")
    api = AirflowAPI(args.url, os.environ.get("RETAILFLOW_AIRFLOW_USERNAME") or "admin", password)
    try:
        for dag_id in (PIPELINE_DAG_ID, SCHEDULES_DAG_ID):
            api.wait_for_dag(dag_id, echo=lambda line: print(line, file=sys.stderr))
        if off:
            api.call("DELETE", f"/variables/{LOCAL_SCHEDULE_KEY}")
            api.json("PATCH", f"/dags/{SCHEDULES_DAG_ID}", json={"is_paused": True})
            print(f"schedule: off ({SCHEDULES_DAG_ID} paused; {PIPELINE_DAG_ID} runs only when triggered)")
            return 0
        body = {"key": LOCAL_SCHEDULE_KEY, "value": args.cron,
                "description": "make schedule: the local retail_pipeline's cron (UTC); 'make schedule LOCAL_SCHEDULE=off' removes it"}
        api.json("PATCH", "/variables", json={"actions": [{"action": "create", "action_on_existence": "overwrite",
                                                            "entities": [body]}]})
        for dag_id in (PIPELINE_DAG_ID, SCHEDULES_DAG_ID):
            api.json("PATCH", f"/dags/{dag_id}", json={"is_paused": False})
    except (LookupError, RuntimeError, TimeoutError) as exc:
        print(f"schedule: {exc}", file=sys.stderr)
        return 1
    tick = latest_tick(args.cron, datetime.now(timezone.utc))
    print(f"schedule: {PIPELINE_DAG_ID} runs on {args.cron!r} (UTC) in the local Airflow at {args.url}, through"
          f" {SCHEDULES_DAG_ID}; the latest tick was {tick:%Y-%m-%d %H:%M} UTC (its run starts within a minute)")
    return 0


if __name__ == "__main__":
    import sys

    sys.exit(main())
