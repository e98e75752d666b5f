"""The demo report's tables, rendered from rows as the marts return them (no warehouse)."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal

import pytest
from rich.console import Console

from retailflow_pipeline import report

CUSTOMERS = [
    {"revenue_rank": 1, "customer_name": "Ada Lovelace", "country": "GB", "order_count": 12,
     "lifetime_revenue": Decimal("12345.60"), "first_order_at": datetime(2024, 1, 3, 9, 30),
     "last_order_at": datetime(2025, 11, 30, 18, 0)},
    {"revenue_rank": 2, "customer_name": "Grace Hopper", "country": "US", "order_count": 3,
     "lifetime_revenue": Decimal("999.99"), "first_order_at": datetime(2025, 2, 1),
     "last_order_at": datetime(2025, 3, 1)},
]
REGIONS = [
    {"region": "Online", "channel": "online", "countries": 5, "revenue": Decimal("3000.00"), "orders": 30,
     "average_basket": Decimal("100.00"), "first_month": date(2025, 1, 1), "last_month": date(2025, 12, 1)},
    {"region": "Europe", "channel": "store", "countries": 3, "revenue": Decimal("1000.00"), "orders": 8,
     "average_basket": Decimal("125.00"), "first_month": date(2025, 1, 1), "last_month": date(2025, 12, 1)},
]
PRODUCTS = [
    {"revenue_rank": 1, "product_name": "Trail Shoe", "category": "Footwear", "units_sold": 1520,
     "revenue": Decimal("151848.00"), "category_revenue_rank": 1},
]


def rendered(rep: report.Report) -> str:
    console = Console(record=True, width=140)
    report.render(rep, console, lake="/data/.lake/ (3 files)", docs="/repo/dbt/target/index.html")
    return console.export_text()


def test_tables_show_the_three_answers_in_rank_order():
    text = rendered(report.Report(CUSTOMERS, REGIONS, PRODUCTS))
    assert text.index("Ada Lovelace") < text.index("Grace Hopper")
    assert "12,345.60" in text and "2024-01-03" in text and "2025-11-30" in text
    assert "Sales by region, last 12 months (2025-01 to 2025-12)" in text
    assert "Trail Shoe" in text and "1,520" in text and "151,848.00" in text


def test_region_totals_and_shares_add_up():
    lines = rendered(report.Report(CUSTOMERS, REGIONS, PRODUCTS)).splitlines()
    online = next(line for line in lines if "Online" in line)
    total = next(line for line in lines if "total" in line)
    assert "75.0%" in online
    # 4,000 over 38 orders: the basket of all orders, not the mean of the regions' baskets.
    assert "4,000.00" in total and "38" in total and "105.26" in total and "100.0%" in total


def test_where_the_lake_and_docs_are_is_printed():
    text = rendered(report.Report(CUSTOMERS, REGIONS, PRODUCTS))
    assert "Lake files: /data/.lake/ (3 files)" in text
    assert "dbt docs:   /repo/dbt/target/index.html" in text


def test_empty_marts_say_what_to_run():
    text = rendered(report.Report())
    assert "no revenue orders yet" in text
    assert "Top" not in text


def test_lake_location_is_what_the_warehouses_ingestion_recorded(tmp_path):
    """Not this checkout's .lake/ whatever warehouse the report reads: the lakes its state names."""
    assert report.lake_location(["http://minio:9000/lake/retailflow"]) == "s3://lake/retailflow/ (endpoint http://minio:9000)"
    assert report.lake_location([], "landing") == (
        "none recorded (landing._retailflow_ingest_state names no lake: the ingestion has not run, or wrote none)")
    assert report.lake_location([str(tmp_path / "elsewhere")]) == f"{tmp_path}/elsewhere/ (not on this machine)"


def test_lake_location_counts_local_files(tmp_path):
    (tmp_path / "orders").mkdir()
    (tmp_path / "orders" / "part-0.parquet").write_bytes(b"x" * 2_000_000)
    (tmp_path / "customers.parquet").write_bytes(b"y" * 500_000)
    assert report.lake_location([str(tmp_path)]) == f"{tmp_path}/ (2 files, 2.5 MB)"


def test_docs_location_tells_how_to_generate_them(tmp_path):
    assert "docs generate" in report.docs_location(tmp_path)
    (tmp_path / "target").mkdir()
    (tmp_path / "target" / "index.html").write_text("<html></html>")
    assert report.docs_location(tmp_path).startswith(f"{tmp_path}/target/index.html (open it")


