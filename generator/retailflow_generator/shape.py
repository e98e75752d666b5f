"""The shape of the business: pure numpy functions from a random generator to columns.

Nothing here touches a database, so the distributions can be tested on their own. Times are
integers (microseconds since the epoch, UTC) so that they are exact and vectorise.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

import numpy as np

from .encode import US_PER_DAY, US_PER_SECOND

US_PER_HOUR = 3600 * US_PER_SECOND

#: share of orders placed online (the rest are in-store sales)
ONLINE_SHARE = 0.40
#: order lines per order: geometric with this success probability (mean 1/p ≈ 2.5), capped
LINES_P = 0.40
MAX_LINES = 12
#: Zipf exponent of product popularity (rank r sells ∝ 1 / r**s)
ZIPF_S = 1.07
#: log-normal sigma of how much customers buy relative to each other (heavy-tailed spend)
SPEND_SIGMA = 1.1
#: share of order lines sold at a promotional discount
PROMO_SHARE = 0.08

# Weekly and yearly seasonality: Saturdays and December sell most.
WEEKDAY_FACTOR = np.array([0.92, 0.90, 0.94, 1.00, 1.12, 1.32, 1.05])  # Monday first
MONTH_FACTOR = np.array([0.80, 0.84, 0.95, 0.97, 1.00, 1.00, 1.02, 1.00, 0.95, 1.02, 1.25, 1.70])
#: yearly growth of the business
GROWTH = 1.12
# Orders per hour of the day: quiet nights, a lunch peak and an evening peak.
HOUR_WEIGHT = np.array(
    [0.6, 0.35, 0.2, 0.15, 0.15, 0.25, 0.6, 1.2, 2.0, 2.8, 3.4, 3.9,
     4.6, 4.4, 3.8, 3.6, 3.7, 4.2, 4.9, 5.3, 5.0, 3.9, 2.6, 1.4]
)


@dataclass(frozen=True)
class Category:
    name: str
    code: str  #: SKU prefix
    weight: float  #: share of the catalogue
    median_price: float
    min_price: float
    max_price: float
    #: geometric success probability of the quantity on a line (smaller: bigger baskets)
    quantity_p: float
    nouns: tuple[str, ...]


CATEGORIES: tuple[Category, ...] = (
    Category("Groceries", "GRO", 0.18, 6.0, 0.79, 45.0, 0.45,
             ("Coffee Beans", "Olive Oil", "Pasta", "Granola", "Green Tea", "Dark Chocolate", "Honey", "Rice")),
    Category("Beauty", "BEA", 0.09, 18.0, 2.99, 140.0, 0.75,
             ("Face Cream", "Shampoo", "Lip Balm", "Serum", "Body Lotion", "Perfume", "Sunscreen")),
    Category("Apparel", "APP", 0.17, 35.0, 7.99, 260.0, 0.8,
             ("T-Shirt", "Hoodie", "Jeans", "Jacket", "Dress", "Sweater", "Scarf", "Shorts")),
    Category("Footwear", "FTW", 0.07, 75.0, 19.99, 320.0, 0.92,
             ("Sneakers", "Running Shoes", "Boots", "Sandals", "Loafers", "Slippers")),
    Category("Home & Kitchen", "HOM", 0.14, 29.0, 3.99, 450.0, 0.8,
             ("Mug", "Frying Pan", "Cushion", "Lamp", "Towel Set", "Knife Block", "Vase", "Blender")),
    Category("Electronics", "ELE", 0.11, 110.0, 9.99, 2400.0, 0.94,
             ("Headphones", "Charger", "Smartwatch", "Speaker", "Keyboard", "Monitor", "Tablet", "Camera")),
    Category("Sports & Outdoors", "SPO", 0.09, 42.0, 4.99, 850.0, 0.85,
             ("Yoga Mat", "Water Bottle", "Tent", "Backpack", "Dumbbells", "Bike Helmet", "Trail Poles")),
    Category("Toys", "TOY", 0.07, 24.0, 3.99, 190.0, 0.8,
             ("Building Set", "Puzzle", "Plush Bear", "Board Game", "Racing Car", "Doll House")),
    Category("Books", "BOO", 0.08, 16.0, 4.99, 85.0, 0.8,
             ("Novel", "Cookbook", "Travel Guide", "Biography", "Comic", "Atlas")),
)
QUANTITY_P = np.array([c.quantity_p for c in CATEGORIES])

STATUSES = ("placed", "paid", "shipped", "delivered", "cancelled", "returned")
PLACED, PAID, SHIPPED, DELIVERED, CANCELLED, RETURNED = range(6)


def day_us(d: date) -> int:
    return (d - date(1970, 1, 1)).days * US_PER_DAY


# ------------------------------------------------------------------------------------ calendar
def day_weights(start: date, end: date) -> np.ndarray:
    """Relative order volume of each day from start to end inclusive."""
    days = np.arange(np.datetime64(start), np.datetime64(end) + 1)
    weekday = (days.astype("int64") + 3) % 7  # 1970-01-01 was a Thursday
    month = days.astype("datetime64[M]").astype("int64") % 12
    years = (days - days[0]).astype("int64") / 365.25
    weights = WEEKDAY_FACTOR[weekday] * MONTH_FACTOR[month] * GROWTH**years
    # Christmas Day and New Year's Day: most stores closed
    month_day = (days - days.astype("datetime64[M]")).astype("int64") + 1
    closed = ((month == 11) & (month_day == 25)) | ((month == 0) & (month_day == 1))
    return np.where(closed, weights * 0.35, weights)


def orders_per_day(rng: np.random.Generator, total: int, start: date, end: date) -> np.ndarray:
    w = day_weights(start, end)
    return rng.multinomial(total, w / w.sum())


_HOUR_CDF = np.concatenate([[0.0], np.cumsum(HOUR_WEIGHT) / HOUR_WEIGHT.sum()])
_HOUR_KNOTS = np.arange(25, dtype=float) * 3600.0


def order_times(
    rng: np.random.Generator, first: int, count: int, per_day: np.ndarray, start: date
) -> np.ndarray:
    """ordered_at (µs) of the orders with global indices first..first+count-1.

    The j-th of a day's n orders lands at the intraday quantile (j + u) / n, so times increase with
    the order index (order ids follow time) without looking at any other chunk.
    """
    ends = np.cumsum(per_day)
    starts = ends - per_day
    g = np.arange(first, first + count)
    day = np.searchsorted(ends, g, side="right")
    q = (g - starts[day] + rng.random(count)) / per_day[day]
    seconds = np.interp(q, _HOUR_CDF, _HOUR_KNOTS)
    return day_us(start) + day * US_PER_DAY + np.minimum(
        (seconds * US_PER_SECOND).astype(np.int64), US_PER_DAY - 1
    )


# ------------------------------------------------------------------------------------ choices
def weighted_prefix_choice(
    rng: np.random.Generator, cumulative: np.ndarray, available: np.ndarray
) -> np.ndarray:
    """For each draw, an index < available[i] chosen in proportion to the weights behind
    `cumulative` (the running sum of weights). `available` must be ≥ 1."""
    limit = cumulative[available - 1]
    picks = np.searchsorted(cumulative, rng.random(len(available)) * limit, side="right")
    return np.minimum(picks, available - 1)


def spend_weights(rng: np.random.Generator, n: int) -> np.ndarray:
    """How much each customer buys relative to the others: heavy-tailed (log-normal)."""
    return rng.lognormal(mean=0.0, sigma=SPEND_SIGMA, size=n)


def popularity_weights(rng: np.random.Generator, n: int) -> np.ndarray:
    """Zipf popularity: a random product ranking, rank r selling ∝ 1 / r**ZIPF_S."""
    rank = rng.permutation(n) + 1
    return 1.0 / rank.astype(float) ** ZIPF_S


def lines_per_order(rng: np.random.Generator, n: int) -> np.ndarray:
    return np.minimum(rng.geometric(LINES_P, size=n), MAX_LINES)


def prices_cents(rng: np.random.Generator, category: np.ndarray) -> np.ndarray:
    """Catalogue prices by category: log-normal around the median, shop-style endings (x.99)."""
    median = np.array([c.median_price for c in CATEGORIES])[category]
    low = np.array([c.min_price for c in CATEGORIES])[category]
    high = np.array([c.max_price for c in CATEGORIES])[category]
    price = np.clip(median * rng.lognormal(0.0, 0.6, size=len(category)), low, high)
    cents = np.where(
        price >= 10,
        np.floor(price).astype(np.int64) * 100 + 99,
        np.floor(price * 10).astype(np.int64) * 10 + 9,
    )
    return np.maximum(cents, 49)


# ------------------------------------------------------------------------------------ lifecycle
def order_lifecycle(
    rng: np.random.Generator, ordered: np.ndarray, online: np.ndarray, as_of: int
) -> tuple[np.ndarray, np.ndarray]:
    """(status, updated_at µs) of each order as it stands at `as_of`.

    Every order follows its own timeline (paid minutes later, shipped within a day or two,
    delivered a few days after; a few cancelled before shipping, a few returned after delivery);
    its status is the last step reached by `as_of`. In-store sales are delivered at the till.
    """
    n = len(ordered)
    exp = rng.exponential
    paid = ordered + np.where(online, (exp(15 * 60, n) * US_PER_SECOND).astype(np.int64), 0)
    shipped = paid + (4 * US_PER_HOUR + exp(20 * US_PER_HOUR, n)).astype(np.int64)
    delivered = np.where(
        online, shipped + (US_PER_DAY + exp(2 * US_PER_DAY, n)).astype(np.int64), ordered
    )
    returned = delivered + (2 * US_PER_DAY + exp(7 * US_PER_DAY, n)).astype(np.int64)
    cancelled = ordered + (rng.random(n) * (shipped - ordered)).astype(np.int64)
    fate = rng.random(n)
    will_cancel = online & (fate < 0.05)
    will_return = ~will_cancel & (fate > np.where(online, 0.92, 0.97))

    status = np.full(n, PLACED, dtype=np.int8)
    updated = ordered.copy()
    steps = (
        (PAID, paid, online & (~will_cancel | (paid < cancelled))),
        (SHIPPED, shipped, online & ~will_cancel),
        (DELIVERED, delivered, ~will_cancel),
        (RETURNED, returned, will_return),
        (CANCELLED, cancelled, will_cancel),
    )
    for code, when, applies in steps:
        reached = applies & (when <= as_of)
        status[reached] = code
        updated[reached] = when[reached]
    return status, updated
