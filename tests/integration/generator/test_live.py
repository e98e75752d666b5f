"""`retailflow-generator live`: new orders arrive and open orders move on, with fresh updated_at."""

import fcntl
import os
import pty
import re
import select
import struct
import subprocess
import termios
import time
from datetime import UTC, datetime, timedelta

import pytest
from conftest import GENERATOR, mysql_env, rows, scalar
from retailflow_generator.db import MySQLTarget

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
         "--start", str(today - timedelta(days=60)), "--end", str(today), "--seed", "5"],
        check=True, capture_output=True, timeout=120, env=mysql_env(database),
    )
    before = {oid: (status, updated) for oid, status, updated in rows(database, "select order_id, status, updated_at from orders")}
    max_order = max(before)
    last_seeded = scalar(database, "select max(ordered_at) from orders")
    last_change = scalar(database, "select max(updated_at) from orders")
    started = datetime.now(UTC).replace(tzinfo=None)

    done = subprocess.run(
        # no progress line however slow the 4 ticks are (an hour, the longest --report-every): stderr is
        # then empty unless live has something to say, such as a gap after the seeded history
        [GENERATOR, "live", "--iterations", "4", "--interval", "0.25", "--rate", "40", "--seed", "1",
         "--report-every", "3600"],
        capture_output=True, text=True, timeout=120, check=False, env=mysql_env(database),
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("live: 4 ticks")

    new_orders = scalar(database, "select count(*) from orders where order_id > %s", (max_order,))
    # a tick carries the traffic of the time since the previous one began (the first: one interval), so
    # the 4 ticks carry 40/s over at least 1 s and at most the interval plus the run: a busy machine's
    # slower ticks carry more orders each, at the same rate
    seconds = float(re.match(r"live: 4 ticks in ([0-9.]+) s", done.stdout)[1]) + 0.05  # printed to 0.1 s
    most = 40 * (0.25 + seconds)
    assert 20 <= new_orders <= most + 4 * most ** 0.5, (new_orders, seconds)
    assert scalar(database, "select count(*) from orders o where order_id > %s and not exists "
                            "(select 1 from order_items i where i.order_id = o.order_id)", (max_order,)) == 0
    assert scalar(database, "select min(created_at) from orders where order_id > %s", (max_order,)) >= started - timedelta(seconds=1)
    # live continues the seeded history: no gap, and every change is newer than the seed's (an
    # incremental reader whose cursor reached the seed's last update sees all of them)
    first_live = scalar(database, "select min(ordered_at) from orders where order_id > %s", (max_order,))
    assert last_seeded <= first_live < last_seeded + timedelta(hours=6)
    assert scalar(database, "select min(updated_at) from orders where updated_at > %s", (last_change,)) >= started - timedelta(seconds=1)
    assert scalar(database, "select count(*) from orders where order_id > %s and updated_at <= %s",
                  (max_order, last_change)) == 0
    assert done.stderr == "", "live continues the seeded history: no note of a gap, nor any other line"

    after = {oid: (status, updated) for oid, status, updated in rows(database, "select order_id, status, updated_at from orders")}
    moved = [(before[oid][0], after[oid][0]) for oid in before if after[oid][1] != before[oid][1]]
    assert len(moved) >= 4, "each tick moves existing orders along"
    assert set(moved) <= REACHABLE, f"only forward transitions: {set(moved) - REACHABLE}"
    assert all(old != new for old, new in moved)
    assert all(after[oid][1] >= started - timedelta(seconds=1) for oid in before if after[oid][1] != before[oid][1])
    assert scalar(database, "select count(*) from orders where (channel = 'store') <> (store_id is not null)") == 0


def test_live_on_an_empty_database_asks_for_a_seed_first(database):
    done = subprocess.run([GENERATOR, "live", "--iterations", "1"],
                          capture_output=True, text=True, timeout=60, check=False, env=mysql_env(database))
    assert done.returncode == 1 and "run `retailflow-generator seed` first" in done.stderr
    assert done.stderr.count("\n") == 1 and "nothing was written" in done.stderr and done.stdout == ""
    assert scalar(database, "select count(*) from information_schema.tables where table_schema = database()") == 0, \
        "refusing, live creates no table"


@pytest.mark.parametrize("interval", [0.01, 0.05])
def test_the_rate_holds_when_a_tick_takes_longer_than_the_interval(database, monkeypatch, interval):
    """Orders per tick were --rate x --interval whatever a tick took (the probe: `--interval 0.1` gave 12
    orders in 4 s at --rate 5 on a demo-scale database, whose ticks take longer than that). A tick now
    carries the orders of the time since the previous one began. Here every tick takes 0.1 s more."""
    from retailflow_generator import live as live_module

    _seed_small(database)
    before = scalar(database, "select count(*) from orders")
    real_tick = live_module._tick

    def slow_tick(*args, **kwargs):
        time.sleep(0.1)
        return real_tick(*args, **kwargs)

    monkeypatch.setattr(live_module, "_tick", slow_tick)
    request = live_module.LiveRequest(duration=3, interval=interval, rate=40, seed=3, report_every=3600)
    result = live_module.run_live(request, MySQLTarget.from_url(database))
    new = scalar(database, "select count(*) from orders") - before
    assert new == result.new_orders
    assert 80 <= new <= 170, f"about --rate x --duration = 120 new orders, got {new} in {result.ticks} ticks"


def _seed_small(database):
    today = datetime.now(UTC).replace(tzinfo=None).date()
    subprocess.run(
        [GENERATOR, "seed", "--customers", "100", "--products", "30", "--orders", "500",
         "--start", str(today - timedelta(days=20))],
        check=True, capture_output=True, timeout=120, env=mysql_env(database),
    )


def test_live_reports_progress_in_a_log(database):
    _seed_small(database)
    done = subprocess.run(
        [GENERATOR, "live", "--duration", "3", "--interval", "0.25", "--rate", "8", "--report-every", "1"],
        capture_output=True, text=True, timeout=120, check=False, env=mysql_env(database),
    )
    assert done.returncode == 0, done.stderr
    progress = [line for line in done.stderr.splitlines() if line.startswith("live: ")]
    assert len(progress) >= 2, done.stderr
    assert all(" of 3 s: " in line and "new orders" in line for line in progress), progress
    assert done.stdout.startswith("live: ") and done.stdout.count("\n") == 1


def test_live_shows_a_counter_on_a_terminal(database):
    _seed_small(database)
    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 30, 100, 0, 0))  # a 100-column terminal
    proc = subprocess.Popen(
        [GENERATOR, "live", "--iterations", "6", "--interval", "0.2", "--rate", "5"],
        stdin=follower, stdout=subprocess.PIPE, stderr=follower, text=False, env=mysql_env(database),
    )
    os.close(follower)
    screen = b""
    while True:
        ready, _, _ = select.select([leader], [], [], 60)
        if not ready:
            break
        try:
            chunk = os.read(leader, 4096)
        except OSError:  # the terminal closed with the process
            break
        if not chunk:
            break
        screen += chunk
    proc.wait(timeout=60)
    os.close(leader)
    assert proc.returncode == 0
    text = screen.decode(errors="replace")
    assert "6/6" in text and "ticks" in text and "\r" in text, text
