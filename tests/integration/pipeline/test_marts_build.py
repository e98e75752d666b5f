"""dbt build, docs, freshness and the demo report on a real PostgreSQL warehouse.

The raw tables are written here by hand in the layout the ingestion step produces (Airbyte's
Postgres destination, typed tables plus ``_airbyte_*`` columns), so these tests pin the dbt project
to that layout without depending on the ingestion engine.
"""

from __future__ import annotations

import json
from pathlib import Path

import psycopg
import pytest

from retailflow_pipeline import dbt as runner
from retailflow_pipeline import report

pytestmark = pytest.mark.integration

MAKEFILE = Path(__file__).resolve().parents[3] / "Makefile"

AIRBYTE_COLUMNS = """
    _airbyte_raw_id varchar not null default gen_random_uuid()::varchar,
    _airbyte_extracted_at timestamptz not null default now(),
    _airbyte_meta jsonb not null default '{"changes": [], "sync_id": 1}',
    _airbyte_generation_id bigint not null default 0
"""

RAW_DDL = f"""
create schema raw;
create table raw.customers (customer_id bigint, first_name varchar, last_name varchar, email varchar,
    city varchar, country varchar, signed_up_at timestamp, created_at timestamp, updated_at timestamp,
    {AIRBYTE_COLUMNS});
create table raw.products (product_id bigint, sku varchar, name varchar, category varchar,
    unit_price numeric, created_at timestamp, updated_at timestamp, {AIRBYTE_COLUMNS});
create table raw.orders (order_id bigint, customer_id bigint, channel varchar, store_id bigint,
    status varchar, ordered_at timestamp, created_at timestamp, updated_at timestamp, {AIRBYTE_COLUMNS});
create table raw.order_items (order_item_id bigint, order_id bigint, product_id bigint, quantity bigint,
    unit_price numeric, created_at timestamp, updated_at timestamp, {AIRBYTE_COLUMNS});
create table raw.store_locations (store_id bigint, name varchar, city varchar, region varchar,
    country varchar, latitude numeric, longitude numeric, opened_at varchar, {AIRBYTE_COLUMNS});
"""

RAW_ROWS = """
insert into raw.customers (customer_id, first_name, last_name, email, city, country, signed_up_at, created_at, updated_at)
values (1, 'Ada', 'Lovelace', 'ada@example.org', 'London', 'GB', '2024-01-01', now(), now()),
       (2, 'Grace', 'Hopper', 'grace@example.org', 'New York', 'US', '2024-01-02', now(), now()),
       (3, 'Alan', 'Turing', 'alan@example.org', 'Manchester', 'GB', '2024-01-03', now(), now());
insert into raw.products (product_id, sku, name, category, unit_price, created_at, updated_at)
values (1, 'SKU-1', 'Trail Shoe', 'Footwear', 99.00, now(), now()),
       (2, 'SKU-2', 'Rain Jacket', 'Outerwear', 150.00, now(), now());
insert into raw.store_locations (store_id, name, city, region, country, latitude, longitude, opened_at)
values (1, 'RetailFlow London', 'London', 'Europe', 'GB', 51.5, -0.12, '2010-01-01');
insert into raw.orders (order_id, customer_id, channel, store_id, status, ordered_at, created_at, updated_at)
values (1, 1, 'store', 1, 'delivered', '2025-05-02 10:00', now(), now()),
       (2, 2, 'online', null, 'paid', '2025-05-03 11:00', now(), now()),
       (3, 3, 'online', null, 'cancelled', '2025-06-01 12:00', now(), now()),
       (4, 2, 'online', null, 'shipped', '2025-06-04 09:00', now(), now());
insert into raw.order_items (order_item_id, order_id, product_id, quantity, unit_price, created_at, updated_at)
values (1, 1, 1, 2, 99.00, now(), now()),
       (2, 2, 2, 1, 150.00, now(), now()),
       (3, 3, 2, 9, 150.00, now(), now()),
       (4, 4, 1, 1, 89.00, now(), now()),
       (5, 4, 2, 1, 150.00, now(), now());
"""


@pytest.fixture(scope="module")
def dbt_dirs(tmp_path_factory) -> tuple[Path, Path]:
    """One target directory for the module, so dbt's partial parsing spares a re-parse per test."""
    target = tmp_path_factory.mktemp("dbt-target")
    return target, target / "logs"


@pytest.fixture
def raw_warehouse(warehouse_url: str) -> str:
    with psycopg.connect(warehouse_url, autocommit=True) as conn:
        conn.execute(RAW_DDL)
        conn.execute(RAW_ROWS)
    return warehouse_url


def dbt(args: list[str], url: str, dirs: tuple[Path, Path]) -> int:
    return runner.run(args, warehouse_url=url, target_path=dirs[0], log_path=dirs[1])


