"""A RetailPipeline spec as a typed model: parsed once, at the kopf handler's door, with the CRD's defaults.

Every layer below the handlers (``passes``, ``converge``, the desired-state builders, ``trust``,
``kube``, the clients) takes this model or one of its parts, never the raw ``spec`` dict. Parsing only
reads and defaults (the defaults are the CRD's, read from ``crd``); the semantic checks (streams,
schedule, prefix) stay in ``validation.validate`` so a suspended pipeline is reported Suspended, not
Failed, whatever its spec holds.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from . import crd
from .hashing import digest
from .spec_fields import unknown_fields

# The CRD's own openAPIV3Schema defaults, read from the copy shipped in this package: the emulated and
# some real API servers skip defaulting, so the operator applies them itself and never relies on it.
DEFAULTS: dict[str, Any] = crd.DEFAULTS


@dataclass(frozen=True)
class CredentialsRef:
    """A ``credentialsSecretRef``: the Secret's name and, by logical key, the key inside it."""

    name: str | None
    keys: tuple[tuple[str, str], ...]  # (logical key, key inside the Secret)


@dataclass(frozen=True)
class StreamSpec:
    """One ``spec.mysql.streams`` entry as written (the catalog fills the rest in ``streams.stream_requests``)."""

    name: Any
    sync_mode: str
    cursor_field: str | None
    primary_key: str | None


@dataclass(frozen=True)
class MysqlSpec:
    host: str | None
    port: int
    database: str | None
    streams: tuple[StreamSpec, ...]
    credentials: CredentialsRef


@dataclass(frozen=True)
class StoreLocationsSpec:
    s3_key: str | None
    url: str | None


@dataclass(frozen=True)
class WarehouseSpec:
    host: str | None
    port: int
    database: str | None
    schema: str
    ssl_mode: str
    credentials: CredentialsRef


@dataclass(frozen=True)
class LakeSpec:
    endpoint: str | None
    bucket: str | None
    prefix: str
    format: str
    region: str
    credentials: CredentialsRef


@dataclass(frozen=True)
class AirbyteSpec:
    api_url: str | None
    token_url: str | None
    workspace_id: str | None
    sync_trigger: str
    credentials: CredentialsRef


@dataclass(frozen=True)
class ConnectionIds:
    airbyte: str
    mysql: str
    warehouse: str
    lake: str


@dataclass(frozen=True)
class AirflowSpec:
    api_url: str | None
    variable_prefix: str
    connection_ids: ConnectionIds
    credentials: CredentialsRef


@dataclass(frozen=True)
class PipelineSpec:
    engine: str
    mysql: MysqlSpec
    store_locations: StoreLocationsSpec | None  # None when the spec lists no store file
    warehouse: WarehouseSpec
    lake: LakeSpec
    airbyte: AirbyteSpec | None  # None without a spec.airbyte block (allowed with engine direct only)
    airflow: AirflowSpec
    schedule: str
    suspend: bool
    deletion_policy: str
    #: hash of the applied non-secret spec as written (Secret references are names, never values)
    public_hash: str
    #: paths of received fields this operator does not know (reported in the KnownFields condition)
    unknown_fields: tuple[str, ...] = ()


def _at(spec: Mapping[str, Any], path: str) -> Any:
    """Value at a dotted path, falling back to the CRD default (absent, null or a non-object parent)."""
    node: Any = spec
    for part in path.split("."):
        if not isinstance(node, Mapping) or part not in node or node[part] is None:
            return DEFAULTS.get(path)
        node = node[part]
    return node


_USER_PW = (("username", "usernameKey"), ("password", "passwordKey"))


def _credentials(spec: Mapping[str, Any], section: str, logical: tuple[tuple[str, str], ...]) -> CredentialsRef:
    base = f"{section}.credentialsSecretRef"
    return CredentialsRef(_at(spec, f"{base}.name"), tuple((lk, _at(spec, f"{base}.{f}")) for lk, f in logical))


def _stream(raw: Any) -> StreamSpec:
    raw = raw if isinstance(raw, Mapping) else {}
    return StreamSpec(
        name=raw.get("name"),
        sync_mode=raw.get("syncMode") or DEFAULTS["mysql.streams.syncMode"],
        cursor_field=raw.get("cursorField"),
        primary_key=raw.get("primaryKey"),
    )


def parse(spec: Mapping[str, Any]) -> PipelineSpec:
    """The typed, defaulted model of a RetailPipeline ``spec`` (a dict or kopf's view of one)."""
    spec = dict(spec or {})
    store = spec.get("storeLocations") or {}
    return PipelineSpec(
        engine=_at(spec, "engine"),
        mysql=MysqlSpec(
            host=_at(spec, "mysql.host"),
            port=_at(spec, "mysql.port"),
            database=_at(spec, "mysql.database"),
            streams=tuple(_stream(s) for s in (_at(spec, "mysql.streams") or [])),
            credentials=_credentials(spec, "mysql", _USER_PW),
        ),
        store_locations=StoreLocationsSpec(store.get("s3Key"), store.get("url")) if store else None,
        warehouse=WarehouseSpec(
            host=_at(spec, "warehouse.host"),
            port=_at(spec, "warehouse.port"),
            database=_at(spec, "warehouse.database"),
            schema=_at(spec, "warehouse.schema"),
            ssl_mode=_at(spec, "warehouse.sslMode"),
            credentials=_credentials(spec, "warehouse", _USER_PW),
        ),
        lake=LakeSpec(
            endpoint=_at(spec, "lake.endpoint"),
            bucket=_at(spec, "lake.bucket"),
            prefix=_at(spec, "lake.prefix"),
            format=_at(spec, "lake.format"),
            region=_at(spec, "lake.region"),
            credentials=_credentials(
                spec, "lake", (("access_key_id", "accessKeyIdKey"), ("secret_access_key", "secretAccessKeyKey"))
            ),
        ),
        airbyte=AirbyteSpec(
            api_url=_at(spec, "airbyte.apiUrl"),
            token_url=_at(spec, "airbyte.tokenUrl"),
            workspace_id=_at(spec, "airbyte.workspaceId"),
            sync_trigger=_at(spec, "airbyte.syncTrigger"),
            credentials=_credentials(spec, "airbyte", (("client_id", "clientIdKey"), ("client_secret", "clientSecretKey"))),
        )
        if isinstance(spec.get("airbyte"), Mapping)
        else None,
        airflow=AirflowSpec(
            api_url=_at(spec, "airflow.apiUrl"),
            variable_prefix=_at(spec, "airflow.variablePrefix"),
            connection_ids=ConnectionIds(
                airbyte=_at(spec, "airflow.connectionIds.airbyte"),
                mysql=_at(spec, "airflow.connectionIds.mysql"),
                warehouse=_at(spec, "airflow.connectionIds.warehouse"),
                lake=_at(spec, "airflow.connectionIds.lake"),
            ),
            credentials=_credentials(spec, "airflow", _USER_PW),
        ),
        schedule=_at(spec, "schedule"),
        suspend=_at(spec, "suspend"),
        deletion_policy=_at(spec, "deletionPolicy"),
        public_hash=digest({k: v for k, v in spec.items() if k not in ("suspend",)}),
        unknown_fields=tuple(unknown_fields(spec)),
    )
