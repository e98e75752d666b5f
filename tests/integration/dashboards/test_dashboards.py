"""The dashboard bundle in a real Superset 6.1: imported through the assets API by
``retailflow_pipeline.dashboards.refresh``, every chart answering, the numbers equal to the marts
(and to ``make report``), a re-import changing nothing, filter state shared by the workers, and each
dashboard drawn by headless Chromium."""

from __future__ import annotations

import json
import re
import shutil
from decimal import Decimal

import pytest
import requests
import yaml

from conftest import query
from retailflow_pipeline import dashboards, paths

pytestmark = pytest.mark.integration

BUNDLE = paths.superset_bundle_dir()
ASSETS = dashboards.bundle_assets(BUNDLE)
CHART_UUIDS = {c["slice_name"]: str(c["uuid"]) for c in ASSETS["charts"]}


def money(value) -> Decimal:
    return Decimal(str(value)).quantize(Decimal("0.01"))


def chart_ids(api: dashboards.SupersetClient) -> dict[str, int]:
    """Bundle chart name -> id in this Superset (matched by uuid, as the import matches them)."""
    by_uuid = {str(c["uuid"]): c["id"] for c in api.list_all("chart", ["id", "uuid"])}
    return {name: by_uuid[uuid] for name, uuid in CHART_UUIDS.items()}


def chart_data(api: dashboards.SupersetClient, chart_id: int) -> list[dict]:
    response = api.session.get(api.url(f"/api/v1/chart/{chart_id}/data/"), timeout=120)
    assert response.status_code == 200, f"chart {chart_id}: HTTP {response.status_code} {response.text[:500]}"
    (result,) = response.json()["result"]
    assert not result.get("error"), result["error"]
    return result["data"]


def data_of(api, name: str) -> list[dict]:
    return chart_data(api, chart_ids(api)[name])


def test_refresh_imports_three_dashboards_with_their_urls(stack, imported):
    assert imported["dashboards"] == 3 == len(ASSETS["dashboards"])
    assert imported["charts"] == len(ASSETS["charts"]) == 15
    assert imported["datasets"] == len(ASSETS["datasets"])
    assert list(imported["urls"]) == ["Sales performance by region", "Top 10 customers", "Best-selling products"]
    for url in imported["urls"].values():
        assert url.startswith(stack.superset.url + "/superset/dashboard/")


def test_every_chart_returns_rows(api):
    empty = {name: len(chart_data(api, chart_id)) for name, chart_id in chart_ids(api).items()}
    assert {name: rows for name, rows in empty.items() if rows == 0} == {}
    assert len(empty) == 15


def test_warehouse_password_is_stored_by_superset_not_in_the_bundle(stack, api):
    password = stack.warehouse_url.split("@")[0].rsplit(":", 1)[1]
    assert all(password not in p.read_text() for p in BUNDLE.rglob("*.yaml"))
    (database,) = [d for d in api.list_all("database", ["id", "uuid", "database_name"])
                   if str(d["uuid"]) == str(ASSETS["databases"][0]["uuid"])]
    detail = api.get(f"/api/v1/database/{database['id']}/connection")["result"]
    # Superset shows the URI masked, and connects with the password it stored (the charts answered).
    assert password not in json.dumps(detail)
    assert dashboards.PASSWORD_MASK in detail["sqlalchemy_uri"]
    assert stack.warehouse_url.rsplit("/", 1)[1] in detail["sqlalchemy_uri"]


