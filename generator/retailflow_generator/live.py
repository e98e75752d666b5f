"""`live`: a shop that keeps trading. Each tick inserts new orders and moves open ones along
(placed → paid → shipped → delivered, a few cancelled or returned), stamping `updated_at` with the
current time so that incremental readers see the changes. One transaction per tick.
"""

from __future__ import annotations

import math
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import numpy as np
import pymysql

from . import shape
from .db import GeneratorError, MySQLTarget, UsageError, connect, missing_tables
from .geography import countries
from .limits import LIVE_LIMITS, MIN_INTERVAL
from .timezones import offset_now

#: next status of an open order, and the chance it is cancelled instead
NEXT_STATUS = {"placed": ("paid", 0.04), "paid": ("shipped", 0.02), "shipped": ("delivered", 0.0)}
#: how far back from the newest order open orders are looked for
OPEN_WINDOW = timedelta(days=30)
#: share of status changes that are returns of a recently delivered order
RETURN_SHARE = 0.04
#: a history that ends longer ago than this before `live` starts gets a note about the gap
GAP_WARNING = timedelta(days=2)
#: the most seconds of traffic beyond --interval that one tick carries (see `tick_span`)
STALL_CAP = 1.0
#: the most ticks a run accepts (a week of one-second ticks, with room to spare)
MAX_ITERATIONS = 10_000_000


@dataclass(frozen=True)
class LiveRequest:
    duration: float | None = None
    iterations: int | None = None
    rate: float = 5.0  #: new orders per second
    interval: float = 1.0  #: seconds per tick
    seed: int | None = None
    report_every: float = 5.0  #: seconds between progress lines when stderr is not a terminal

    def validate(self) -> None:
        """Refuse numbers that are not finite, not positive or absurd (UsageError: exit code 2)."""
        if (self.duration is None) == (self.iterations is None):
            raise UsageError("pass exactly one of --duration and --iterations")
        checks = {"--duration": (self.duration, LIVE_LIMITS["duration"]), "--rate": (self.rate, LIVE_LIMITS["rate"]),
                  "--interval": (self.interval, LIVE_LIMITS["interval"]),
                  "--report-every": (self.report_every, LIVE_LIMITS["interval"])}
        for flag, (value, limit) in checks.items():
            if value is None:
                continue
            if not math.isfinite(value) or value <= 0:
                raise UsageError(f"{flag} must be a finite number greater than zero, got {value}")
            if value > limit:
                raise UsageError(f"{flag} must be at most {limit:g}, got {value:g}")
        if self.interval < MIN_INTERVAL:
            raise UsageError(f"--interval must be at least {MIN_INTERVAL:g}, got {self.interval:g}")
        if self.iterations is not None and not 0 < self.iterations <= MAX_ITERATIONS:
            raise UsageError(f"--iterations must be between 1 and {MAX_ITERATIONS:,}, got {self.iterations}")
        if self.rate * self.interval > 100_000:
            raise UsageError(f"--rate x --interval must be at most 100,000 orders a tick, got {self.rate * self.interval:g}")
        if self.seed is not None and not 0 <= self.seed < 2**63:
            raise UsageError(f"--seed must be between 0 and 2**63 - 1, got {self.seed}")


@dataclass
class LiveResult:
    ticks: int = 0
    new_orders: int = 0
    new_lines: int = 0
    changes: Counter = field(default_factory=Counter)
    seconds: float = 0.0
    where: str = ""

    def summary(self) -> str:
        moved = sum(self.changes.values())
        detail = ", ".join(f"{k} {v}" for k, v in sorted(self.changes.items()))
        return (
            f"live: {self.ticks} ticks in {self.seconds:.1f} s: {self.new_orders} new orders "
            f"({self.new_lines} lines), {moved} status changes ({detail or 'none'}) in {self.where}"
        )


def _now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


