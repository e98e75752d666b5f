"""The data's shape: distributions land in the ranges a retail analyst would expect."""

from datetime import date

import numpy as np
import pytest
from retailflow_generator import shape
from retailflow_generator.encode import US_PER_DAY
from retailflow_generator.plan import order_plan
from retailflow_generator.seed import (
    ProductPool,
    SeedRequest,
    build_customer_pool,
    generate_customers,
    generate_products,
    order_chunk,
)
from retailflow_generator.stores import build_stores

FAR_FUTURE = shape.day_us(date(2100, 1, 1))


def generate(n_orders=40_000, seed=7, customers=3000, products=500, start=date(2024, 1, 1), end=date(2025, 12, 31)):
    """(request, customers, products, plan, chunk) as the seed draws them, without a database."""
    request = SeedRequest(customers=customers, products=products, orders=n_orders, start=start, end=end, seed=seed,
                          now=FAR_FUTURE)
    cust = generate_customers(request, 0)
    prod = generate_products(request, 0)
    rng = np.random.default_rng(1)
    cpool, stores, atlas = build_customer_pool(rng, cust.ids, cust.signed_up, cust.country, cust.city)
    ppool = ProductPool.build(rng, prod.ids, prod.price, prod.category)
    plan = order_plan([2], n_orders, start, end, request.as_of, cpool, stores, atlas.zones)
    chunk = order_chunk(request, 0, plan, 0, 0, cpool, ppool)
    return request, cust, prod, plan, chunk


def _orders(**kwargs):
    """Order and line columns decoded back from the generated load files."""
    request, cust, prod, _plan, chunk = generate(**kwargs)
    orders = [line.split("\t") for line in chunk.orders.decode().splitlines()]
    items = [line.split("\t") for line in chunk.items.decode().splitlines()]
    return request, cust, prod, orders, items


@pytest.fixture(scope="module")
def generated():
    return _orders()


def test_weekly_and_december_seasonality():
    w = shape.day_weights(date(2024, 1, 1), date(2025, 12, 31))
    days = np.arange(np.datetime64("2024-01-01"), np.datetime64("2026-01-01"))
    weekday = (days.astype("int64") + 3) % 7
    month = days.astype("datetime64[M]").astype("int64") % 12
    assert w[weekday == 5].mean() > 1.2 * w[weekday == 1].mean()  # Saturday beats Tuesday
    assert w[month == 11].mean() > 1.4 * w[month == 1].mean()  # December beats February


def test_order_times_follow_ids_and_stay_in_range(generated):
    _r, _c, _p, orders, _i = generated
    ordered = [o[5] for o in orders]
    assert ordered == sorted(ordered), "order ids must follow order time"
    assert ordered[0] >= "2024-01-01" and ordered[-1] < "2026-01-01"


def test_the_history_stops_at_now():
    """A range that ends today stops at the moment of the seed: nothing is stamped later."""
    now = shape.day_us(date(2025, 12, 31)) + 9 * 3600 * 10**6  # 09:00 UTC on the last day
    request = SeedRequest(customers=300, products=50, orders=5000, start=date(2025, 10, 1), end=date(2025, 12, 31),
                          seed=3, now=now)
    assert request.as_of == now
    cust = generate_customers(request, 0)
    assert cust.signed_up.max() < now
    rng = np.random.default_rng(1)
    cpool, stores, atlas = build_customer_pool(rng, cust.ids, cust.signed_up, cust.country, cust.city)
    plan = order_plan([2], 5000, request.start, request.end, request.as_of, cpool, stores, atlas.zones)
    assert plan.ordered.max() < now
    assert plan.ordered.max() > now - 6 * 3600 * 10**6, "the last hours before now have orders too"


def test_lines_per_order_do_not_pile_up_at_the_cap():
    pmf = shape.lines_pmf()
    assert abs(pmf.sum() - 1) < 1e-12 and (np.diff(pmf) < 0).all()
    lines = shape.lines_per_order(np.random.default_rng(4), 200_000)
    counts = np.bincount(lines, minlength=shape.MAX_LINES + 1)
    assert lines.min() == 1 and lines.max() == shape.MAX_LINES
    assert counts[shape.MAX_LINES] < counts[shape.MAX_LINES - 1]


def test_online_share_and_store_ids(generated):
    _r, _c, _p, orders, _i = generated
    channel = np.array([o[2] for o in orders])
    store = [o[3] for o in orders]
    assert 0.35 < (channel == "online").mean() < 0.50
    for ch, st in zip(channel, store):
        assert (st == "\\N") == (ch == "online")
    ids = {int(s) for s in store if s != "\\N"}
    assert ids <= set(range(1, len(build_stores()) + 1))
    assert len(ids) > 30, "most stores sell"


