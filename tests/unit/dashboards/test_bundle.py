"""The dashboard bundle and the refresh's settings, without a Superset (the integration suite imports
the bundle into a real one)."""

from __future__ import annotations

import io
import json
import zipfile

import pytest
import yaml

from retailflow_pipeline import dashboards, paths

BUNDLE = paths.superset_bundle_dir()
WAREHOUSE = "postgresql://warehouse:s3cr%40t@db.example:6543/warehouse"


def test_refresh_without_superset_url_is_not_configured():
    with pytest.raises(dashboards.NotConfigured, match="RETAILFLOW_SUPERSET_URL"):
        dashboards.refresh({"RETAILFLOW_WAREHOUSE_URL": WAREHOUSE})


def test_incomplete_settings_name_what_is_missing():
    with pytest.raises(ValueError, match="RETAILFLOW_SUPERSET_PASSWORD, RETAILFLOW_WAREHOUSE_URL"):
        dashboards.SupersetSettings.from_env({"RETAILFLOW_SUPERSET_URL": "http://s:8088", "RETAILFLOW_SUPERSET_USERNAME": "a"})


def test_a_bundle_folder_without_metadata_is_refused(tmp_path):
    env = {"RETAILFLOW_SUPERSET_URL": "http://s:8088", "RETAILFLOW_SUPERSET_USERNAME": "a",
           "RETAILFLOW_SUPERSET_PASSWORD": "b", "RETAILFLOW_WAREHOUSE_URL": WAREHOUSE,
           "RETAILFLOW_SUPERSET_BUNDLE": str(tmp_path)}
    with pytest.raises(ValueError, match="metadata.yaml"):
        dashboards.SupersetSettings.from_env(env)


def test_the_zip_points_at_the_warehouse_and_carries_no_password():
    data, passwords = dashboards.build_bundle(BUNDLE, WAREHOUSE)
    archive = zipfile.ZipFile(io.BytesIO(data))
    names = archive.namelist()
    assert all(n.startswith(f"{dashboards.ZIP_ROOT}/") for n in names)
    assert f"{dashboards.ZIP_ROOT}/metadata.yaml" in names
    (database,) = [n for n in names if "/databases/" in n]
    config = yaml.safe_load(archive.read(database))
    assert config["sqlalchemy_uri"] == "postgresql+psycopg2://warehouse:XXXXXXXXXX@db.example:6543/warehouse"
    assert passwords == {database.split("/", 1)[1]: "s3cr@t"}
    assert all(b"s3cr" not in archive.read(n) for n in names)


def test_every_chart_and_dashboard_reference_resolves():
    assets = dashboards.bundle_assets(BUNDLE)
    databases = {str(d["uuid"]) for d in assets["databases"]}
    datasets = {str(d["uuid"]): d for d in assets["datasets"]}
    charts = {str(c["uuid"]): c for c in assets["charts"]}
    assert len(assets["dashboards"]) == 3 and len(charts) == 15
    assert all(str(d["database_uuid"]) in databases for d in datasets.values())
    for chart in charts.values():
        dataset = datasets[str(chart["dataset_uuid"])]
        # /api/v1/chart/<id>/data/ answers only from a stored query context
        context = json.loads(chart["query_context"])
        names = {c["column_name"] for c in dataset["columns"]} | {m["metric_name"] for m in dataset["metrics"]}
        (q,) = context["queries"]
        used = {m for m in q["metrics"]} | {c if isinstance(c, str) else c["sqlExpression"] for c in q["columns"]}
        assert used <= names, f"{chart['slice_name']}: {used - names} not in {dataset['table_name']}"
    placed, targeted = set(), set()
    for dashboard in assets["dashboards"]:
        for item in dashboard["position"].values():
            if isinstance(item, dict) and item.get("type") == "CHART":
                assert item["meta"]["uuid"] in charts
                placed.add(item["meta"]["uuid"])
        for native in dashboard["metadata"]["native_filter_configuration"]:
            targets = [t for t in native["targets"] if t]
            # only a date range filters every chart by its own time column, without a target of its own
            assert targets or native["filterType"] == "filter_time", f"{native['name']}: no target"
            for target in targets:
                dataset = datasets[target["datasetUuid"]]
                assert target["column"]["name"] in {c["column_name"] for c in dataset["columns"]}
                targeted.add(native["name"])
    assert placed == set(charts), "every chart sits on a dashboard"
    assert targeted == {"Region", "Channel", "Category", "Country"}


