"""Same seed, same rows; bad input is refused before anything touches a database."""

from datetime import date
from pathlib import Path

import numpy as np
import pytest
from retailflow_generator import cli, shape
from retailflow_generator.encode import cents_column, datetime_column, tsv_rows, uint_column
from retailflow_generator.pools import build_pools
from retailflow_generator.plan import order_plan
from retailflow_generator.seed import (
    ProductPool,
    SeedRequest,
    build_customer_pool,
    customer_text,
    default_start,
    generate_customers,
    generate_products,
    order_chunk,
    product_text,
)
from retailflow_generator.stores import build_stores

REQUEST = SeedRequest(customers=500, products=80, orders=3000, start=date(2025, 1, 1), end=date(2025, 3, 31), seed=11)


def _all_text(request: SeedRequest) -> bytes:
    build_pools.cache_clear()  # rebuild the Faker pools too: they must be deterministic as well
    pools = build_pools(request.seed)
    cust = generate_customers(request, 0)
    prod = generate_products(request, 0)
    out = b"".join(t for t, _ in customer_text(request, cust, pools))
    out += b"".join(t for t, _ in product_text(request, prod, pools))
    rng = np.random.default_rng([request.seed, 4])
    cpool, stores, atlas = build_customer_pool(rng, cust.ids, cust.signed_up, cust.country, cust.city)
    ppool = ProductPool.build(rng, prod.ids, prod.price, prod.category)
    plan = order_plan([request.seed, 3], request.orders, request.start, request.end,
                      request.as_of, cpool, stores, atlas.zones)
    chunk = order_chunk(request, 0, plan, 0, 0, cpool, ppool)
    return out + chunk.orders + chunk.items


def test_same_seed_same_rows():
    assert _all_text(REQUEST) == _all_text(REQUEST)


def test_other_seed_other_rows():
    other = SeedRequest(**{**REQUEST.__dict__, "seed": 12})
    assert _all_text(REQUEST) != _all_text(other)


def test_customer_rows_look_real():
    pools = build_pools(REQUEST.seed)
    text = b"".join(t for t, _ in customer_text(REQUEST, generate_customers(REQUEST, 0), pools)).decode()
    rows = [line.split("\t") for line in text.splitlines()]
    assert len(rows) == 500
    emails = [r[3] for r in rows]
    assert len(set(emails)) == 500 and all("@" in e and e.isascii() for e in emails)
    assert {r[5] for r in rows} <= {"US", "CA", "GB", "DE", "FR", "NL", "BE", "ES", "IT", "PT", "AU", "JP", "IN", "BR", "MX"}
    assert sum(r[5] == "US" for r in rows) > sum(r[5] == "BE" for r in rows)


def test_encoders_write_what_mysql_reads():
    ids = np.array([0, 7, 123_456_789])  # widths round up to groups of four digits
    assert tsv_rows([uint_column(ids, 9), cents_column(np.array([0, 1999, 12345678]))]).decode().splitlines() == [
        "000000000000\t00000000.00",
        "000000000007\t00000019.99",
        "000123456789\t00123456.78",
    ]
    us = np.array([0, 1_735_689_599_999_999])
    assert [bytes(r).decode() for r in datetime_column(us)] == [
        "1970-01-01 00:00:00.000000",
        "2024-12-31 23:59:59.999999",
    ]


