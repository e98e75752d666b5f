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
