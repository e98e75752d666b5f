"""`retailflow-generator seed` against the real MariaDB."""

import os
import subprocess
from datetime import date, datetime
from urllib.parse import unquote, urlsplit

import pytest
from conftest import GENERATOR, mysql_env, mysql_url_set, rows, scalar
from retailflow_generator import cli
from retailflow_generator import seed as seed_module
from retailflow_generator.catalog import PRIMARY_KEYS
from retailflow_generator.db import GeneratorError, MySQLTarget
from retailflow_generator.seed import SeedRequest, run_seed

pytestmark = pytest.mark.integration

ARGS = ["--customers", "400", "--products", "60", "--orders", "3000", "--start", "2025-01-01",
        "--end", "2025-06-30", "--seed", "9"]
TABLES = ("customers", "products", "orders", "order_items")


def generator(*args, url, check=True):
    """`retailflow-generator ARGS` in a subprocess, aimed at ``url`` through $RETAILFLOW_MYSQL_URL."""
    done = subprocess.run([GENERATOR, *args], capture_output=True, text=True, timeout=120, check=False,
                          env=mysql_env(url))
    if check:
        assert done.returncode == 0, done.stderr
    return done


def seed_in_process(url, *args):
    """The same as `generator("seed", *args)`, without a new interpreter (faster; Faker pools cached)."""
    with mysql_url_set(url):
        assert cli.main(["seed", *args]) == 0


def in_process(capsys, *args, url):
    """`retailflow-generator ARGS` in this interpreter, aimed at ``url``: (exit code, stdout, stderr)."""
    capsys.readouterr()
    try:
        with mysql_url_set(url):
            code = cli.main(list(args))
    except SystemExit as exc:  # argparse's own refusals
        code = exc.code
    out, err = capsys.readouterr()
    return code, out, err


def counts(url):
    return {t: scalar(url, f"select count(*) from {t}") for t in TABLES}


def checksums(url):
    return {t: rows(url, f"checksum table {t}")[0][1] for t in TABLES}


def orphans(url):
    return {
        "orders without customer": scalar(url, "select count(*) from orders o left join customers c "
                                               "using (customer_id) where c.customer_id is null"),
        "lines without order": scalar(url, "select count(*) from order_items i left join orders o "
                                           "using (order_id) where o.order_id is null"),
        "lines without product": scalar(url, "select count(*) from order_items i left join products p "
                                             "using (product_id) where p.product_id is null"),
        "orders without lines": scalar(url, "select count(*) from orders o where not exists "
                                            "(select 1 from order_items i where i.order_id = o.order_id)"),
    }


def test_seed_creates_schema_and_consistent_rows(database):
    done = generator("seed", *ARGS, url=database)
    n = counts(database)
    assert n["customers"] == 400 and n["products"] == 60 and n["orders"] == 3000
    assert 6000 < n["order_items"] < 9000
    assert done.stdout.strip().startswith("seed: wrote 400 customers, 60 products, 3000 orders, "
                                          f"{n['order_items']} order lines")
    assert done.stdout.count("\n") == 1 and done.stderr == "", "one summary line, no progress bar without a TTY"
    assert set(orphans(database).values()) == {0}
    assert scalar(database, "select count(*) from orders where (channel = 'store') <> (store_id is not null)") == 0
    assert scalar(database, "select max(store_id) from orders") <= 40
    assert scalar(database, "select min(ordered_at) from orders") >= datetime(2025, 1, 1)
    assert scalar(database, "select max(updated_at) from orders") < datetime(2025, 7, 1)
    assert scalar(database, "select count(*) from orders where updated_at < created_at") == 0
    assert scalar(database, "select count(*) from orders where created_at <> ordered_at") == 0
    assert scalar(database, "select count(*) from orders o join customers c using (customer_id) "
                            "where o.ordered_at < c.signed_up_at") == 0
    assert scalar(database, "select count(*) from order_items i join orders o using (order_id) "
                            "where i.created_at <> o.ordered_at") == 0
    assert scalar(database, "select count(distinct status) from orders") >= 5


def test_same_seed_same_database_contents(make_database):
    first, second, third = make_database(), make_database(), make_database()
    seed_in_process(first, *ARGS)
    seed_in_process(second, *ARGS)
    seed_in_process(third, *ARGS[:-1], "10")
    assert checksums(first) == checksums(second)
    assert checksums(first)["orders"] != checksums(third)["orders"]


def test_non_empty_database_is_refused_and_left_alone(database, capsys):
    seed_in_process(database, *ARGS)
    before = checksums(database)
    code, out, err = in_process(capsys, "seed", *ARGS, url=database)
    assert code == 1
    assert "is not empty" in err and "--append" in err and "--truncate" in err
    assert "Traceback" not in err and out == ""
    assert checksums(database) == before