def test_store_network_is_fixed_and_the_committed_csv_is_current():
    from retailflow_generator.stores import stores_csv

    stores = build_stores()
    assert stores == build_stores()
    assert 35 <= len(stores) <= 45
    assert [s.store_id for s in stores] == list(range(1, len(stores) + 1))
    regions = {s.region for s in stores}
    assert len(regions) >= 4 and len({s.country for s in stores}) >= 8
    na = sum(s.region == "North America" for s in stores)
    latam = sum(s.region == "Latin America" for s in stores)
    assert na > 2 * latam, "regions are weighted"
    committed = Path(__file__).resolve().parents[3] / "data" / "store_locations.csv"
    assert committed.read_text(encoding="utf-8") == stores_csv(stores), (
        "data/store_locations.csv is stale: run `retailflow-generator stores`"
    )


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--customers", "-1", "--products", "20", "--orders", "1"], "--customers must be zero or more"),
        (["--customers", "1", "--products", "20", "--orders", "-5"], "--orders must be zero or more"),
        (["--customers", "1", "--products", "20", "--orders", "1", "--end", "2023-12-31"], "is before --start"),
        (["--customers", "1", "--products", "20", "--orders", "10", "--start", "2999-01-01", "--end", "2999-01-02"],
         "is in the future"),
        (["--customers", "1", "--products", "20", "--orders", "10", "--start", "1900-01-01"], "--start must be 2000-01-01"),
        (["--customers", "10", "--products", "20", "--orders", "10**9"], "expected a whole number"),
        (["--customers", "10", "--products", "20", "--orders", "1000000000"], "--orders must be at most 50,000,000"),
        (["--customers", "99999999999", "--products", "20", "--orders", "1"], "--customers must be at most"),
        (["--customers", "10", "--products", "5", "--orders", "10"], "--products must be at least 12"),
        (["--customers", "0", "--products", "20", "--orders", "10"],
         "--customers must be at least 1 when there are orders (every order has a customer), got 0"),
        (["--customers", "5", "--products", "0", "--orders", "10"], "--products must be at least 12 when there are orders"),
        (["--customers", "1", "--products", "20", "--orders", "1", "--seed", "-3"], "--seed must be between 0"),
    ],
)
def test_seed_refuses_bad_input_with_exit_code_2(argv, message, capsys, monkeypatch):
    """Bad input exits 2 (as argparse's own errors), before any database is touched."""
    monkeypatch.setenv("RETAILFLOW_MYSQL_URL", "mysql://nobody:x@127.0.0.1:1/none")
    args = ["seed", *argv]
    if "--start" not in argv:
        args += ["--start", "2024-01-01"]
    if "--end" not in argv and "--start" not in argv:
        args += ["--end", "2024-12-31"]
    try:
        code = cli.main(args)
    except SystemExit as exc:  # argparse's own refusals
        code = exc.code
    err = capsys.readouterr().err
    assert code == cli.EXIT_USAGE == 2
    assert message in err and "Traceback" not in err and "cannot connect" not in err


def test_dates_default_to_two_years_up_to_today(monkeypatch):
    args = cli.build_parser().parse_args(["seed", "--customers", "1", "--products", "20", "--orders", "1"])
    assert args.start is None and args.end is None
    assert default_start(date(2026, 12, 1)) == date(2024, 12, 1)
    assert default_start(date(2028, 2, 29)) == date(2026, 2, 28)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--duration", "nan"], "must be a finite number"),
        (["--duration", "inf"], "must be a finite number"),
        (["--duration", "-5"], "must be greater than zero"),
        (["--duration", "1e9"], "must be at most 604800"),
        (["--iterations", "3", "--rate", "inf"], "must be a finite number"),
        (["--iterations", "3", "--rate", "0"], "must be greater than zero"),
        (["--iterations", "3", "--rate", "1e6"], "must be at most 10000"),
        (["--iterations", "3", "--interval", "nan"], "must be a finite number"),
        (["--iterations", "3", "--interval", "7200"], "must be at most 3600"),
        (["--iterations", "3", "--interval", "0.000001"], "must be at least 0.01"),
        (["--iterations", "0"], "--iterations must be between 1 and"),
        (["--iterations", "100000000000"], "--iterations must be between 1 and"),
        (["--iterations", "3", "--rate", "5000", "--interval", "3600"], "orders a tick"),
        (["--iterations", "3", "--report-every", "-1"], "must be greater than zero"),
    ],
)
def test_live_refuses_bad_numbers_with_exit_code_2(argv, message, capsys, monkeypatch):
    monkeypatch.setenv("RETAILFLOW_MYSQL_URL", "mysql://u:p@127.0.0.1:1/x")
    try:
        code = cli.main(["live", *argv])
    except SystemExit as exc:
        code = exc.code
    err = capsys.readouterr().err
    assert code == 2
    assert message in err and "Traceback" not in err and "cannot connect" not in err


