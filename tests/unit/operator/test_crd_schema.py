"""The RetailPipeline CRD: its own validity, the example custom resources, and invalid ones it must reject.

The emulated Kubernetes API does no admission validation, so custom resources are validated here
against the CRD's openAPIV3Schema with jsonschema (what the real API server enforces).
"""

from __future__ import annotations

import copy
import re
from pathlib import Path

import jsonschema
import kubernetes_validate
import pytest
import yaml

REPO = Path(__file__).resolve().parents[3]
CRD_PATH = REPO / "charts" / "retailflow-operator" / "crds" / "retailpipelines.yaml"
EXAMPLES = sorted((REPO / "operator" / "examples").glob("*.yaml"))


def load_docs(path: Path) -> list[dict]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def violations(schema: dict, obj: dict) -> list[str]:
    """Dotted paths of the offending fields (a missing required field is named by its own path)."""
    out = []
    for err in jsonschema.Draft202012Validator(schema).iter_errors(obj):
        path = ""
        for part in err.absolute_path:
            path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else part)
        if err.validator == "required":
            missing = re.match(r"'([^']+)' is a required property", err.message).group(1)
            path = f"{path}.{missing}" if path else missing
        out.append(path)
    return out


def test_crd_is_a_valid_kubernetes_1_35_manifest():
    (crd,) = load_docs(CRD_PATH)
    kubernetes_validate.validate(crd, "1.35.0", strict=True)


def test_crd_names_and_printer_columns(crd):
    names = crd["spec"]["names"]
    assert (crd["metadata"]["name"], names["kind"], names["shortNames"]) == (
        "retailpipelines.retailflow.io",
        "RetailPipeline",
        ["rp"],
    )
    (version,) = crd["spec"]["versions"]
    assert version["name"] == "v1alpha1" and version["subresources"] == {"status": {}}
    assert [c["name"] for c in version["additionalPrinterColumns"]] == ["Phase", "Connections", "Ready", "Age"]


def test_schema_is_structural(schema):
    """Every node declares a type (or preserves unknown fields), as the API server requires."""

    def walk(node, path):
        if not node.get("x-kubernetes-preserve-unknown-fields"):
            assert "type" in node, f"{path} has no type"
        for key, child in (node.get("properties") or {}).items():
            walk(child, f"{path}.{key}")
        if isinstance(node.get("items"), dict):
            walk(node["items"], f"{path}[]")
        if isinstance(node.get("additionalProperties"), dict):
            walk(node["additionalProperties"], f"{path}{{}}")

    walk(schema, "")


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_every_example_is_valid(schema, path):
    docs = [d for d in load_docs(path) if d.get("kind") == "RetailPipeline"]
    assert docs, f"{path.name} holds no RetailPipeline"
    for doc in docs:
        assert violations(schema, doc) == []


def test_examples_hold_no_literal_secret():
    for path in EXAMPLES:
        for doc in load_docs(path):
            assert doc.get("kind") != "Secret" or not (doc.get("data") or doc.get("stringData")), path.name
        text = path.read_text()
        assert not re.search(r"password:\s*\S", text, re.I), f"{path.name} holds a literal password"


def test_default_example_lists_the_project_streams(example):
    """The example lists every table of the catalog with its own cursor and key."""
    from retailflow_operator.catalog import SOURCE_TABLES

    streams = {s["name"]: (s["cursorField"], s["primaryKey"]) for s in example["spec"]["mysql"]["streams"]}
    assert streams == {name: (cursor, pk) for name, (pk, cursor) in SOURCE_TABLES.items()}


def _set(obj: dict, dotted: str, value) -> None:
    parts = re.findall(r"[^.\[\]]+", dotted)
    node = obj
    for part in parts[:-1]:
        node = node[int(part)] if part.isdigit() else node[part]
    last = parts[-1]
    if value is DELETE:
        del node[int(last) if last.isdigit() else last]
    else:
        node[int(last) if last.isdigit() else last] = value


