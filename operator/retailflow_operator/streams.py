"""The spec's streams resolved against the catalog: each with its sync mode, cursor and primary key."""

from __future__ import annotations

from dataclasses import dataclass

from .catalog import SOURCE_TABLES
from .errors import SpecError
from .spec_model import PipelineSpec

INCREMENTAL_MODES = {"incremental_deduped_history", "incremental_append"}


@dataclass(frozen=True)
class StreamRequest:
    name: str
    sync_mode: str
    cursor_field: str | None
    primary_key: str | None


def stream_requests(spec: PipelineSpec) -> list[StreamRequest]:
    out: list[StreamRequest] = []
    seen: set[str] = set()
    for raw in spec.mysql.streams:
        stream_name = raw.name
        if stream_name not in SOURCE_TABLES:
            known = ", ".join(sorted(SOURCE_TABLES))
            raise SpecError(f"spec.mysql.streams: unknown stream {stream_name!r}; the orders database has {known}")
        if stream_name in seen:
            raise SpecError(f"spec.mysql.streams: stream {stream_name!r} is listed twice")
        seen.add(stream_name)
        pk, cursor = SOURCE_TABLES[stream_name]
        mode = raw.sync_mode
        incremental = mode in INCREMENTAL_MODES
        out.append(
            StreamRequest(
                name=stream_name,
                sync_mode=mode,
                cursor_field=(raw.cursor_field or cursor) if incremental else None,
                primary_key=raw.primary_key or pk,
            )
        )
    if not out:
        raise SpecError("spec.mysql.streams: list at least one stream")
    return out
