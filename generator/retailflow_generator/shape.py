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

#: mean share of a customer's orders placed online; each customer has their own share, drawn from
#: a beta distribution with this mean (some buy only in store, some only online)
ONLINE_SHARE = 0.40
ONLINE_SHARE_SPREAD = 2.2  #: alpha + beta of that beta distribution (smaller: more spread)
#: how a customer's in-store orders split over their home stores, nearest first
HOME_STORE_WEIGHTS = (0.72, 0.20, 0.08)
#: order lines per order: geometric with this success probability (mean ≈ 2.5), truncated at
#: MAX_LINES (drawn from the renormalised distribution, so the cap holds no pile-up)
LINES_P = 0.40
MAX_LINES = 12
#: product popularity, Zipf-Mandelbrot: rank r sells ∝ 1 / (r + ZIPF_Q) ** ZIPF_S. The offset
#: flattens the head (no product in more than ~15 % of orders), the exponent keeps the tail long.
ZIPF_S = 1.0
ZIPF_Q = 5.0
#: how strongly a price above its category's median pushes a product down the popularity ranking
PRICE_ELASTICITY = 1.5
#: log-normal sigma of how much customers buy relative to each other (heavy-tailed spend)
SPEND_SIGMA = 1.1
#: share of order lines sold at a promotional discount
PROMO_SHARE = 0.08