def test_seed_rejects_malformed_dates_and_both_modes(capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(["seed", "--customers", "1", "--products", "1", "--orders", "1",
                  "--start", "2024-13-01", "--end", "2024-12-31"])
    assert exc.value.code == 2 and "expected a date YYYY-MM-DD" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        cli.main(["seed", "--customers", "1", "--products", "1", "--orders", "1",
                  "--start", "2024-01-01", "--end", "2024-12-31", "--append", "--truncate"])
    assert exc.value.code == 2


def test_live_needs_a_bound(capsys):
    with pytest.raises(SystemExit):
        cli.main(["live", "--rate", "3"])
    assert "--duration" in capsys.readouterr().err


def test_unreachable_database_is_a_clear_error(capsys, monkeypatch):
    monkeypatch.setenv("RETAILFLOW_MYSQL_URL", "mysql://u:secret@127.0.0.1:1/retail")
    code = cli.main(["seed", "--customers", "1", "--products", "20", "--orders", "1", "--start", "2024-01-01",
                     "--end", "2024-01-02"])
    err = capsys.readouterr().err
    assert code == 1 and "cannot connect to mysql://u@127.0.0.1:1/retail" in err
    assert "secret" not in err, "the password is never printed"


@pytest.mark.parametrize("command", [["live", "--iterations", "1"], ["shape"],
                                     ["seed", "--customers", "1", "--products", "20", "--orders", "1"]])
def test_missing_url_is_bad_input_exit_2(command, capsys, monkeypatch):
    monkeypatch.delenv("RETAILFLOW_MYSQL_URL", raising=False)
    assert cli.main(command) == cli.EXIT_USAGE == 2
    assert capsys.readouterr().err == (f"retailflow-generator {command[0]}: error: no database: set RETAILFLOW_MYSQL_URL"
                                       " (or pass --mysql-url without a password)\n")


def test_an_end_far_in_the_future_is_named_not_a_start_never_given(capsys, monkeypatch):
    monkeypatch.setenv("RETAILFLOW_MYSQL_URL", "mysql://nobody:x@127.0.0.1:1/none")
    code = cli.main(["seed", "--customers", "1", "--products", "20", "--orders", "1", "--end", "2999-01-01"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1
    assert "--end 2999-01-01 is too far in the future" in err and "--start 2997" not in err


@pytest.mark.parametrize("url", ["postgresql://u@h:5432/retail", "mysql://u@h:port/retail", "mysql://u@h:3306/",
                                 "mysql:///retail", "mysql://u@[::1/retail", "mysql://u@[::1:3306/retail",
                                 "mysql://u@[not-an-ip]:3306/retail", "mysql://u@h:99999/retail", "mysql://u@h:0/retail",
                                 "mysql://u@h:-1/retail", "mysql://u@h x:3306/retail"])
@pytest.mark.parametrize("where", ["argument", "environment"])
def test_a_malformed_mysql_url_is_bad_input_exit_2(url, where, capsys, monkeypatch):
    if where == "argument":
        code = cli.main(["live", "--iterations", "1", "--mysql-url", url])
    else:
        monkeypatch.setenv("RETAILFLOW_MYSQL_URL", url.replace("u@", "u:p@"))
        code = cli.main(["live", "--iterations", "1"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "Traceback" not in err
    named = "--mysql-url" if where == "argument" else "the MySQL URL"  # as the user gave it
    assert err.startswith(f"retailflow-generator live: error: {named} "), err
    assert "u:p" not in err and "/retail" not in err, "the URL (and any password in it) is not echoed"


@pytest.mark.parametrize("command", [["seed", "--customers", "1", "--products", "20", "--orders", "1"],
                                     ["live", "--iterations", "1"], ["shape"]])
def test_a_password_in_mysql_url_is_refused_exit_2(command, capsys, monkeypatch):
    """argv is visible to every local user (`ps`): the password comes only from $RETAILFLOW_MYSQL_URL.
    Refused before anything is done (the env's server is unreachable: a connection attempt would exit 1)."""
    monkeypatch.setenv("RETAILFLOW_MYSQL_URL", "mysql://nobody:x@127.0.0.1:1/none")
    code = cli.main([*command, "--mysql-url", "mysql://u:s3cr%21t@127.0.0.1:1/retail"])
    out, err = capsys.readouterr()
    assert code == cli.EXIT_USAGE == 2 and out == ""
    assert err == (f"retailflow-generator {command[0]}: error: --mysql-url carries a password, which every user"
                   " can read in the process list; set $RETAILFLOW_MYSQL_URL instead\n")
    assert "s3cr" not in err


def test_a_mysql_url_without_password_is_used_as_given(capsys, monkeypatch):
    """No password in --mysql-url: accepted, and used instead of $RETAILFLOW_MYSQL_URL (like retailflow-ingest)."""
    monkeypatch.setenv("RETAILFLOW_MYSQL_URL", "mysql://nobody:x@127.0.0.1:1/none")
    code = cli.main(["live", "--iterations", "1", "--mysql-url", "mysql://reader@127.0.0.1:1/retail"])
    err = capsys.readouterr().err
    assert code == 1 and "cannot connect to mysql://reader@127.0.0.1:1/retail" in err


def test_an_unwritable_stores_csv_is_one_line_exit_1(capsys, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    code = cli.main(["stores", "--out", str(blocker / "x.csv")])  # a folder that is a file
    err = capsys.readouterr().err
    assert code == 1 and err.startswith("retailflow-generator stores: error: cannot write ") and "Traceback" not in err


@pytest.mark.parametrize("command", [["shape"], ["live", "--iterations", "1"],
                                     ["seed", "--customers", "1", "--products", "20", "--orders", "1"]])
def test_an_unparseable_url_with_a_password_is_one_line_exit_2_not_echoed(command, capsys, monkeypatch):
    """urlsplit raises on an unclosed "[" (Invalid IPv6 URL): that was a traceback."""
    monkeypatch.setenv("RETAILFLOW_MYSQL_URL", "mysql://nobody:s3cr3t@[::1/x")
    code = cli.main(command)
    out, err = capsys.readouterr()
    assert code == 2 and out == ""
    assert err == (f"retailflow-generator {command[0]}: error: the MySQL URL is malformed (an unbalanced [ or ] in"
                   " its host): it must look like mysql://USER:PASSWORD@HOST:PORT/DATABASE\n")


@pytest.mark.parametrize("where", ["a file", "under a file", "/proc"])
def test_shape_refuses_an_unwritable_plots_folder_before_measuring(where, tmp_path, capsys, monkeypatch):
    """Checked before the database is touched (the URL's server is unreachable: measuring would exit 1)."""
    from retailflow_generator import profile

    monkeypatch.setenv("RETAILFLOW_MYSQL_URL", "mysql://nobody:x@127.0.0.1:1/none")
    monkeypatch.setattr(profile, "measure", lambda target: pytest.fail("measured before checking --plots"))
    (tmp_path / "file").write_text("")
    folder = {"a file": tmp_path / "file", "under a file": tmp_path / "file" / "plots", "/proc": Path("/proc/x")}[where]
    code = cli.main(["shape", "--plots", str(folder)])
    out, err = capsys.readouterr()
    assert code == 2 and out == "" and err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith(f"retailflow-generator shape: error: --plots {folder}: cannot create or write to this folder (")


def test_shape_with_plots_into_a_new_folder_leaves_nothing_when_it_fails(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("RETAILFLOW_MYSQL_URL", "mysql://nobody:x@127.0.0.1:1/none")
    code = cli.main(["shape", "--plots", str(tmp_path / "new" / "plots")])
    assert code == 1 and "cannot connect" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == [], "the folders made for the plots are removed again"


@pytest.mark.parametrize("lake", ["notaurl", "http://", "http://h:port", "http://[::1", "http://h:99999",
                                  "ftp://h:9000", "http://k:s3cr3t@h:9000", "http://h:9000/bucket"])
def test_stores_refuses_a_malformed_lake_endpoint_exit_2_before_writing(lake, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("RETAILFLOW_LAKE_ACCESS_KEY", "lake-access")
    monkeypatch.setenv("RETAILFLOW_LAKE_SECRET_KEY", "lake-secret")
    code = cli.main(["stores", "--out", str(tmp_path / "s.csv"), "--lake", lake])
    out, err = capsys.readouterr()
    assert code == 2 and out == "" and "Traceback" not in err
    assert err == ("retailflow-generator stores: error: --lake must be an http(s)://HOST[:PORT] endpoint,"
                   " e.g. http://127.0.0.1:9000\n")
    assert list(tmp_path.iterdir()) == [], "nothing written when refusing"


def test_stores_refuses_an_empty_bucket_exit_2(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("RETAILFLOW_LAKE_ACCESS_KEY", "lake-access")
    monkeypatch.setenv("RETAILFLOW_LAKE_SECRET_KEY", "lake-secret")
    code = cli.main(["stores", "--out", str(tmp_path / "s.csv"), "--lake", "http://127.0.0.1:1", "--bucket", ""])
    assert code == 2 and capsys.readouterr().err == "retailflow-generator stores: error: --bucket must not be empty\n"
    assert list(tmp_path.iterdir()) == []


def test_a_live_tick_carries_the_traffic_of_its_own_time():
    """`--rate` holds whatever a tick takes: a tick carries the seconds since the previous one began
    (not the nominal --interval), at most an interval and a second (a stall is not made up in one burst)."""
    from retailflow_generator.db import UsageError
    from retailflow_generator.live import STALL_CAP, LiveRequest, tick_span

    assert tick_span(0.1, None) == 0.1  # the first tick: one interval
    assert tick_span(1e-6, 0.08) == 0.08  # ticks slower than --interval: their own time
    assert tick_span(1.0, 1.002) == 1.002
    assert tick_span(1.0, 3600.0) == 1.0 + STALL_CAP == 2.0
    with pytest.raises(UsageError, match="--interval must be at least 0.01"):  # shorter ones only spin
        LiveRequest(iterations=1, interval=0.001).validate()
