"""The order plan: when each order is placed (UTC), by whom, online or at which store.

Orders are drawn in local time: a local day (weekly and yearly seasonality, growth), a customer
(heavy spenders more often; only customers signed up by then), a channel (the customer's own online
share; in store only at a home store already open), a local time of day (the channel's hourly
profile), and then the UTC instant from the time zone of the store, or of the customer for online
orders. Draws that fall outside the UTC window [start, as_of) are drawn again (rejection sampling,
so the edges keep the right shape). Order ids follow time.

The plan is drawn in blocks, so its memory does not grow with the number of orders: first the
number of orders of each local day (a multinomial over the day weights, O(days)); then the orders
themselves, `BLOCK` at a time in day order, each block from its own random stream keyed by the
seed, the round and the block's number. A local day's orders land, in UTC, from 14 h before it begins to
12 h after it ends, so a block is sorted with what is left of the previous ones and only the orders earlier
than anything a later block can hold are handed on; the rest (about the last day and a half) waits.
Only draws on the window's edge days can be refused: their blocks are drawn once to count what is
kept, and the refused ones are drawn again as a further round over all days: the same distribution
as drawing every order independently and keeping those inside the window. Memory is about `BLOCK`
orders plus a day and a half of orders (a range of a few days with millions of orders holds them).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, timedelta

import numpy as np

from . import shape
from .encode import US_PER_DAY, US_PER_SECOND
from .homes import StoreTable
from .timezones import MAX_EAST, offset_table

#: orders drawn at once: bounds the plan's memory; part of the random streams' keys (changing it
#: changes the data)
BLOCK = 50_000
#: draws per wanted order before a window is declared too narrow for the local days around it
MAX_DRAWS_PER_ORDER = 40
_SAFE_US = MAX_EAST * US_PER_SECOND  # a local time is never more than 14 h ahead of UTC


@dataclass(frozen=True)
class CustomerPool:
    """Customers orders can be attributed to, sorted by sign-up time."""

    ids: np.ndarray
    signed_up: np.ndarray  #: µs, ascending
    cumulative: np.ndarray  #: running sum of spend weights, in sign-up order
    home: np.ndarray  #: (n, K) home store rows (into the StoreTable), nearest first; int16
    online_share: np.ndarray
    zone: np.ndarray  #: time zone index of the customer's city; int16

    @classmethod
    def build(cls, rng, ids, signed_up, home, online_share, zone) -> CustomerPool:
        weights = shape.spend_weights(rng, len(ids))
        order = np.argsort(signed_up, kind="stable")
        # small integer types: this state grows with the customers (a few dozen stores and zones)
        return cls(ids[order], signed_up[order], np.cumsum(weights[order]), home[order].astype(np.int16),
                   online_share[order], zone[order].astype(np.int16))


@dataclass(frozen=True)
class OrderPlan:
    """Consecutive orders of the plan (a chunk of it, or all of it)."""

    ordered: np.ndarray  #: µs UTC, ascending
    who: np.ndarray  #: row in the CustomerPool
    online: np.ndarray
    store_id: np.ndarray  #: 0 for online orders

    def __len__(self) -> int:
        return len(self.ordered)


class WindowTooNarrow(ValueError):
    """Almost no local time of the date range falls before the window's end (e.g. it ends now)."""


def _draw(rng, day, days_first, customers: CustomerPool, stores: StoreTable, offsets, window):
    """Orders on the given local days (indices from the first day); returns (UTC µs, who, online,
    store row, valid)."""
    n = len(day)
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


