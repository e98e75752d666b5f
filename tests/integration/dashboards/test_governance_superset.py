"""OpenMetadata's Superset workflow, run for real against this suite's Superset.

The suite's session Superset (the bundle imported by ``dashboards.refresh`` over a warehouse built by
dbt) is the peer: ``retailflow_pipeline.governance.run`` runs the ``postgres`` workflow (the
warehouse's tables, which lineage attaches to) and then the ``superset`` workflow with ``metadata
ingest`` from OpenMetadata's own environment (``.tools/openmetadata``, ``make openmetadata-env``),
both sending to the OpenMetadata stand-in (``support.openmetadata_standin``; not OpenMetadata, see
its docstring). The assertions are what a user would then see in OpenMetadata. Reusing this suite's
Superset costs one workflow run (tens of seconds); starting a second Superset would cost minutes.
"""

from __future__ import annotations

from urllib.parse import urlsplit

import pytest

from conftest import REPO_ROOT
from retailflow_pipeline import governance
from support.openmetadata_standin import OpenMetadataStandIn

pytestmark = pytest.mark.integration

METADATA_BIN = REPO_ROOT / ".tools" / "openmetadata" / "bin" / "metadata"
DASHBOARDS = {"Sales performance by region", "Top 10 customers", "Best-selling products"}


@pytest.fixture(scope="module")
def superset_catalog(stack, imported):
    if not METADATA_BIN.exists():
        pytest.fail(f"{METADATA_BIN} is missing: run `make openmetadata-env`")
    standin = OpenMetadataStandIn()
    url = standin.start()
    env = {
        "RETAILFLOW_OPENMETADATA_URL": url,
        # The stand-in accepts any bearer token; a real server checks the ingestion bot's JWT.
        "RETAILFLOW_OPENMETADATA_TOKEN": "stand-in.ingestion-bot.jwt",
        "RETAILFLOW_OPENMETADATA_METADATA_BIN": str(METADATA_BIN),
        "RETAILFLOW_WAREHOUSE_URL": stack.warehouse_url,
        "RETAILFLOW_SUPERSET_URL": stack.superset.url,
        "RETAILFLOW_SUPERSET_USERNAME": stack.superset.username,
        "RETAILFLOW_SUPERSET_PASSWORD": stack.superset.password,
    }
    try:
        summary = governance.run(env, ["postgres", "superset"], log=lambda _line: None)
        print(f"stand-in after postgres+superset: {standin.counts()}")  # shown with -s, and on failures
        assert not standin.unhandled, f"the workflows called endpoints the stand-in does not serve: {standin.unhandled}"
        yield standin, summary, urlsplit(stack.warehouse_url).path.strip("/")
    finally:
        standin.stop()


def _upstream(standin: OpenMetadataStandIn) -> dict[str, set[str]]:
    upstream: dict[str, set[str]] = {}
    for src, dst in standin.lineage_edges():
        upstream.setdefault(dst, set()).add(src)
    return upstream


def test_the_three_dashboards_are_registered_with_their_charts(superset_catalog):
    standin, summary, _ = superset_catalog
    assert summary["workflows"]["superset"].get("errors", 0) == 0, summary
    dashboards = {d["displayName"]: d for d in standin.of_type("dashboard").values()}
    assert set(dashboards) == DASHBOARDS
    charts = standin.of_type("chart")
    for dashboard in dashboards.values():
        assert dashboard["charts"], dashboard["displayName"]
        assert all(ref["fullyQualifiedName"] in charts for ref in dashboard["charts"])
    # every chart of the bundle, each on its dashboard
    assert len({ref["fullyQualifiedName"] for d in dashboards.values() for ref in d["charts"]}) == 15


def test_every_dashboard_reads_a_mart_table_through_its_datasets(superset_catalog):
    standin, _, database = superset_catalog
    upstream = _upstream(standin)
    marts = f"retailflow_warehouse.{database}.marts."
    dashboards = standin.of_type("dashboard")
    assert {d["displayName"] for d in dashboards.values()} == DASHBOARDS
    for dashboard in dashboards.values():
        models = upstream.get(dashboard["fullyQualifiedName"], set())
        assert models and all(".model." in m for m in models), dashboard["displayName"]
        tables = set().union(*(upstream.get(m, set()) for m in models))
        assert tables and all(t.startswith(marts) for t in tables), (dashboard["displayName"], tables)
    top = next(d for d in standin.of_type("dashboard").values() if d["displayName"] == "Top 10 customers")
    (model,) = upstream[top["fullyQualifiedName"]]
    assert upstream[model] == {f"{marts}top_customers"}


def test_each_data_model_carries_the_columns_of_the_mart_it_reads(superset_catalog):
    standin, _, _ = superset_catalog
    upstream = _upstream(standin)
    tables = standin.of_type("table")
    models = standin.of_type("dashboardDataModel")
    assert models
    # openmetadata-ingestion 1.13's Superset API source derives lineage from a dataset's table only:
    # the virtual (SQL) dataset gets no upstream table. 2.0 parses the dataset's SQL (its
    # SupersetAPISource enriches the chart with the dataset's `sql`); 1.13's does not read it.
    without_lineage = {model["displayName"] for fqn, model in models.items() if fqn not in upstream}
    assert without_lineage == {"sales_by_region_last_12_months"}
    for fqn, model in models.items():
        if fqn not in upstream:
            continue
        (table,) = upstream[fqn]  # one dataset, one mart table
        # What OpenMetadata shows for a column: its displayName, else its name. openmetadata-ingestion
        # 1.13's Superset source names a data model's columns by Superset's column id and puts the
        # column's name in displayName (SupersetSourceMixin.get_column_info); 2.0 names them by name.
        shown = {c.get("displayName") or c["name"] for c in model["columns"]}
        assert {c["name"] for c in tables[table]["columns"]} <= shown, fqn
