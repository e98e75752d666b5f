"""The MySQL, PostgreSQL and dbt workflows, run for real (`metadata ingest` of openmetadata-ingestion
1.13.1.1 against a real MariaDB, a real PostgreSQL built by dbt, and dbt's own artifacts), each sending
what it found to the OpenMetadata stand-in. The assertions are what a user would then see in
OpenMetadata: the tables and their columns, the lineage graph, the descriptions and the tests.
"""

from __future__ import annotations

import json
import shutil
from urllib.parse import urlsplit

import psycopg
import pytest
import yaml

from retailflow_pipeline import governance, paths
from support.openmetadata_standin import OpenMetadataStandIn

pytestmark = pytest.mark.integration

MYSQL_TABLES = {"customers", "products", "orders", "order_items"}
RAW_TABLES = MYSQL_TABLES | {"store_locations"}
STAGING = {f"stg_retail__{t}" for t in RAW_TABLES}
MARTS = {"orders", "customers", "product_sales", "sales_by_region", "top_customers"}


def _env(om_env: dict, **urls: str) -> dict:
    return om_env | {f"RETAILFLOW_{k.upper()}": v for k, v in urls.items()}


def _run(standin: OpenMetadataStandIn, env: dict, workflows: list[str]) -> dict:
    summary = governance.run(env, workflows, log=lambda _line: None)
    seconds = {name: w["seconds"] for name, w in summary["workflows"].items()}
    print(f"stand-in after {'+'.join(workflows)}: {standin.counts()} (seconds: {seconds})")  # shown with -s
    assert not standin.unhandled, f"the workflows called endpoints the stand-in does not serve: {standin.unhandled}"
    return summary


@pytest.fixture(scope="module")
def mysql_catalog(source_url, metadata_bin):
    standin = OpenMetadataStandIn()
    url = standin.start()
    env = {
        "RETAILFLOW_OPENMETADATA_URL": url, "RETAILFLOW_OPENMETADATA_TOKEN": "stand-in.jwt",
        "RETAILFLOW_OPENMETADATA_METADATA_BIN": str(metadata_bin), "RETAILFLOW_MYSQL_URL": source_url,
    }
    try:
        summary = _run(standin, env, ["mysql"])
        yield standin, summary, urlsplit(source_url).path.strip("/")
    finally:
        standin.stop()


@pytest.fixture(scope="module")
def warehouse_catalog(warehouse, metadata_bin):
    """The postgres workflow, then the dbt workflow (it attaches to those tables), on one stand-in."""
    standin = OpenMetadataStandIn()
    url = standin.start()
    env = {
        "RETAILFLOW_OPENMETADATA_URL": url, "RETAILFLOW_OPENMETADATA_TOKEN": "stand-in.jwt",
        "RETAILFLOW_OPENMETADATA_METADATA_BIN": str(metadata_bin), "RETAILFLOW_WAREHOUSE_URL": warehouse.url,
        "RETAILFLOW_DBT_TARGET_DIR": str(warehouse.dbt_target),
        "RETAILFLOW_DBT_RUN_RESULTS": str(warehouse.run_results),
    }
    try:
        summary = _run(standin, env, ["postgres", "dbt"])
        standin.env = env
        yield standin, summary, warehouse.database
    finally:
        standin.stop()


def _table(standin: OpenMetadataStandIn, fqn: str) -> dict:
    tables = standin.of_type("table")
    assert fqn in tables, f"{fqn} was not registered; registered: {sorted(tables)}"
    return tables[fqn]