DELETE = object()
# What the OpenAPI schema alone refuses; the CEL rules (store locations, schedule, keys, cursors) are
# evaluated by the emulated API server in tests/unit/support/test_admission_rules.py.
INVALID = [
    ("spec.mysql.port", 70000, "spec.mysql.port"),
    ("spec.mysql.streams[0].syncMode", "sometimes", "spec.mysql.streams[0].syncMode"),
    ("spec.mysql.streams", [], "spec.mysql.streams"),
    ("spec.mysql.streams[1].primaryKey", "Product ID", "spec.mysql.streams[1].primaryKey"),
    ("spec.warehouse", DELETE, "spec.warehouse"),
    ("spec.warehouse.credentialsSecretRef.name", DELETE, "spec.warehouse.credentialsSecretRef.name"),
    ("spec.warehouse.schema", "Raw Data", "spec.warehouse.schema"),
    ("spec.lake.format", "orc", "spec.lake.format"),
    ("spec.lake.bucket", "Retail_Lake", "spec.lake.bucket"),
    ("spec.lake.endpoint", "minio:9000", "spec.lake.endpoint"),
    ("spec.airbyte.workspaceId", "default", "spec.airbyte.workspaceId"),
    ("spec.airflow.apiUrl", "http://airflow:8080/", "spec.airflow.apiUrl"),
    ("spec.airflow.variablePrefix", "retail flow", "spec.airflow.variablePrefix"),
    ("spec.suspend", "yes", "spec.suspend"),
    ("spec.deletionPolicy", "Destroy", "spec.deletionPolicy"),
    ("spec.engine", "spark", "spec.engine"),
]


@pytest.mark.parametrize(("field", "value", "offending"), INVALID, ids=[f"{c[0]}" for c in INVALID])
def test_invalid_resource_is_rejected_naming_the_field(schema, example, field, value, offending):
    bad = copy.deepcopy(example)
    _set(bad, field, value)
    assert offending in violations(schema, bad)


def test_status_phase_is_an_enum(schema, example):
    example["status"] = {"phase": "Running"}
    assert violations(schema, example) == ["status.phase"]


def test_readme_examples_are_valid(schema):
    """The RetailPipeline shown in the root and operator READMEs is one the API server would accept."""
    shown = 0
    for readme in (REPO / "README.md", REPO / "operator" / "README.md"):
        for block in re.findall(r"```yaml\n(.*?)```", readme.read_text(), re.S):
            for doc in yaml.safe_load_all(block.replace("<workspace uuid>", "5ae6b09b-fdec-41af-aaf7-7d94cfc33ef6")):
                if isinstance(doc, dict) and doc.get("kind") == "RetailPipeline":
                    assert violations(schema, doc) == [], f"{readme.name}: {violations(schema, doc)}"
                    shown += 1
    assert shown >= 1


def test_the_operator_knows_exactly_the_fields_the_crd_declares(schema):
    """Every field the committed CRD declares, at any depth, is one the operator knows (none reported in
    KnownFields), and a field beside it that the CRD does not declare is reported with its path."""
    from retailflow_operator.spec_fields import unknown_fields

    def objects(node, path):
        """(path, object schema) of every object node with properties; a list's items as its [0]."""
        if node.get("type") == "array":
            yield from objects(node["items"], path + [0])
        elif "properties" in node:
            yield path, node
            for key, child in node["properties"].items():
                yield from objects(child, path + [key])

    def spec_at(path, leaf):
        spec = leaf
        for part in reversed(path):
            spec = [spec] if part == 0 else {part: spec}
        return spec

    checked = 0
    for path, node in objects(schema["properties"]["spec"], []):
        declared = {key: "x" for key in node["properties"]}
        assert unknown_fields(spec_at(path, declared)) == [], path
        typo = spec_at(path, declared | {"notAField": "x"})
        where = "spec" + "".join("[0]" if p == 0 else f".{p}" for p in path)
        assert unknown_fields(typo) == [f"{where}.notAField"]
        checked += 1
    assert checked >= 10


def test_unknown_fields_are_named_with_their_path():
    from retailflow_operator.spec_fields import known_fields_condition, unknown_fields

    spec = {"deletionPolicyy": "Retain", "mysql": {"streams": [{"name": "orders", "primarykey": "order_id"}]}}
    assert unknown_fields(spec) == ["spec.deletionPolicyy", "spec.mysql.streams[0].primarykey"]
    status, reason, message = known_fields_condition(unknown_fields(spec))
    assert (status, reason) == ("False", "UnknownFields") and "spec.deletionPolicyy" in message
    assert known_fields_condition(unknown_fields({"deletionPolicy": "Retain"}))[0] == "True"
