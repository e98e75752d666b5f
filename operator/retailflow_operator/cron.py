"""The five-field Unix cron of ``spec.schedule`` as the Quartz expression Airbyte runs."""

from __future__ import annotations

from .errors import SpecError


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
