"""The data's shape: distributions land in the ranges a retail analyst would expect."""

from datetime import date

import numpy as np
import pytest
from retailflow_generator import shape
from retailflow_generator.encode import US_PER_DAY
from retailflow_generator.seed import (
    CustomerPool,
    ProductPool,
    SeedRequest,
    StorePool,
    generate_customers,
    generate_products,
    order_chunk,
)
from retailflow_generator.stores import build_stores


def _orders(n_orders=40_000, seed=7, customers=3000, products=400, start=date(2024, 1, 1), end=date(2025, 12, 31)):
    """Order and line columns decoded back from the generated load files."""
    request = SeedRequest(customers=customers, products=products, orders=n_orders, start=start, end=end, seed=seed)
    cust = generate_customers(request, 0)
    prod = generate_products(request, 0)
    region = np.array([0, 0, 1, 1, 1, 1, 1, 2, 2, 2, 3, 3, 3, 4, 4])[cust.country]
    rng = np.random.default_rng(1)
    cpool = CustomerPool.build(rng, cust.ids, cust.signed_up, region)
    ppool = ProductPool.build(rng, prod.ids, prod.price, prod.category)
    per_day = shape.orders_per_day(np.random.default_rng(2), n_orders, start, end)
    chunk = order_chunk(request, 0, per_day, 0, 0, cpool, ppool, StorePool.build(build_stores()))
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
    hours = np.array([int(t[11:13]) for t in ordered])
    assert (hours < 6).mean() < 0.08, "few orders at night"
    assert ((hours >= 11) & (hours <= 20)).mean() > 0.6


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
    assert len(set(pairs)) > 0.995 * len(pairs), "a product is listed once per order"


def test_product_popularity_is_zipf_like(generated):
    _r, _c, prod, _o, items = generated
    counts = np.sort(np.bincount([int(i[2]) for i in items], minlength=len(prod.ids) + 1)[1:])[::-1]
    top = counts[: len(counts) // 100].sum() / counts.sum()
    assert 0.15 < top < 0.6, f"top 1% of products sell {top:.0%}"
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
