"""The Airflow variables the operator writes match the contract in the catalog's ``airflow.variables``.

The catalog (generator/retailflow_generator/catalog.json) is the one definition of the contract; the
block in operator/README.md is generated from it (``make crd``; tests/unit/operator/test_generated.py).
"""

from __future__ import annotations

import json
import uuid

import pytest
from operator_runner import NS, is_ready, make_pipeline, operator_run
from retailflow_operator import catalog

__all__ = ["make_pipeline", "operator_run"]  # fixtures

TYPES = {"string", "integer", "uuid", "null"}


def documented_contract() -> dict:
    """The contract's shapes, from the catalog (a fresh copy: a test may change it)."""
    return json.loads(json.dumps(catalog.VARIABLES))


def check(shape, value, path: str) -> list[str]:
    """Mismatches between a documented shape and a written value, by path."""
    if isinstance(shape, dict):
        if not isinstance(value, dict):
            return [f"{path}: expected an object, got {value!r}"]
        if list(shape) == ["<role>"]:
            return [e for k, v in value.items() for e in check(shape["<role>"], v, f"{path}.{k}")]
        problems = [f"{path}.{k}: undocumented key" for k in value if k not in shape]
        problems += [f"{path}.{k}: missing" for k in shape if k not in value]
        return problems + [e for k in shape if k in value for e in check(shape[k], value[k], f"{path}.{k}")]
    if isinstance(shape, list):
        if not isinstance(value, list) or not value:
            return [f"{path}: expected a non-empty list, got {value!r}"]
        return [e for i, v in enumerate(value) for e in check(shape[0], v, f"{path}[{i}]")]
    options = [o.strip() for o in shape.split("|")]
    for option in options:
        if option == "string" and isinstance(value, str):
            return []
        if option == "integer" and isinstance(value, int) and not isinstance(value, bool):
            return []
        if option == "null" and value is None:
            return []
        if option == "uuid" and isinstance(value, str):
            try:
                uuid.UUID(value)
                return []
            except ValueError:
                pass
        if option not in TYPES and value == option:
            return []
    return [f"{path}: {value!r} is not {shape}"]


@pytest.mark.parametrize("engine", ["airbyte", "direct"])
def test_written_variables_match_the_documented_contract(kube, airbyte, airflow, operator_run, make_pipeline, engine):
    contract = documented_contract()
    body = make_pipeline(engine=engine)
    prefix = body["spec"]["airflow"]["variablePrefix"]
    kube.apply_rp(body)
    st = kube.wait_rp(NS, "demo", is_ready, timeout=30)["status"]

    written = {k[len(prefix) :]: v for k, v in airflow.variables().items() if k.startswith(prefix)}
    expected = set(contract) - ({"airbyte"} if engine == "direct" else set())
    assert set(written) == expected
    problems = [e for name, raw in written.items() for e in check(contract[name], json.loads(raw), name)]
    assert problems == []

    description = airflow.api("GET", f"/variables/{prefix}pipeline").json()["description"]
    assert f"RetailPipeline {NS}/demo" in description
    pipeline = json.loads(written["pipeline"])
    assert (pipeline["engine"], pipeline["namespace"], pipeline["name"]) == (engine, NS, "demo")
    if engine == "airbyte":
        ids = json.loads(written["airbyte"])
        assert ids["connections"] == st["airbyte"]["connections"]
        assert set(ids["connections"].values()) == set(airbyte.live("connections"))
        assert ids["workspace_id"] == airbyte.workspace_id
    else:
        assert airbyte.writes == [] and st["connectionCount"] == 0


def test_the_checker_catches_a_wrong_shape():
    contract = documented_contract()
    good = {"conn_id": "c", "engine": "postgres", "host": "h", "port": 5432, "database": "d", "schema": "raw"}
    assert check(contract["warehouse"], good, "warehouse") == []
    assert check(contract["warehouse"], good | {"port": "5432"}, "warehouse") == [
        "warehouse.port: '5432' is not integer"
    ]
    assert check(contract["warehouse"], {**good, "extra": 1}, "warehouse") == ["warehouse.extra: undocumented key"]
