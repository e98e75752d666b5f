"""The settings of one pipeline run, parsed once from the operator's Airflow variables.

The operator writes, for a ``RetailPipeline`` with ``spec.airflow.variablePrefix`` = ``P``, the JSON
variables ``P`` + ``pipeline``, ``mysql``, ``warehouse``, ``lake``, ``store_locations`` and (engine
``airbyte``) ``airbyte``; their keys and shapes are the contract documented in ``operator/README.md``
("The Airflow-variables contract"). ``parse()`` reads exactly those keys into a typed
``PipelineSettings`` and fails with the key's path on anything else; the tasks take the model, never
the raw variables.

Without an operator (local mode: ``make airflow``, tests) there are no variables: ``load()`` then
returns the local defaults, the values the operator would write for the default ``RetailPipeline``
with ``engine: direct`` (connections ``retailflow_mysql`` / ``retailflow_warehouse`` from
``AIRFLOW_CONN_*``, raw schema ``$RETAILFLOW_RAW_SCHEMA`` or ``raw``, the lake from
``$RETAILFLOW_LAKE_*`` or ``.lake/``, the store CSV from the data folder).
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from retailflow_pipeline.catalog import (CURSORS, DEFAULT_CONN_IDS, DEFAULT_PREFIX, PRIMARY_KEYS, STORE_LOCATIONS_STREAM,
                                         STREAM_NAMES, VARIABLE_NAMES, VARIABLE_SHAPES)


def _choices(shape: str) -> tuple[str, ...]:
    """The options of a contract shape such as ``"airbyte | direct"``."""
    return tuple(option.strip() for option in shape.split("|"))


ENGINES = _choices(VARIABLE_SHAPES["pipeline"]["engine"])
SYNC_TRIGGERS = _choices(VARIABLE_SHAPES["pipeline"]["sync_trigger"])
SYNC_MODES = _choices(VARIABLE_SHAPES["mysql"]["streams"][0]["sync_mode"])
LAKE_FORMATS = _choices(VARIABLE_SHAPES["lake"]["format"])


class SettingsError(ValueError):
    """A variable is missing or does not have the documented shape; the message names the key."""


@dataclass(frozen=True)
class StreamSettings:
    """One MySQL stream the pipeline syncs, as the operator describes it (``mysql.streams[i]``)."""

    name: str
    sync_mode: str
    cursor_field: str | None
    primary_key: str


@dataclass(frozen=True)
class Endpoint:
    """A database the pipeline reads or writes; credentials come from the Airflow connection."""

    conn_id: str
    host: str | None
    port: int | None
    database: str | None


@dataclass(frozen=True)
class LakeSettings:
    """Where the pipeline writes its raw files (``lake``); credentials come from the Airflow connection."""

    conn_id: str
    endpoint: str | None
    bucket: str
    prefix: str
    format: str
    region: str | None


@dataclass(frozen=True)
class StoreLocations:
    stream: str
    s3_key: str | None
    url: str | None


@dataclass(frozen=True)
class Airbyte:
    conn_id: str
    api_url: str
    workspace_id: str
    connections: dict[str, str]
    sources: dict[str, str]
    destinations: dict[str, str]


@dataclass(frozen=True)
class PipelineSettings:
    prefix: str
    #: "variables" (written by the operator) or "local defaults" (no variables found)
    origin: str
    namespace: str | None
    name: str | None
    engine: str
    schedule: str | None
    sync_trigger: str
    mysql: Endpoint
    streams: tuple[StreamSettings, ...]
    warehouse: Endpoint
    raw_schema: str
    lake: LakeSettings | None
    store_locations: StoreLocations | None
    airbyte: Airbyte | None = None

    @property
    def label(self) -> str:
        return f"{self.namespace}/{self.name}" if self.namespace else f"local pipeline ({self.prefix}*)"

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form for XCom (no secret is held, so none is passed on)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "PipelineSettings":
        d = dict(data)
        d["mysql"] = Endpoint(**d["mysql"])
        d["warehouse"] = Endpoint(**d["warehouse"])
        d["streams"] = tuple(StreamSettings(**s) for s in d["streams"])
        d["lake"] = LakeSettings(**d["lake"]) if d.get("lake") else None
        d["store_locations"] = StoreLocations(**d["store_locations"]) if d.get("store_locations") else None
        d["airbyte"] = Airbyte(**d["airbyte"]) if d.get("airbyte") else None
        return cls(**d)


# ------------------------------------------------------------------------------------ parsing


@dataclass
class _Reader:
    """Reads one variable's keys, recording each path read (the contract tests compare the set)."""

    variable: str
    value: Any
    read: set[str] = field(default_factory=set)

    def get(self, path: str, kind: str, *, optional: bool = False, choices: tuple[str, ...] = ()) -> Any:
        self.read.add(f"{self.variable}.{path}")
        node: Any = self.value
        for part in path.split("."):
            if not isinstance(node, Mapping) or part not in node:
                raise SettingsError(f"variable {self.variable}: key {path} is missing")
            node = node[part]
        return _check(f"{self.variable}.{path}", node, kind, optional=optional, choices=choices)


