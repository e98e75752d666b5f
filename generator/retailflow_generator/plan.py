"""The order plan: when each order is placed (UTC), by whom, online or at which store.

Orders are drawn in local time: a local day (weekly and yearly seasonality, growth), a customer
(heavy spenders more often; only customers signed up by then), a channel (the customer's own online
share; in store only at a home store already open), a local time of day (the channel's hourly
profile), and then the UTC instant from the time zone of the store, or of the customer for online
orders. Draws that fall outside the UTC window [start, as_of) are drawn again (rejection sampling,
so the edges keep the right shape). The plan is sorted by time, so order ids follow time.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta

import numpy as np

from . import shape
from .encode import US_PER_DAY, US_PER_SECOND
from .homes import StoreTable
from .timezones import MAX_EAST, offset_table

#: draws per round (bounds the memory of a round's temporaries)
BLOCK = 200_000
#: draws per wanted order before a window is declared too narrow for the local days around it
MAX_DRAWS_PER_ORDER = 40
_SAFE_US = MAX_EAST * US_PER_SECOND  # a local time is never more than 14 h ahead of UTC


@dataclass(frozen=True)
class CustomerPool:
    """Customers orders can be attributed to, sorted by sign-up time."""

    ids: np.ndarray
    signed_up: np.ndarray  #: µs, ascending
    cumulative: np.ndarray  #: running sum of spend weights, in sign-up order
    home: np.ndarray  #: (n, K) home store rows (into the StoreTable), nearest first
    online_share: np.ndarray
    zone: np.ndarray  #: time zone index of the customer's city

    @classmethod
    def build(cls, rng, ids, signed_up, home, online_share, zone) -> CustomerPool:
        weights = shape.spend_weights(rng, len(ids))
        order = np.argsort(signed_up, kind="stable")
        return cls(ids[order], signed_up[order], np.cumsum(weights[order]), home[order],
                   online_share[order], zone[order])


@dataclass(frozen=True)
class OrderPlan:
    ordered: np.ndarray  #: µs UTC, ascending
    who: np.ndarray  #: row in the CustomerPool
    online: np.ndarray
    store_id: np.ndarray  #: 0 for online orders


class WindowTooNarrow(ValueError):
    """Almost no local time of the date range falls before the window's end (e.g. it ends now)."""


def _draw(rng, n, days_first, cdf, customers: CustomerPool, stores: StoreTable, offsets, window):
    """One round: n orders drawn in local time; returns (UTC µs, who, online, store row, valid)."""
    day = np.searchsorted(cdf, rng.random(n), side="right")
    day = np.minimum(day, len(cdf) - 1)
    local_day = (days_first + day) * US_PER_DAY
    # a customer can order from the moment they signed up; a local time is at most 14 h ahead of
    # UTC, so "signed up 14 h before local midnight" holds in UTC for any zone
    signed = np.searchsorted(customers.signed_up, local_day - _SAFE_US, side="right")
    valid = signed > 0
    who = shape.weighted_prefix_choice(rng, customers.cumulative, np.maximum(signed, 1))
    online = rng.random(n) < customers.online_share[who]
    # in store: one of the customer's home stores that is open by then (same margin as sign-up)
    home = customers.home[who]
    k = home.shape[1]
    if len(stores.ids):
        is_open = (home >= 0) & (stores.opened[np.maximum(home, 0)] <= (local_day - _SAFE_US)[:, None])
    else:
        is_open = np.zeros(home.shape, dtype=bool)
    weights = np.asarray(shape.HOME_STORE_WEIGHTS)[None, :k] * is_open
    total = weights.sum(axis=1)
    online |= total == 0  # before any of their stores opened, customers could only buy online
    cum = np.cumsum(weights, axis=1)
    pick = (cum < (rng.random(n) * total)[:, None]).sum(axis=1)
    store_row = np.where(online, -1, home[np.arange(n), np.minimum(pick, k - 1)])
    zone = np.where(online, customers.zone[who], stores.zone[np.maximum(store_row, 0)] if len(stores.ids) else 0)
    seconds = shape.time_of_day(rng, online)
    ordered = local_day + (seconds * US_PER_SECOND).astype(np.int64) - offsets[zone, day] * US_PER_SECOND
    valid &= (ordered >= window[0]) & (ordered < window[1])
    return ordered, who, online, store_row, valid


def order_plan(
    rng: np.random.Generator,
    total: int,
    start: date,
    end: date,
    as_of: int,
    customers: CustomerPool,
    stores: StoreTable,
    zones: tuple[str, ...],
) -> OrderPlan:
    """`total` orders in the UTC window [start 00:00, as_of), drawn in local time, sorted by time."""
    # local days from the day before start (west of UTC, its evening is already `start` in UTC)
    first = start - timedelta(days=1)
    n_days = (end - first).days + 1
    weights = shape.day_weights(first, end)
    cdf = np.cumsum(weights) / weights.sum()
    offsets = offset_table(zones, first, n_days)
    days_first = (first - date(1970, 1, 1)).days
    window = (shape.day_us(start), as_of)

    parts = []
    missing, drawn = total, 0
    while missing:
        if drawn > MAX_DRAWS_PER_ORDER * total + 1000:
            raise WindowTooNarrow(f"only {total - missing} of {total} orders fit")
        # draw a little more than missing (the edges reject a few): most rounds finish the job
        n = min(missing + missing // 8 + 16, BLOCK)
        ordered, who, online, store_row, valid = _draw(rng, n, days_first, cdf, customers, stores, offsets, window)
        drawn += n
        keep = np.flatnonzero(valid)[:missing]
        parts.append((ordered[keep], who[keep].astype(np.int32), online[keep], store_row[keep].astype(np.int16)))
        missing -= len(keep)
    ordered = np.concatenate([p[0] for p in parts]) if parts else np.zeros(0, dtype=np.int64)
    who = np.concatenate([p[1] for p in parts]) if parts else np.zeros(0, dtype=np.int64)
    online = np.concatenate([p[2] for p in parts]) if parts else np.zeros(0, dtype=bool)
    store_row = np.concatenate([p[3] for p in parts]) if parts else np.zeros(0, dtype=np.int64)
    by_time = np.argsort(ordered, kind="stable")
    ordered, online = ordered[by_time], online[by_time]
    who, store_row = who[by_time].astype(np.int64), store_row[by_time].astype(np.int64)
    store_id = np.where(online, 0, stores.ids[np.maximum(store_row, 0)] if len(stores.ids) else 0)
    return OrderPlan(ordered, who, online, store_id)