class TestMysqlWorkflow:
    def test_the_four_source_tables_are_registered_with_their_columns(self, mysql_catalog):
        standin, _, schema = mysql_catalog
        prefix = f"retailflow_mysql.default.{schema}"
        assert {fqn.rsplit(".", 1)[1] for fqn in standin.of_type("table") if fqn.startswith(prefix)} == MYSQL_TABLES
        orders = _table(standin, f"{prefix}.orders")
        columns = {c["name"]: c for c in orders["columns"]}
        assert list(columns) == ["order_id", "customer_id", "channel", "store_id", "status", "ordered_at",
                                 "created_at", "updated_at"]
        assert columns["order_id"]["constraint"] == "PRIMARY_KEY"
        assert columns["channel"]["dataType"] == "ENUM"
        assert [c["ordinalPosition"] for c in orders["columns"]] == list(range(1, 9))

    def test_foreign_keys_link_the_tables(self, mysql_catalog):
        standin, _, schema = mysql_catalog
        prefix = f"retailflow_mysql.default.{schema}"
        items = _table(standin, f"{prefix}.order_items")
        foreign = {tuple(c["columns"]): c["referredColumns"] for c in items.get("tableConstraints", [])
                   if c.get("constraintType") == "FOREIGN_KEY"}
        assert foreign == {("order_id",): [f"{prefix}.orders.order_id"],
                           ("product_id",): [f"{prefix}.products.product_id"]}

    def test_the_service_carries_the_connection_but_never_the_password_in_clear(self, mysql_catalog, source_url):
        standin, _, _ = mysql_catalog
        (service,) = standin.of_type("databaseService").values()
        config = service["connection"]["config"]
        parts = urlsplit(source_url)
        assert config["hostPort"] == f"{parts.hostname}:{parts.port or 3306}" and config["username"] == parts.username
        # What was sent is recorded redacted: the password went to the server and is in no record.
        put = next(r for r in standin.requests if r.method == "PUT" and r.path.endswith("/services/databaseServices"))
        assert put.body["connection"]["config"]["authType"]["password"] == "<redacted>"
        assert parts.password not in json.dumps([r.body for r in standin.requests])


class TestPostgresWorkflow:
    def test_raw_staging_and_marts_tables_are_registered(self, warehouse_catalog):
        standin, _, database = warehouse_catalog
        found: dict[str, set[str]] = {}
        for fqn in standin.of_type("table"):
            service, db, schema, name = fqn.split(".")
            assert (service, db) == ("retailflow_warehouse", database)
            found.setdefault(schema, set()).add(name)
        # the ingestion engine's cursor-state table is filtered out; its CSV quarantine is data
        assert found == {"raw": RAW_TABLES | {"store_locations_quarantine"}, "staging": STAGING, "marts": MARTS}

    def test_views_and_tables_keep_their_kind_and_columns(self, warehouse_catalog):
        standin, _, database = warehouse_catalog
        prefix = f"retailflow_warehouse.{database}"
        staging = _table(standin, f"{prefix}.staging.stg_retail__orders")
        assert staging["tableType"] == "View"
        top = _table(standin, f"{prefix}.marts.top_customers")
        assert top["tableType"] == "Regular"
        assert [c["name"] for c in top["columns"]][:3] == ["revenue_rank", "customer_id", "customer_name"]
        raw = _table(standin, f"{prefix}.raw.orders")
        assert {"_airbyte_raw_id", "_airbyte_extracted_at"} <= {c["name"] for c in raw["columns"]}


#: The metrics the test's profiler run computes: the ones a user reads first on a table's profile
#: page, each one query per column. The shipped workflow computes OpenMetadata's default set (20,
#: with median, quartiles and unique counts: several queries per column), minutes on 2 cores.
TEST_PROFILER_METRICS = ["rowCount", "columnCount", "columnNames", "valuesCount", "nullCount", "distinctCount",
                         "min", "max"]


@pytest.fixture(scope="module")
def profiled(warehouse_catalog, tmp_path_factory):
    """The shipped profiler workflow (the marts schema) on the registered warehouse, with a modest
    metric set (``TEST_PROFILER_METRICS``) in a copy of the workflow folder; all else is the chart's file."""
    standin, _, database = warehouse_catalog
    folder = tmp_path_factory.mktemp("workflows")
    for template in paths.openmetadata_workflows_dir().glob("*.yaml"):
        shutil.copy(template, folder / template.name)
    workflow = yaml.safe_load((folder / "postgres-profiler.yaml").read_text())
    workflow["source"]["sourceConfig"]["config"]["metrics"] = TEST_PROFILER_METRICS
    (folder / "postgres-profiler.yaml").write_text(yaml.safe_dump(workflow, sort_keys=False))
    summary = _run(standin, standin.env | {"RETAILFLOW_OPENMETADATA_WORKFLOWS": str(folder)}, ["postgres-profiler"])
    return standin, database, summary