def test_truncate_replaces_everything(database):
    seed_in_process(database, *ARGS)
    seed_in_process(database, "--customers", "50", "--products", "20", "--orders", "200", "--start", "2024-03-01",
                    "--end", "2024-03-31", "--seed", "3", "--truncate")
    n = counts(database)
    assert (n["customers"], n["products"], n["orders"]) == (50, 20, 200)
    assert scalar(database, "select min(order_id) from orders") == 1
    assert scalar(database, "select max(ordered_at) from orders") < datetime(2024, 4, 1)
    assert set(orphans(database).values()) == {0}
    # the swapped-in tables are the real ones: their foreign keys point at each other, nothing is left over
    references = sorted(rows(database, "select table_name, referenced_table_name from "
                                       "information_schema.referential_constraints where constraint_schema = database()"))
    assert references == [("order_items", "orders"), ("order_items", "products"), ("orders", "customers")]
    assert sorted(rows(database, "select table_name from information_schema.tables where table_schema = database()")) \
        == [("customers",), ("order_items",), ("orders",), ("products",)]


def test_append_continues_ids_and_keeps_existing_rows(database):
    seed_in_process(database, *ARGS)
    before = counts(database)
    max_line = scalar(database, "select max(order_item_id) from order_items")
    generator("seed", "--customers", "20", "--products", "5", "--orders", "1000", "--start", "2025-07-01",
              "--end", "2025-07-31", "--seed", "9", "--append", url=database)
    after = counts(database)
    assert after["customers"] == before["customers"] + 20
    assert after["products"] == before["products"] + 5
    assert after["orders"] == before["orders"] + 1000
    assert scalar(database, "select min(order_item_id) from order_items where order_id > 3000") == max_line + 1
    assert scalar(database, "select count(*) from orders where order_id > 3000 and ordered_at < '2025-07-01'") == 0
    # new orders also come from the customers who were already there
    assert scalar(database, "select count(*) from orders where order_id > 3000 and customer_id <= 400") > 500
    assert scalar(database, "select count(distinct email) from customers") == after["customers"]
    assert set(orphans(database).values()) == {0}


def test_append_stamps_updated_at_with_the_time_it_writes(database):
    """Rows an --append writes carry the time of the append in `updated_at` (incremental readers take
    `updated_at >= cursor - lookback`, so a row stamped from the generated history is never read), in
    every table; their `created_at` keeps the history, and the rows seeded before keep their stamps."""
    seed_in_process(database, *ARGS)
    before = {t: dict(rows(database, f"select {PRIMARY_KEYS[t]}, updated_at from {t}")) for t in TABLES}
    # the server's clock (sessions are UTC), which the engine's cursor follows
    began = scalar(database, "select utc_timestamp(6)")
    seed_in_process(database, "--customers", "20", "--products", "5", "--orders", "1000", "--start", "2025-07-01",
                    "--end", "2025-07-31", "--seed", "9", "--append")
    appended, stale = {}, {}
    for table, old in before.items():
        now = dict(rows(database, f"select {PRIMARY_KEYS[table]}, updated_at from {table}"))
        appended[table] = len(now) - len(old)
        stale[table] = sum(stamp < began for key, stamp in now.items() if key not in old)
        assert {key: now[key] for key in old} == old, f"{table} seeded before changed their updated_at"
    assert appended == {"customers": 20, "products": 5, "orders": 1000, "order_items": appended["order_items"]}
    assert appended["order_items"] > 1000
    assert stale == dict.fromkeys(TABLES, 0), f"appended rows with updated_at before the append began ({began})"
    # the history stays in created_at (the marts read it): the appended orders were placed in July 2025
    first, last = rows(database, "select min(created_at), max(created_at) from orders where order_id > 3000")[0]
    assert datetime(2025, 6, 30) <= first <= last < datetime(2025, 8, 1)
    assert scalar(database, "select count(*) from orders where order_id > 3000 and created_at <> ordered_at") == 0
    assert scalar(database, "select count(*) from order_items i join orders o using (order_id) "
                            "where i.created_at <> o.ordered_at") == 0
    assert scalar(database, "select count(*) from customers where created_at <> signed_up_at") == 0
    assert scalar(database, "select max(created_at) from products") < began


