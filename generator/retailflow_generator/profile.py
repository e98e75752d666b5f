"""The data's shape, measured with SQL on a seeded database: the figures of generator/README.md.

`retailflow-generator shape` prints them as a Markdown table (and, with `--plots DIR`, draws
`generator-monthly-revenue.png` and `generator-local-hours.png`); the integration tests call
`measure` on their own seeds and check the same figures, so the README and the tests read one code.
Local hours are computed here with zoneinfo from each order's UTC time and the time zone of its
store (in store) or of its customer's city (online), independently of how the generator drew them.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from .catalog import TABLES
from .db import MySQLTarget, connect
from .geography import REGIONS, countries, places
from .stores import build_stores

#: statuses that count as revenue (as the dbt project's rule)
REVENUE_STATUSES = ("paid", "shipped", "delivered")


@dataclass
class Shape:
    orders: int = 0
    lines: int = 0
    products: int = 0
    first_order: datetime | None = None
    last_order: datetime | None = None
    last_update: datetime | None = None
    #: share of orders holding the most-ordered product
    top_product_order_share: float = 0.0
    #: share of order lines of the top 1 % of products (at least one product)
    top1pct_line_share: float = 0.0
    #: share of all revenue of the product that brings the most
    top_product_revenue_share: float = 0.0
    #: share of lines and of revenue per category
    category_lines: dict[str, float] = field(default_factory=dict)
    category_revenue: dict[str, float] = field(default_factory=dict)
    online_share: float = 0.0
    #: among customers with at least 5 orders: share buying (almost) only online / only in store
    mostly_online_customers: float = 0.0
    mostly_store_customers: float = 0.0
    #: in-store orders at a store in the customer's own country
    in_country_store_share: float = 0.0
    #: in-store orders at the customer's most-used store / three most-used stores
    top_store_share: float = 0.0
    top3_stores_share: float = 0.0
    #: the most distinct stores any customer bought at
    max_stores_per_customer: int = 0
    #: orders per local hour (0-23) by sales region and channel ("store"/"online")
    local_hours: dict[tuple[str, str], list[int]] = field(default_factory=dict)
    #: orders per local weekday (Monday first) by sales region (both channels)
    local_weekdays: dict[str, list[int]] = field(default_factory=dict)
    #: revenue per (region, first day of month) for revenue statuses; region of the store, or of
    #: the customer for online orders
    monthly_revenue: dict[tuple[str, date], float] = field(default_factory=dict)
    #: orders by number of lines
    lines_per_order: dict[int, int] = field(default_factory=dict)
    duplicate_lines: int = 0
    before_signup: int = 0
    before_store_opening: int = 0

    def peak_hour(self, region: str, channel: str) -> int:
        counts = self.local_hours.get((region, channel)) or [0] * 24
        return max(range(24), key=lambda h: counts[h])

    def hour_share(self, region: str, channel: str, hours: range) -> float:
        counts = self.local_hours.get((region, channel)) or [0] * 24
        total = sum(counts)
        return sum(counts[h % 24] for h in hours) / total if total else 0.0


def _rows(conn, sql: str, args=()):
    with conn.cursor() as cur:
        cur.execute(sql, args)
        return cur.fetchall()


def measure(target: MySQLTarget) -> Shape:
    """Measure a seeded database (read only)."""
    conn = connect(target)
    try:
        return _measure(conn)
    finally:
        conn.close()


def _measure(conn) -> Shape:
    s = Shape()
    stores = {st.store_id: st for st in build_stores()}
    region_of_country = {c.code: r.name for r, c in countries()}
    zone_of_city = {}
    for _r, c in countries():
        for p in places(c.code):
            zone_of_city.setdefault((c.code, p.name), p.timezone)
    zones: dict[str, ZoneInfo] = {}

    s.orders, s.first_order, s.last_order = _rows(conn, "select count(*), min(ordered_at), max(ordered_at) from orders")[0]
    s.lines = _rows(conn, "select count(*) from order_items")[0][0]
    s.products = _rows(conn, "select count(*) from products")[0][0]
    s.last_update = max((x for x in (_rows(conn, f"select max(updated_at) from {t}")[0][0]
                                     for t in TABLES) if x), default=None)  # None: every table is empty
    if not s.orders:
        return s

    per_product = [int(r[0]) for r in _rows(
        conn, "select count(distinct order_id) as n from order_items group by product_id order by n desc")]
    s.top_product_order_share = per_product[0] / s.orders
    lines_per_product = sorted((int(r[0]) for r in _rows(
        conn, "select count(*) from order_items group by product_id")), reverse=True)
    top = max(1, math.ceil(s.products / 100))
    s.top1pct_line_share = sum(lines_per_product[:top]) / s.lines
    cats = _rows(conn, "select p.category, count(*), sum(i.quantity * i.unit_price) from order_items i "
                       "join products p using (product_id) group by p.category")
    revenue = sum(float(r[2]) for r in cats)
    s.category_lines = {r[0]: int(r[1]) / s.lines for r in cats}
    top_revenue = _rows(conn, "select sum(quantity * unit_price) as r from order_items group by product_id "
                              "order by r desc limit 1")[0][0]
    s.top_product_revenue_share = float(top_revenue) / revenue if revenue else 0.0
    s.category_revenue = {r[0]: float(r[2]) / revenue for r in cats}

    s.lines_per_order = {int(k): int(n) for k, n in _rows(
        conn, "select n_lines, count(*) from (select count(*) as n_lines from order_items group by order_id) t group by n_lines")}
    s.duplicate_lines = int(_rows(conn, "select coalesce(sum(n - 1), 0) from (select count(*) as n from order_items "
                                        "group by order_id, product_id having n > 1) t")[0][0])
    s.before_signup = int(_rows(conn, "select count(*) from orders o join customers c using (customer_id) "
                                      "where o.ordered_at < c.signed_up_at")[0][0])

    orders = _rows(conn, "select o.customer_id, o.channel, o.store_id, o.ordered_at, o.status, c.country, c.city, "
                         "coalesce(t.total, 0) from orders o join customers c using (customer_id) "
                         "left join (select order_id, sum(quantity * unit_price) as total from order_items "
                         "group by order_id) t using (order_id)")
    hours: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0] * 24)
    weekdays: dict[str, list[int]] = defaultdict(lambda: [0] * 7)
    monthly: dict[tuple[str, date], float] = defaultdict(float)
    channel_by_customer: dict[int, Counter] = defaultdict(Counter)
    stores_by_customer: dict[int, Counter] = defaultdict(Counter)
    online = in_store = in_country = early = 0
    for customer, channel, store_id, ordered_at, status, country, city, total in orders:
        channel_by_customer[customer][channel] += 1
        if channel == "store":
            st = stores[store_id]
            in_store += 1
            in_country += st.country == country
            early += ordered_at < datetime.combine(st.opened_at, datetime.min.time())
            stores_by_customer[customer][store_id] += 1
            region, zone = st.region, st.timezone
        else:
            online += 1
            region = region_of_country.get(country, "?")
            zone = zone_of_city.get((country, city), "UTC")
        tz = zones.get(zone) or zones.setdefault(zone, ZoneInfo(zone))
        local = ordered_at.replace(tzinfo=UTC).astimezone(tz)
        hours[(region, channel)][local.hour] += 1
        weekdays[region][local.weekday()] += 1
        if status in REVENUE_STATUSES:
            monthly[(region, ordered_at.date().replace(day=1))] += float(total)
    s.online_share = online / s.orders
    s.in_country_store_share = in_country / in_store if in_store else 0.0
    s.before_store_opening = early
    regular = [c for c in channel_by_customer.values() if sum(c.values()) >= 5]
    if regular:
        s.mostly_online_customers = sum(c["online"] / sum(c.values()) >= 0.8 for c in regular) / len(regular)
        s.mostly_store_customers = sum(c["store"] / sum(c.values()) >= 0.8 for c in regular) / len(regular)
    shoppers = [c for c in stores_by_customer.values() if sum(c.values()) >= 5]
    if shoppers:
        total = sum(sum(c.values()) for c in shoppers)
        s.top_store_share = sum(c.most_common(1)[0][1] for c in shoppers) / total
        s.top3_stores_share = sum(sum(n for _k, n in c.most_common(3)) for c in shoppers) / total
    s.max_stores_per_customer = max((len(c) for c in stores_by_customer.values()), default=0)
    s.local_hours = dict(hours)
    s.local_weekdays = dict(weekdays)
    s.monthly_revenue = dict(monthly)
    return s


def _pct(x: float) -> str:
    return f"{100 * x:.1f} %"


def shape_table(s: Shape) -> str:
    """The README's table: one figure per row, measured on the seed."""
    lines = s.lines_per_order
    mean_lines = sum(k * n for k, n in lines.items()) / max(1, sum(lines.values()))
    single = lines.get(1, 0) / max(1, sum(lines.values()))
    cap = max(lines) if lines else 0
    rows = [
        ("orders, order lines, products", f"{s.orders:,}, {s.lines:,}, {s.products:,}"),
        ("first and last order (UTC)", f"{s.first_order:%Y-%m-%d %H:%M} .. {s.last_order:%Y-%m-%d %H:%M}"),
        ("top product's share of orders", _pct(s.top_product_order_share)),
        ("top 1 % of products' share of order lines", _pct(s.top1pct_line_share)),
        ("top product's share of revenue", _pct(s.top_product_revenue_share)),
        ("category shares of lines (highest, lowest)", _category_range(s.category_lines)),
        ("category shares of revenue (highest, lowest)", _category_range(s.category_revenue)),
        ("online share of orders", _pct(s.online_share)),
        ("customers (5+ orders) buying ≥ 80 % online / ≥ 80 % in store",
         f"{_pct(s.mostly_online_customers)} / {_pct(s.mostly_store_customers)}"),
        ("in-store orders at a store in the customer's country", _pct(s.in_country_store_share)),
        ("in-store orders at the customer's most-used store / 3 most-used", f"{_pct(s.top_store_share)} / {_pct(s.top3_stores_share)}"),
        ("most stores any customer bought at", str(s.max_stores_per_customer)),
    ]
    for region in (r.name for r in REGIONS):
        store, web = s.peak_hour(region, "store"), s.peak_hour(region, "online")
        night = s.hour_share(region, "store", range(23, 31))
        rows.append((f"local peak hour, {region}: in store / online",
                     f"{store}:00 / {web}:00 (in store 23:00-07:00: {_pct(night)})"))
    rows += [
        ("lines per order: mean, single-line orders", f"{mean_lines:.2f}, {_pct(single)}"),
        (f"orders with {cap - 1} / {cap} lines (no pile-up at the cap)", f"{lines.get(cap - 1, 0)} / {lines.get(cap, 0)}"),
        ("repeated products in an order; orders before sign-up / store opening",
         f"{s.duplicate_lines}; {s.before_signup} / {s.before_store_opening}"),
    ]
    out = ["| figure | measured |", "|---|---|"]
    out += [f"| {name} | {value} |" for name, value in rows]
    return "\n".join(out)