class TestProfilerWorkflow:
    def test_every_mart_gets_its_real_row_count(self, profiled, warehouse):
        standin, database, summary = profiled
        assert summary["workflows"]["postgres-profiler"].get("errors", 0) == 0, summary
        with psycopg.connect(warehouse.url) as conn:
            real = {m: conn.execute(f"select count(*) from marts.{m}").fetchone()[0] for m in MARTS}
        profiles = {m: (_table(standin, f"retailflow_warehouse.{database}.marts.{m}").get("profile") or {})
                    for m in MARTS}
        assert {m: p.get("rowCount") for m, p in profiles.items()} == real
        assert all(rows > 0 for rows in real.values())
        top = _table(standin, f"retailflow_warehouse.{database}.marts.top_customers")
        assert profiles["top_customers"]["columnCount"] == len(top["columns"])

    def test_column_profiles_match_the_warehouse(self, profiled, warehouse):
        standin, database, _ = profiled
        with psycopg.connect(warehouse.url) as conn:
            low, high, distinct = conn.execute("select min(lifetime_revenue), max(lifetime_revenue), "
                                               "count(distinct customer_id) from marts.top_customers").fetchone()
        top = _table(standin, f"retailflow_warehouse.{database}.marts.top_customers")
        columns = {c["name"]: c.get("profile") or {} for c in top["columns"]}
        assert float(columns["lifetime_revenue"]["min"]) == pytest.approx(float(low))
        assert float(columns["lifetime_revenue"]["max"]) == pytest.approx(float(high))
        assert columns["customer_id"]["distinctCount"] == distinct
        assert columns["customer_id"]["nullCount"] == 0

    def test_only_the_marts_are_profiled(self, profiled):
        standin, _, _ = profiled
        profiled_schemas = {fqn.split(".")[2] for fqn, t in standin.of_type("table").items() if t.get("profile")}
        assert profiled_schemas == {"marts"}


class TestDbtWorkflow:
    def test_every_mart_has_lineage_back_to_the_raw_tables(self, warehouse_catalog):
        standin, _, database = warehouse_catalog
        prefix = f"retailflow_warehouse.{database}"
        edges = standin.lineage_edges()
        upstream: dict[str, set[str]] = {}
        for src, dst in edges:
            upstream.setdefault(dst, set()).add(src)

        def ancestors(fqn: str) -> set[str]:
            seen, todo = set(), [fqn]
            while todo:
                for parent in upstream.get(todo.pop(), ()):
                    if parent not in seen:
                        seen.add(parent)
                        todo.append(parent)
            return seen

        for staging in STAGING:
            entity = staging.removeprefix("stg_retail__")
            assert f"{prefix}.raw.{entity}" in upstream[f"{prefix}.staging.{staging}"], staging
        for mart in MARTS:
            found = ancestors(f"{prefix}.marts.{mart}")
            assert any(a.startswith(f"{prefix}.staging.") for a in found), mart
            assert any(a.startswith(f"{prefix}.raw.") for a in found), mart
        assert f"{prefix}.staging.stg_retail__orders" in ancestors(f"{prefix}.marts.top_customers")

    def test_lineage_edges_carry_the_dbt_sql(self, warehouse_catalog):
        standin, _, database = warehouse_catalog
        prefix = f"retailflow_warehouse.{database}"
        top = _table(standin, f"{prefix}.marts.top_customers")
        edges = [e for e in standin.lineage.values() if e["toEntity"] == top["id"]]
        assert edges and all(e["lineageDetails"]["source"] == "DbtLineage" for e in edges)
        assert "from" in edges[0]["lineageDetails"]["sqlQuery"].lower()

    def test_model_and_column_descriptions_come_from_the_dbt_docs(self, warehouse_catalog):
        standin, _, database = warehouse_catalog
        prefix = f"retailflow_warehouse.{database}"
        orders = _table(standin, f"{prefix}.staging.stg_retail__orders")
        assert orders["description"].startswith("One row per order")
        columns = {c["name"]: c for c in orders["columns"]}
        assert columns["store_id"]["description"] == "The store of an in-store sale; null for online sales."
        assert orders["dataModel"]["modelType"] == "DBT"
        assert "source(" in orders["dataModel"]["rawSql"]

    def test_the_dbt_tests_become_test_cases_with_results(self, warehouse_catalog):
        standin, _, database = warehouse_catalog
        cases = standin.of_type("testCase")
        on_orders_pk = [fqn for fqn in cases if f"{database}.staging.stg_retail__orders.order_id." in fqn]
        assert any("unique" in fqn for fqn in on_orders_pk) and any("not_null" in fqn for fqn in on_orders_pk)
        assert len(cases) >= 50
        results = [r for results in standin.test_case_results.values() for r in results]
        assert results and {r["testCaseStatus"] for r in results} == {"Success"}
