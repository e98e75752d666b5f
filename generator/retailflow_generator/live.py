"""`live`: a shop that keeps trading. Each tick inserts new orders and moves open ones along
(placed → paid → shipped → delivered, a few cancelled or returned), stamping `updated_at` with the
current time so that incremental readers see the changes. One transaction per tick.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import numpy as np
import pymysql

from . import shape
from .db import GeneratorError, MySQLTarget, connect, ensure_schema
from .geography import REGIONS
from .stores import build_stores

#: next status of an open order, and the chance it is cancelled instead
NEXT_STATUS = {"placed": ("paid", 0.04), "paid": ("shipped", 0.02), "shipped": ("delivered", 0.0)}
#: how far back from the newest order open orders are looked for
OPEN_WINDOW = timedelta(days=30)
#: share of status changes that are returns of a recently delivered order
RETURN_SHARE = 0.04


@dataclass(frozen=True)
class LiveRequest:
    duration: float | None = None
    iterations: int | None = None
    rate: float = 5.0  #: new orders per second
    interval: float = 1.0  #: seconds per tick
    seed: int | None = None

    def validate(self) -> None:
        if (self.duration is None) == (self.iterations is None):
            raise GeneratorError("pass exactly one of --duration and --iterations")
        if self.duration is not None and self.duration <= 0:
            raise GeneratorError(f"--duration must be greater than zero, got {self.duration}")
        if self.iterations is not None and self.iterations <= 0:
            raise GeneratorError(f"--iterations must be greater than zero, got {self.iterations}")
        if self.rate <= 0 or self.interval <= 0:
            raise GeneratorError("--rate and --interval must be greater than zero")
        if self.seed is not None and self.seed < 0:
            raise GeneratorError(f"--seed must be zero or more, got {self.seed}")


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
    """What the shop knows at start: customers with their region, products with popularity."""

    def __init__(self, conn, rng: np.random.Generator):
        region_of = {c.code: i for i, r in enumerate(REGIONS) for c in r.countries}
        with conn.cursor() as cur:
            cur.execute("select customer_id, country from customers order by customer_id")
            customers = cur.fetchall()
            cur.execute("select product_id, round(unit_price * 100) from products order by product_id")
            products = cur.fetchall()
            cur.execute("select max(ordered_at) from orders")
            latest = cur.fetchone()[0]
        if not customers or not products:
            raise GeneratorError("the database has no customers or products yet: run `retailflow-generator seed` first")
        self.customer_ids = np.array([c[0] for c in customers], dtype=np.int64)
        self.customer_region = np.array([region_of.get(c[1], 0) for c in customers], dtype=np.int64)
        self.customer_cum = np.cumsum(shape.spend_weights(rng, len(customers)))
        self.product_ids = np.array([p[0] for p in products], dtype=np.int64)
        self.product_price = np.array([int(p[1]) for p in products], dtype=np.int64)
        self.product_cum = np.cumsum(shape.popularity_weights(rng, len(products)))
        #: orders placed before this are all settled (an order ships and arrives within days)
        self.open_horizon = (latest or _now()) - OPEN_WINDOW
        today = shape.day_us(_now().date())
        self.stores = {
            r: [s for s in build_stores() if s.region == region.name and shape.day_us(s.opened_at) <= today]
            for r, region in enumerate(REGIONS)
        }


def _pick(rng: np.random.Generator, cumulative: np.ndarray, n: int) -> np.ndarray:
    return np.minimum(np.searchsorted(cumulative, rng.random(n) * cumulative[-1], side="right"), len(cumulative) - 1)


def _tick(conn, rng: np.random.Generator, shop: _Shop, request: LiveRequest, result: LiveResult) -> None:
    now = _now()
    expected = request.rate * request.interval
    n_new = int(rng.poisson(expected))
    with conn.cursor() as cur:
        # FOR UPDATE: a second `live` against the same database waits for this tick instead of
        # taking the same ids
        cur.execute("select coalesce(max(order_id), 0) from orders for update")
        next_order = int(cur.fetchone()[0]) + 1
        cur.execute("select coalesce(max(order_item_id), 0) from order_items for update")
        next_item = int(cur.fetchone()[0]) + 1
        orders, items = [], []
        who = _pick(rng, shop.customer_cum, n_new)
        for i in range(n_new):
            order_id = next_order + i
            region = int(shop.customer_region[who[i]])
            nearby = shop.stores.get(region) or []
            in_store = bool(nearby) and rng.random() >= shape.ONLINE_SHARE
            if in_store:
                weights = np.array([s.weight for s in nearby])
                store = nearby[int(rng.choice(len(nearby), p=weights / weights.sum()))].store_id
                orders.append((order_id, int(shop.customer_ids[who[i]]), "store", store, "delivered", now, now, now))
            else:
                orders.append((order_id, int(shop.customer_ids[who[i]]), "online", None, "placed", now, now, now))
            lines = int(shape.lines_per_order(rng, 1)[0])
            chosen = np.unique(_pick(rng, shop.product_cum, lines))
            for p in chosen:
                quantity = int(min(rng.geometric(0.75), 10))
                cents = int(shop.product_price[p])
                items.append((next_item, order_id, int(shop.product_ids[p]), quantity, f"{cents // 100}.{cents % 100:02d}", now, now))
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
        n_moves = max(1, int(rng.poisson(expected)))
        cur.execute(
            "select order_id, status from orders where ordered_at >= %s "
            "and status in ('placed', 'paid', 'shipped') and updated_at < %s "
            "order by updated_at, order_id limit %s",
            (shop.open_horizon, now, n_moves),
        )
        moves = []
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


def run_live(request: LiveRequest, target: MySQLTarget) -> LiveResult:
    request.validate()
    rng = np.random.default_rng(request.seed)
    conn = connect(target)
    result = LiveResult(where=target.describe())
    started = time.monotonic()
    try:
        ensure_schema(conn)
        shop = _Shop(conn, rng)
        while True:
            tick_start = time.monotonic()
            try:
                _tick(conn, rng, shop, request, result)
            except pymysql.err.MySQLError as exc:
                conn.rollback()
                raise GeneratorError(f"live traffic to {target.describe()} failed (this tick rolled back): {exc}") from exc
            result.ticks += 1
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
    return result