class _Shop:
    """What the shop knows at start: customers with their home stores, online share and time
    zone; products with their popularity."""

    def __init__(self, conn, rng: np.random.Generator):
        from .seed import ProductPool, _atlas, build_customer_pool

        country_of = {c.code: i for i, (_r, c) in enumerate(countries())}
        category_of = {c.name: i for i, c in enumerate(shape.CATEGORIES)}
        with conn.cursor() as cur:
            cur.execute("select customer_id, country, city from customers order by customer_id")
            customers = cur.fetchall()
            cur.execute("select product_id, round(unit_price * 100), category from products order by product_id")
            products = cur.fetchall()
            cur.execute("select max(ordered_at) from orders")
            latest = cur.fetchone()[0]
        if not customers or not products:
            raise GeneratorError("the database has no customers or products yet: run `retailflow-generator seed` first"
                                 " (nothing was written)")
        atlas = _atlas()
        ids = np.array([c[0] for c in customers], dtype=np.int64)
        country = np.array([country_of.get(c[1], 0) for c in customers], dtype=np.int64)
        city = np.array([atlas.city_index(int(k), c[2]) for k, c in zip(country, customers)], dtype=np.int64)
        # sign-up order does not matter here: everyone has signed up by now
        self.customers, self.stores, atlas = build_customer_pool(rng, ids, np.zeros(len(ids), dtype=np.int64),
                                                                 country, city)
        self.zones = atlas.zones
        self.products = ProductPool.build(
            rng,
            np.array([p[0] for p in products], dtype=np.int64),
            np.array([int(p[1]) for p in products], dtype=np.int64),
            np.array([category_of.get(p[2], 0) for p in products], dtype=np.int64),
        )
        self.latest = latest
        #: orders placed before this are all settled (an order ships and arrives within days)
        self.open_horizon = (latest or _now()) - OPEN_WINDOW

    def local_hour_weights(self, now: datetime) -> tuple[np.ndarray, np.ndarray]:
        """(online, in-store) relative weight of the current local hour in each time zone."""
        hours = np.array([(now.hour * 3600 + now.minute * 60 + offset_now(z, now)) // 3600 % 24 for z in self.zones])
        online = shape.ONLINE_HOUR_WEIGHT[hours] / shape.ONLINE_HOUR_WEIGHT.mean()
        store = shape.STORE_HOUR_WEIGHT[hours] / shape.STORE_HOUR_WEIGHT.mean()
        return online, store


def _new_orders(rng: np.random.Generator, shop: _Shop, now: datetime, n: int, first_id: int):
    """`n` orders placed now: (order id, customer id, store id or None, [(product id, quantity, cents)]).

    The same shape as the seeded history, in local time: who orders now is weighted by the local
    hour of their time zone (or of their home store's, in store: closed stores sell nothing)."""
    from .seed import distinct_products

    if n == 0:
        return []
    pool, stores = shop.customers, shop.stores
    online_hour, store_hour = shop.local_hour_weights(now)
    share = pool.online_share
    spend = np.diff(pool.cumulative, prepend=0.0)
    # in store: one of the customer's home stores that is open, by the seed's home-store weights
    k = pool.home.shape[1]
    home = pool.home[np.arange(len(share)), np.minimum(
        (rng.random(len(share))[:, None] > np.cumsum(shape.HOME_STORE_WEIGHTS)[None, :k]).sum(axis=1), k - 1)]
    if len(stores.ids):
        home_zone = stores.zone[np.maximum(home, 0)]
        store_open = (home >= 0) & (stores.opened[np.maximum(home, 0)] <= shape.day_us(now.date()))
    else:
        home_zone, store_open = pool.zone, np.zeros(len(home), dtype=bool)
    # each customer's rate now: the online part by their own local hour, the store part by the
    # local hour at their store
    w_online = spend * np.where(store_open, share, 1.0) * online_hour[pool.zone]
    w_store = spend * np.where(store_open, 1.0 - share, 0.0) * store_hour[home_zone]
    cumulative = np.cumsum(np.concatenate([w_online, w_store]))
    if cumulative[-1] <= 0:
        return []
    pick = np.minimum(np.searchsorted(cumulative, rng.random(n) * cumulative[-1], side="right"), len(cumulative) - 1)
    who, in_store = pick % len(home), pick >= len(home)
    lines = shape.lines_per_order(rng, n, min(shape.MAX_LINES, len(shop.products.ids)))
    owner = np.repeat(np.arange(n), lines)
    product = distinct_products(rng, owner, lines, shop.products)
    quantity = np.minimum(rng.geometric(shape.QUANTITY_P[shop.products.category[product]]), 10)
    out, at = [], 0
    for i in range(n):
        store = int(stores.ids[home[who[i]]]) if in_store[i] else None
        mine = range(at, at + int(lines[i]))
        at += int(lines[i])
        out.append((first_id + i, int(pool.ids[who[i]]), store,
                    [(int(shop.products.ids[product[j]]), int(quantity[j]), int(shop.products.price[product[j]]))
                     for j in mine]))
    return out


def tick_span(interval: float, since_last: float | None) -> float:
    """The seconds of traffic a tick carries: the time since the previous tick began (the first: one
    interval), so that `--rate` holds whatever a tick takes (an `--interval` shorter than a tick runs
    ticks back to back, each carrying the orders of its own time); at most one interval plus a second,
    so that a stall (a suspended laptop, a lock wait) is not made up for in one burst."""
    if since_last is None:
        return interval
    return min(since_last, interval + STALL_CAP)


def _tick(conn, rng: np.random.Generator, shop: _Shop, request: LiveRequest, result: LiveResult,
          span: float | None = None) -> None:
    now = _now()
    expected = request.rate * (request.interval if span is None else span)
    n_new = int(rng.poisson(expected))
    # as many status changes as new orders on average: they keep to --rate too, however short a tick
    n_moves = int(rng.poisson(expected))
    if not n_new and not n_moves:
        return  # nothing happens in this tick's time (short ticks): no statement, no transaction
    with conn.cursor() as cur:
        # FOR UPDATE: a second `live` against the same database waits for this tick instead of
        # taking the same ids
        cur.execute("select coalesce(max(order_id), 0) from orders for update")
        next_order = int(cur.fetchone()[0]) + 1
        cur.execute("select coalesce(max(order_item_id), 0) from order_items for update")
        next_item = int(cur.fetchone()[0]) + 1
        orders, items = [], []
        for order_id, customer, store, lines in _new_orders(rng, shop, now, n_new, next_order):
            if store:
                orders.append((order_id, customer, "store", store, "delivered", now, now, now))
            else:
                orders.append((order_id, customer, "online", None, "placed", now, now, now))
            for product, quantity, cents in lines:
                items.append((next_item, order_id, product, quantity, f"{cents // 100}.{cents % 100:02d}", now, now))
                next_item += 1
        if orders:
            cur.executemany(
                "insert into orders (order_id, customer_id, channel, store_id, status, ordered_at, created_at, updated_at) "
                "values (%s, %s, %s, %s, %s, %s, %s, %s)",
                orders,
            )
            cur.executemany(
                "insert into order_items (order_item_id, order_id, product_id, quantity, unit_price, created_at, updated_at) "
                "values (%s, %s, %s, %s, %s, %s, %s)",
                items,
            )

        # Move open orders along, oldest first; orders placed in this tick wait for the next one.
        # Only recent orders can still be open, so the ordered_at index bounds the scan.
        moves = []
        if n_moves:
            cur.execute(
                "select order_id, status from orders where ordered_at >= %s "
                "and status in ('placed', 'paid', 'shipped') and updated_at < %s "
                "order by updated_at, order_id limit %s",
                (shop.open_horizon, now, n_moves),
            )
            for order_id, status in cur.fetchall():
                following, cancel_share = NEXT_STATUS[status]
                moves.append((order_id, status, "cancelled" if rng.random() < cancel_share else following))
        if rng.random() < RETURN_SHARE * n_moves:
            cur.execute(
                "select order_id from orders where status = 'delivered' and updated_at < %s "
                "order by updated_at desc, order_id desc limit 20",
                (now,),
            )
            recent = [row[0] for row in cur.fetchall()]
            if recent:
                moves.append((recent[int(rng.integers(len(recent)))], "delivered", "returned"))
        for order_id, old, new in moves:
            # guarded by the old status: a concurrent writer may have moved the order already
            changed = cur.execute(
                "update orders set status = %s, updated_at = %s where order_id = %s and status = %s",
                (new, now, order_id, old),
            )
            if changed:
                result.changes[f"{old}->{new}"] += 1
    conn.commit()
    result.new_orders += len(orders)
    result.new_lines += len(items)


def live_progress(request: LiveRequest) -> Callable[[LiveResult, float], None]:
    """Progress on stderr: a counter on a terminal (tqdm), a line every `report_every` s otherwise."""
    if sys.stderr.isatty():
        from tqdm import tqdm

        total = request.iterations if request.iterations is not None else None
        bar = tqdm(total=total, unit="ticks", file=sys.stderr, leave=False, dynamic_ncols=True)

        def on_terminal(result: LiveResult, elapsed: float) -> None:
            bar.n = result.ticks
            bar.set_postfix_str(f"{result.new_orders} orders, {sum(result.changes.values())} changes", refresh=False)
            bar.refresh()

        on_terminal.close = bar.close  # type: ignore[attr-defined]
        return on_terminal
    last = [0.0]

    def on_log(result: LiveResult, elapsed: float) -> None:
        if elapsed - last[0] < request.report_every:
            return
        last[0] = elapsed
        where = (f"{elapsed:.0f} of {request.duration:g} s" if request.duration is not None
                 else f"tick {result.ticks} of {request.iterations}")
        print(f"live: {where}: {result.new_orders} new orders, {sum(result.changes.values())} status changes",
              file=sys.stderr, flush=True)

    return on_log


def run_live(
    request: LiveRequest, target: MySQLTarget, progress: Callable[[LiveResult, float], None] | None = None
) -> LiveResult:
    request.validate()
    rng = np.random.default_rng(request.seed)
    conn = connect(target)
    result = LiveResult(where=target.describe())
    started = time.monotonic()
    try:
        # live writes only to a seeded database: it creates no table (nothing is written when it refuses)
        missing = missing_tables(conn)
        if missing:
            raise GeneratorError(f"{target.describe()} has no {', '.join(missing)} table{'s' if len(missing) > 1 else ''}:"
                                 " run `retailflow-generator seed` first (nothing was written)")
        try:
            shop = _Shop(conn, rng)
        except pymysql.err.MySQLError as exc:
            raise GeneratorError(f"cannot read the customers and products of {target.describe()}: "
                                 f"{exc.args[-1] if exc.args else exc} (nothing was written)") from exc
        if shop.latest is not None and _now() - shop.latest > GAP_WARNING:
            print(f"live: note: the seeded history ends {shop.latest:%Y-%m-%d %H:%M} UTC and live orders start now, "
                  f"{(_now() - shop.latest).days} days later; seed with the default dates (`make seed`) for a "
                  "history without a gap", file=sys.stderr, flush=True)
        previous_start = None
        while True:
            tick_start = time.monotonic()
            span = tick_span(request.interval, None if previous_start is None else tick_start - previous_start)
            previous_start = tick_start
            try:
                _tick(conn, rng, shop, request, result, span)
            except pymysql.err.MySQLError as exc:
                conn.rollback()
                raise GeneratorError(f"live traffic to {target.describe()} failed (this tick rolled back): {exc}") from exc
            result.ticks += 1
            if progress:
                progress(result, time.monotonic() - started)
            if request.iterations is not None and result.ticks >= request.iterations:
                break
            if request.duration is not None and time.monotonic() - started >= request.duration:
                break
            pause = request.interval - (time.monotonic() - tick_start)
            if request.duration is not None:
                pause = min(pause, request.duration - (time.monotonic() - started))
            if pause > 0:
                time.sleep(pause)
    except BaseException:
        try:
            conn.rollback()
        except pymysql.err.MySQLError:
            pass
        raise
    finally:
        conn.close()
        result.seconds = time.monotonic() - started
        getattr(progress, "close", lambda: None)()
    return result
