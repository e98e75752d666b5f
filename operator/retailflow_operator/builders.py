"""Pure builders: a RetailPipeline spec (plus resolved Secret values) -> Airbyte requests and Airflow variables.

Nothing here talks to a server, so every rule of the desired state is unit-tested on its own.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from dataclasses import dataclass, field
from typing import Any, Mapping

from airbyte_api import models

from .errors import SpecError
from .spec_model import CredentialsRef, PipelineSpec

# The project's MySQL schema: stream -> (single-column primary key, cursor column).
STREAM_CATALOG: dict[str, tuple[str, str]] = {
    "customers": ("customer_id", "updated_at"),
    "products": ("product_id", "updated_at"),
    "orders": ("order_id", "updated_at"),
    "order_items": ("order_item_id", "updated_at"),
}
STORE_LOCATIONS_STREAM = "store_locations"
INCREMENTAL_MODES = {"incremental_deduped_history", "incremental_append"}
# The S3 destination appends files; it cannot deduplicate, so deduped streams land appended in the lake.
LAKE_SYNC_MODE = {
    "incremental_deduped_history": "incremental_append",
    "incremental_append": "incremental_append",
    "full_refresh_overwrite": "full_refresh_overwrite",
    "full_refresh_append": "full_refresh_append",
}

# Airbyte masks these in every GET/list answer; they are compared through hashes only.
SECRET_MARKERS = ("password", "secret", "token")
SECRET_KEYS = {"access_key_id", "aws_access_key_id"}
# Airflow's secrets masker hides the value of any variable whose key contains one of these.
AIRFLOW_SENSITIVE_WORDS = (
    "access_token",
    "api_key",
    "apikey",
    "authorization",
    "passphrase",
    "passwd",
    "password",
    "private_key",
    "secret",
    "token",
)
VARIABLE_OWNER_MARK = "Managed by retailflow-operator for RetailPipeline "


def is_secret_key(key: str) -> bool:
    low = key.lower()
    return low in SECRET_KEYS or any(marker in low for marker in SECRET_MARKERS)


def strip_secrets(value: Any) -> Any:
    """The part of a configuration Airbyte returns unmasked."""
    if isinstance(value, Mapping):
        return {k: strip_secrets(v) for k, v in value.items() if not is_secret_key(k)}
    if isinstance(value, list):
        return [strip_secrets(v) for v in value]
    return value


def secret_material(value: Any, path: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    if isinstance(value, Mapping):
        for k, v in value.items():
            sub = f"{path}.{k}" if path else k
            if is_secret_key(k):
                out[sub] = v
            else:
                out.update(secret_material(v, sub))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            out.update(secret_material(v, f"{path}[{i}]"))
    return out


def canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)


def digest(value: Any, salt: str = "") -> str:
    return hashlib.sha256((salt + canonical(value)).encode()).hexdigest()


def keyed_digest(key: bytes, value: Any, context: str) -> str:
    """HMAC-SHA256 of ``value`` under a key only the operator holds: without the key, a hash in a
    status cannot be checked against guessed passwords."""
    return hmac.new(key, f"{context}\n{canonical(value)}".encode(), hashlib.sha256).hexdigest()


def is_subset(desired: Any, actual: Any) -> bool:
    """True when every value in ``desired`` is present in ``actual``.

    Airbyte adds defaults and read-only fields to what it returns, so only the keys the operator
    sends are compared.
    """
    if isinstance(desired, Mapping):
        return isinstance(actual, Mapping) and all(k in actual and is_subset(v, actual[k]) for k, v in desired.items())
    if isinstance(desired, list):
        return (
            isinstance(actual, list)
            and len(desired) == len(actual)
            and all(is_subset(d, a) for d, a in zip(desired, actual, strict=True))
        )
    return desired == actual


def dump(model: Any) -> dict[str, Any]:
    return model.model_dump(by_alias=True, mode="json")


# ---------------------------------------------------------------- naming


#: Airbyte keeps actor and connection names in varchar(256) columns (airbytehq/airbyte-platform,
#: airbyte-db/db-lib/src/main/resources/configs_database/schema_dump.txt: actor.name, connection.name)
AIRBYTE_NAME_LIMIT = 256


def owner(namespace: str, name: str) -> str:
    return f"{namespace}/{name}"


def resource_prefix(prefix: str, namespace: str, name: str) -> str:
    # "/" cannot occur in Kubernetes names, so the parts can never run into each other.
    return f"{prefix}/{namespace}/{name}/"


def resource_name(prefix: str, namespace: str, name: str, role: str) -> str:
    return resource_prefix(prefix, namespace, name) + role


# ---------------------------------------------------------------- validation


@dataclass(frozen=True)
class Stream:
    name: str
    sync_mode: str
    cursor_field: str | None
    primary_key: str | None


def streams(spec: PipelineSpec) -> list[Stream]:
    out: list[Stream] = []
    seen: set[str] = set()
    for raw in spec.mysql.streams:
        stream_name = raw.name
        if stream_name not in STREAM_CATALOG:
            known = ", ".join(sorted(STREAM_CATALOG))
            raise SpecError(f"spec.mysql.streams: unknown stream {stream_name!r}; the orders database has {known}")
        if stream_name in seen:
            raise SpecError(f"spec.mysql.streams: stream {stream_name!r} is listed twice")
        seen.add(stream_name)
        pk, cursor = STREAM_CATALOG[stream_name]
        mode = raw.sync_mode
        incremental = mode in INCREMENTAL_MODES
        out.append(
            Stream(
                name=stream_name,
                sync_mode=mode,
                cursor_field=(raw.cursor_field or cursor) if incremental else None,
                primary_key=raw.primary_key or pk,
            )
        )
    if not out:
        raise SpecError("spec.mysql.streams: list at least one stream")
    return out


def validate(spec: PipelineSpec) -> None:
    """Semantic checks the CRD schema cannot express."""
    streams(spec)
    store = spec.store_locations
    if store and bool(store.s3_key) == bool(store.url):
        raise SpecError("spec.storeLocations: set exactly one of s3Key and url")
    prefix = str(spec.airflow.variable_prefix).lower()
    masked = [w for w in AIRFLOW_SENSITIVE_WORDS if w in prefix]
    if masked:
        raise SpecError(
            f"spec.airflow.variablePrefix: {prefix!r} contains {masked[0]!r}; Airflow masks the values of such "
            "variables when read back, so they could never be verified; choose another prefix"
        )
    if len(str(spec.schedule).split()) != 5:
        raise SpecError("spec.schedule: expected five cron fields (minute hour day-of-month month day-of-week)")
    if spec.engine == "airbyte" and spec.airbyte is None:
        raise SpecError(
            "spec.airbyte: required with engine airbyte (the Airbyte API, workspace and credentials the "
            "connections are created with); or set engine: direct"
        )
    if spec.engine == "airbyte" and spec.airbyte.sync_trigger == "airbyte":
        quartz_cron(spec.schedule)  # only Airbyte runs the schedule as Quartz


def cron_to_quartz_dow(field_: str) -> str:
    # Unix cron counts Sunday as 0 (or 7); Quartz counts it as 1.
    def one(token: str) -> str:
        return str(int(token) % 7 + 1) if token.isdigit() else token.upper()

    parts = []
    for item in field_.split(","):
        step = ""
        if "/" in item:
            item, step = item.split("/", 1)
            step = "/" + step
        if "-" in item:
            lo, hi = item.split("-", 1)
            parts.append(f"{one(lo)}-{one(hi)}{step}")
        else:
            parts.append(one(item) + step)
    return ",".join(parts)


def quartz_cron(cron: str) -> str:
    """Five-field Unix cron -> Quartz (seconds first; `?` in one of day-of-month / day-of-week)."""
    fields = cron.split()
    if len(fields) != 5:
        raise SpecError(f"spec.schedule: {cron!r} is not a five-field cron expression")
    minute, hour, dom, month, dow = fields
    if dow == "*":
        dow = "?"
    elif dom == "*":
        dom = "?"
        dow = cron_to_quartz_dow(dow)
    else:
        raise SpecError(
            "spec.schedule: Airbyte (Quartz) cannot restrict both day-of-month and day-of-week; use `*` in one"
        )
    return f"0 {minute} {hour} {dom} {month} {dow}"


# ---------------------------------------------------------------- secrets


@dataclass(frozen=True)
class SecretRef:
    role: str
    name: str
    keys: dict[str, str]  # logical key -> key inside the Secret


AIRBYTE_ID_KINDS = ("sources", "destinations", "connections")


def airbyte_ids_in(status: Mapping[str, Any] | None) -> dict[str, dict[str, str]]:
    """The Airbyte ids a pipeline's status lists (what it created there), without the empty kinds."""
    ids = (status or {}).get("airbyte") or {}
    return {kind: dict(ids[kind]) for kind in AIRBYTE_ID_KINDS if ids.get(kind)}


