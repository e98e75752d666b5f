"""Local time: UTC offsets of IANA time zones per calendar day, as integer tables for numpy.

Orders are drawn in the local time of the store (in-store sales) or of the customer (online), then
stored in UTC. The offset of a zone on a day is taken at local noon, so a day that changes to or
from summer time uses its afternoon offset for the whole day (the early-morning hour that moves
holds almost no orders).
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo

import numpy as np

#: the largest UTC offset in use anywhere (UTC+14), in seconds
MAX_EAST = 14 * 3600


@lru_cache(maxsize=8)
def offset_table(zones: tuple[str, ...], first_day: date, days: int) -> np.ndarray:
    """`(len(zones), days)` UTC offsets in seconds (local = UTC + offset) of each zone on each day."""
    table = np.zeros((len(zones), days), dtype=np.int64)
    for z, name in enumerate(zones):
        tz = ZoneInfo(name)
        for d in range(days):
            day = first_day + timedelta(days=d)
            table[z, d] = int(datetime(day.year, day.month, day.day, 12, tzinfo=tz).utcoffset().total_seconds())
    table.flags.writeable = False
    return table


def offset_now(zone: str, now_utc: datetime) -> int:
    """UTC offset in seconds of `zone` at the naive UTC instant `now_utc`."""
    return int(now_utc.replace(tzinfo=UTC).astimezone(ZoneInfo(zone)).utcoffset().total_seconds())