def test_missing_warehouse_is_a_usage_error(monkeypatch, capsys):
    monkeypatch.delenv("RETAILFLOW_WAREHOUSE_URL", raising=False)
    with pytest.raises(SystemExit) as exc:
        report.main([])
    assert exc.value.code == 2
    assert "RETAILFLOW_WAREHOUSE_URL" in capsys.readouterr().err


@pytest.mark.parametrize(("argv", "message"), [
    (["--limit", "-1"], "argument --limit: -1 is not between 1 and 1000"),
    (["--limit", "0"], "argument --limit: 0 is not between 1 and 1000"),
    (["--limit", "ten"], "argument --limit: 'ten' is not a whole number"),
    (["--warehouse-url", "mysql://u:p@h:3306/retail"],
     "--warehouse-url does not start with postgresql:// or postgres://: it must look like"
     " postgresql://USER@HOST:PORT/DATABASE"),
])
def test_bad_input_is_one_line_and_exit_2(argv, message, monkeypatch, capsys):
    monkeypatch.setenv("RETAILFLOW_WAREHOUSE_URL", "postgresql://u:p@127.0.0.1:1/w")
    with pytest.raises(SystemExit) as exc:
        report.main(argv)
    err = capsys.readouterr().err
    assert exc.value.code == 2 and err.count("\n") == 1 and message in err, err


def test_the_schema_is_one_quoted_identifier():
    assert report.quote_ident('marts"; drop table x; --') == '"marts""; drop table x; --"'
    sql = report.TOP_CUSTOMERS_SQL.format(schema=report.quote_ident("my marts"))
    assert 'from "my marts".top_customers' in sql


SECRET = "s3cr3t-Pw"


def run_main(argv: list[str], monkeypatch, capsys, env_url: str | None) -> tuple[int, str, str]:
    if env_url is None:
        monkeypatch.delenv("RETAILFLOW_WAREHOUSE_URL", raising=False)
    else:
        monkeypatch.setenv("RETAILFLOW_WAREHOUSE_URL", env_url)
    try:
        code = report.main(argv)
    except SystemExit as exc:
        code = exc.code
    out, err = capsys.readouterr()
    return code, out, err


def test_a_password_on_the_command_line_is_refused(monkeypatch, capsys):
    monkeypatch.setattr(report, "fetch", lambda *a, **k: pytest.fail("read the warehouse"))
    code, out, err = run_main(["--warehouse-url", f"postgresql://a:{SECRET}@127.0.0.1:5432/w"], monkeypatch, capsys,
                              None)
    assert (code, out) == (2, "") and err.count("\n") == 1, err
    assert "--warehouse-url carries a password" in err and "set $RETAILFLOW_WAREHOUSE_URL instead" in err, err
    assert SECRET not in err
    with pytest.raises(SystemExit):  # the help advertises no password in the URL
        report.main(["--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    assert "postgresql://USER@HOST:PORT/DATABASE without a password" in help_text, help_text
    assert "password@" not in help_text.lower()


@pytest.mark.parametrize(("url", "message"), [
    (f"warehouse:{SECRET}@127.0.0.1:5432/x", "RETAILFLOW_WAREHOUSE_URL does not start with postgresql://"),
    (f"postgresql://warehouse:{SECRET}@[::1/x",
     "RETAILFLOW_WAREHOUSE_URL is malformed (an unbalanced [ or ] in its host)"),
    (f"postgresql://warehouse:{SECRET}@127.0.0.1:abc/x",
     "RETAILFLOW_WAREHOUSE_URL is malformed (its port is not a number"),
    (f"postgresql://warehouse:{SECRET}@127.0.0.1:99999/x",
     "RETAILFLOW_WAREHOUSE_URL is malformed (its port is not a number"),
    # libpq parses it, and quotes the password in its error: shown as ***
    (f"postgresql://warehouse:{SECRET} x@127.0.0.1:1/x", 'is not usable: unexpected spaces found in "***"'),
])
def test_a_bad_url_is_exit_2_without_the_password(url, message, monkeypatch, capsys):
    code, out, err = run_main([], monkeypatch, capsys, url)
    assert (code, out) == (2, "") and err.count("\n") == 1, err
    assert message in err and "RETAILFLOW_WAREHOUSE_URL" in err and SECRET not in err, err


def test_an_unreachable_warehouse_is_exit_1_without_the_password(monkeypatch, capsys):
    code, out, err = run_main([], monkeypatch, capsys, f"postgresql://warehouse:{SECRET}@127.0.0.1:1/x")
    assert (code, out) == (1, "") and err.count("\n") == 1, err
    assert err.startswith("report: cannot reach the warehouse postgresql://warehouse@127.0.0.1:1/x: ") and SECRET not in err