# Weekly and yearly seasonality (in local time): Saturdays and December sell most.
WEEKDAY_FACTOR = np.array([0.92, 0.90, 0.94, 1.00, 1.12, 1.32, 1.05])  # Monday first
MONTH_FACTOR = np.array([0.80, 0.84, 0.95, 0.97, 1.00, 1.00, 1.02, 1.00, 0.95, 1.02, 1.25, 1.70])
#: yearly growth of the business
GROWTH = 1.12
# Orders per local hour of the day. Stores open 8:00-22:00, with a lunch and an after-work peak;
# online shopping never stops, is quiet at night and peaks in the evening.
STORE_HOUR_WEIGHT = np.array(
    [0, 0, 0, 0, 0, 0, 0, 0, 0.6, 1.3, 1.9, 2.5,
     3.3, 3.4, 2.7, 2.5, 2.8, 3.5, 3.7, 3.1, 2.1, 1.1, 0.3, 0]
)
ONLINE_HOUR_WEIGHT = np.array(
    [1.0, 0.55, 0.3, 0.2, 0.2, 0.3, 0.6, 1.1, 1.6, 2.0, 2.3, 2.6,
     2.9, 2.8, 2.6, 2.5, 2.6, 2.9, 3.3, 3.9, 4.4, 4.5, 3.6, 2.1]
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
    #: how often its products are bought, relative to other categories (moves them up the ranking)
    appeal: float = 1.0


CATEGORIES: tuple[Category, ...] = (
    Category("Groceries", "GRO", 0.18, 6.0, 0.79, 45.0, 0.45,
             ("Coffee Beans", "Olive Oil", "Pasta", "Granola", "Green Tea", "Dark Chocolate", "Honey", "Rice"), 1.4),
    Category("Beauty", "BEA", 0.09, 18.0, 2.99, 140.0, 0.75,
             ("Face Cream", "Shampoo", "Lip Balm", "Serum", "Body Lotion", "Perfume", "Sunscreen"), 1.15),
    Category("Apparel", "APP", 0.17, 35.0, 7.99, 260.0, 0.8,
             ("T-Shirt", "Hoodie", "Jeans", "Jacket", "Dress", "Sweater", "Scarf", "Shorts"), 1.0),
    Category("Footwear", "FTW", 0.07, 75.0, 19.99, 320.0, 0.92,
             ("Sneakers", "Running Shoes", "Boots", "Sandals", "Loafers", "Slippers"), 0.6),
    Category("Home & Kitchen", "HOM", 0.14, 29.0, 3.99, 450.0, 0.8,
             ("Mug", "Frying Pan", "Cushion", "Lamp", "Towel Set", "Knife Block", "Vase", "Blender"), 0.9),
    Category("Electronics", "ELE", 0.11, 110.0, 9.99, 2400.0, 0.94,
             ("Headphones", "Charger", "Smartwatch", "Speaker", "Keyboard", "Monitor", "Tablet", "Camera"), 0.55),
    Category("Sports & Outdoors", "SPO", 0.09, 42.0, 4.99, 850.0, 0.85,
             ("Yoga Mat", "Water Bottle", "Tent", "Backpack", "Dumbbells", "Bike Helmet", "Trail Poles"), 0.7),
    Category("Toys", "TOY", 0.07, 24.0, 3.99, 190.0, 0.8,
             ("Building Set", "Puzzle", "Plush Bear", "Board Game", "Racing Car", "Doll House"), 0.8),
    Category("Books", "BOO", 0.08, 16.0, 4.99, 85.0, 0.8,
             ("Novel", "Cookbook", "Travel Guide", "Biography", "Comic", "Atlas"), 0.9),
)
QUANTITY_P = np.array([c.quantity_p for c in CATEGORIES])
APPEAL = np.array([c.appeal for c in CATEGORIES])

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


def hour_cdf(weights: np.ndarray) -> np.ndarray:
    """Knots (25 values, 0..1) of the cumulative share of a day's orders by local hour."""
    return np.concatenate([[0.0], np.cumsum(weights) / weights.sum()])


STORE_HOUR_CDF = hour_cdf(STORE_HOUR_WEIGHT)
ONLINE_HOUR_CDF = hour_cdf(ONLINE_HOUR_WEIGHT)
_HOUR_KNOTS = np.arange(25, dtype=float) * 3600.0


def time_of_day(rng: np.random.Generator, online: np.ndarray) -> np.ndarray:
    """Seconds after local midnight (float) for each order, by its channel's hourly profile."""
    u = rng.random(len(online))
    return np.where(
        online, np.interp(u, ONLINE_HOUR_CDF, _HOUR_KNOTS), np.interp(u, STORE_HOUR_CDF, _HOUR_KNOTS)
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


def popularity_weights(rng: np.random.Generator, category: np.ndarray, price_cents: np.ndarray) -> np.ndarray:
    """Zipf-Mandelbrot popularity over a product ranking. A category's appeal moves its products up
    the ranking (groceries sell more often than footwear), and so does a low price within the
    category (a 40-euro keyboard outsells a 400-euro one), so no single product takes the revenue."""
    category = np.asarray(category, dtype=np.int64)
    n = len(category)
    median = np.array([c.median_price for c in CATEGORIES])[category] * 100
    cheapness = (median / np.maximum(np.asarray(price_cents, dtype=float), 1.0)) ** PRICE_ELASTICITY
    key = rng.lognormal(0.0, 0.8, size=n) * APPEAL[category] * cheapness
    rank = np.empty(n, dtype=np.int64)
    rank[np.argsort(-key, kind="stable")] = np.arange(1, n + 1)
    return 1.0 / (rank.astype(float) + ZIPF_Q) ** ZIPF_S


def lines_pmf(max_lines: int = MAX_LINES) -> np.ndarray:
    """P(k lines), k = 1..max_lines: geometric(LINES_P) truncated and renormalised."""
    k = np.arange(1, max_lines + 1)
    p = LINES_P * (1 - LINES_P) ** (k - 1)
    return p / p.sum()


def lines_per_order(rng: np.random.Generator, n: int, max_lines: int = MAX_LINES) -> np.ndarray:
    """Lines of each order, 1..max_lines, with no pile-up at the cap."""
    cdf = np.cumsum(lines_pmf(max_lines))
    return np.minimum(np.searchsorted(cdf, rng.random(n), side="right"), max_lines - 1) + 1


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
