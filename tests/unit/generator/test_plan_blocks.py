"""The order plan is drawn in bounded blocks: its memory follows the block size, not the number of
orders, and the orders it hands out are the same however they are chunked."""

import tracemalloc
from datetime import date

import numpy as np
import pytest
from retailflow_generator import shape
from retailflow_generator.encode import US_PER_DAY
from retailflow_generator.plan import OrderPlanner
from retailflow_generator.seed import SeedRequest, build_customer_pool, generate_customers

START, END = date(2024, 1, 1), date(2025, 12, 31)
BLOCK = 2_000


@pytest.fixture(scope="module")
def pool():
    request = SeedRequest(customers=2_000, products=100, orders=0, start=START, end=END, seed=3,
                          now=shape.day_us(date(2100, 1, 1)))
    cust = generate_customers(request, 0)
    cpool, stores, atlas = build_customer_pool(np.random.default_rng(1), cust.ids, cust.signed_up, cust.country,
                                               cust.city)
    return request, cpool, stores, atlas


def _planner(pool, orders: int, block: int = BLOCK) -> OrderPlanner:
    request, cpool, stores, atlas = pool
    return OrderPlanner([3, 5, 0], orders, START, END, request.as_of, cpool, stores, atlas.zones, block=block)


def _peak_bytes(pool, orders: int) -> tuple[int, int]:
    """(peak bytes allocated while the plan is built and handed out chunk by chunk, orders handed out),
    keeping nothing of a chunk once it is seen, as the seed does."""
    tracemalloc.start()
    try:
        planner = _planner(pool, orders)
        seen, last = 0, -1
        for chunk in planner.chunks(500):
            assert chunk.ordered[0] >= last and (np.diff(chunk.ordered) >= 0).all(), "orders come in time order"
            last, seen = chunk.ordered[-1], seen + len(chunk)
        return tracemalloc.get_traced_memory()[1], seen
    finally:
        tracemalloc.stop()


def test_plan_memory_does_not_grow_with_the_orders(pool):
    _peak_bytes(pool, 1_000)  # caches (time zone offsets) filled once, outside the measurements
    small, n_small = _peak_bytes(pool, 10 * BLOCK)
    large, n_large = _peak_bytes(pool, 80 * BLOCK)
    assert (n_small, n_large) == (10 * BLOCK, 80 * BLOCK)
    # 8x the orders: a plan held whole would need ~8x the memory (its arrays alone are 25 bytes an
    # order: 4 MB here); in blocks the peak stays that of a block and a day and a half of orders
    assert large < 1.5 * small, f"peak {large / 2**20:.1f} MiB at {n_large} orders vs {small / 2**20:.1f} MiB at {n_small}"
    assert large < 300 * BLOCK + 2**20


def test_the_plan_is_the_same_however_it_is_chunked(pool):
    """The seed draws the plan twice (orders, then their lines): both passes must see the same orders."""
    planner = _planner(pool, 9_000)
    by_500 = list(planner.chunks(500))
    by_4000 = list(planner.chunks(4_000))
    assert [len(c) for c in by_4000] == [4_000, 4_000, 1_000]
    for field in ("ordered", "who", "online", "store_id"):
        assert np.array_equal(np.concatenate([getattr(c, field) for c in by_500]),
                              np.concatenate([getattr(c, field) for c in by_4000]))


def test_blocks_keep_the_window_and_every_day(pool):
    """Orders fill the window up to its last hours, one block or many."""
    request = pool[0]
    ordered = np.concatenate([c.ordered for c in _planner(pool, 20_000).chunks(5_000)])
    assert ordered.min() >= shape.day_us(START) and ordered.max() < request.as_of
    days = np.unique((ordered - shape.day_us(START)) // US_PER_DAY)
    assert len(days) == (END - START).days + 1, "every UTC day of the range has orders"