def failed_tests(dirs: tuple[Path, Path]) -> set[tuple[str, str, str | None]]:
    """(test, model, column) of every data test the last dbt command saw fail."""
    results = json.loads((dirs[0] / "run_results.json").read_text())["results"]
    nodes = json.loads((dirs[0] / "manifest.json").read_text())["nodes"]
    failed = set()
    for result in results:
        node = nodes.get(result["unique_id"], {})
        if result["status"] == "fail" and node.get("resource_type") == "test":
            test = node["test_metadata"]["name"] if "test_metadata" in node else node["name"]
            model = (node.get("attached_node") or "").rpartition(".")[2]
            failed.add((test, model, node.get("column_name")))
    return failed


def test_build_docs_freshness_and_report(raw_warehouse, dbt_dirs, capsys, monkeypatch):
    assert dbt(["build"], raw_warehouse, dbt_dirs) == 0
    assert dbt(["source", "freshness"], raw_warehouse, dbt_dirs) == 0
    assert dbt(["docs", "generate"], raw_warehouse, dbt_dirs) == 0
    catalog = json.loads((dbt_dirs[0] / "catalog.json").read_text())
    assert {"model.retailflow.top_customers", "model.retailflow.sales_by_region"} <= set(catalog["nodes"])
    assert (dbt_dirs[0] / "index.html").exists()

    capsys.readouterr()
    monkeypatch.setenv("RETAILFLOW_WAREHOUSE_URL", raw_warehouse)
    assert report.main([]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    # Grace: 150.00 (paid) + 239.00 (shipped); Ada: 198.00 (delivered); Alan only cancelled.
    assert out.index("Grace Hopper") < out.index("Ada Lovelace")
    assert "Alan Turing" not in out
    assert any("Online" in line and "389.00" in line for line in lines)
    assert any("Europe" in line and "198.00" in line for line in lines)
    assert any("total" in line and "587.00" in line and "195.67" in line for line in lines)
    rain_jacket = next(line for line in lines if "Rain Jacket" in line)
    assert "300.00" in rain_jacket and " 2 " in rain_jacket  # the cancelled 9 jackets are not sales
    assert "Lake files: none recorded (raw._retailflow_ingest_state names no lake" in out and "dbt docs:" in out
    # --schema is one identifier, never SQL: a schema of that odd name does not exist
    assert report.main(["--schema", "marts.top_customers; select 1 --"]) == 1
    assert "the marts are missing" in capsys.readouterr().err


def test_docs_after_a_build_keep_the_builds_test_results(raw_warehouse, tmp_path):
    """make dbt-build generates the docs after the build; a compile there rewrote run_results.json
    with no test in it, so make governance never saw the tests' results."""
    dirs = (tmp_path, tmp_path / "logs")
    assert dbt(["build"], raw_warehouse, dirs) == 0
    lines = MAKEFILE.read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("dbt-build:"))
    recipe = lines[start + 1 : lines.index("", start)]
    [docs] = [line for line in recipe if "retailflow_pipeline.dbt docs generate" in line]
    args = docs.split("retailflow_pipeline.dbt ", 1)[1].split()  # what `make dbt-build` runs
    assert dbt(args, raw_warehouse, dirs) == 0
    results = json.loads((tmp_path / "run_results.json").read_text())["results"]
    assert any(r["unique_id"].startswith("test.") and r["status"] == "pass" for r in results), args
    assert (tmp_path / "catalog.json").exists() and (tmp_path / "index.html").exists()


def test_stale_source_fails_freshness(raw_warehouse, dbt_dirs):
    with psycopg.connect(raw_warehouse, autocommit=True) as conn:
        conn.execute("update raw.orders set _airbyte_extracted_at = now() - interval '4 days'")
    assert dbt(["source", "freshness", "--select", "source:retail.orders"], raw_warehouse, dbt_dirs) == 1


def test_rows_breaking_the_contract_fail_the_build(raw_warehouse, dbt_dirs):
    with psycopg.connect(raw_warehouse, autocommit=True) as conn:
        conn.execute(
            "insert into raw.orders (order_id, customer_id, channel, store_id, status, ordered_at,"
            " created_at, updated_at) values (9, 99, 'kiosk', 7, 'lost', '2025-06-05', now(), now())"
        )
        conn.execute(
            "insert into raw.order_items (order_item_id, order_id, product_id, quantity, unit_price,"
            " created_at, updated_at) values (9, 1, 1, 1, -5.00, now(), now())"
        )
    assert dbt(["build", "--select", "staging"], raw_warehouse, dbt_dirs) == 1
    failed = failed_tests(dbt_dirs)
    assert failed == {
        ("accepted_values", "stg_retail__orders", "status"),
        ("accepted_values", "stg_retail__orders", "channel"),
        ("relationships", "stg_retail__orders", "customer_id"),
        ("relationships", "stg_retail__orders", "store_id"),
        ("non_negative", "stg_retail__order_items", "unit_price"),
        # a 'kiosk' order naming a store breaks the channel/store rule too
        ("assert_store_orders_name_a_store", "", None),
    }, sorted(failed)