def test_native_filters_where_users_expect_them():
    filters = {d["slug"]: {f["name"]: f["filterType"] for f in d["metadata"]["native_filter_configuration"]}
               for d in dashboards.bundle_assets(BUNDLE)["dashboards"]}
    assert filters["sales-by-region"] == {"Date range": "filter_time", "Region": "filter_select",
                                          "Channel": "filter_select"}
    assert filters["best-selling-products"] == {"Category": "filter_select"}
    assert filters["top-customers"] == {"Country": "filter_select"}


def _unique_columns_in_marts() -> dict[str, set[str]]:
    """Mart -> the columns dbt/models/marts/_marts__models.yml gives a `unique` test."""
    schema = yaml.safe_load((paths.dbt_project_dir() / "models" / "marts" / "_marts__models.yml").read_text())
    return {model["name"]: {c["name"] for c in model.get("columns", []) if "unique" in (c.get("data_tests") or [])}
            for model in schema["models"]}


def _grouping_columns(chart: dict) -> set[str]:
    """Every column a chart groups by: its x axis and groupby, in the params and in the stored query."""
    params, context = chart["params"], json.loads(chart["query_context"])
    (q,) = context["queries"]
    form = context["form_data"]
    names = {params.get("x_axis"), form.get("x_axis"), *params.get("groupby", []), *form.get("groupby", [])}
    for column in q["columns"]:
        names.add(column if isinstance(column, str) else column["sqlExpression"])
        if not isinstance(column, str):
            names.add(column["label"])
    return names - {None}


def test_top_10_products_charts_group_by_a_column_unique_in_the_mart():
    """Product names repeat: a bar per product_name would add two products together (and could rank
    first while neither product does alone). Each bar must be one row of product_sales."""
    assets = dashboards.bundle_assets(BUNDLE)
    tables = {str(d["uuid"]): d["table_name"] for d in assets["datasets"]}
    unique = _unique_columns_in_marts()
    charts = [c for c in assets["charts"] if c["slice_name"].startswith("Top 10 products")]
    assert sorted(c["slice_name"] for c in charts) == ["Top 10 products by revenue", "Top 10 products by units"]
    for chart in charts:
        table = tables[str(chart["dataset_uuid"])]
        grouped = _grouping_columns(chart)
        assert grouped, f"{chart['slice_name']}: groups by nothing"
        assert grouped <= unique[table], (
            f"{chart['slice_name']}: groups by {sorted(grouped - unique[table])}, not unique in marts.{table}")


def test_the_country_filter_leaves_the_overall_top_10_pie_alone():
    """The pie shows the overall top 10 by country (revenue_rank <= 10): filtered by a country it
    would keep only that country's share of the overall top 10, one slice or none, while the table
    and the bar show that country's own top 10. So the Country filter scopes every chart but it."""
    assets = dashboards.bundle_assets(BUNDLE)
    (dashboard,) = [d for d in assets["dashboards"] if d["slug"] == "top-customers"]
    chart_ids = {item["meta"]["sliceName"]: item["meta"]["chartId"]
                 for item in dashboard["position"].values() if isinstance(item, dict) and item.get("type") == "CHART"}
    assert set(chart_ids) == {"Top 10 customers", "Top 10 customers by lifetime revenue", "Top 10 customers by country"}
    (country,) = [f for f in dashboard["metadata"]["native_filter_configuration"] if f["name"] == "Country"]
    assert country["scope"]["rootPath"] == ["ROOT_ID"]
    excluded = set(country["scope"]["excluded"])
    assert "chartsInScope" not in country or chart_ids["Top 10 customers by country"] not in country["chartsInScope"]
    assert {name for name, chart_id in chart_ids.items() if chart_id not in excluded} == {
        "Top 10 customers", "Top 10 customers by lifetime revenue"}
    (pie,) = [c for c in assets["charts"] if c["slice_name"] == "Top 10 customers by country"]
    assert {"subject": "revenue_rank", "operator": "<=", "comparator": "10"}.items() <= pie["params"]["adhoc_filters"][0].items()