def test_status_follows_order_age(generated):
    _r, _c, _p, orders, _i = generated
    old = [o[4] for o in orders if o[5] < "2025-11-01"]
    recent = [o[4] for o in orders if o[5] >= "2025-12-31 12:00"]
    old_share = {s: old.count(s) / len(old) for s in shape.STATUSES}
    assert old_share["delivered"] > 0.8
    assert 0.01 < old_share["cancelled"] < 0.05 and 0.02 < old_share["returned"] < 0.10
    assert old_share["placed"] == old_share["paid"] == old_share["shipped"] == 0
    online_recent = [o[4] for o in orders if o[5] >= "2025-12-30" and o[2] == "online"]
    assert recent and set(online_recent) & {"placed", "paid", "shipped"}
    assert "delivered" not in [o[4] for o in orders if o[5] >= "2025-12-31" and o[2] == "online"]


def test_updated_at_is_derived_from_the_order_not_the_clock(generated):
    _r, _c, _p, orders, _i = generated
    # columns: order_id, customer_id, channel, store_id, status, ordered_at (= created_at), updated_at
    for o in orders:
        assert o[5] <= o[6] < "2026-01-01", "updated_at: the last status change, within the range"
    assert all(o[6] == o[5] for o in orders if o[4] == "placed")
    assert sum(o[6] > o[5] for o in orders if o[4] == "delivered" and o[2] == "online") > 0


def test_lines_per_order_and_quantities(generated):
    _r, _c, _p, _o, items = generated
    per_order = np.bincount([int(i[1]) for i in items])[1:]
    assert per_order.min() >= 1 and per_order.max() <= shape.MAX_LINES
    assert 2.0 < per_order.mean() < 3.0
    quantity = np.array([int(i[3]) for i in items])
    assert (quantity == 1).mean() > 0.5 and quantity.max() <= 10
    pairs = [(i[1], i[2]) for i in items]
    assert len(set(pairs)) == len(pairs), "a product is listed once per order"


def test_product_popularity_is_heavy_tailed_without_a_giant(generated):
    _r, _c, prod, orders, items = generated
    counts = np.sort(np.bincount([int(i[2]) for i in items], minlength=len(prod.ids) + 1)[1:])[::-1]
    top = counts[: len(counts) // 100].sum() / counts.sum()
    assert 0.10 <= top <= 0.40, f"top 1% of products sell {top:.0%} of the lines"
    assert counts[0] / len(orders) <= 0.15, "no product in more than ~15% of orders"
    assert counts[0] > 20 * np.median(counts)


def test_customer_spend_is_heavy_tailed(generated):
    _r, cust, _p, orders, items = generated
    owner = {o[0]: int(o[1]) for o in orders}
    spend = np.zeros(len(cust.ids) + 1)
    for i in items:
        spend[owner[i[1]]] += int(i[3]) * float(i[4])
    ranked = np.sort(spend[1:])[::-1]
    share = ranked[: len(ranked) // 10].sum() / ranked.sum()
    assert 0.3 < share < 0.8, f"top 10% of customers spend {share:.0%}"


def test_customers_order_only_after_signing_up(generated):
    _r, cust, _p, orders, _i = generated
    signed = dict(zip(cust.ids.tolist(), cust.signed_up.tolist()))
    start = np.datetime64("1970-01-01T00:00:00", "us")
    late = 0
    for o in orders:
        t = (np.datetime64(o[5].replace(" ", "T"), "us") - start).astype(np.int64)
        late += signed[int(o[1])] > t
    assert late == 0


def test_prices_by_category():
    rng = np.random.default_rng(3)
    category = np.repeat(np.arange(len(shape.CATEGORIES)), 2000)
    cents = shape.prices_cents(rng, category)
    medians = {c.name: np.median(cents[category == i]) / 100 for i, c in enumerate(shape.CATEGORIES)}
    assert medians["Groceries"] < medians["Apparel"] < medians["Electronics"]
    for i, c in enumerate(shape.CATEGORIES):
        mine = cents[category == i] / 100
        assert mine.min() >= c.min_price - 0.5 and mine.max() <= c.max_price + 1


def test_lifecycle_is_consistent_with_age():
    rng = np.random.default_rng(5)
    as_of = shape.day_us(date(2025, 1, 1))
    ordered = as_of - (rng.random(20_000) * 60 * US_PER_DAY).astype(np.int64)
    online = np.ones(len(ordered), dtype=bool)
    status, updated = shape.order_lifecycle(rng, ordered, online, as_of)
    assert (updated >= ordered).all() and (updated <= as_of).all()
    age_days = (as_of - ordered) / US_PER_DAY
    assert (status[age_days > 40] <= shape.RETURNED).all()
    assert not np.isin(status[age_days > 40], [shape.PLACED, shape.PAID, shape.SHIPPED]).any()
    assert np.isin(status[age_days < 0.01], [shape.PLACED, shape.PAID, shape.CANCELLED]).all()