@pytest.mark.parametrize("failing_step", ["order lines", "products"])
def test_failure_mid_load_rolls_everything_back(database, monkeypatch, failing_step):
    """A failure once orders and some lines (or orders, lines and customers) are loaded leaves no row."""
    monkeypatch.setattr(seed_module, "ORDER_CHUNK", 500)
    if failing_step == "order lines":
        real_chunk, calls = seed_module.order_chunk, []

        def failing_chunk(request, chunk, *args, **kwargs):
            calls.append(chunk)
            if len(calls) == 9:  # 6 chunks of orders are in, then 2 chunks of their lines
                raise GeneratorError("simulated failure while generating")
            return real_chunk(request, chunk, *args, **kwargs)

        monkeypatch.setattr(seed_module, "order_chunk", failing_chunk)
    else:

        def failing_products(*_args, **_kwargs):
            raise GeneratorError("simulated failure while generating")
            yield  # a generator, like the real one

        monkeypatch.setattr(seed_module, "product_text", failing_products)
    request = SeedRequest(customers=300, products=40, orders=3000, start=date(2025, 1, 1),
                          end=date(2025, 3, 31), seed=1)
    with pytest.raises(GeneratorError, match="simulated failure"):
        run_seed(request, MySQLTarget.from_url(database))
    assert set(counts(database).values()) == {0}


def test_orders_without_customers_are_refused(database, capsys):
    no_customers = ["--customers", "0", "--products", "5", "--orders", "10", "--start", "2025-01-01",
                    "--end", "2025-01-31"]
    says = ("retailflow-generator seed: error: --customers must be at least 1 when there are orders (every order"
            " has a customer), got 0\n")  # it was "pass --customers and --products", both passed
    code, _out, err = in_process(capsys, "seed", *no_customers, url=database)
    assert code == 2 and err == says
    assert scalar(database, "select count(*) from information_schema.tables where table_schema = database()") == 0, \
        "refused before the database is touched"
    # --append: the database's own customers count, and it has none (no tables either): refused, nothing created
    code, _out, err = in_process(capsys, "seed", *no_customers[:3], "20", *no_customers[4:], "--append", url=database)
    assert code == 1 and err == ("retailflow-generator seed: error: the database has no customers and --customers is"
                                 " 0: orders need at least one customer (nothing was written)\n")
    assert scalar(database, "select count(*) from information_schema.tables where table_schema = database()") == 0, \
        "refused before any table is created"
    # refused before --truncate replaces anything
    seed_in_process(database, *ARGS)
    before = checksums(database)
    code, _out, err = in_process(capsys, "seed", *no_customers, "--truncate", url=database)
    assert code == 2 and err == says
    assert checksums(database) == before
    # with --append the database's own customers and products count
    code, _out, err = in_process(capsys, "seed", "--customers", "0", "--products", "0", "--orders", "10",
                                 "--start", "2025-07-01", "--end", "2025-07-31", "--append", url=database)
    assert code == 0, err


def test_unknown_database_is_a_clear_error(database):
    done = generator("seed", *ARGS, url=database + "_missing", check=False)
    assert done.returncode == 1 and "cannot connect" in done.stderr and "Traceback" not in done.stderr


def test_a_password_on_the_command_line_is_refused_and_nothing_done(database):
    """argv is visible to every local user (`ps`): a password in --mysql-url is refused (exit 2, not
    echoed) before anything connects, even where the URL would work; it comes only from the environment."""
    password = urlsplit(database).password
    if not password:
        pytest.skip("$RETAILFLOW_MYSQL_URL has no password")
    done = subprocess.run([GENERATOR, "seed", *ARGS, "--mysql-url", database], capture_output=True, text=True,
                          timeout=120, check=False, env={**os.environ, "RETAILFLOW_MYSQL_URL": ""})
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr == ("retailflow-generator seed: error: --mysql-url carries a password, which every user can"
                           " read in the process list; set $RETAILFLOW_MYSQL_URL instead\n")
    assert password not in done.stderr and unquote(password) not in done.stderr
    assert scalar(database, "select count(*) from information_schema.tables where table_schema = database()") == 0
    # the same URL in the environment works
    assert generator("seed", *ARGS, url=database).returncode == 0


def test_a_row_the_server_skips_fails_the_load(database, tmp_path):
    """LOAD DATA LOCAL only warns about rows it skips (here a duplicate key); the loader refuses that."""
    from retailflow_generator.db import connect as db_connect
    from retailflow_generator.db import ensure_schema, load_data_sql, load_file
    from retailflow_generator.seed import PRODUCT_COLUMNS

    conn = db_connect(MySQLTarget.from_url(database))
    try:
        ensure_schema(conn)
        path = tmp_path / "products.tsv"
        row = "1\tGRO-0000001\tOlive Oil\tGroceries\t9.99\t2024-01-01 00:00:00.000000\n"
        path.write_text(row + row)
        with pytest.raises(GeneratorError, match="warnings|loaded 1 rows where 2"):
            load_file(conn, load_data_sql("products", PRODUCT_COLUMNS, "updated_at = created_at"), path, 2)
        conn.rollback()
    finally:
        conn.close()
    assert scalar(database, "select count(*) from products") == 0