def uses_airbyte(spec: PipelineSpec, status: Mapping[str, Any] | None) -> bool:
    """Whether a pass talks to Airbyte at all: with engine airbyte, and with engine direct only while
    the status still lists resources this pipeline created in Airbyte before (to remove them). Without
    a spec.airbyte block there is no Airbyte to talk to (a lite install has none)."""
    if spec.airbyte is None:
        return False
    return spec.engine == "airbyte" or bool(airbyte_ids_in(status))


def secret_refs(spec: PipelineSpec, airbyte: bool = True) -> list[SecretRef]:
    """Every Secret a pass reads, with the keys read from it; Airbyte's only when ``airbyte``
    (``uses_airbyte``): with engine direct and nothing left in Airbyte, its Secret may not exist."""

    def ref(role: str, creds: CredentialsRef) -> SecretRef:
        if not creds.name:
            raise SpecError(f"spec.{role}.credentialsSecretRef.name: required")
        return SecretRef(role, creds.name, dict(creds.keys))

    refs = [
        ref("mysql", spec.mysql.credentials),
        ref("warehouse", spec.warehouse.credentials),
        ref("lake", spec.lake.credentials),
        ref("airflow", spec.airflow.credentials),
    ]
    if airbyte and spec.airbyte is not None:
        refs.append(ref("airbyte", spec.airbyte.credentials))
    return refs


