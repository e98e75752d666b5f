"""What a retail analyst would check on a seeded database: the history leads up to now, customers
shop at home stores, hours and weekdays follow local time, popularity is believable, integrity holds
at any scale. The figures come from `retailflow_generator.profile.measure`, the same code that
writes the shape table of generator/README.md, plus independent SQL."""

import subprocess
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest
from conftest import GENERATOR, mysql_env, rows, scalar
from retailflow_generator.db import MySQLTarget
from retailflow_generator.geography import REGIONS
from retailflow_generator.profile import measure
from retailflow_generator.seed import default_start
from retailflow_generator.stores import build_stores
from test_seed import in_process

pytestmark = pytest.mark.integration

REGION_NAMES = [r.name for r in REGIONS]


def _utcnow() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


@pytest.fixture(scope="module")
def seeded(make_module_database):
    """A seed at a modest scale with the default dates (no --start/--end): (url, before, after, shape)."""
    url = make_module_database()
    before = _utcnow()
    done = subprocess.run(
        [GENERATOR, "seed", "--customers", "2500", "--products", "500", "--orders", "24000", "--seed", "21"],
        capture_output=True, text=True, timeout=300, check=False, env=mysql_env(url),
    )
    assert done.returncode == 0, done.stderr
    after = _utcnow()
    return url, before, after, measure(MySQLTarget.from_url(url))


# 1 ------------------------------------------------------------------------------------------------
def test_history_leads_up_to_now(seeded):
    url, before, after, shape = seeded
    today = before.date()
    assert default_start(today) <= shape.first_order.date() <= default_start(today) + timedelta(days=3)
    assert before - timedelta(hours=12) < shape.last_order <= after, "the history runs until the seed"
    newest = max(scalar(url, f"select max(greatest(created_at, updated_at)) from {t}")
                 for t in ("customers", "products", "orders", "order_items"))
    assert newest <= after, "nothing is stamped in the future"
    assert scalar(url, "select max(signed_up_at) from customers") <= after
    # the report's "last 12 months" window: every one of the 12 months up to the last order has orders
    # (the month of the last order is this month, or, in the first hours of a month, the one before)
    months = {r[0] for r in rows(url, "select distinct date_format(ordered_at, '%%Y-%%m') from orders")}
    last = shape.last_order.date()
    window = {f"{(last.year * 12 + last.month - 1 - k) // 12}-{(last.month - 1 - k) % 12 + 1:02d}" for k in range(12)}
    assert window <= months
    assert 24 <= len(months) <= 25


def test_the_demo_uses_the_default_dates():
    done = subprocess.run(["make", "-n", "--no-print-directory", "seed"], capture_output=True, text=True,
                          cwd=str(__import__("conftest").REPO_ROOT), check=True)
    assert "retailflow-generator seed" in done.stdout
    assert "--start" not in done.stdout and "--end" not in done.stdout, done.stdout


# 2 ------------------------------------------------------------------------------------------------
def test_customers_shop_at_a_few_home_stores_in_their_own_country(seeded):
    url, _b, _a, shape = seeded
    assert shape.in_country_store_share >= 0.90
    assert shape.top_store_share >= 0.6, "most of a customer's store visits are at one store"
    assert shape.max_stores_per_customer <= 3
    # independent SQL: the busiest customer in store did not tour the network
    top_customer_stores = scalar(url, "select count(distinct store_id) from orders where customer_id = "
                                      "(select customer_id from orders where channel = 'store' group by customer_id "
                                      "order by count(*) desc limit 1)")
    assert top_customer_stores <= 3


def test_the_online_share_varies_by_customer(seeded):
    _u, _b, _a, shape = seeded
    assert 0.30 <= shape.online_share <= 0.50
    assert shape.mostly_online_customers >= 0.05, "some customers buy (almost) only online"
    assert shape.mostly_store_customers >= 0.10, "some customers buy (almost) only in store"


# 3 ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("region", REGION_NAMES)
def test_hours_and_weekdays_follow_local_time(seeded, region):
    _u, _b, _a, shape = seeded
    assert shape.hour_share(region, "store", range(23, 31)) < 0.01, "stores are closed at night, local time"
    assert 11 <= shape.peak_hour(region, "store") <= 19
    assert 18 <= shape.peak_hour(region, "online") <= 22, "online shopping peaks in the local evening"
    saturday, tuesday = shape.local_weekdays[region][5], shape.local_weekdays[region][1]
    assert saturday > 1.15 * tuesday, "Saturday beats Tuesday in local time"


