"""What ``make crd`` generates from the catalog (generator/retailflow_generator/catalog.json): the
committed CRD and operator/README.md's contract block must be exactly what the generator writes, so
editing the catalog, the CRD's generated values or the README block alone fails here."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml
from retailflow_operator import catalog, generate

REPO = Path(__file__).resolve().parents[3]
CRD_PATH = REPO / "charts" / "retailflow-operator" / "crds" / "retailpipelines.yaml"
README = REPO / "operator" / "README.md"
CATALOG = REPO / "generator" / "retailflow_generator" / "catalog.json"


def test_the_committed_crd_is_what_the_catalog_generates():
    text = CRD_PATH.read_text()
    assert generate.render_crd(text) == text, "the CRD differs from the catalog: run make crd"


def test_the_readme_contract_block_is_what_the_catalog_generates():
    text = README.read_text()
    assert generate.render_readme(text) == text, "operator/README.md's contract block differs: run make crd"
    block = generate.CONTRACT_BLOCK.search(text).group(2)
    assert json.loads(block) == json.loads(CATALOG.read_text())["airflow"]["variables"]


def test_the_package_reads_the_repositorys_catalog_and_crd():
    """The package's catalog.json and retailpipelines.yaml are the repository's files, not copies."""
    assert catalog.DATA == json.loads(CATALOG.read_text())
    assert generate.CRD_FILE == CRD_PATH.resolve()


def _crd_streams(text: str) -> tuple[list[str], list[dict]]:
    spec = yaml.safe_load(text)["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    items = spec["properties"]["mysql"]["properties"]["streams"]["items"]
    return items["properties"]["name"]["enum"], items["x-kubernetes-validations"]


def test_a_table_added_to_the_catalog_reaches_the_crds_enum_and_rules(monkeypatch):
    tables = dict(catalog.SOURCE_TABLES) | {"returns": ("return_id", "changed_at")}
    monkeypatch.setattr(catalog, "SOURCE_TABLES", tables)
    text = CRD_PATH.read_text()
    new = generate.render_crd(text)
    assert new != text
    enum, rules = _crd_streams(new)
    assert enum == list(tables)
    assert "'returns': 'return_id'" in rules[0]["rule"] and "returns: return_id" in rules[0]["message"]
    assert "'returns': 'changed_at'" in rules[1]["rule"] and "'orders': 'updated_at'" in rules[1]["rule"]
    assert rules[2]["rule"] == "!has(self.cursorField) || self.syncMode.startsWith('incremental')"  # kept


@pytest.mark.parametrize(
    ("written", "edited"),
    [
        ("'orders': 'order_id'", "'orders': 'id'"),
        ("enum: [customers, products, orders, order_items]", "enum: [customers, products, orders]"),
        ("default: 5432", "default: 5433"),
        ("default: retailflow_lake", "default: lake"),
    ],
)
def test_a_generated_value_edited_in_the_crd_alone_is_put_back(written, edited):
    text = CRD_PATH.read_text()
    assert text.count(written) == 1
    assert generate.render_crd(text.replace(written, edited)) == text


def test_the_generator_refuses_a_crd_it_cannot_place_values_in():
    text = CRD_PATH.read_text()
    with pytest.raises(LookupError, match="connectionIds"):
        generate.render_crd(re.sub(r"\n\s+lake:\n\s+type: string\n\s+default: retailflow_lake\n", "\n", text))


def test_the_operator_image_gets_the_real_catalog_and_crd():
    """The image is built from operator/, where catalog.json and retailpipelines.yaml are symlinks out of
    the context: .dockerignore leaves them out, and each is copied from a named build context that
    hack/images.sh points at the folder of the file the symlink names."""
    dockerfile = (REPO / "operator" / "Dockerfile").read_text()
    contexts = dict(re.findall(r'--build-context (\w+)="\$ROOT/([^"]+)"', (REPO / "hack" / "images.sh").read_text()))
    ignored = (REPO / "operator" / ".dockerignore").read_text().split("\n")
    package = REPO / "operator" / "retailflow_operator"
    copied = re.findall(r"^COPY --from=(\w+) (\S+) \./retailflow_operator/(\S+)$", dockerfile, re.M)
    assert sorted(dest for _, _, dest in copied) == ["catalog.json", "retailpipelines.yaml"]
    for context, source, dest in copied:
        assert (package / dest).is_symlink() and f"retailflow_operator/{dest}" in ignored
        assert (REPO / contexts[context] / source).resolve() == (package / dest).resolve()


def test_the_readme_names_the_catalogs_defaults():
    """The prose around the contract block names the default connection ids and the registry variable:
    the catalog's."""
    text = README.read_text()
    listed = re.search(r"Default Airflow connection ids \(`spec.airflow.connectionIds`\): (.*?)\.\n\n", text, re.S)
    assert sorted(re.findall(r"`([^`]+)`", listed.group(1))) == sorted(catalog.DEFAULT_CONNECTION_IDS.values())
    assert f"shared by every pipeline of an Airflow: `{catalog.REGISTRY_VARIABLE}`" in text
