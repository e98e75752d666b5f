"""`retailflow-generator live`: new orders arrive and open orders move on, with fresh updated_at."""

import subprocess
from datetime import UTC, datetime, timedelta

import pytest
from conftest import GENERATOR, rows, scalar

pytestmark = pytest.mark.integration

FORWARD = {("placed", "paid"), ("placed", "cancelled"), ("paid", "shipped"), ("paid", "cancelled"),
           ("shipped", "delivered"), ("delivered", "returned")}
# an order may take several steps during one run: any chain of forward steps is fine
REACHABLE = set(FORWARD)
for _ in range(4):
    REACHABLE |= {(a, d) for a, b in REACHABLE for c, d in FORWARD if b == c}


def test_live_inserts_orders_and_advances_statuses(database):
    # the seeded history ends today, so its last orders are still open
    today = datetime.now(UTC).replace(tzinfo=None).date()
    subprocess.run(
        [GENERATOR, "seed", "--customers", "300", "--products", "50", "--orders", "3000",
         "--start", str(today - timedelta(days=60)), "--end", str(today), "--seed", "5",
         "--mysql-url", database],
        check=True, capture_output=True, timeout=120,
    )
    before = {oid: (status, updated) for oid, status, updated in rows(database, "select order_id, status, updated_at from orders")}
    max_order = max(before)
    started = datetime.now(UTC).replace(tzinfo=None)

    done = subprocess.run(
        [GENERATOR, "live", "--iterations", "4", "--interval", "0.25", "--rate", "40", "--seed", "1",
         "--mysql-url", database],
        capture_output=True, text=True, timeout=120, check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("live: 4 ticks")

    new_orders = scalar(database, "select count(*) from orders where order_id > %s", (max_order,))
    assert 20 <= new_orders <= 70, "about rate x interval x ticks (40) new orders"
    assert scalar(database, "select count(*) from orders o where order_id > %s and not exists "
                            "(select 1 from order_items i where i.order_id = o.order_id)", (max_order,)) == 0
    assert scalar(database, "select min(created_at) from orders where order_id > %s", (max_order,)) >= started - timedelta(seconds=1)

    after = {oid: (status, updated) for oid, status, updated in rows(database, "select order_id, status, updated_at from orders")}
    moved = [(before[oid][0], after[oid][0]) for oid in before if after[oid][1] != before[oid][1]]
    assert len(moved) >= 4, "each tick moves existing orders along"
    assert set(moved) <= REACHABLE, f"only forward transitions: {set(moved) - REACHABLE}"
    assert all(old != new for old, new in moved)
    assert all(after[oid][1] >= started - timedelta(seconds=1) for oid in before if after[oid][1] != before[oid][1])
    assert scalar(database, "select count(*) from orders where (channel = 'store') <> (store_id is not null)") == 0


def test_live_on_an_empty_database_asks_for_a_seed_first(database):
    done = subprocess.run([GENERATOR, "live", "--iterations", "1", "--mysql-url", database],
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 1 and "run `retailflow-generator seed` first" in done.stderr