def _check(path: str, value: Any, kind: str, *, optional: bool = False, choices: tuple[str, ...] = ()) -> Any:
    if value is None and optional:
        return None
    ok = {
        "string": isinstance(value, str) and value != "",
        "integer": isinstance(value, int) and not isinstance(value, bool),
        "object": isinstance(value, Mapping),
        "list": isinstance(value, list),
        "uuid": isinstance(value, str) and _is_uuid(value),
    }[kind]
    if not ok:
        raise SettingsError(f"{path}: expected {kind}{' or null' if optional else ''}, got {value!r}")
    if choices and value not in choices:
        raise SettingsError(f"{path}: {value!r} is not one of {', '.join(choices)}")
    return value


def _is_uuid(value: str) -> bool:
    try:
        uuid.UUID(value)
        return True
    except ValueError:
        return False


def _id_map(path: str, value: Any, *, uuids: bool) -> dict[str, str]:
    _check(path, value, "object")
    return {str(k): _check(f"{path}.{k}", v, "uuid" if uuids else "string") for k, v in value.items()}


def parse(variables: Mapping[str, Any], prefix: str = DEFAULT_PREFIX, *, read: set[str] | None = None) -> PipelineSettings:
    """``variables``: the pipeline's variables by name without the prefix (``pipeline``, ``mysql``…),
    each a decoded JSON object (or its JSON text). ``read``, if given, collects every key path read."""
    decoded: dict[str, Any] = {}
    for key, value in variables.items():
        if isinstance(value, str):
            try:
                value = json.loads(value)
            except json.JSONDecodeError as exc:
                raise SettingsError(f"variable {prefix}{key} is not JSON: {exc}") from exc
        decoded[key] = value
    for required in ("pipeline", "mysql", "warehouse", "lake"):
        if required not in decoded:
            raise SettingsError(f"variable {prefix}{required} is missing (the operator writes it for every pipeline)")

    readers = {k: _Reader(k, v) for k, v in decoded.items()}
    for r in readers.values():
        _check(f"{prefix}{r.variable}", r.value, "object")
    p, m, w, lk = (readers[k] for k in ("pipeline", "mysql", "warehouse", "lake"))

    engine = p.get("engine", "string", choices=ENGINES)
    streams = []
    for i, raw in enumerate(m.get("streams", "list")):
        s = _Reader(f"mysql.streams[{i}]", raw)
        streams.append(StreamSettings(
            name=s.get("name", "string", choices=STREAM_NAMES),
            sync_mode=s.get("sync_mode", "string", choices=SYNC_MODES),
            cursor_field=s.get("cursor_field", "string", optional=True),
            primary_key=s.get("primary_key", "string"),
        ))
        m.read |= {f"mysql.streams.{k}" for k in ("name", "sync_mode", "cursor_field", "primary_key")}
    if not streams:
        raise SettingsError("mysql.streams: the pipeline names no stream")
    w.get("engine", "string", choices=("postgres",))

    store = None
    if "store_locations" in readers:
        sl = readers["store_locations"]
        store = StoreLocations(
            stream=sl.get("stream", "string", choices=(STORE_LOCATIONS_STREAM,)),
            s3_key=sl.get("s3_key", "string", optional=True),
            url=sl.get("url", "string", optional=True),
        )
    airbyte = None
    if engine == "airbyte":
        if "airbyte" not in readers:
            raise SettingsError(f"variable {prefix}airbyte is missing (engine is airbyte)")
        a = readers["airbyte"]
        airbyte = Airbyte(
            conn_id=a.get("conn_id", "string"),
            api_url=a.get("api_url", "string"),
            workspace_id=a.get("workspace_id", "uuid"),
            connections=_id_map("airbyte.connections", a.get("connections", "object"), uuids=True),
            sources=_id_map("airbyte.sources", a.get("sources", "object"), uuids=True),
            destinations=_id_map("airbyte.destinations", a.get("destinations", "object"), uuids=True),
        )
    settings = PipelineSettings(
        prefix=prefix,
        origin="variables",
        namespace=p.get("namespace", "string"),
        name=p.get("name", "string"),
        engine=engine,
        schedule=p.get("schedule", "string"),
        sync_trigger=p.get("sync_trigger", "string", choices=SYNC_TRIGGERS),
        mysql=Endpoint(m.get("conn_id", "string"), m.get("host", "string"), m.get("port", "integer"),
                       m.get("database", "string")),
        streams=tuple(streams),
        warehouse=Endpoint(w.get("conn_id", "string"), w.get("host", "string"), w.get("port", "integer"),
                           w.get("database", "string")),
        raw_schema=w.get("schema", "string"),
        lake=LakeSettings(
            conn_id=lk.get("conn_id", "string"),
            endpoint=lk.get("endpoint", "string"),
            bucket=lk.get("bucket", "string"),
            prefix=lk.get("prefix", "string"),
            format=lk.get("format", "string", choices=LAKE_FORMATS),
            region=lk.get("region", "string"),
        ),
        store_locations=store,
        airbyte=airbyte,
    )
    if read is not None:
        for r in readers.values():
            read |= r.read
    return settings


