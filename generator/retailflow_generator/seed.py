"""`seed`: bulk customers, products and orders over a date range that may end now.

The order plan (when, who, online or which store; see `plan`) is drawn in bounded blocks and handed
out in time order, so that order ids follow time. The rows are generated in fixed-size chunks of
that plan, each from its own random stream keyed by (seed, table, first id, chunk number), so the
output depends on nothing but the arguments (and, when the range reaches today, the moment the
seed starts: nothing is stamped after it). Chunks are encoded as tab-separated rows in memory files
and loaded with `LOAD DATA LOCAL INFILE` on a background thread while the next chunk is generated:
orders first, then their lines, then customers and products (foreign key checks are off inside the
transaction; every reference is to a row loaded or read in it).

`--truncate` on a filled database loads into shadow tables and swaps them in with one atomic
`RENAME TABLE`: until the swap the old rows stay as they were, whatever happens to the process.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta

import numpy as np
import pymysql

from . import shape
from .db import (
    RETIRED,
    SHADOW,
    TABLES,
    GeneratorError,
    Loader,
    MySQLTarget,
    UsageError,
    abandon,
    connect,
    drop_tables,
    end_session,
    ensure_schema,
    leftover_tables,
    load_data_sql,
    max_ids,
    row_counts,
    shadow_statements,
    swap_in_shadow_tables,
)
from .encode import (
    FILL,
    US_PER_DAY,
    cents_column,
    choice_column,
    datetime_column,
    digits_for,
    text_field,
    tsv_rows,
    uint_column,
)
from .geography import REGIONS, countries, country_weights
from .homes import Atlas, StoreTable, home_stores, online_shares
from .plan import CustomerPool, OrderPlan, OrderPlanner, WindowTooNarrow
from .pools import EMAIL_DOMAINS, Pools, build_pools
from .stores import build_stores

#: orders per chunk; part of the random stream's key, so changing it changes the data
ORDER_CHUNK = 50_000
#: customers / products per file (up to four files wait in memory; not part of the data)
ROW_CHUNK = 25_000
#: customers whose home stores are ranked at once (bounds the distance matrix; not part of the data)
HOME_BLOCK = 20_000
#: how far back customers may have signed up before the first order day
SIGNUP_HISTORY_DAYS = 3 * 365
#: share of customers who signed up before the date range starts
SIGNED_UP_BEFORE = 0.6

_TABLE_KEY = {"customers": 1, "products": 2, "orders": 3, "weights": 4, "plan": 5}
#: the largest counts a seed accepts (beyond them a run would take hours and fill the disk)
LIMITS = {"customers": 10_000_000, "products": 1_000_000, "orders": 50_000_000}
#: a basket lists distinct products, up to shape.MAX_LINES of them: the catalogue needs that many
MIN_PRODUCTS = shape.MAX_LINES
#: the earliest --start accepted
EARLIEST_START = date(2000, 1, 1)
#: default length of the history (--start defaults to two years before --end)
DEFAULT_YEARS = 2
_EPOCH = datetime(1970, 1, 1)

ORDER_COLUMNS = ["order_id", "customer_id", "channel", "store_id", "status", "ordered_at", "updated_at"]
ORDER_SET = "created_at = ordered_at"
_NULL_STORE = np.array([ord("\\"), ord("N"), FILL, FILL], dtype=np.uint8)
ITEM_COLUMNS = ["order_item_id", "order_id", "product_id", "quantity", "unit_price", "created_at"]
ITEM_SET = "updated_at = created_at"
#: what an `--append` load sets instead: `updated_at` is when a row was last written, and incremental
#: readers (the ingestion engine reads `updated_at >= cursor - lookback`) never see a row written now
#: with an `updated_at` from the generated history. The server's clock at each LOAD DATA statement
#: (sessions are UTC), the clock the engine caps its cursor with; `created_at` keeps the history.
APPEND_STAMP = "updated_at = current_timestamp(6)"


def load_statements(suffix: str, append: bool) -> dict[str, str]:
    """The LOAD DATA statement of each table. A plain seed stamps `updated_at` from the history (the
    order's last status step, else `created_at`); an `--append` stamps the time it writes the rows (the
    orders' history column goes to a user variable, unused: the load files are the same either way)."""
    if not append:
        return {
            "orders": load_data_sql("orders" + suffix, ORDER_COLUMNS, ORDER_SET),
            "order_items": load_data_sql("order_items" + suffix, ITEM_COLUMNS, ITEM_SET),
            "customers": load_data_sql("customers" + suffix, CUSTOMER_COLUMNS, "updated_at = created_at"),
            "products": load_data_sql("products" + suffix, PRODUCT_COLUMNS, "updated_at = created_at"),
        }
    order_columns = ["@history_updated_at" if c == "updated_at" else c for c in ORDER_COLUMNS]
    return {
        "orders": load_data_sql("orders" + suffix, order_columns, f"{ORDER_SET}, {APPEND_STAMP}"),
        "order_items": load_data_sql("order_items" + suffix, ITEM_COLUMNS, APPEND_STAMP),
        "customers": load_data_sql("customers" + suffix, CUSTOMER_COLUMNS, APPEND_STAMP),
        "products": load_data_sql("products" + suffix, PRODUCT_COLUMNS, APPEND_STAMP),
    }


class SeedInterrupted(KeyboardInterrupt):
    """Ctrl-C during a seed; the message says truthfully what the database holds now."""


def utc_now_us() -> int:
    """The current UTC time in µs since the epoch."""
    return (datetime.now(UTC).replace(tzinfo=None) - _EPOCH) // timedelta(microseconds=1)


def default_end() -> date:
    return datetime.now(UTC).date()


def default_start(end: date) -> date:
    """Two years before `end` (28 February for 29 February)."""
    try:
        return end.replace(year=end.year - DEFAULT_YEARS)
    except ValueError:
        return end.replace(year=end.year - DEFAULT_YEARS, day=28)


@dataclass(frozen=True)
class SeedRequest:
    customers: int
    products: int
    orders: int
    start: date
    end: date
    seed: int
    append: bool = False
    truncate: bool = False
    #: the moment the seed runs (µs UTC): the history never goes past it
    now: int = field(default_factory=utc_now_us)

    def validate(self) -> None:
        """Refuse arguments no database can satisfy (UsageError: exit code 2)."""
        for name in ("customers", "products", "orders"):
            value = getattr(self, name)
            if value < 0:
                raise UsageError(f"--{name} must be zero or more, got {value}")
            if value > LIMITS[name]:
                raise UsageError(f"--{name} must be at most {LIMITS[name]:,}, got {value:,}")
        if self.end < self.start:
            raise UsageError(f"--end {self.end} is before --start {self.start}")
        if self.start < EARLIEST_START:
            raise UsageError(f"--start must be {EARLIEST_START} or later, got {self.start}")
        if shape.day_us(self.start) >= self.now:
            raise UsageError(f"--start {self.start} is in the future (UTC): the history must begin before now")
        if self.append and self.truncate:
            raise UsageError("--append and --truncate exclude each other")
        if self.seed < 0 or self.seed >= 2**63:
            raise UsageError(f"--seed must be between 0 and 2**63 - 1, got {self.seed}")
        if self.orders and not self.append:
            if not self.customers:
                raise UsageError(f"--customers must be at least 1 when there are orders (every order has a customer),"
                                 f" got {self.customers}")
            if self.products < MIN_PRODUCTS:
                raise UsageError(
                    f"--products must be at least {MIN_PRODUCTS} when there are orders: an order lists up to "
                    f"{shape.MAX_LINES} distinct products, got {self.products}"
                )

    @property
    def as_of(self) -> int:
        """The moment the seeded history ends: midnight after --end, or now if that is earlier.
        Orders and their statuses are as of then; nothing is stamped later."""
        return min(shape.day_us(self.end) + US_PER_DAY, self.now)


@dataclass
class SeedResult:
    written: dict[str, int] = field(default_factory=lambda: dict.fromkeys(TABLES, 0))
    seconds: float = 0.0
    where: str = ""

    def summary(self) -> str:
        w = self.written
        rate = w["order_items"] / self.seconds if self.seconds else 0.0
        return (
            f"seed: wrote {w['customers']} customers, {w['products']} products, {w['orders']} orders, "
            f"{w['order_items']} order lines to {self.where} in {self.seconds:.1f} s ({rate:,.0f} lines/s)"
        )


# ------------------------------------------------------------------------------------ pools
@dataclass(frozen=True)
class ProductPool:
    ids: np.ndarray
    price: np.ndarray  #: cents
    category: np.ndarray
    weight: np.ndarray  #: popularity (Zipf-Mandelbrot over a ranking)
    cumulative: np.ndarray  #: running sum of the popularity

    @classmethod
    def build(cls, rng, ids, price, category) -> ProductPool:
        weight = shape.popularity_weights(rng, category, price)
        return cls(ids, price, category, weight, np.cumsum(weight))


def _us(values: list[datetime]) -> np.ndarray:
    return np.array([(v - _EPOCH) // timedelta(microseconds=1) for v in values], dtype=np.int64)


# ------------------------------------------------------------------------------------ customers
@dataclass(frozen=True)
class CustomerBatch:
    ids: np.ndarray
    signed_up: np.ndarray
    country: np.ndarray  #: index into geography.countries()
    city: np.ndarray  #: index into that country's places (geography.places)


def generate_customers(request: SeedRequest, first_id: int) -> CustomerBatch:
    rng = np.random.default_rng([request.seed, _TABLE_KEY["customers"], first_id])
    n = request.customers
    start = shape.day_us(request.start)
    span = request.as_of - start  # nobody signs up after the history ends (or in the future)
    before = rng.random(n) < SIGNED_UP_BEFORE
    offset = np.where(
        before,
        -(rng.random(n) * SIGNUP_HISTORY_DAYS * US_PER_DAY),
        rng.random(n) * span,
    ).astype(np.int64)
    signed_up = np.sort(start + offset)
    if n and not request.append:
        # someone must be signed up before the first order: the earliest customer predates the range
        signed_up[0] = min(signed_up[0], start - US_PER_DAY)
    weights = np.array(country_weights())
    country = rng.choice(len(weights), size=n, p=weights / weights.sum())
    sizes = np.array([len(ps) for ps in _atlas().places])
    city = (rng.random(n) * sizes[country]).astype(np.int64)
    return CustomerBatch(first_id + 1 + np.arange(n, dtype=np.int64), signed_up, country, city)


_ATLAS: list[Atlas] = []


def _atlas() -> Atlas:
    if not _ATLAS:
        _ATLAS.append(Atlas.build(build_stores()))
    return _ATLAS[0]


def customer_text(request: SeedRequest, batch: CustomerBatch, pools: Pools) -> Iterator[tuple[bytes, int]]:
    """Tab-separated customer rows, ROW_CHUNK at a time."""
    rng = np.random.default_rng([request.seed, _TABLE_KEY["customers"], int(batch.ids[0]) if len(batch.ids) else 0, 1])
    n = len(batch.ids)
    u = rng.random((2, n))
    domains = rng.integers(0, len(EMAIL_DOMAINS), size=n)
    for lo in range(0, n, ROW_CHUNK):
        stamps = datetime_column(batch.signed_up[lo:lo + ROW_CHUNK]).view("S26").ravel()
        lines = []
        for i in range(lo, min(n, lo + ROW_CHUNK)):
            cp = pools.countries[batch.country[i]]
            fi = int(u[0, i] * len(cp.first_names))
            li = int(u[1, i] * len(cp.last_names))
            city = cp.cities[int(batch.city[i])]
            cid = int(batch.ids[i])
            email = f"{cp.first_slugs[fi]}.{cp.last_slugs[li]}{cid}@{EMAIL_DOMAINS[domains[i]]}"
            ts = stamps[i - lo].decode()
            lines.append(
                "\t".join(
                    (str(cid), text_field(cp.first_names[fi]), text_field(cp.last_names[li]), email,
                     text_field(city), cp.code, ts, ts)
                )
            )
        yield ("\n".join(lines) + "\n").encode(), len(lines)


CUSTOMER_COLUMNS = ["customer_id", "first_name", "last_name", "email", "city", "country", "signed_up_at", "created_at"]


# ------------------------------------------------------------------------------------ products
@dataclass(frozen=True)
class ProductBatch:
    ids: np.ndarray
    category: np.ndarray
    price: np.ndarray
    created: np.ndarray


def generate_products(request: SeedRequest, first_id: int) -> ProductBatch:
    rng = np.random.default_rng([request.seed, _TABLE_KEY["products"], first_id])
    n = request.products
    weights = np.array([c.weight for c in shape.CATEGORIES])
    category = rng.choice(len(weights), size=n, p=weights / weights.sum())
    price = shape.prices_cents(rng, category)
    # the catalogue predates the orders: products were listed 30 days to ~3 years before
    created = shape.day_us(request.start) - (
        (30 + rng.random(n) * 1000) * US_PER_DAY
    ).astype(np.int64)
    return ProductBatch(first_id + 1 + np.arange(n, dtype=np.int64), category, price, created)


def product_text(request: SeedRequest, batch: ProductBatch, pools: Pools) -> Iterator[tuple[bytes, int]]:
    rng = np.random.default_rng([request.seed, _TABLE_KEY["products"], int(batch.ids[0]) if len(batch.ids) else 0, 1])
    n = len(batch.ids)
    u = rng.random((3, n))
    for lo in range(0, n, ROW_CHUNK):
        stamps = datetime_column(batch.created[lo:lo + ROW_CHUNK]).view("S26").ravel()
        lines = []
        for i in range(lo, min(n, lo + ROW_CHUNK)):
            cat = shape.CATEGORIES[batch.category[i]]
            pid = int(batch.ids[i])
            name = (
                f"{pools.brands[int(u[0, i] * len(pools.brands))]} "
                f"{pools.colours[int(u[1, i] * len(pools.colours))]} "
                f"{cat.nouns[int(u[2, i] * len(cat.nouns))]}"
            )
            cents = int(batch.price[i])
            ts = stamps[i - lo].decode()
            lines.append(
                "\t".join((str(pid), f"{cat.code}-{pid:07d}", text_field(name), cat.name,
                           f"{cents // 100}.{cents % 100:02d}", ts))
            )
        yield ("\n".join(lines) + "\n").encode(), len(lines)


PRODUCT_COLUMNS = ["product_id", "sku", "name", "category", "unit_price", "created_at"]


# ------------------------------------------------------------------------------------ orders
@dataclass(frozen=True)
class OrderChunk:
    orders: bytes
    items: bytes
    n_orders: int
    n_items: int


def distinct_products(
    rng: np.random.Generator, owner: np.ndarray, lines: np.ndarray, products: ProductPool
) -> np.ndarray:
    """Product rows for the lines of orders (`owner`: the order of each line), by popularity, each
    product at most once per order: repeats are drawn again; the rare order still holding one after
    a few rounds is drawn exactly, without replacement."""
    n, total = len(owner), products.cumulative[-1]
    n_products = len(products.ids)

    def draw(k: int) -> np.ndarray:
        return np.minimum(np.searchsorted(products.cumulative, rng.random(k) * total, side="right"), n_products - 1)

    product = draw(n)
    for _ in range(25):
        key = owner * n_products + product
        by_key = np.argsort(key, kind="stable")
        repeat = np.zeros(n, dtype=bool)
        repeat[by_key[1:]] = key[by_key[1:]] == key[by_key[:-1]]
        if not repeat.any():
            return product
        product[repeat] = draw(int(repeat.sum()))
    key = owner * n_products + product
    by_key = np.argsort(key, kind="stable")
    repeat = np.zeros(n, dtype=bool)
    repeat[by_key[1:]] = key[by_key[1:]] == key[by_key[:-1]]
    starts = np.concatenate([[0], np.cumsum(lines)[:-1]])
    p = products.weight / products.weight.sum()
    for order in np.unique(owner[repeat]):
        lo = starts[order]
        product[lo:lo + lines[order]] = rng.choice(n_products, size=int(lines[order]), replace=False, p=p)
    return product


def order_chunk(
    request: SeedRequest,
    chunk: int,
    plan: OrderPlan,
    order_base: int,
    item_base: int,
    customers: CustomerPool,
    products: ProductPool,
    text: tuple[str, ...] = ("orders", "items"),
) -> OrderChunk:
    """Orders chunk*ORDER_CHUNK.. and their lines, from that chunk of the plan; ids follow order time.

    `text` says which load files to encode (the rows are drawn either way, so both are the same)."""
    first = chunk * ORDER_CHUNK
    count = len(plan.ordered)
    rng = np.random.default_rng([request.seed, _TABLE_KEY["orders"], order_base, chunk])
    ordered, online, store = plan.ordered, plan.online, plan.store_id
    customer = customers.ids[plan.who]

    status, updated = shape.order_lifecycle(rng, ordered, online, request.as_of)
    order_ids = order_base + first + 1 + np.arange(count, dtype=np.int64)

    lines = shape.lines_per_order(rng, count, min(shape.MAX_LINES, len(products.ids)))
    n_items = int(lines.sum())
    id_digits = digits_for(order_ids[-1])
    ordered_text = datetime_column(ordered)
    orders_tsv = items_tsv = b""
    if "orders" in text:
        store_text = uint_column(store, 4)
        store_text[online] = _NULL_STORE  # online sales have no store: NULL
        orders_tsv = tsv_rows(
            [
                uint_column(order_ids, id_digits),
                uint_column(customer, digits_for(customers.ids.max())),
                choice_column(np.where(online, 0, 1), ("online", "store")),
                store_text,
                choice_column(status, shape.STATUSES),
                ordered_text,
                datetime_column(updated),
            ]
        )
    if "items" not in text:
        # the lines' own draws come after everything the orders need: an orders-only pass stops
        # here (what it leaves undrawn changes nothing it wrote)
        return OrderChunk(orders_tsv, items_tsv, count, n_items)
    owner = np.repeat(np.arange(count), lines)
    product = distinct_products(rng, owner, lines, products)
    quantity = np.minimum(rng.geometric(shape.QUANTITY_P[products.category[product]]), 10)
    price = products.price[product]
    promo = rng.random(n_items) < shape.PROMO_SHARE
    discount = 1.0 - (0.10 + 0.20 * rng.random(n_items))
    price = np.where(promo, np.round(price * discount).astype(np.int64), price)
    item_ids = item_base + 1 + np.arange(n_items, dtype=np.int64)
    items_tsv = tsv_rows(
        [
            uint_column(item_ids, digits_for(item_ids[-1])),
            uint_column(order_ids[owner], id_digits),
            uint_column(products.ids[product], digits_for(products.ids.max())),
            uint_column(quantity, 2),
            cents_column(price),
            ordered_text[owner],
        ]
    )
    return OrderChunk(orders_tsv, items_tsv, count, n_items)


def build_customer_pool(
    rng: np.random.Generator, ids: np.ndarray, signed_up: np.ndarray, country: np.ndarray, city: np.ndarray
) -> tuple[CustomerPool, StoreTable, Atlas]:
    """Customers with their home stores, online shares and time zones (country/city: indices)."""
    atlas = _atlas()
    stores = StoreTable.build(build_stores(), atlas)
    pairs = countries()
    codes = np.array([c.code for _r, c in pairs], dtype=object)[country]
    regions = np.array([r.name for r, _c in pairs], dtype=object)[country]
    lat, lon, zone = atlas.locate(country, city)
    # each customer's home stores depend on that customer alone: in blocks, so that the (customers x
    # stores) distance and ranking matrices stay HOME_BLOCK rows high however many customers there are
    home = np.concatenate(
        [home_stores(stores, codes[lo:lo + HOME_BLOCK], regions[lo:lo + HOME_BLOCK], lat[lo:lo + HOME_BLOCK],
                     lon[lo:lo + HOME_BLOCK]) for lo in range(0, len(lat), HOME_BLOCK)]
    ) if len(lat) else home_stores(stores, codes, regions, lat, lon)
    pool = CustomerPool.build(rng, ids, signed_up, home, online_shares(rng, len(ids)), zone)
    return pool, stores, atlas


# ------------------------------------------------------------------------------------ database
def _existing_customers(conn) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(ids, signed_up µs, country index, city index) of the customers already there."""
    country_of = {c.code: i for i, (_r, c) in enumerate(countries())}
    with conn.cursor() as cur:
        cur.execute("select customer_id, signed_up_at, country, city from customers order by customer_id")
        rows = cur.fetchall()
    atlas = _atlas()
    ids = np.array([r[0] for r in rows], dtype=np.int64)
    signed = _us([r[1] for r in rows])
    country = np.array([country_of.get(r[2], 0) for r in rows], dtype=np.int64)
    city = np.array([atlas.city_index(int(c), r[3]) for c, r in zip(country, rows)], dtype=np.int64)
    return ids, signed, country, city


def _existing_products(conn) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    category_of = {c.name: i for i, c in enumerate(shape.CATEGORIES)}
    with conn.cursor() as cur:
        cur.execute("select product_id, round(unit_price * 100), category from products order by product_id")
        rows = cur.fetchall()
    ids = np.array([r[0] for r in rows], dtype=np.int64)
    price = np.array([int(r[1]) for r in rows], dtype=np.int64)
    category = np.array([category_of.get(r[2], 0) for r in rows], dtype=np.int64)
    return ids, price, category


class StopSignals:
    """Ctrl-C (SIGINT) and SIGTERM during a seed that is its own process (the command line installs this).

    The first signal says at once what stopping involves and raises KeyboardInterrupt: the seed rolls
    its load back (with `--truncate`, waits for the server to roll back and drops the `<table>__new`
    tables), then says what the database holds. That wait is the server's: a rollback takes about as
    long as the load so far. A second signal leaves at once (exit 128 + signal number), which cannot
    break the atomic swap: the previous rows change only through the one RENAME TABLE, sent after the
    load is committed and applied by the server whole or not at all, whatever this process does; when
    the process leaves, the server rolls back what was not committed, and the next seed drops the
    `__new` (or `__old`) tables left behind. Once the outcome is decided, signals are ignored."""

    def __init__(self) -> None:
        #: "starting", "load" (into the tables themselves), "commit", "shadow" (into `__new`), "swap", "settled"
        self.stage = "starting"
        self.signum: int | None = None  # the first signal received
        self.cleaning = False

    def install(self) -> StopSignals:
        """Handle SIGINT and SIGTERM (main thread only), unless the process was started ignoring them
        (a background job ignores Ctrl-C)."""
        for signum in (signal.SIGINT, signal.SIGTERM):
            if signal.getsignal(signum) is not signal.SIG_IGN:
                signal.signal(signum, self._handle)
        return self

    @property
    def word(self) -> str:
        return "terminated" if self.signum == signal.SIGTERM else "interrupted"

    def stopping(self) -> str:
        """What the seed does to stop, at the current stage."""
        return {
            "starting": "nothing has been written yet",
            "load": "waiting for the server to roll back the load; nothing is committed",
            "commit": "the load was being committed: waiting to learn from the server whether it was",
            "shadow": f"waiting for the server to roll back the unfinished load into the <table>{SHADOW} tables, then"
                      " dropping them; the previous data stays",
            "swap": "the new tables were being swapped in (one atomic RENAME TABLE): waiting to learn from the server"
                    " which data is in place",
        }[self.stage]

    def left_at_once(self) -> str:
        """What the database holds when the process leaves now, at the current stage."""
        return {
            "starting": "no rows were written",
            "load": "nothing was committed (the server rolls the load back on its own)",
            "commit": "the commit was under way: either all the new rows are in or none (one transaction)",
            "shadow": f"the previous data is unchanged (the server rolls the load back on its own; the next seed"
                      f" drops the <table>{SHADOW} tables)",
            "swap": "the swap was under way: the tables hold all the previous rows or all the new ones, never a mix"
                    f" (RENAME TABLE is atomic); the next seed drops the <table>{SHADOW} or <table>{RETIRED} tables"
                    " left",
        }[self.stage]

    def _handle(self, signum, _frame) -> None:
        if self.stage == "settled":
            return
        if self.signum is not None or self.cleaning:
            self.signum = self.signum or signum
            _say(f"{self.word}; left at once: {self.left_at_once()}")
            os._exit(128 + signum)
        self.signum = signum
        again = "a second Ctrl-C" if signum == signal.SIGINT else "a second signal"
        _say(f"stopping: {self.stopping()} ({again} leaves at once)")
        raise KeyboardInterrupt

    def check(self) -> None:
        """Raise KeyboardInterrupt if a signal came: the seed stops at its next step even if the
        exception the handler raised was lost."""
        if self.signum is not None:
            raise KeyboardInterrupt

    def settle(self) -> None:
        """The outcome is decided: from now on a signal changes nothing, and is ignored through the
        process's exit. Python's own exit (interpreter finalization, which takes a tenth of a second
        or more once numpy and the database driver are loaded) puts a handler set from Python back to
        the signal's default action, so a Ctrl-C then killed a seed that had finished and said so,
        with status 130; a signal set to be ignored stays ignored."""
        self.stage = "settled"
        if threading.current_thread() is threading.main_thread():
            ignored = [signum for signum in (signal.SIGINT, signal.SIGTERM) if signal.getsignal(signum) == self._handle]
            if ignored:
                _drop_reports_of_signals_ignored_as_they_came(ignored)
            for signum in ignored:
                signal.signal(signum, signal.SIG_IGN)

    @contextmanager
    def cleaning_up(self):
        """The clean-up after a failure or the first signal: a signal now leaves at once; once it
        ends, the outcome is decided (signals are ignored)."""
        self.cleaning = True
        try:
            yield
        finally:
            self.settle()


def _say(text: str) -> None:
    """One line on stderr from a signal handler: straight to the file descriptor (the handler may run
    while the main thread is inside a write to sys.stderr); on a terminal it clears a progress bar's line."""
    prefix = "\r\x1b[K" if os.isatty(2) else ""
    try:
        os.write(2, f"{prefix}retailflow-generator seed: {text}\n".encode())
    except OSError:
        pass


def run_seed(
    request: SeedRequest,
    target: MySQLTarget,
    progress: Callable[[int], None] | None = None,
    stop: StopSignals | None = None,
) -> SeedResult:
    """Seed the database. On any failure (or Ctrl-C) nothing is half-written: a plain or `--append`
    seed rolls its one transaction back; a `--truncate` seed drops its shadow tables, so the
    previous rows stay as they were. `stop` (the command line's signal handling) learns each stage,
    to say at once what a Ctrl-C means and to leave at once on a second one."""
    stop = stop or StopSignals()  # not installed: only records the stages
    request.validate()
    started = time.perf_counter()
    conn = connect(target)
    result = SeedResult(where=target.describe())
    shadow = swapped = renaming = committing = committed = False
    session = conn.thread_id()
    try:
        counts = row_counts(conn)  # a missing table counts 0: it is created below, once nothing refuses
        if any(counts.values()) and not (request.append or request.truncate):
            filled = ", ".join(f"{t} has {n} rows" for t, n in counts.items() if n)
            raise GeneratorError(
                f"{target.describe()} is not empty ({filled}); pass --append to add to it "
                "or --truncate to replace it (nothing was written)"
            )
        if request.orders and request.append:
            have_customers = request.customers or counts["customers"]
            have_products = request.products + counts["products"]
            if not have_customers:
                raise GeneratorError("the database has no customers and --customers is 0: orders need at least one "
                                     "customer (nothing was written)")
            if have_products < MIN_PRODUCTS:
                raise GeneratorError(
                    f"orders need at least {MIN_PRODUCTS} products (an order lists up to {shape.MAX_LINES} "
                    f"distinct ones); the database has {counts['products']}: pass --products"
                )
        try:
            ensure_schema(conn)
        except pymysql.err.MySQLError as exc:
            raise GeneratorError(f"cannot create the schema in {target.describe()}: {exc}") from exc
        shadow = request.truncate and any(counts.values())
        stop.stage = "shadow" if shadow else "load"
        with conn.cursor() as cur:
            # leftovers of a seed that was killed: shadow tables never swapped in, or old tables
            # swapped out but not yet dropped
            drop_tables(conn, SHADOW)
            drop_tables(conn, RETIRED)
            if shadow:
                for statement in shadow_statements():
                    cur.execute(statement)
        conn.begin()
        with conn.cursor() as cur:
            # Every id an order or line refers to comes from the rows loaded or read in this same
            # transaction, so the references hold by construction (the integration tests check
            # them); skipping the per-row lookups is what mysqldump does for bulk loads too.
            cur.execute("set session foreign_key_checks = 0")
        try:
            _write(conn, request, result, progress, SHADOW if shadow else "", check=stop.check)
            # each step also checks that no signal came whose KeyboardInterrupt got lost on the way (an
            # exception raised by a signal handler inside code that discards errors, as C code may)
            stop.check()
            if not shadow:
                committing, stop.stage = True, "commit"
            conn.commit()
            stop.check()
            if shadow:
                renaming, stop.stage = True, "swap"
                swapped = swap_in_shadow_tables(conn)
                stop.check()
            stop.settle()  # the new rows are in for good: a late Ctrl-C changes nothing
        except pymysql.err.MySQLError as exc:
            kept = "the previous data is unchanged" if shadow else "nothing was kept"
            raise GeneratorError(f"writing to {target.describe()} failed, {kept}: {exc}") from exc
    except BaseException as exc:
        # the cleanup below runs to its end, unless a second signal makes the command leave at once
        # (StopSignals); in a process that is not the command (tests), it ignores Ctrl-C
        with stop.cleaning_up(), (nullcontext() if _installed(stop) else _sigint_ignored()):
            if shadow:
                swapped = _clear_shadow_tables(conn, target, session, swapped, renaming)
            elif committing or isinstance(exc, KeyboardInterrupt):
                # the connection may be broken mid-packet (a ROLLBACK on it can wait forever), and the
                # COMMIT may have been sent: end the session from a new connection and ask the server
                committed = _end_plain_seed(conn, target, session, counts if committing else None, result.written)
            else:
                try:
                    conn.rollback()
                except Exception:  # a broken connection: closing it rolls back
                    abandon(conn)
        if isinstance(exc, KeyboardInterrupt):
            if swapped:
                kept = "the new data is in place (the old tables may be left as <table>__old until the next seed)"
            elif committed:
                kept = "the seed had just committed: the new rows are in"
            elif shadow:
                kept = "the previous data is unchanged"
            else:
                kept = "nothing was committed"
            raise SeedInterrupted(kept) from None
        raise
    finally:
        conn.close()
    result.seconds = time.perf_counter() - started
    return result


def _installed(stop: StopSignals) -> bool:
    """Whether ``stop`` handles Ctrl-C in this process (the command line's own process)."""
    return threading.current_thread() is threading.main_thread() and signal.getsignal(signal.SIGINT) == stop._handle


@contextmanager
def _sigint_ignored():
    """Ignore SIGINT inside the block (main thread only; elsewhere signals never arrive anyway)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def _drop_reports_of_signals_ignored_as_they_came(signums) -> None:
    """Keep stderr quiet about a signal in `signums` that lands as `settle` sets it to be ignored.

    `signal.signal(signum, SIG_IGN)` runs any Python handler already due, then asks the kernel to
    ignore the signal, then records SIG_IGN. A signal caught by CPython's C-level handler before the
    kernel's switch but not yet run (it landed between the first two steps, or another thread of the
    process took it) is then found due with SIG_IGN recorded, and CPython reports it as an unraisable
    "OSError: Signal N ignored due to race condition" (N is 2 for SIGINT, 15 for SIGTERM), printed
    with a traceback. So a Ctrl-C as a seed settled printed a traceback on stderr, from a seed that then
    finished and exited 0. The signal was ignored, which is what settling asks for. From then on this
    hook drops that report for these signals, and passes every other one to the hook in place before.
    It stays for the rest of the process, which is the command line's own (`settle` changes handlers
    only there) and changes these signals' handlers no more."""
    if not _LATE_SIGNAL_REPORTS:  # the hook goes in once
        previous = sys.unraisablehook

        def hook(unraisable) -> None:
            if (unraisable.exc_type is OSError and unraisable.object is None
                    and str(unraisable.exc_value) in _LATE_SIGNAL_REPORTS):
                return
            previous(unraisable)

        sys.unraisablehook = hook
    _LATE_SIGNAL_REPORTS.update(f"Signal {int(signum)} ignored due to race condition" for signum in signums)


_LATE_SIGNAL_REPORTS: set[str] = set()


def _end_plain_seed(conn, target: MySQLTarget, session: int, before: dict[str, int] | None,
                    written: dict[str, int]) -> bool:
    """After a plain or `--append` seed was interrupted: end its session from a new connection (its own
    may be broken mid-packet), so that its transaction is rolled back, or committed if the COMMIT had
    been sent. ``before`` (the row counts, given when the COMMIT may have been sent): returns whether the
    new rows are in, seen by the customers or products (which only a seed writes) or else the orders.
    Unknown (no connection): False, as the server rolls back a transaction it got no COMMIT for."""
    abandon(conn)
    try:
        fresh = connect(target)
    except GeneratorError:
        return False
    try:
        end_session(fresh, session)
        if before is None:
            return False
        now = row_counts(fresh)
    except pymysql.err.MySQLError:
        return False
    finally:
        fresh.close()
    table = next((t for t in ("customers", "products", "orders") if written[t]), "orders")
    return now[table] >= before[table] + written[table] > before[table]


def _clear_shadow_tables(conn, target: MySQLTarget, session: int, swapped: bool, renaming: bool) -> bool:
    """After a failed or interrupted ``--truncate`` seed: end its session (its connection may be broken
    mid-packet), then, on a new connection, drop the shadow tables if the swap did not happen, or the
    retired ones if it did. Returns whether the new data is in place, as the server has it (a Ctrl-C
    while waiting for RENAME TABLE's answer leaves the client unsure). Best effort: the next seed drops
    whatever is left."""
    abandon(conn)
    try:
        fresh = connect(target)
    except GeneratorError:
        return swapped
    try:
        end_session(fresh, session)
        left = leftover_tables(fresh)
        swapped = swapped or (renaming and not left[SHADOW])
        drop_tables(fresh, RETIRED if swapped else SHADOW)
    except pymysql.err.MySQLError:
        pass
    finally:
        fresh.close()
    return swapped


def _write(conn, request: SeedRequest, result: SeedResult, progress, suffix: str,
           check: Callable[[], None] | None = None) -> None:
    base = dict.fromkeys(TABLES, 0) if suffix else max_ids(conn)
    customers = generate_customers(request, base["customers"])
    products = generate_products(request, base["products"])
    # read before anything is loaded: the connection then belongs to the loader thread
    existing = None
    if request.orders and request.append and any(base.values()):
        existing = (_existing_customers(conn), _existing_products(conn))

    statements = load_statements(suffix, request.append)
    loader = Loader(conn, depth=3, check=check)
    try:
        if request.orders:
            _write_orders(request, result, progress, base, existing, customers, products, loader, statements)
        # Customers and products go last (foreign key checks are off in this transaction): the
        # Faker pools and their row text are built while the server still works on the last
        # order chunks, instead of before the first one.
        if request.customers or request.products:
            pools = build_pools(request.seed)
            for text, n in customer_text(request, customers, pools) if request.customers else ():
                loader.submit(statements["customers"], text, n)
                result.written["customers"] += n
            for text, n in product_text(request, products, pools) if request.products else ():
                loader.submit(statements["products"], text, n)
                result.written["products"] += n
        loader.drain()
    finally:
        loader.close()


def _write_orders(request, result, progress, base, existing, customers, products, loader, statements) -> None:
    weights_rng = np.random.default_rng([request.seed, _TABLE_KEY["weights"], base["orders"]])
    c_ids, c_signed, c_country, c_city = customers.ids, customers.signed_up, customers.country, customers.city
    p_ids, p_price, p_cat = products.ids, products.price, products.category
    if existing:
        (e_ids, e_signed, e_country, e_city), (ep_ids, ep_price, ep_cat) = existing
        c_ids, c_signed = np.concatenate([e_ids, c_ids]), np.concatenate([e_signed, c_signed])
        c_country, c_city = np.concatenate([e_country, c_country]), np.concatenate([e_city, c_city])
        p_ids = np.concatenate([ep_ids, p_ids])
        p_price = np.concatenate([ep_price, p_price])
        p_cat = np.concatenate([ep_cat, p_cat])
    customer_pool, stores, atlas = build_customer_pool(weights_rng, c_ids, c_signed, c_country, c_city)
    product_pool = ProductPool.build(weights_rng, p_ids, p_price, p_cat)
    try:
        planner = OrderPlanner(
            [request.seed, _TABLE_KEY["plan"], base["orders"]],
            request.orders, request.start, request.end, request.as_of, customer_pool, stores, atlas.zones,
        )
    except WindowTooNarrow as exc:
        raise GeneratorError(
            f"the range {request.start}..{request.end} leaves too little time before now for "
            f"{request.orders} orders in local time ({exc}): pick an earlier --start"
        ) from None
    orders_sql, items_sql = statements["orders"], statements["order_items"]
    # Two passes over the same chunks (same random streams, so the same rows): all orders, then all
    # lines. One table at a time keeps the server's working set small; interleaved, both tables'
    # indexes compete for the buffer pool and the load slows down by half at a few million lines.
    # The plan is drawn again for the second pass (the same orders): kept, it would grow with them.
    item_bases = [base["order_items"]]
    for chunk, plan in enumerate(planner.chunks(ORDER_CHUNK)):
        part = order_chunk(request, chunk, plan, base["orders"], item_bases[-1], customer_pool, product_pool,
                           text=("orders",))
        done = (lambda n=part.n_orders: progress(n / 2)) if progress else None
        loader.submit(orders_sql, part.orders, part.n_orders, on_done=done)
        item_bases.append(item_bases[-1] + part.n_items)
        result.written["orders"] += part.n_orders
    for chunk, plan in enumerate(planner.chunks(ORDER_CHUNK)):
        part = order_chunk(request, chunk, plan, base["orders"], item_bases[chunk], customer_pool, product_pool,
                           text=("items",))
        done = (lambda n=part.n_orders: progress(n / 2)) if progress else None
        loader.submit(items_sql, part.items, part.n_items, on_done=done)
        result.written["order_items"] += part.n_items


def print_progress_factory(total: int):
    """A tqdm bar on stderr when it is a terminal; nothing otherwise (CI logs stay quiet)."""
    from tqdm import tqdm

    bar = tqdm(total=total, unit="orders", unit_scale=True, file=sys.stderr, disable=None, leave=False)
    return bar