# ---------------------------------------------------------------- Airbyte desired state


#: The public API removes these from ``configuration`` before storing it (ActorConfigurationHelper.kt).
TYPE_KEYS = ("sourceType", "destinationType")


@dataclass(frozen=True)
class Actor:
    """A desired Airbyte source or destination. Its repr never shows the configuration (it holds secrets)."""

    kind: str  # "source" | "destination"
    role: str
    name: str
    configuration: Any = field(repr=False)  # an airbyte_api.models configuration model

    @property
    def config(self) -> dict[str, Any]:
        return dump(self.configuration)

    @property
    def public_config(self) -> dict[str, Any]:
        """What Airbyte answers unmasked: no secret, and no type key (the server strips it)."""
        return {k: v for k, v in strip_secrets(self.config).items() if k not in TYPE_KEYS}

    def secret_hash(self, key: bytes, uid: str) -> str:
        return keyed_digest(key, secret_material(self.config), f"{uid}/{self.name}")


@dataclass(frozen=True)
class Connection:
    """A desired Airbyte connection between two actors, referenced by role."""

    role: str
    name: str
    source_role: str
    destination_role: str
    streams: tuple[models.StreamConfiguration, ...]
    schedule: models.AirbyteAPIConnectionSchedule
    prefix: str = ""

    def create_request(self, workspace_id: str, source_id: str, destination_id: str) -> models.ConnectionCreateRequest:
        return models.ConnectionCreateRequest(
            name=self.name,
            source_id=source_id,
            destination_id=destination_id,
            configurations=models.StreamConfigurations(streams=list(self.streams)),
            schedule=self.schedule,
            status=models.ConnectionStatusEnum.ACTIVE,
            namespace_definition=models.NamespaceDefinitionEnum.DESTINATION,
            prefix=self.prefix,
        )

    def patch_request(self) -> models.ConnectionPatchRequest:
        return models.ConnectionPatchRequest(
            name=self.name,
            configurations=models.StreamConfigurations(streams=list(self.streams)),
            schedule=self.schedule,
            status=models.ConnectionStatusEnum.ACTIVE,
            prefix=self.prefix,
        )

    def comparable(self) -> dict[str, Any]:
        """The fields a patch sets, as Airbyte returns them (see ``answer_comparable``)."""
        body = dump(self.patch_request())
        body.pop("namespaceDefinition", None)
        return body