def test_timestamps_are_stored_in_utc(seeded):
    url, *_ = seeded
    by_region = {}
    for s in build_stores():
        by_region.setdefault(s.region, []).append(s.store_id)

    def utc_peak(region: str) -> int:
        ids = ", ".join(map(str, by_region[region]))
        hours = Counter(dict(rows(url, f"select hour(ordered_at), count(*) from orders where store_id in ({ids}) "
                                       "group by 1")))
        return hours.most_common(1)[0][0]

    assert utc_peak("Asia Pacific") <= 12, "Asia-Pacific's evening is the UTC morning"
    assert utc_peak("North America") >= 20 or utc_peak("North America") <= 3, "America's evening is past UTC midnight"


# 4 ------------------------------------------------------------------------------------------------
def test_popularity_is_heavy_tailed_but_believable(seeded):
    _u, _b, _a, shape = seeded
    assert shape.top_product_order_share <= 0.15, "no product in more than ~15% of orders"
    assert 0.10 <= shape.top1pct_line_share <= 0.40
    assert shape.top_product_revenue_share <= 0.06, "the best-sellers chart is not one bar"
    lines, revenue = shape.category_lines, shape.category_revenue
    assert len(lines) == 9
    assert all(0.02 <= share <= 0.40 for share in lines.values()), lines
    assert all(share <= 0.40 for share in revenue.values()), revenue
    assert max(lines, key=lines.get) == "Groceries", "groceries sell most often"
    assert max(revenue, key=revenue.get) in ("Electronics", "Apparel", "Home & Kitchen"), revenue


# 5 ------------------------------------------------------------------------------------------------
def test_integrity_and_lines_per_order(seeded):
    url, _b, _a, shape = seeded
    assert shape.before_signup == 0 and shape.before_store_opening == 0 and shape.duplicate_lines == 0
    lines = shape.lines_per_order
    assert max(lines) == 12 and lines[12] < lines[11] < lines[10], f"no pile-up at the cap: {lines}"
    assert 2.2 <= sum(k * n for k, n in lines.items()) / shape.orders <= 2.8


def test_integrity_holds_at_a_tiny_scale_while_stores_open(database):
    """Few customers and a minimal catalogue, over the years the first stores opened."""
    done = subprocess.run(
        [GENERATOR, "seed", "--customers", "40", "--products", "12", "--orders", "3000", "--start", "2008-01-01",
         "--end", "2011-12-31", "--seed", "4"],
        capture_output=True, text=True, timeout=300, check=False, env=mysql_env(database),
    )
    assert done.returncode == 0, done.stderr
    shape = measure(MySQLTarget.from_url(database))
    assert shape.orders == 3000
    assert shape.before_signup == 0 and shape.before_store_opening == 0 and shape.duplicate_lines == 0
    assert max(shape.lines_per_order) <= 12
    first_opening = min(s.opened_at for s in build_stores())
    assert scalar(database, "select count(*) from orders where channel = 'store' and ordered_at < %s",
                  (first_opening,)) == 0
    assert scalar(database, "select count(*) from orders where channel = 'store'") > 0, "stores that opened sell"
    assert scalar(database, "select count(*) from orders o join customers c using (customer_id) "
                            "where o.ordered_at < c.signed_up_at") == 0
    assert scalar(database, "select count(*) from (select order_id, product_id from order_items "
                            "group by 1, 2 having count(*) > 1) t") == 0


def test_a_scale_that_cannot_hold_is_refused(database, capsys):
    code, _out, err = in_process(capsys, "seed", "--customers", "40", "--products", "8", "--orders", "100",
                                 url=database)
    assert code == 2
    assert "--products must be at least 12" in err and "Traceback" not in err
    assert scalar(database, "select count(*) from information_schema.tables where table_schema = database()") == 0


def test_the_shape_command_prints_the_readme_table(seeded):
    url, *_ = seeded
    done = subprocess.run([GENERATOR, "shape"], capture_output=True, text=True, timeout=120, check=False,
                          env=mysql_env(url))
    assert done.returncode == 0, done.stderr
    table = done.stdout.splitlines()
    assert table[:2] == ["| figure | measured |", "|---|---|"]
    assert any(line.startswith("| top product's share of orders | ") for line in table)
    assert sum(line.startswith("| local peak hour, ") for line in table) == len(REGION_NAMES)


def test_the_shape_command_on_an_empty_database_is_a_clear_error(database, capsys, tmp_path):
    code, _out, err = in_process(capsys, "shape", url=database)
    assert code == 1 and "error:" in err and "Traceback" not in err
    # the tables exist but are empty: the README's exit 1 (the database's contents do not allow the run),
    # one line (it was a ValueError traceback: max() of no timestamps)
    assert in_process(capsys, "seed", "--customers", "0", "--products", "0", "--orders", "0", url=database)[0] == 0
    code, out, err = in_process(capsys, "shape", "--plots", str(tmp_path / "plots"), url=database)
    where = MySQLTarget.from_url(database).describe()
    assert code == 1 and out == ""
    assert err == f"retailflow-generator shape: error: {where} has no orders: run `retailflow-generator seed` first\n"
    assert list(tmp_path.iterdir()) == [], "no plots folder left behind"