def test_top_customers_equal_the_mart(stack, api):
    mart = query(stack.warehouse_url, """
        select revenue_rank, customer_id, customer_name, country, order_count, lifetime_revenue, last_order_at
        from marts.top_customers order by revenue_rank limit 10""")
    assert len(mart) == 10
    table = data_of(api, "Top 10 customers")
    assert [(r["revenue_rank"], r["customer_name"], r["country"], r["order_count"], money(r["lifetime_revenue"]))
            for r in table] == [(m[0], m[2], m[3], m[4], money(m[5])) for m in mart]
    # timestamps come back as epoch milliseconds
    assert [r["last_order_at"] // 1000 for r in table] == [int(m[6].timestamp()) for m in mart]
    bar = data_of(api, "Top 10 customers by lifetime revenue")
    assert [(r["customer"], money(r["lifetime_revenue"])) for r in bar] == [
        (f"{m[2]} (#{m[1]})", money(m[5])) for m in mart]


def test_best_sellers_equal_the_mart(stack, api):
    # one bar per product (name and SKU): names repeat, and a bar per name would add products together
    by_revenue = query(stack.warehouse_url, """
        select product, revenue, product_name || ' (' || sku || ')' from marts.product_sales
        order by revenue_rank limit 10""")
    assert all(p == f for p, _, f in by_revenue)
    chart = data_of(api, "Top 10 products by revenue")
    assert [(r["product"], money(r["revenue"])) for r in chart] == [(p, money(v)) for p, v, _ in by_revenue]

    units = dict(query(stack.warehouse_url, "select product, units_sold from marts.product_sales"))
    top_units = sorted(units.values(), reverse=True)[:10]
    chart = data_of(api, "Top 10 products by units")
    # the ten largest unit counts, each on the product that sold them (ties may order either way)
    assert [r["units_sold"] for r in chart] == top_units
    assert all(units[r["product"]] == r["units_sold"] for r in chart)

    categories = {c: money(v) for c, v in query(stack.warehouse_url, """
        select category, sum(revenue) from marts.product_sales group by category""")}
    assert {r["category"]: money(r["revenue"]) for r in data_of(api, "Revenue by category")} == categories


def test_region_totals_equal_the_mart(stack, api):
    regions = {r: money(v) for r, v in query(stack.warehouse_url, """
        select region, sum(revenue) from marts.sales_by_region group by region""")}
    assert len(regions) >= 3
    assert {r["region"]: money(r["revenue"]) for r in data_of(api, "Revenue by region")} == regions
    by_country = query(stack.warehouse_url, """
        select region, country, sum(revenue), sum(orders) from marts.sales_by_region group by 1, 2""")
    assert {(r["region"], r["country"]): (money(r["revenue"]), r["orders"])
            for r in data_of(api, "Revenue by region and country")} == {
        (r, c): (money(v), o) for r, c, v, o in by_country}
    ((revenue, orders),) = query(stack.warehouse_url, "select sum(revenue), sum(orders) from marts.sales_by_region")
    assert money(data_of(api, "Revenue")[0]["revenue"]) == money(revenue)
    assert data_of(api, "Orders")[0]["orders"] == orders
    assert money(data_of(api, "Average basket")[0]["average_basket"]) == money(revenue / orders)
    channels = {c: money(v) for c, v in query(stack.warehouse_url, """
        select channel, sum(revenue) from marts.sales_by_region group by channel""")}
    assert {r["channel"]: money(r["revenue"]) for r in data_of(api, "Online vs. store")} == channels


def test_last_12_months_table_equals_make_report(stack, api):
    from retailflow_pipeline.report import SALES_BY_REGION_SQL

    report = query(stack.warehouse_url, SALES_BY_REGION_SQL.format(schema="marts"))
    assert report, "the report query found no sales"
    chart = data_of(api, "Sales by region, last 12 months of data")
    assert {(r["region"], r["channel"]): (money(r["revenue"]), r["orders"], money(r["average_basket"]))
            for r in chart} == {(r[0], r[1]): (money(r[3]), r[4], money(r[5])) for r in report}


def _snapshot(api, *, data: bool = True) -> dict:
    charts = api.list_all("chart", ["id", "uuid", "slice_name", "viz_type", "params"])
    snapshot = {
        "dashboards": sorted((d["id"], str(d["uuid"]), d["dashboard_title"], d["slug"])
                             for d in api.list_all("dashboard", ["id", "uuid", "dashboard_title", "slug"])),
        "charts": sorted((c["id"], str(c["uuid"]), c["slice_name"], c["viz_type"], c["params"]) for c in charts),
        "datasets": sorted((d["id"], str(d["uuid"]), d["table_name"])
                           for d in api.list_all("dataset", ["id", "uuid", "table_name"])),
        "databases": sorted((d["id"], str(d["uuid"]), d["database_name"])
                            for d in api.list_all("database", ["id", "uuid", "database_name"])),
    }
    if data:
        snapshot["data"] = {c["slice_name"]: chart_data(api, c["id"]) for c in charts}
    return snapshot


def test_reimport_changes_nothing_and_updates_in_place(stack, imported, api, tmp_path):
    before = _snapshot(api)
    assert len(before["charts"]) == 15 and len(before["dashboards"]) == 3
    assert dashboards.refresh(stack.env) == imported
    assert _snapshot(api) == before

    # An edited bundle updates the same chart (same id), and adds nothing.
    edited = tmp_path / "bundle"
    shutil.copytree(BUNDLE, edited)
    (path,) = [p for p in (edited / "charts").glob("*.yaml") if yaml.safe_load(p.read_text())["slice_name"] == "Revenue"]
    config = yaml.safe_load(path.read_text())
    config["slice_name"] = "Revenue (edited)"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    dashboards.refresh({**stack.env, "RETAILFLOW_SUPERSET_BUNDLE": str(edited)})
    after = _snapshot(api, data=False)
    assert [c[:3] for c in after["charts"] if c[1] == str(config["uuid"])] == [
        (c[0], c[1], "Revenue (edited)") for c in before["charts"] if c[1] == str(config["uuid"])]
    assert len(after["charts"]) == 15 and after["dashboards"] == before["dashboards"]

    dashboards.refresh(stack.env)
    assert _snapshot(api, data=False) == {k: v for k, v in before.items() if k != "data"}


def web_session(superset) -> requests.Session:
    """A browser-like session: the login form's cookie (the filter-state API takes no bearer token)."""
    session = requests.Session()
    page = session.get(f"{superset.url}/login/", timeout=30).text
    token = re.search(r'id="csrf_token"[^>]*value="([^"]+)"', page) or re.search(r'value="([^"]+)"[^>]*id="csrf_token"', page)
    assert token, "no CSRF token on the login page"
    login = session.post(f"{superset.url}/login/", allow_redirects=False, timeout=30,
                         data={"username": superset.username, "password": superset.password, "csrf_token": token.group(1)})
    assert login.status_code == 302 and "/login" not in login.headers["Location"], login.text[:300]
    session.headers.update({"Accept": "application/json", "Referer": superset.url})
    session.headers["X-CSRFToken"] = session.get(f"{superset.url}/api/v1/security/csrf_token/", timeout=30).json()["result"]
    return session


def test_filter_state_is_shared_by_every_worker(stack, api):
    """Superset keeps a dashboard's filter state in its cache: with a per-process cache, a GET
    served by another gunicorn worker than the POST would answer 404. The metastore cache (the
    metadata database) serves every worker."""
    assert stack.superset.workers >= 2
    (dashboard,) = [d for d in api.list_all("dashboard", ["id", "slug"]) if d["slug"] == "sales-by-region"]
    base = f"{stack.superset.url}/api/v1/dashboard/{dashboard['id']}/filter_state"
    value = json.dumps({"NATIVE_FILTER-region": {"filterState": {"value": ["Online"]}}})
    session = web_session(stack.superset)
    created = session.post(base, json={"value": value}, timeout=30)
    assert created.status_code == 201, created.text
    key = created.json()["key"]
    # A new connection each time, so gunicorn hands the requests to its workers in turn.
    answers = []
    for _ in range(12):
        with requests.Session() as fresh:
            fresh.cookies.update(session.cookies)
            fresh.headers["Accept"] = "application/json"
            answers.append(fresh.get(f"{base}/{key}", timeout=30))
    assert [a.status_code for a in answers] == [200] * 12
    assert {a.json()["value"] for a in answers} == {value}


def test_each_dashboard_renders_every_chart_in_chromium(stack, imported, tmp_path):
    from browser import Browser, bundle_dashboards

    expected = bundle_dashboards()
    assert set(expected) == {"sales-by-region", "top-customers", "best-selling-products"}
    with Browser(stack.superset.url) as browser:
        browser.login(stack.superset.username, stack.superset.password)
        for slug, count in expected.items():
            page = browser.dashboard(slug, count, tmp_path / f"dashboard-{slug}.png")
            assert len(page.charts) == count, f"{slug}: {len(page.charts)} of {count} charts on the page"
            assert [c.title for c in page.charts if c.error] == [], f"{slug}: error panels"
            assert [c.title for c in page.charts if c.no_results] == [], f"{slug}: 'No results'"
            assert [c.title for c in page.charts if not c.rendered] == [], f"{slug}: charts not drawn"
            assert page.png.stat().st_size > 20_000  # a real picture, not a blank page


def test_region_and_date_range_filters_narrow_the_kpis(stack, imported):
    """The dashboard's native filters reach its charts: with a region and a date range preset
    (as Superset writes them into a dashboard's URL), the KPIs show that slice of the mart."""
    from browser import Browser, bundle_dashboards

    ((region, _),) = query(stack.warehouse_url, """
        select region, sum(revenue) from marts.sales_by_region group by region order by 2 desc limit 1""")
    ((first, last),) = query(stack.warehouse_url, "select min(month), max(month) from marts.sales_by_region")
    start = first.replace(month=first.month % 12 + 1, year=first.year + first.month // 12)  # drop the first month
    window = f"{start:%Y-%m-%d} : {last:%Y-%m-%d}"  # Superset's ranges include the start, exclude the end
    ((revenue, orders),) = query(stack.warehouse_url, """
        select sum(revenue), sum(orders) from marts.sales_by_region
        where region = %s and month >= %s and month < %s""", (region, start, last))
    ((all_revenue,),) = query(stack.warehouse_url, "select sum(revenue) from marts.sales_by_region")
    assert 0 < revenue < all_revenue
    filters = (f"(NATIVE_FILTER-date_range:(extraFormData:(time_range:'{window}'),filterState:(value:'{window}'),"
               f"id:NATIVE_FILTER-date_range,ownState:()),"
               f"NATIVE_FILTER-region:(extraFormData:(filters:!((col:region,op:IN,val:!('{region}')))),"
               f"filterState:(label:'{region}',value:!('{region}')),id:NATIVE_FILTER-region,ownState:()))")
    with Browser(stack.superset.url) as browser:
        browser.login(stack.superset.username, stack.superset.password)
        page = browser.dashboard("sales-by-region", bundle_dashboards()["sales-by-region"], native_filters=filters)
        assert all(c.rendered for c in page.charts)
        shown = browser.big_numbers()
    assert Decimal(shown["Revenue"].replace(",", "")) == money(revenue)
    assert int(shown["Orders"].replace(",", "")) == orders
