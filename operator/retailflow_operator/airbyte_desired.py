"""The desired Airbyte resources of a pipeline (sources, destinations, connections) as airbyte-api SDK
requests, and how an answer of the server is compared with them.

Nothing here talks to a server, so every rule of the desired state is unit-tested on its own.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

from airbyte_api import models

from .catalog import STORE_LOCATIONS_STREAM
from .cron import quartz_cron
from .errors import SpecError
from .hashing import keyed_digest, secret_material, strip_secrets
from .naming import AIRBYTE_NAME_LIMIT, resource_name
from .spec_model import PipelineSpec
from .streams import INCREMENTAL_MODES, stream_requests

# The S3 destination appends files; it cannot deduplicate, so deduped streams land appended in the lake.
LAKE_SYNC_MODE = {
    "incremental_deduped_history": "incremental_append",
    "incremental_append": "incremental_append",
    "full_refresh_overwrite": "full_refresh_overwrite",
    "full_refresh_append": "full_refresh_append",
}
#: The public API removes these from ``configuration`` before storing it (ActorConfigurationHelper.kt).
TYPE_KEYS = ("sourceType", "destinationType")


def dump(model: Any) -> dict[str, Any]:
    return model.model_dump(by_alias=True, mode="json")


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
        for s in stream_requests(spec):
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
