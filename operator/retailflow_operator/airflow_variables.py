"""The Airflow variables the DAGs read (the contract in the catalog's ``airflow.variables``), their owner
mark, and the registry variable listing every pipeline's prefix.

Nothing here talks to a server.
"""

from __future__ import annotations

import json
from typing import Any, Mapping

from .catalog import REGISTRY_VARIABLE, STORE_LOCATIONS_STREAM, VARIABLES
from .naming import owner
from .spec_model import PipelineSpec
from .streams import stream_requests

VARIABLE_OWNER_MARK = "Managed by retailflow-operator for RetailPipeline "


def _shaped(name: str, values: Mapping[str, Any], shape: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """``values`` laid out as the catalog's shape of variable ``name``: its keys, in its order. A key
    on one side only is a mistake in this module, never in a spec, so it raises at once."""
    shape = VARIABLES[name] if shape is None else shape
    if set(values) != set(shape):
        raise KeyError(f"variable {name}: written keys {sorted(values)} differ from the catalog's {sorted(shape)}")
    return {key: values[key] for key in shape}


def build_variables(
    namespace: str,
    name: str,
    spec: PipelineSpec,
    airbyte_ids: Mapping[str, Mapping[str, str]] | None = None,
) -> dict[str, dict[str, Any]]:
    """The Airflow variables the DAGs read: key -> JSON object, shaped as the catalog's ``airflow.variables``
    (the contract block of operator/README.md)."""
    p = spec.airflow.variable_prefix
    engine = spec.engine
    conn_ids, my, pg, s3 = spec.airflow.connection_ids, spec.mysql, spec.warehouse, spec.lake
    stream_shape = VARIABLES["mysql"]["streams"][0]
    out: dict[str, dict[str, Any]] = {
        f"{p}pipeline": _shaped("pipeline", {
            "namespace": namespace,
            "name": name,
            "engine": engine,
            "schedule": spec.schedule,
            "sync_trigger": spec.airbyte.sync_trigger if engine == "airbyte" else "airflow",
        }),
        f"{p}mysql": _shaped("mysql", {
            "conn_id": conn_ids.mysql,
            "host": my.host,
            "port": int(my.port),
            "database": my.database,
            "streams": [
                _shaped("mysql.streams", {
                    "name": s.name,
                    "sync_mode": s.sync_mode,
                    "cursor_field": s.cursor_field,
                    "primary_key": s.primary_key,
                }, stream_shape)
                for s in stream_requests(spec)
            ],
        }),
        f"{p}warehouse": _shaped("warehouse", {
            "conn_id": conn_ids.warehouse,
            "engine": "postgres",
            "host": pg.host,
            "port": int(pg.port),
            "database": pg.database,
            "schema": pg.schema,
        }),
        f"{p}lake": _shaped("lake", {
            "conn_id": conn_ids.lake,
            "endpoint": s3.endpoint,
            "bucket": s3.bucket,
            "prefix": s3.prefix,
            "format": s3.format,
            "region": s3.region,
        }),
    }
    store = spec.store_locations
    if store:
        out[f"{p}store_locations"] = _shaped("store_locations", {
            "stream": STORE_LOCATIONS_STREAM,
            "s3_key": store.s3_key,
            "url": store.url,
        })
    if engine == "airbyte":
        ids = airbyte_ids or {}
        out[f"{p}airbyte"] = _shaped("airbyte", {
            "conn_id": conn_ids.airbyte,
            "api_url": spec.airbyte.api_url,
            "workspace_id": spec.airbyte.workspace_id,
            "connections": dict(sorted((ids.get("connections") or {}).items())),
            "sources": dict(sorted((ids.get("sources") or {}).items())),
            "destinations": dict(sorted((ids.get("destinations") or {}).items())),
        })
    return out


def variable_description(namespace: str, name: str) -> str:
    return f"{VARIABLE_OWNER_MARK}{owner(namespace, name)}; edits are reverted."


def variable_owner(description: str | None) -> str | None:
    if description and description.startswith(VARIABLE_OWNER_MARK):
        return description[len(VARIABLE_OWNER_MARK) :].split(";", 1)[0]
    return None


#: One variable shared by every pipeline of an Airflow: ``{variable prefix: "namespace/name"}``. The
#: ``retail_pipeline_schedules`` DAG reads it to find each RetailPipeline's variables (a task cannot
#: list variables). Its key starts with no pipeline's default prefix, so no pipeline's listing sees it.
REGISTRY_KEY = REGISTRY_VARIABLE
REGISTRY_DESCRIPTION = (
    "Managed by retailflow-operator: the variablePrefix of every RetailPipeline using this Airflow "
    "(retail_pipeline_schedules reads it); edits are reverted."
)


def registry_entries(raw: Any) -> dict[str, str]:
    """The registry's ``prefix -> owner`` pairs; anything that is not such a JSON object counts as empty."""
    try:
        value = json.loads(raw) if isinstance(raw, str) else raw
    except ValueError:
        return {}
    if not isinstance(value, dict):
        return {}
    return {k: v for k, v in value.items() if isinstance(k, str) and isinstance(v, str)}


def registry_variable(entries: Mapping[str, str]) -> dict[str, str]:
    return {"key": REGISTRY_KEY, "value": json.dumps(dict(sorted(entries.items())), indent=2),
            "description": REGISTRY_DESCRIPTION}
