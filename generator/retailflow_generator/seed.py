"""`seed`: bulk customers, products and orders over a date range, in one transaction.

Rows are generated in fixed-size chunks, each from its own random stream keyed by (seed, table,
first id, chunk number), so the output does not depend on timing, threads or memory; every
timestamp is derived from the order time, never from the clock. Chunks are written as
tab-separated files and loaded with `LOAD DATA LOCAL INFILE` on a background thread while the next
chunk is generated: orders first, then customers and products (foreign key checks are off inside the
transaction; every reference is to a row loaded or read in it).
"""

from __future__ import annotations

import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path

import numpy as np
import pymysql

from . import shape
from .db import (
    TABLES,
    GeneratorError,
    Loader,
    MySQLTarget,
    connect,
    ensure_schema,
    load_data_sql,
    max_ids,
    row_counts,
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
from .pools import EMAIL_DOMAINS, Pools, build_pools
from .stores import Store, build_stores

#: orders per chunk; part of the random stream's key, so changing it changes the data
ORDER_CHUNK = 50_000
#: customers / products per file
ROW_CHUNK = 100_000
#: how far back customers may have signed up before the first order day
SIGNUP_HISTORY_DAYS = 3 * 365
#: share of customers who signed up before the date range starts
SIGNED_UP_BEFORE = 0.6

_TABLE_KEY = {"customers": 1, "products": 2, "orders": 3, "weights": 4}
_EPOCH = datetime(1970, 1, 1)

ORDER_COLUMNS = ["order_id", "customer_id", "channel", "store_id", "status", "ordered_at", "updated_at"]
ORDER_SET = "created_at = ordered_at"
_NULL_STORE = np.array([ord("\\"), ord("N"), FILL, FILL], dtype=np.uint8)
ITEM_COLUMNS = ["order_item_id", "order_id", "product_id", "quantity", "unit_price", "created_at"]
ITEM_SET = "updated_at = created_at"


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

    def validate(self) -> None:
        for name in ("customers", "products", "orders"):
            if getattr(self, name) < 0:
                raise GeneratorError(f"--{name} must be zero or more, got {getattr(self, name)}")
        if self.end < self.start:
            raise GeneratorError(f"--end {self.end} is before --start {self.start}")
        if self.append and self.truncate:
            raise GeneratorError("--append and --truncate exclude each other")
        if self.seed < 0:
            raise GeneratorError(f"--seed must be zero or more, got {self.seed}")

    @property
    def as_of(self) -> int:
        """The moment the seeded history ends (midnight after --end): statuses are as of then."""
        return shape.day_us(self.end) + US_PER_DAY


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
class CustomerPool:
    """Customers orders can be attributed to, sorted by sign-up time."""

    ids: np.ndarray
    signed_up: np.ndarray
    region: np.ndarray
    cumulative: np.ndarray  #: running sum of spend weights, in sign-up order

    @classmethod
    def build(cls, rng, ids, signed_up, region) -> CustomerPool:
        weights = shape.spend_weights(rng, len(ids))
        order = np.argsort(signed_up, kind="stable")
        return cls(ids[order], signed_up[order], region[order], np.cumsum(weights[order]))


@dataclass(frozen=True)
class ProductPool:
    ids: np.ndarray
    price: np.ndarray  #: cents
    category: np.ndarray
    cumulative: np.ndarray  #: running sum of Zipf popularity

    @classmethod
    def build(cls, rng, ids, price, category) -> ProductPool:
        return cls(ids, price, category, np.cumsum(shape.popularity_weights(rng, len(ids))))


@dataclass(frozen=True)
class StorePool:
    """Per region: store ids in opening order, opening times and running footfall weights."""

    ids: tuple[np.ndarray, ...]
    opened: tuple[np.ndarray, ...]
    cumulative: tuple[np.ndarray, ...]

    @classmethod
    def build(cls, stores: list[Store]) -> StorePool:
        ids, opened, cumulative = [], [], []
        for region in REGIONS:
            mine = sorted((s for s in stores if s.region == region.name), key=lambda s: s.store_id)
            ids.append(np.array([s.store_id for s in mine], dtype=np.int64))
            opened.append(np.array([shape.day_us(s.opened_at) for s in mine], dtype=np.int64))
            cumulative.append(np.cumsum([s.weight for s in mine]))
        return cls(tuple(ids), tuple(opened), tuple(cumulative))


def _us(values: list[datetime]) -> np.ndarray:
    return np.array([(v - _EPOCH) // timedelta(microseconds=1) for v in values], dtype=np.int64)


# ------------------------------------------------------------------------------------ customers
@dataclass(frozen=True)
class CustomerBatch:
    ids: np.ndarray
    signed_up: np.ndarray
    country: np.ndarray  #: index into geography.countries()


def generate_customers(request: SeedRequest, first_id: int) -> CustomerBatch:
    rng = np.random.default_rng([request.seed, _TABLE_KEY["customers"], first_id])
    n = request.customers
    start = shape.day_us(request.start)
    span = shape.day_us(request.end) + US_PER_DAY - start
    before = rng.random(n) < SIGNED_UP_BEFORE
    offset = np.where(
        before,
        -(rng.random(n) * SIGNUP_HISTORY_DAYS * US_PER_DAY),
        rng.random(n) * span,
    ).astype(np.int64)
    signed_up = np.sort(start + offset)
    weights = np.array(country_weights())
    country = rng.choice(len(weights), size=n, p=weights / weights.sum())
    return CustomerBatch(first_id + 1 + np.arange(n, dtype=np.int64), signed_up, country)


def customer_text(request: SeedRequest, batch: CustomerBatch, pools: Pools) -> Iterator[tuple[bytes, int]]:
    """Tab-separated customer rows, ROW_CHUNK at a time."""
    rng = np.random.default_rng([request.seed, _TABLE_KEY["customers"], int(batch.ids[0]) if len(batch.ids) else 0, 1])
    n = len(batch.ids)
    u = rng.random((4, n))
    domains = rng.integers(0, len(EMAIL_DOMAINS), size=n)
    stamps = datetime_column(batch.signed_up).view("S26").ravel() if n else np.array([], dtype="S26")
    for lo in range(0, n, ROW_CHUNK):
        lines = []
        for i in range(lo, min(n, lo + ROW_CHUNK)):
            cp = pools.countries[batch.country[i]]
            fi = int(u[0, i] * len(cp.first_names))
            li = int(u[1, i] * len(cp.last_names))
            city = cp.cities[int(u[2, i] * len(cp.cities))]
            cid = int(batch.ids[i])
            email = f"{cp.first_slugs[fi]}.{cp.last_slugs[li]}{cid}@{EMAIL_DOMAINS[domains[i]]}"
            ts = stamps[i].decode()
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
    stamps = datetime_column(batch.created).view("S26").ravel() if n else np.array([], dtype="S26")
    for lo in range(0, n, ROW_CHUNK):
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
            ts = stamps[i].decode()
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


def order_chunk(
    request: SeedRequest,
    chunk: int,
    per_day: np.ndarray,
    order_base: int,
    item_base: int,
    customers: CustomerPool,
    products: ProductPool,
    stores: StorePool,
    text: tuple[str, ...] = ("orders", "items"),
) -> OrderChunk:
    """Orders with global indices chunk*ORDER_CHUNK.. and their lines; ids follow order time.

    `text` says which load files to encode (the rows are drawn either way, so both are the same)."""
    first = chunk * ORDER_CHUNK
    count = min(ORDER_CHUNK, request.orders - first)
    rng = np.random.default_rng([request.seed, _TABLE_KEY["orders"], order_base, chunk])
    ordered = shape.order_times(rng, first, count, per_day, request.start)

    # a customer can only order once signed up; among those, heavy spenders order more
    signed = np.maximum(np.searchsorted(customers.signed_up, ordered, side="right"), 1)
    who = shape.weighted_prefix_choice(rng, customers.cumulative, signed)
    customer = customers.ids[who]
    region = customers.region[who]

    online = rng.random(count) < shape.ONLINE_SHARE
    store = np.zeros(count, dtype=np.int64)
    for r in range(len(REGIONS)):
        in_store = np.flatnonzero(~online & (region == r))
        if not len(in_store) or not len(stores.ids[r]):
            online[in_store] = True
            continue
        open_now = np.searchsorted(stores.opened[r], ordered[in_store], side="right")
        has_store = open_now > 0
        # before the region's first store opened, its customers could only buy online
        online[in_store[~has_store]] = True
        at = in_store[has_store]
        if len(at):
            pick = shape.weighted_prefix_choice(rng, stores.cumulative[r], open_now[has_store])
            store[at] = stores.ids[r][pick]

    status, updated = shape.order_lifecycle(rng, ordered, online, request.as_of)
    order_ids = order_base + first + 1 + np.arange(count, dtype=np.int64)

    lines = shape.lines_per_order(rng, count)
    n_items = int(lines.sum())
    owner = np.repeat(np.arange(count), lines)
    product = np.minimum(
        np.searchsorted(products.cumulative, rng.random(n_items) * products.cumulative[-1], side="right"),
        len(products.ids) - 1,
    )
    # popular products would often repeat within an order; a basket lists each product once, so
    # repeats are redrawn uniformly (rare leftovers are harmless: they read as a second line)
    key = owner * len(products.ids) + product
    by_key = np.argsort(key, kind="stable")
    repeat = np.zeros(n_items, dtype=bool)
    repeat[by_key[1:]] = key[by_key[1:]] == key[by_key[:-1]]
    product[repeat] = rng.integers(0, len(products.ids), size=int(repeat.sum()))
    quantity = np.minimum(rng.geometric(shape.QUANTITY_P[products.category[product]]), 10)
    price = products.price[product]
    promo = rng.random(n_items) < shape.PROMO_SHARE
    discount = 1.0 - (0.10 + 0.20 * rng.random(n_items))
    price = np.where(promo, np.round(price * discount).astype(np.int64), price)
    item_ids = item_base + 1 + np.arange(n_items, dtype=np.int64)

    id_digits = digits_for(order_ids[-1])
    store_text = uint_column(store, 4)
    store_text[online] = _NULL_STORE  # online sales have no store: NULL
    ordered_text = datetime_column(ordered)
    orders_tsv = items_tsv = b""
    if "orders" in text:
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
    if "items" in text:
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


# ------------------------------------------------------------------------------------ database
def _existing_customers(conn) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    region_of = {c.code: i for i, r in enumerate(REGIONS) for c in r.countries}
    with conn.cursor() as cur:
        cur.execute("select customer_id, signed_up_at, country from customers order by customer_id")
        rows = cur.fetchall()
    ids = np.array([r[0] for r in rows], dtype=np.int64)
    signed = _us([r[1] for r in rows])
    region = np.array([region_of.get(r[2], 0) for r in rows], dtype=np.int64)
    return ids, signed, region


def _existing_products(conn) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    category_of = {c.name: i for i, c in enumerate(shape.CATEGORIES)}
    with conn.cursor() as cur:
        cur.execute("select product_id, round(unit_price * 100), category from products order by product_id")
        rows = cur.fetchall()
    ids = np.array([r[0] for r in rows], dtype=np.int64)
    price = np.array([int(r[1]) for r in rows], dtype=np.int64)
    category = np.array([category_of.get(r[2], 0) for r in rows], dtype=np.int64)
    return ids, price, category


def run_seed(
    request: SeedRequest,
    target: MySQLTarget,
    progress: Callable[[int], None] | None = None,
    workdir: str | Path | None = None,
) -> SeedResult:
    """Seed the database; on any failure roll back so that nothing is half-written."""
    request.validate()
    started = time.perf_counter()
    conn = connect(target)
    result = SeedResult(where=target.describe())
    try:
        try:
            ensure_schema(conn)
        except pymysql.err.MySQLError as exc:
            raise GeneratorError(f"cannot create the schema in {target.describe()}: {exc}") from exc
        counts = row_counts(conn)
        if any(counts.values()) and not (request.append or request.truncate):
            filled = ", ".join(f"{t} has {n} rows" for t, n in counts.items() if n)
            raise GeneratorError(
                f"{target.describe()} is not empty ({filled}); pass --append to add to it "
                "or --truncate to replace it (nothing was written)"
            )
        if request.orders:
            kept = counts if request.append else dict.fromkeys(TABLES, 0)
            if not (request.customers or kept["customers"]) or not (request.products or kept["products"]):
                raise GeneratorError("orders need customers and products: pass --customers and --products")
        if request.truncate and any(counts.values()):
            # TRUNCATE commits on its own, so it runs only once every check has passed. A DELETE
            # inside the load's transaction would keep the old rows recoverable, but re-filling
            # delete-marked pages in one transaction runs an order of magnitude slower at scale.
            with conn.cursor() as cur:
                cur.execute("set session foreign_key_checks = 0")
                for table in reversed(TABLES):
                    cur.execute(f"truncate table {table}")
                cur.execute("set session foreign_key_checks = 1")
        conn.begin()
        with conn.cursor() as cur:
            # Every id an order or line refers to comes from the rows loaded or read in this same
            # transaction, so the references hold by construction (the integration tests check
            # them); skipping the per-row lookups is what mysqldump does for bulk loads too.
            cur.execute("set session foreign_key_checks = 0")
        try:
            _write(conn, request, result, progress, workdir)
            conn.commit()
        except pymysql.err.MySQLError as exc:
            raise GeneratorError(f"writing to {target.describe()} failed, nothing was kept: {exc}") from exc
    except BaseException:
        try:
            conn.rollback()
        except pymysql.err.MySQLError:
            pass
        raise
    finally:
        conn.close()
    result.seconds = time.perf_counter() - started
    return result


def _write(conn, request: SeedRequest, result: SeedResult, progress, workdir) -> None:
    base = max_ids(conn)
    customers = generate_customers(request, base["customers"])
    products = generate_products(request, base["products"])
    # read before anything is loaded: the connection then belongs to the loader thread
    existing = None
    if request.orders and request.append and any(base.values()):
        existing = (_existing_customers(conn), _existing_products(conn))

    loader = Loader(conn, depth=3)
    try:
        with tempfile.TemporaryDirectory(prefix="retailflow-seed-", dir=workdir) as tmp:
            spool = _Spool(Path(tmp))
            if request.orders:
                _write_orders(request, result, progress, base, existing, customers, products, loader, spool)
            # Customers and products go last (foreign key checks are off in this transaction): the
            # Faker pools and their row text are built while the server still works on the last
            # order chunks, instead of before the first one.
            if request.customers or request.products:
                pools = build_pools(request.seed)
                customers_sql = load_data_sql("customers", CUSTOMER_COLUMNS, "updated_at = created_at")
                for text, n in customer_text(request, customers, pools) if request.customers else ():
                    loader.submit(customers_sql, spool.write(text), n)
                    result.written["customers"] += n
                products_sql = load_data_sql("products", PRODUCT_COLUMNS, "updated_at = created_at")
                for text, n in product_text(request, products, pools) if request.products else ():
                    loader.submit(products_sql, spool.write(text), n)
                    result.written["products"] += n
            loader.drain()
    finally:
        loader.close()


class _Spool:
    """Numbered files in a private temporary directory, one per chunk."""

    def __init__(self, directory: Path):
        self._dir = directory
        self._n = 0

    def write(self, data: bytes) -> Path:
        self._n += 1
        path = self._dir / f"chunk-{self._n:06d}.tsv"
        path.write_bytes(data)
        return path


def _write_orders(request, result, progress, base, existing, customers, products, loader, spool) -> None:
    weights_rng = np.random.default_rng([request.seed, _TABLE_KEY["weights"], base["orders"]])
    region_of_country = np.array([REGIONS.index(r) for r, _c in countries()], dtype=np.int64)
    c_ids, c_signed, c_region = customers.ids, customers.signed_up, region_of_country[customers.country]
    p_ids, p_price, p_cat = products.ids, products.price, products.category
    if existing:
        (e_ids, e_signed, e_region), (ep_ids, ep_price, ep_cat) = existing
        c_ids = np.concatenate([e_ids, c_ids])
        c_signed = np.concatenate([e_signed, c_signed])
        c_region = np.concatenate([e_region, c_region])
        p_ids = np.concatenate([ep_ids, p_ids])
        p_price = np.concatenate([ep_price, p_price])
        p_cat = np.concatenate([ep_cat, p_cat])
    customer_pool = CustomerPool.build(weights_rng, c_ids, c_signed, c_region)
    product_pool = ProductPool.build(weights_rng, p_ids, p_price, p_cat)
    store_pool = StorePool.build(build_stores())
    per_day = shape.orders_per_day(
        np.random.default_rng([request.seed, _TABLE_KEY["orders"], base["orders"]]),
        request.orders, request.start, request.end,
    )
    orders_sql = load_data_sql("orders", ORDER_COLUMNS, ORDER_SET)
    items_sql = load_data_sql("order_items", ITEM_COLUMNS, ITEM_SET)
    chunks = -(-request.orders // ORDER_CHUNK)
    # Two passes over the same chunks (same random streams, so the same rows): all orders, then all
    # lines. One table at a time keeps the server's working set small; interleaved, both tables'
    # indexes compete for the buffer pool and the load slows down by half at a few million lines.
    item_bases = [base["order_items"]]
    for chunk in range(chunks):
        part = order_chunk(
            request, chunk, per_day, base["orders"], item_bases[-1], customer_pool, product_pool, store_pool,
            text=("orders",),
        )
        done = (lambda n=part.n_orders: progress(n / 2)) if progress else None
        loader.submit(orders_sql, spool.write(part.orders), part.n_orders, on_done=done)
        item_bases.append(item_bases[-1] + part.n_items)
        result.written["orders"] += part.n_orders
    for chunk in range(chunks):
        part = order_chunk(
            request, chunk, per_day, base["orders"], item_bases[chunk], customer_pool, product_pool, store_pool,
            text=("items",),
        )
        done = (lambda n=part.n_orders: progress(n / 2)) if progress else None
        loader.submit(items_sql, spool.write(part.items), part.n_items, on_done=done)
        result.written["order_items"] += part.n_items


def print_progress_factory(total: int):
    """A tqdm bar on stderr when it is a terminal; nothing otherwise (CI logs stay quiet)."""
    from tqdm import tqdm

    bar = tqdm(total=total, unit="orders", unit_scale=True, file=sys.stderr, disable=None, leave=False)
    return bar
