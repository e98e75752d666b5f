"""The DAGs read exactly the Airflow variables the operator writes (the contract: ``airflow.variables``
of the catalog, ``generator/retailflow_generator/catalog.json``).

Both sides: every key of the catalog's contract must be read by ``retailflow_pipeline.settings.parse``,
and nothing else; and the variables that the operator's builder produces, run in the operator's own
environment, parse into the settings the spec describes.
"""

from __future__ import annotations

import copy
import json
import re
import subprocess
import uuid
from datetime import datetime, timezone
from pathlib import Path

import pytest

from retailflow_pipeline import catalog, schedules, settings

REPO = Path(__file__).resolve().parents[3]
OPERATOR_PYTHON = REPO / "operator" / ".venv" / "bin" / "python"
EXAMPLE = REPO / "operator" / "examples" / "retailpipeline.yaml"
HELPER = REPO / "tests" / "integration" / "dags" / "operator_variables.py"


def documented_contract() -> dict:
    return copy.deepcopy(catalog.VARIABLE_SHAPES)


def leaf_paths(shape, prefix: str) -> set[str]:
    if isinstance(shape, dict):
        if list(shape) == ["<role>"]:
            return {prefix}
        return {p for k, v in shape.items() for p in leaf_paths(v, f"{prefix}.{k}")}
    if isinstance(shape, list):
        return {prefix} | leaf_paths(shape[0], prefix)
    return {prefix}


def example_value(shape):
    """A value of the documented shape: the first option of each ``a | b``."""
    if isinstance(shape, dict):
        if list(shape) == ["<role>"]:
            return {"mysql-to-warehouse": str(uuid.uuid4())}
        return {k: example_value(v) for k, v in shape.items()}
    if isinstance(shape, list):
        return [example_value(shape[0])]
    first = shape.split("|")[0].strip()
    return {"string": "x", "integer": 1, "uuid": str(uuid.uuid4()), "null": None}.get(first, first)


def operator_variables(*args: str) -> dict:
    if not OPERATOR_PYTHON.exists():
        pytest.skip("the operator's venv is missing: run `make sync`")
    out = subprocess.run([str(OPERATOR_PYTHON), str(HELPER), str(EXAMPLE), *args], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout)


def test_every_documented_key_is_read_and_nothing_else():
    contract = documented_contract()
    values = {name: example_value(shape) for name, shape in contract.items()}
    values["pipeline"]["engine"] = "airbyte"
    read: set[str] = set()
    settings.parse(values, "p_", read=read)
    documented = {p for name, shape in contract.items() for p in leaf_paths(shape, name)}
    assert read == documented


@pytest.mark.parametrize("path", ["pipeline.engine", "mysql.port", "warehouse.schema", "airbyte.workspace_id",
                                  "mysql.streams", "lake.format"])
def test_a_wrong_or_missing_key_is_named(path):
    contract = documented_contract()
    values = {name: example_value(shape) for name, shape in contract.items()}
    values["pipeline"]["engine"] = "airbyte"
    name, key = path.split(".", 1)
    values[name][key] = {"mysql.port": "3306", "airbyte.workspace_id": "not-a-uuid", "mysql.streams": []}.get(path, 7)
    with pytest.raises(settings.SettingsError, match=re.escape(key.split(".")[0])):
        settings.parse(values, "p_")
    del values[name][key]
    with pytest.raises(settings.SettingsError, match=f"{key} is missing"):
        settings.parse(values, "p_")


def test_what_the_operator_writes_for_engine_airbyte_parses():
    ids = {"connections": {"mysql-to-warehouse": str(uuid.uuid4()), "store-locations-to-lake": str(uuid.uuid4())},
           "sources": {"mysql": str(uuid.uuid4())}, "destinations": {"warehouse": str(uuid.uuid4())}}
    ids_file = Path(__import__("tempfile").mkstemp(suffix=".json")[1])
    ids_file.write_text(json.dumps(ids))
    written = operator_variables("--engine", "airbyte", "--ids", str(ids_file))
    ids_file.unlink()
    prefix = "retailflow_"
    s = settings.parse({k[len(prefix):]: json.dumps(v) for k, v in written.items()}, prefix)
    assert (s.namespace, s.name, s.engine, s.schedule, s.sync_trigger) == ("retailflow", "retail", "airbyte",
                                                                          "0 2 * * *", "airflow")
    assert [st.name for st in s.streams] == ["customers", "products", "orders", "order_items"]
    assert s.mysql == settings.Endpoint("retailflow_mysql", "retailflow-mysql", 3306, "retail")
    assert s.warehouse.conn_id == "retailflow_warehouse" and s.raw_schema == "raw"
    assert s.airbyte.connections == ids["connections"] and s.airbyte.conn_id == "retailflow_airbyte"
    assert s.store_locations.s3_key == "store_locations/store_locations.csv"
    assert settings.PipelineSettings.from_dict(json.loads(json.dumps(s.to_dict()))) == s