def answer_comparable(connection: Mapping[str, Any]) -> dict[str, Any]:
    """A connection as Airbyte answers it, with what the server normalises undone.

    The server stores cron schedules in UTC and answers ``"<expression> UTC"``
    (ConnectionReadMapper.kt); it fills in each stream's namespace, mappers and the cursor and primary
    key it resolved; these extra keys are ignored by the subset comparison.
    """
    out = dict(connection)
    schedule = dict(out.get("schedule") or {})
    cron = schedule.get("cronExpression")
    if isinstance(cron, str) and cron.endswith(" UTC"):
        schedule["cronExpression"] = cron[: -len(" UTC")]
    out["schedule"] = schedule
    return out


@dataclass(frozen=True)
class AirbyteState:
    sources: tuple[Actor, ...] = ()
    destinations: tuple[Actor, ...] = ()
    connections: tuple[Connection, ...] = ()
    actors: dict[str, Actor] = field(default_factory=dict)


def build_airbyte(
    namespace: str, name: str, spec: PipelineSpec, secrets: Mapping[str, Mapping[str, str]], prefix: str = "rf"
) -> AirbyteState:
    """Desired Airbyte resources of one pipeline (none when the DAGs ingest directly)."""
    if spec.engine != "airbyte":
        return AirbyteState()
    nm = lambda role: resource_name(prefix, namespace, name, role)  # noqa: E731
    mysql, wh, lake = secrets["mysql"], secrets["warehouse"], secrets["lake"]
    store = spec.store_locations
    my, pg, s3 = spec.mysql, spec.warehouse, spec.lake

    sources = [
        Actor(
            "source",
            "mysql",
            nm("mysql"),
            models.SourceMysql(
                host=my.host,
                port=int(my.port),
                database=my.database,
                username=mysql["username"],
                password=mysql["password"],
                replication_method=models.SourceMysqlScanChangesWithUserDefinedCursor(),
                ssl_mode=models.Preferred(),
                tunnel_method=models.SourceMysqlNoTunnel(),
            ),
        )
    ]
    if store and store.s3_key:
        # source-s3 (not source-file) because only it takes an endpoint, which MinIO needs.
        sources.append(
            Actor(
                "source",
                "store-locations",
                nm("store-locations"),
                models.SourceS3(
                    bucket=s3.bucket,
                    endpoint=s3.endpoint.rstrip("/"),
                    region_name=s3.region,
                    aws_access_key_id=lake["access_key_id"],
                    aws_secret_access_key=lake["secret_access_key"],
                    streams=[
                        models.SourceS3FileBasedStreamConfig(
                            name=STORE_LOCATIONS_STREAM,
                            globs=[store.s3_key],
                            format_=models.SourceS3CSVFormat(),
                        )
                    ],
                ),
            )
        )
    elif store and store.url:
        sources.append(
            Actor(
                "source",
                "store-locations",
                nm("store-locations"),
                models.SourceFile(
                    dataset_name=STORE_LOCATIONS_STREAM,
                    url=store.url,
                    provider=models.HTTPSPublicWeb(),
                    format_=models.FileFormat.CSV,
                ),
            )
        )

    lake_formats = {
        "parquet": models.DestinationS3ParquetColumnarStorage,
        "jsonl": models.DestinationS3JSONLinesNewlineDelimitedJSON,
        "csv": models.DestinationS3CSVCommaSeparatedValues,
    }
    try:
        region = models.DestinationS3S3BucketRegion(s3.region)
    except ValueError:
        raise SpecError(f"spec.lake.region: {s3.region!r} is not an S3 region Airbyte knows") from None
    destinations = [
        Actor(
            "destination",
            "warehouse",
            nm("warehouse"),
            models.DestinationPostgres(
                host=pg.host,
                port=int(pg.port),
                database=pg.database,
                schema_=pg.schema,
                username=wh["username"],
                password=wh["password"],
                # Postgres destination 3.x reads ssl_mode only when ssl is true; the SDK sends ssl: false.
                ssl=pg.ssl_mode != "disable",
                ssl_mode=_pg_ssl(pg.ssl_mode),
                tunnel_method=models.DestinationPostgresNoTunnel(),
            ),
        ),
        Actor(
            "destination",
            "lake",
            nm("lake"),
            models.DestinationS3(
                s3_bucket_name=s3.bucket,
                s3_bucket_path=s3.prefix,
                s3_bucket_region=region,
                s3_endpoint=s3.endpoint.rstrip("/"),
                access_key_id=lake["access_key_id"],
                secret_access_key=lake["secret_access_key"],
                format_=lake_formats[s3.format](),
            ),
        ),
    ]

    if spec.airbyte.sync_trigger == "airbyte":
        schedule = models.AirbyteAPIConnectionSchedule(
            schedule_type=models.ScheduleTypeEnum.CRON, cron_expression=quartz_cron(spec.schedule)
        )
    else:
        schedule = models.AirbyteAPIConnectionSchedule(schedule_type=models.ScheduleTypeEnum.MANUAL)

    def stream_configs(to_lake: bool) -> tuple[models.StreamConfiguration, ...]:
        out = []
        for s in streams(spec):
            mode = LAKE_SYNC_MODE[s.sync_mode] if to_lake else s.sync_mode
            out.append(
                models.StreamConfiguration(
                    name=s.name,
                    sync_mode=models.ConnectionSyncModeEnum(mode),
                    cursor_field=[s.cursor_field] if s.cursor_field and mode in INCREMENTAL_MODES else None,
                    primary_key=[[s.primary_key]] if s.primary_key else None,
                )
            )
        return tuple(out)

    store_stream = (
        models.StreamConfiguration(
            name=STORE_LOCATIONS_STREAM, sync_mode=models.ConnectionSyncModeEnum.FULL_REFRESH_OVERWRITE
        ),
    )
    connections = []
    for src in sources:
        for dst in destinations:
            role = f"{src.role}-to-{dst.role}"
            if src.role == "mysql":
                cfg = stream_configs(to_lake=dst.role == "lake")
            else:
                cfg = store_stream
            connections.append(Connection(role, nm(role), src.role, dst.role, cfg, schedule))

    actors = {("source", a.role): a for a in sources} | {("destination", a.role): a for a in destinations}
    longest = max([*sources, *destinations, *connections], key=lambda r: len(r.name))
    if len(longest.name) > AIRBYTE_NAME_LIMIT:
        # the CRD's metadata.name limit covers the default prefix; a longer RETAILFLOW_RESOURCE_PREFIX may not fit
        raise SpecError(
            f"metadata.name: the Airbyte {longest.__class__.__name__.lower()} name {longest.name!r} is"
            f" {len(longest.name)} characters, over Airbyte's {AIRBYTE_NAME_LIMIT}: use a name (or resource prefix)"
            f" {len(longest.name) - AIRBYTE_NAME_LIMIT} characters shorter"
        )
    return AirbyteState(tuple(sources), tuple(destinations), tuple(connections), actors)


