"""The dbt runner's settings and the dbt project's own rules, checked from a parse (no warehouse)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from retailflow_pipeline import dbt as runner
from retailflow_pipeline import paths

# `dbt parse` renders the profile but never connects, so an unreachable address is fine here.
OFFLINE_URL = "postgresql://dbt_user:not-used@127.0.0.1:1/warehouse"


class TestProfileEnv:
    def test_url_parts_become_profile_variables(self):
        env = runner.profile_env("postgresql://warehouse:s3cr%40t%2Fpw@db.example:6543/analytics?sslmode=require")
        assert env == {
            "RETAILFLOW_DBT_HOST": "db.example",
            "RETAILFLOW_DBT_PORT": "6543",
            "RETAILFLOW_DBT_USER": "warehouse",
            "DBT_ENV_SECRET_RETAILFLOW_PASSWORD": "s3cr@t/pw",
            "RETAILFLOW_DBT_DBNAME": "analytics",
            "RETAILFLOW_DBT_SSLMODE": "require",
        }
        assert runner.profile_env("postgresql://u:p@h/w?application_name=x&sslmode=verify%2Dfull") == {
            **runner.profile_env("postgresql://u:p@h/w"), "RETAILFLOW_DBT_SSLMODE": "verify-full"}

    def test_default_port_and_raw_schema(self):
        env = runner.profile_env("postgresql://u:p@localhost/w", raw_schema="landing")
        assert env["RETAILFLOW_DBT_PORT"] == "5432"
        assert env["RETAILFLOW_RAW_SCHEMA"] == "landing"

    @pytest.mark.parametrize("url", ["mysql://u:p@h/db", "postgresql://u:p@h/", "postgresql://h:5432/db"])
    def test_unusable_urls_are_refused(self, url):
        with pytest.raises(ValueError, match="warehouse URL"):
            runner.profile_env(url)


class TestArgs:
    def test_project_profile_and_target_are_added(self, tmp_path):
        assert runner.dbt_args(["build", "--select", "orders"], tmp_path) == [
            "build", "--select", "orders", "--project-dir", str(tmp_path), "--profiles-dir", str(tmp_path),
            "--profile", "retailflow", "--target", "warehouse",
        ]

    def test_explicit_settings_win(self, tmp_path, monkeypatch):
        args = ["docs", "generate", "--project-dir", "x", "--profiles-dir", "y", "--profile=p", "--target", "t"]
        assert runner.dbt_args(args, tmp_path) == args
        assert runner.dbt_args(["run", "-t", "t"], tmp_path)[-2:] == ["--profile", "retailflow"]
        monkeypatch.setenv("DBT_TARGET", "other")
        assert "--target" not in runner.dbt_args(["run"], tmp_path)

    def test_no_command_prints_usage(self, capsys):
        assert runner.main([]) == 2
        assert "usage" in capsys.readouterr().out

    def test_missing_warehouse_url_is_a_clear_error(self, monkeypatch, capsys):
        monkeypatch.delenv("RETAILFLOW_WAREHOUSE_URL", raising=False)
        monkeypatch.delenv("RETAILFLOW_DBT_USER", raising=False)
        with pytest.raises(ValueError, match="RETAILFLOW_WAREHOUSE_URL"):
            runner.run(["build"])
        assert runner.main(["build"]) == 2
        assert "RETAILFLOW_WAREHOUSE_URL is not set" in capsys.readouterr().err


def _clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith(("RETAILFLOW_", "DBT_", "AIRFLOW_CONN_"))}


def _cli_parse(target: Path, log_path: Path, url: str = OFFLINE_URL) -> None:
    """`dbt parse` through the same entry point `make dbt-manifest` uses."""
    done = subprocess.run(
        [sys.executable, "-m", "retailflow_pipeline.dbt", "parse", "--target-path", str(target),
         "--log-path", str(log_path)],
        env={**_clean_env(), "RETAILFLOW_WAREHOUSE_URL": url}, capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.fixture(scope="module")
def parsed(tmp_path_factory) -> Path:
    """The target folder of a parse from the command line."""
    target = tmp_path_factory.mktemp("dbt-target")
    _cli_parse(target, target)
    assert "not-used" not in (target / "dbt.log").read_text(), "the password reached dbt's log"
    return target


@pytest.fixture(scope="module")
def manifest(parsed) -> dict:
    """The project as dbt parses it."""
    return json.loads((parsed / "manifest.json").read_text())


#: the DAG's dbt producer as Cosmos runs it: its profile for the warehouse's Airflow connection
#: (``dbt_group.profile_config``) and the flags it adds (``_generate_dbt_flags``,
#: ``cosmos/operators/local.py``, astronomer-cosmos 1.15.1), here with ``parse`` for ``build``
COSMOS_PARSE = """
import sys
from pathlib import Path
from dbt.cli.main import dbtRunner
from retailflow_pipeline import dbt_group
from retailflow_pipeline.dbt import project_dir