def test_what_the_operator_writes_for_engine_direct_parses_with_its_own_prefix():
    written = operator_variables("--engine", "direct", "--prefix", "shop2_")
    assert all(k.startswith("shop2_") for k in written)
    s = settings.parse({k[len("shop2_"):]: v for k, v in written.items()}, "shop2_")
    assert s.engine == "direct" and s.airbyte is None and s.prefix == "shop2_"


def test_load_falls_back_to_local_defaults_without_variables():
    s = settings.load("retailflow_", get=lambda key: None)
    assert s.origin == "local defaults" and s.engine == "direct"
    assert s.mysql.conn_id == "retailflow_mysql" and s.warehouse.conn_id == "retailflow_warehouse"


def test_each_pipeline_gets_its_own_runs_on_its_own_schedule():
    """Two RetailPipelines with their own prefixes and schedules: one run each, at its own latest tick."""
    a = operator_variables("--engine", "direct", "--prefix", "shop_a_", "--set", "schedule=0 2 * * *")
    b = operator_variables("--engine", "direct", "--prefix", "shop_b_", "--set", "schedule=*/15 * * * *")
    variables = {k: json.dumps(v) for k, v in (a | b).items()}
    now = datetime(2026, 3, 4, 10, 7, 30, tzinfo=timezone.utc)
    runs = schedules.due_runs(now, {"RETAILFLOW_PIPELINE_PREFIXES": "shop_a_,shop_b_,unused_"}, variables.get)
    assert runs == [
        {"trigger_run_id": "scheduled__shop_a__2026-03-04T02:00:00Z", "logical_date": "2026-03-04T02:00:00+00:00",
         "conf": {"variable_prefix": "shop_a_"}},
        {"trigger_run_id": "scheduled__shop_b__2026-03-04T10:00:00Z", "logical_date": "2026-03-04T10:00:00+00:00",
         "conf": {"variable_prefix": "shop_b_"}},
    ]
    # The same tick asks for the same run id again (an existing run is left alone, not doubled).
    assert schedules.due_runs(now.replace(minute=9), {"RETAILFLOW_PIPELINE_PREFIXES": "shop_a_,shop_b_"},
                              variables.get) == runs
    with pytest.raises(settings.SettingsError, match="not a cron expression"):
        schedules.latest_tick("every day", now)


def test_pipelines_the_operator_registers_are_scheduled_without_configuring_their_prefixes():
    """A second RetailPipeline needs no change to Airflow's environment: the operator lists every
    prefix in the ``retailpipelines`` variable, and the schedules read it beside the default prefix."""
    a = operator_variables("--engine", "direct", "--prefix", "shop_a_", "--set", "schedule=0 2 * * *")
    b = operator_variables("--engine", "direct", "--prefix", "shop_b_", "--set", "schedule=*/15 * * * *")
    variables = {k: json.dumps(v) for k, v in (a | b).items()}
    variables[schedules.REGISTRY_VARIABLE] = json.dumps({"shop_a_": "retail/a", "shop_b_": "retail/b"})
    now = datetime(2026, 3, 4, 10, 7, 30, tzinfo=timezone.utc)
    runs = schedules.due_runs(now, {}, variables.get)
    assert [r["conf"]["variable_prefix"] for r in runs] == ["shop_a_", "shop_b_"]
    assert runs[1]["trigger_run_id"] == "scheduled__shop_b__2026-03-04T10:00:00Z"
    # a registry someone broke by hand schedules only what the environment names, and says why
    variables[schedules.REGISTRY_VARIABLE] = "[not, json"
    assert schedules.due_runs(now, {"RETAILFLOW_PIPELINE_PREFIXES": "shop_b_"}, variables.get) == runs[1:]


def test_local_mode_runs_on_the_schedule_make_schedule_sets():
    """Without a RetailPipeline nothing is scheduled, unless `make schedule` wrote the local cron."""
    now = datetime(2026, 3, 4, 10, 7, 30, tzinfo=timezone.utc)
    assert schedules.due_runs(now, {}, {}.get) == []
    local = {schedules.LOCAL_SCHEDULE_KEY: "0 * * * *"}
    assert schedules.due_runs(now, {}, local.get) == [
        {"trigger_run_id": "scheduled__retailflow__2026-03-04T10:00:00Z",
         "logical_date": "2026-03-04T10:00:00+00:00", "conf": {"variable_prefix": "retailflow_"}}]
    # a RetailPipeline's own schedule wins over the local one
    written = {k: json.dumps(v) for k, v in operator_variables("--engine", "direct", "--set", "schedule=0 2 * * *").items()}
    runs = schedules.due_runs(now, {}, (written | local).get)
    assert [r["trigger_run_id"] for r in runs] == ["scheduled__retailflow__2026-03-04T02:00:00Z"]