def _pg_ssl(mode: str) -> Any:
    return {
        "disable": models.DestinationPostgresDisable,
        "allow": models.DestinationPostgresAllow,
        "prefer": models.DestinationPostgresPrefer,
        "require": models.DestinationPostgresRequire,
    }[mode]()


# ---------------------------------------------------------------- Airflow variables

VARIABLE_NAMES = ("pipeline", "mysql", "store_locations", "warehouse", "lake", "airbyte")


def build_variables(
    namespace: str,
    name: str,
    spec: PipelineSpec,
    airbyte_ids: Mapping[str, Mapping[str, str]] | None = None,
) -> dict[str, dict[str, Any]]:
    """The Airflow variables the DAGs read: key -> JSON object (see operator/README.md)."""
    p = spec.airflow.variable_prefix
    engine = spec.engine
    conn_ids, my, pg, s3 = spec.airflow.connection_ids, spec.mysql, spec.warehouse, spec.lake
    out: dict[str, dict[str, Any]] = {
        f"{p}pipeline": {
            "namespace": namespace,
            "name": name,
            "engine": engine,
            "schedule": spec.schedule,
            "sync_trigger": spec.airbyte.sync_trigger if engine == "airbyte" else "airflow",
        },
        f"{p}mysql": {
            "conn_id": conn_ids.mysql,
            "host": my.host,
            "port": int(my.port),
            "database": my.database,
            "streams": [
                {
                    "name": s.name,
                    "sync_mode": s.sync_mode,
                    "cursor_field": s.cursor_field,
                    "primary_key": s.primary_key,
                }
                for s in streams(spec)
            ],
        },
        f"{p}warehouse": {
            "conn_id": conn_ids.warehouse,
            "engine": "postgres",
            "host": pg.host,
            "port": int(pg.port),
            "database": pg.database,
            "schema": pg.schema,
        },
        f"{p}lake": {
            "conn_id": conn_ids.lake,
            "endpoint": s3.endpoint,
            "bucket": s3.bucket,
            "prefix": s3.prefix,
            "format": s3.format,
            "region": s3.region,
        },
    }
    store = spec.store_locations
    if store:
        out[f"{p}store_locations"] = {
            "stream": STORE_LOCATIONS_STREAM,
            "s3_key": store.s3_key,
            "url": store.url,
        }
    if engine == "airbyte":
        ids = airbyte_ids or {}
        out[f"{p}airbyte"] = {
            "conn_id": conn_ids.airbyte,
            "api_url": spec.airbyte.api_url,
            "workspace_id": spec.airbyte.workspace_id,
            "connections": dict(sorted((ids.get("connections") or {}).items())),
            "sources": dict(sorted((ids.get("sources") or {}).items())),
            "destinations": dict(sorted((ids.get("destinations") or {}).items())),
        }
    return out


def variable_description(namespace: str, name: str) -> str:
    return f"{VARIABLE_OWNER_MARK}{owner(namespace, name)}; edits are reverted."


#: One variable shared by every pipeline of an Airflow: ``{variable prefix: "namespace/name"}``. The
#: ``retail_pipeline_schedules`` DAG reads it to find each RetailPipeline's variables (a task cannot
#: list variables). Its key starts with no pipeline's default prefix, so no pipeline's listing sees it.
REGISTRY_KEY = "retailpipelines"
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


def variable_owner(description: str | None) -> str | None:
    if description and description.startswith(VARIABLE_OWNER_MARK):
        return description[len(VARIABLE_OWNER_MARK) :].split(";", 1)[0]
    return None