def local_defaults(prefix: str = DEFAULT_PREFIX, env: Mapping[str, str] = os.environ) -> PipelineSettings:
    """What a pipeline without variables runs with: the local engine and the ``retailflow_*`` connections."""
    endpoint = env.get("RETAILFLOW_LAKE_ENDPOINT")
    return PipelineSettings(
        prefix=prefix,
        origin="local defaults",
        namespace=None,
        name=None,
        engine="direct",
        schedule=None,
        sync_trigger="airflow",
        mysql=Endpoint(DEFAULT_CONN_IDS["mysql"], None, None, None),
        streams=tuple(StreamSettings(n, "incremental_deduped_history", CURSORS[n], pk) for n, pk in PRIMARY_KEYS.items()),
        warehouse=Endpoint(DEFAULT_CONN_IDS["warehouse"], None, None, None),
        raw_schema=env.get("RETAILFLOW_RAW_SCHEMA") or "raw",
        lake=LakeSettings(
            conn_id=DEFAULT_CONN_IDS["lake"],
            endpoint=endpoint or None,
            bucket=env.get("RETAILFLOW_LAKE_BUCKET") or "retailflow",
            prefix=env.get("RETAILFLOW_LAKE_PREFIX") or "raw",
            format="parquet",
            region=env.get("RETAILFLOW_LAKE_REGION") or None,
        ),
        store_locations=StoreLocations(STORE_LOCATIONS_STREAM, None, None),
    )


def load(prefix: str = DEFAULT_PREFIX, get: Callable[[str], Any] | None = None) -> PipelineSettings:
    """Read the pipeline's variables (through ``get(key) -> JSON text | None``, default Airflow's
    ``Variable.get``) and parse them; no ``P``+``pipeline`` variable means local defaults."""
    if get is None:
        from airflow.sdk import Variable

        def get(key: str) -> Any:
            return Variable.get(key, default=None)

    values = {name: get(prefix + name) for name in VARIABLE_NAMES}
    present = {k: v for k, v in values.items() if v is not None}
    if "pipeline" not in present:
        return local_defaults(prefix)
    return parse(present, prefix)
