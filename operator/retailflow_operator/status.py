"""Pure helpers building the RetailPipeline status and the merge patch that moves it there."""

from __future__ import annotations

import datetime as dt
from typing import Any, Mapping

CONDITION_TYPES = ("Ready", "AirbyteSynced", "AirflowSynced", "KnownFields")


def now() -> str:
    return dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def conditions(
    current: list[Mapping[str, Any]] | None, updates: Mapping[str, tuple[str, str, str]]
) -> list[dict[str, Any]]:
    """New conditions list; ``lastTransitionTime`` moves only when a condition's status flips."""
    by_type = {c["type"]: dict(c) for c in current or [] if "type" in c}
    for ctype, (cstatus, reason, message) in updates.items():
        old = by_type.get(ctype)
        changed = old is None or old.get("status") != cstatus
        by_type[ctype] = {
            "type": ctype,
            "status": cstatus,
            "reason": reason,
            "message": message,
            "lastTransitionTime": now() if changed else old.get("lastTransitionTime", now()),
        }
    ordered = [by_type.pop(t) for t in CONDITION_TYPES if t in by_type]
    return ordered + [by_type[t] for t in sorted(by_type)]


def merge_diff(old: Any, new: Any) -> Any:
    """JSON merge patch (RFC 7386) turning ``old`` into ``new`` for the keys of ``new``; None deletes."""
    if not isinstance(old, Mapping) or not isinstance(new, Mapping):
        return new
    out: dict[str, Any] = {}
    for key, value in new.items():
        if key not in old:
            if value is not None:
                out[key] = value
        elif value is None:
            out[key] = None
        elif isinstance(value, Mapping) and isinstance(old[key], Mapping):
            sub = merge_diff(old[key], value)
            if sub:
                out[key] = sub
            for gone in set(old[key]) - set(value):
                out.setdefault(key, {})[gone] = None
        elif old[key] != value:
            out[key] = value
    return out