def _category_range(shares: dict[str, float]) -> str:
    if not shares:
        return "-"
    ranked = sorted(shares.items(), key=lambda kv: -kv[1])
    return f"{ranked[0][0]} {_pct(ranked[0][1])}, {ranked[-1][0]} {_pct(ranked[-1][1])}"


def plot(s: Shape, directory: Path) -> list[Path]:
    """Draw monthly revenue by region and orders by local hour by region (PNG, matplotlib)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    directory.mkdir(parents=True, exist_ok=True)
    regions = [r.name for r in REGIONS]
    written = []

    fig, ax = plt.subplots(figsize=(9, 4.5), dpi=110)
    months = sorted({m for _r, m in s.monthly_revenue})
    # only whole months: the history's first and last month may hold a few days only
    if months and s.first_order and s.first_order.day > 1:
        months = months[1:]
    if months and s.last_order and (s.last_order.date().replace(day=28) + timedelta(days=4)).replace(day=1) \
            - timedelta(days=1) != s.last_order.date():
        months = months[:-1]
    for region in regions:
        ax.plot(months, [s.monthly_revenue.get((region, m), 0.0) / 1000 for m in months], marker=".", label=region)
    ax.set_title("Monthly revenue by region, whole months (store's region; customer's online)")
    ax.set_ylabel("revenue, thousands")
    ax.grid(alpha=0.3)
    ax.set_ylim(bottom=0)
    fig.autofmt_xdate()
    fig.legend(*ax.get_legend_handles_labels(), loc="lower center", ncol=len(regions), fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0.05, 1, 1))
    path = directory / "generator-monthly-revenue.png"
    fig.savefig(path)
    plt.close(fig)
    written.append(path)

    fig, axes = plt.subplots(1, 2, figsize=(10, 4.2), dpi=110, sharey=True)
    for ax, channel in zip(axes, ("store", "online")):
        for region in regions:
            counts = s.local_hours.get((region, channel)) or [0] * 24
            total = sum(counts) or 1
            ax.plot(range(24), [100 * c / total for c in counts], marker=".", label=region)
        ax.set_title(f"{'In store' if channel == 'store' else 'Online'}: orders by local hour")
        ax.set_xlabel("local hour of the day")
        ax.set_xticks(range(0, 24, 3))
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("share of the region's orders, %")
    axes[1].legend(fontsize=8)
    fig.tight_layout()
    path = directory / "generator-local-hours.png"
    fig.savefig(path)
    plt.close(fig)
    written.append(path)
    return written