class OrderPlanner:
    """`total` orders in the UTC window [start 00:00, as_of), drawn in local time, handed out in time
    order by `chunks` (as often as wanted: the same orders each time), `block` orders at a time.

    Building it draws the number of orders of each local day (and, on the window's edges, counts the
    draws kept); `chunks` draws the orders themselves. `key` seeds every random stream."""

    def __init__(self, key, total: int, start: date, end: date, as_of: int, customers: CustomerPool,
                 stores: StoreTable, zones: tuple[str, ...], block: int = BLOCK):
        self.key = [int(k) for k in np.atleast_1d(key)]
        self.total, self.block, self.customers, self.stores = total, block, customers, stores
        # local days from the day before start (west of UTC, its evening is already `start` in UTC)
        first = start - timedelta(days=1)
        n_days = (end - first).days + 1
        weights = shape.day_weights(first, end)
        self.offsets = offset_table(zones, first, n_days)
        self.days_first = (first - date(1970, 1, 1)).days
        self.window = (shape.day_us(start), as_of)
        local_day = (self.days_first + np.arange(n_days)) * US_PER_DAY
        #: the earliest UTC instant an order of each local day can have
        self.earliest = local_day - self.offsets.max(axis=0) * US_PER_SECOND
        latest = local_day + US_PER_DAY - self.offsets.min(axis=0) * US_PER_SECOND
        # a day on which nobody had signed up yet keeps none of its draws: it gets none
        if len(customers.signed_up):
            open_days = local_day - _SAFE_US >= customers.signed_up[0]
        else:
            open_days = np.zeros(n_days, dtype=bool)
        weights = weights * open_days
        # every draw of a day wholly inside the window is kept; the others are drawn to find out
        self.inside = open_days & (self.earliest >= self.window[0]) & (latest <= self.window[1])
        #: per round: (days with draws, their counts), the days ascending
        self.rounds: list[tuple[np.ndarray, np.ndarray]] = []
        if not total:
            return
        if not weights.sum():
            raise WindowTooNarrow(f"no day of the range has a customer signed up: 0 of {total} orders fit")
        counts_rng = np.random.default_rng([*self.key, 0])
        p = weights / weights.sum()
        missing, drawn = total, 0
        while missing:
            if drawn > MAX_DRAWS_PER_ORDER * total + 1000:
                raise WindowTooNarrow(f"only {total - missing} of {total} orders fit")
            counts = counts_rng.multinomial(missing, p)
            drawn += missing
            days = np.flatnonzero(counts)
            self.rounds.append((days, counts[days]))
            r = len(self.rounds) - 1
            kept = 0
            for s, lo, hi, _day, inside in self._blocks(r):
                kept += (hi - lo) if inside else int(self._draw_block(r, s, lo, hi)[4].sum())
            missing -= kept

    def _blocks(self, r: int):
        """(number, first, end, first day, inside) of round r's blocks. A round's draws are taken in
        day order, `block` at a time; a block holds either only days wholly inside the window or only
        edge days, so that counting what is kept draws the edge days alone."""
        days, counts = self.rounds[r]
        ends = np.cumsum(counts)
        inside = self.inside[days]
        cuts = [0, *(np.flatnonzero(np.diff(inside)) + 1), len(days)]
        s = 0
        for a, b in zip(cuts[:-1], cuts[1:]):
            first, last = int(ends[a] - counts[a]), int(ends[b - 1])
            for lo in range(first, last, self.block):
                hi = min(lo + self.block, last)
                yield s, lo, hi, int(days[np.searchsorted(ends, lo, side="right")]), bool(inside[a])
                s += 1

    def _draw_block(self, r: int, s: int, lo: int, hi: int):
        days, counts = self.rounds[r]
        ends = np.cumsum(counts)
        day = days[np.searchsorted(ends, np.arange(lo, hi), side="right")]
        rng = np.random.default_rng([*self.key, 1, r, s])
        return _draw(rng, day, self.days_first, self.customers, self.stores, self.offsets, self.window)

    def _sorted_pieces(self):
        """The kept orders in time order, as (ordered, who, online, store row) pieces."""
        blocks = sorted((day, r, s, lo, hi) for r in range(len(self.rounds)) for s, lo, hi, day, _ in self._blocks(r))
        waiting: list[tuple[np.ndarray, ...]] = []
        n_waiting, carried = 0, 0
        for i, (_day, r, s, lo, hi) in enumerate(blocks):
            ordered, who, online, store_row, valid = self._draw_block(r, s, lo, hi)
            keep = np.flatnonzero(valid)
            waiting.append((ordered[keep], who[keep], online[keep], store_row[keep]))
            n_waiting += len(keep)
            last = i + 1 == len(blocks)
            if not last and n_waiting < max(self.block, 2 * carried):
                continue
            # nothing a later block draws is earlier than its first day's earliest instant
            horizon = None if last else self.earliest[blocks[i + 1][0]]
            ordered, who, online, store_row = (np.concatenate(column) for column in zip(*waiting))
            by_time = np.argsort(ordered, kind="stable")
            ordered, who, online, store_row = ordered[by_time], who[by_time], online[by_time], store_row[by_time]
            ready = len(ordered) if horizon is None else int(np.searchsorted(ordered, horizon, side="left"))
            if ready:
                yield ordered[:ready], who[:ready], online[:ready], store_row[:ready]
            waiting = [(ordered[ready:], who[ready:], online[ready:], store_row[ready:])]
            n_waiting = carried = len(ordered) - ready

    def chunks(self, size: int) -> Iterator[OrderPlan]:
        """The plan in time order, `size` orders a chunk (the last one may be shorter)."""
        held: list[tuple[np.ndarray, ...]] = []
        n_held = 0
        pieces = self._sorted_pieces()
        done = False
        while not done:
            piece = next(pieces, None)
            if piece is None:
                done = True
            else:
                held.append(piece)
                n_held += len(piece[0])
            while n_held >= size or (done and n_held):
                columns = [np.concatenate(column) for column in zip(*held)]
                take = min(size, n_held)
                yield self._plan(*(c[:take] for c in columns))
                held = [tuple(c[take:] for c in columns)]
                n_held -= take

    def _plan(self, ordered, who, online, store_row) -> OrderPlan:
        ids = self.stores.ids
        store_id = np.where(online, 0, ids[np.maximum(store_row, 0)] if len(ids) else 0)
        return OrderPlan(ordered, who.astype(np.int64), online, store_id.astype(np.int64))


def order_plan(key, total: int, start: date, end: date, as_of: int, customers: CustomerPool,
               stores: StoreTable, zones: tuple[str, ...], block: int = BLOCK) -> OrderPlan:
    """The whole plan at once (small plans: tests, checks); the seed takes it chunk by chunk."""
    planner = OrderPlanner(key, total, start, end, as_of, customers, stores, zones, block)
    parts = list(planner.chunks(max(total, 1)))
    if not parts:
        empty = np.zeros(0, dtype=np.int64)
        return OrderPlan(empty, empty, np.zeros(0, dtype=bool), empty)
    return parts[0]