config = dbt_group.profile_config()
with config.ensure_profile() as (profile, env_vars):
    import os
    os.environ.update(env_vars)
    os.environ["RETAILFLOW_RAW_SCHEMA"] = "raw"  # the group's env_vars: load_settings' raw schema
    result = dbtRunner().invoke([
        "parse", "--log-level", "debug", "--target-path", sys.argv[1], "--log-path", sys.argv[2],
        "--project-dir", str(project_dir()), "--profiles-dir", str(Path(profile).parent),
        "--profile", config.profile_name, "--target", config.target_name, "--no-static-parser"])
sys.exit(0 if result.success else 1)
"""


@pytest.mark.parametrize("query", ["", "?sslmode=require"])
def test_the_airflow_producer_parses_partially_after_a_parse_from_the_command_line(parsed, tmp_path, query):
    """``make airflow`` runs ``make dbt-manifest`` first; dbt's partial-parse file it leaves must be valid
    for the first run's producer, which otherwise parses the whole project again (dbt compares the
    connection settings and the ``--profile``/``--target`` arguments): 1.2 s more in a 1M-order run."""
    target = tmp_path / "target"
    if query:  # the same URL with a setting of its own, on both sides
        _cli_parse(target, tmp_path, OFFLINE_URL + query)
    else:
        shutil.copytree(parsed, target)
    env = {**_clean_env(), "AIRFLOW_CONN_RETAILFLOW_WAREHOUSE": OFFLINE_URL + query, "AIRFLOW_HOME": str(tmp_path),
           "AIRFLOW__COSMOS__CACHE_DIR": str(tmp_path / "cosmos"), "DBT_SEND_ANONYMOUS_USAGE_STATS": "false"}
    done = subprocess.run([sys.executable, "-c", COSMOS_PARSE, str(target), str(tmp_path / "producer")], env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    log = (tmp_path / "producer" / "dbt.log").read_text()
    assert "Unable to do partial parsing" not in log, re.findall(r"Unable to do partial parsing[^\n]*", log)
    # nothing parsed again either: a file whose env_var() value changed would be
    assert re.search(r"Partial parsing enabled: 0 files deleted, 0 files added, 0 files changed", log), \
        re.findall(r"Partial parsing[^\n]*", log)


def models(manifest: dict) -> dict[str, dict]:
    return {node["name"]: node for node in manifest["nodes"].values() if node["resource_type"] == "model"}


def attached_tests(manifest: dict, model: str) -> list[tuple[str, str | None, dict]]:
    """(test name, column, kwargs) of every generic test attached to a model."""
    found = []
    for node in manifest["nodes"].values():
        if node["resource_type"] != "test" or "test_metadata" not in node:
            continue
        if node.get("attached_node") == f"model.retailflow.{model}":
            found.append((node["test_metadata"]["name"], node.get("column_name"), node["test_metadata"]["kwargs"]))
    return found


class TestProject:
    def test_layout_has_the_staging_views_and_the_answer_marts(self, manifest):
        found = models(manifest)
        assert {n for n, m in found.items() if m["config"]["materialized"] == "view"} == {
            "stg_retail__customers", "stg_retail__products", "stg_retail__orders",
            "stg_retail__order_items", "stg_retail__store_locations",
        }
        marts = {n for n, m in found.items() if m["config"]["materialized"] == "table"}
        assert marts == {"orders", "customers", "sales_by_region", "top_customers", "product_sales"}
        assert {found[n]["schema"] for n in marts} == {"marts"}

    def test_source_is_read_only_in_staging(self, manifest):
        for name, model in models(manifest).items():
            reads_source = bool(model["sources"])
            assert reads_source == name.startswith("stg_"), name

    def test_sources_are_checked_for_freshness_on_the_extraction_time(self, manifest):
        sources = {s["name"]: s for s in manifest["sources"].values()}
        for name in ("customers", "products", "orders", "order_items"):
            assert sources[name]["loaded_at_field"] == "_airbyte_extracted_at"
            assert sources[name]["freshness"]["error_after"]["count"], name

    def test_every_model_states_its_grain(self, manifest):
        for name, model in models(manifest).items():
            assert re.search(r"\bone row per\b", model["description"], re.I), f"{name}: {model['description']!r}"

    def test_primary_keys_are_unique_and_not_null(self, manifest):
        for name, model in models(manifest).items():
            keys = [c for c, col in model["columns"].items() if col["description"].startswith("Primary key")]
            if name == "sales_by_region":
                combos = [k["columns"] for t, _, k in attached_tests(manifest, name) if t == "unique_combination"]
                assert combos == [["region", "country", "month"]]
                continue
            assert len(keys) == 1, f"{name} documents no primary key"
            tests = {(t, c) for t, c, _ in attached_tests(manifest, name)}
            assert {("unique", keys[0]), ("not_null", keys[0])} <= tests, name

    def test_foreign_keys_have_relationship_tests(self, manifest):
        for name, model in models(manifest).items():
            tests = {(t, c) for t, c, _ in attached_tests(manifest, name)}
            for column, col in model["columns"].items():
                if column.endswith("_id") and not col["description"].startswith("Primary key"):
                    assert ("relationships", column) in tests, f"{name}.{column}"

    def test_a_failing_store_reference_points_to_the_store_quarantine(self, manifest):
        """dbt prints only a failing test's name: the one on orders' store_id names where a store line
        that failed to load went (the ingest itself also counts the orders affected)."""
        names = [node["name"] for node in manifest["nodes"].values()
                 if node["resource_type"] == "test" and node.get("attached_node") == "model.retailflow.stg_retail__orders"
                 and node.get("column_name") == "store_id" and node["test_metadata"]["name"] == "relationships"]
        assert len(names) == 1 and "raw_store_locations_quarantine" in names[0], names

    def test_status_and_channel_have_accepted_values(self, manifest):
        for model in ("stg_retail__orders", "orders"):
            tests = {(t, c) for t, c, _ in attached_tests(manifest, model)}
            assert {("accepted_values", "status"), ("accepted_values", "channel")} <= tests

    def test_amounts_are_checked_non_negative(self, manifest):
        checked = {(m, c) for m in models(manifest) for t, c, _ in attached_tests(manifest, m) if t == "non_negative"}
        for pair in [("stg_retail__order_items", "unit_price"), ("stg_retail__order_items", "quantity"),
                     ("orders", "revenue"), ("sales_by_region", "revenue"), ("product_sales", "revenue"),
                     ("top_customers", "lifetime_revenue")]:
            assert pair in checked

    def test_revenue_rule_is_written_once(self, manifest):
        # The statuses live in dbt_project.yml (var revenue_statuses); SQL reaches them only through is_revenue().
        for name, model in models(manifest).items():
            assert not re.search(r"'(paid|shipped|delivered)'", model["raw_code"]), f"{name} spells out statuses"
        assert "macro.retailflow.is_revenue" in manifest["nodes"]["model.retailflow.orders"]["depends_on"]["macros"]
        marts_reading_revenue = [n for n, m in models(manifest).items() if "is_revenue" in m["raw_code"]]
        assert marts_reading_revenue, "no model applies the revenue rule"

    def test_marts_have_dbt_unit_tests(self, manifest):
        tested = {u["model"] for u in manifest["unit_tests"].values()}
        assert {"sales_by_region", "top_customers", "orders"} <= tested

    def test_builds_offline(self):
        # hub.getdbt.com is out of reach here and in CI: the project must need no `dbt deps`.
        assert not (paths.dbt_project_dir() / "packages.yml").exists()
        assert not (paths.dbt_project_dir() / "dependencies.yml").exists()
