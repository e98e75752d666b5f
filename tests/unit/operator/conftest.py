"""Shared fixtures of the operator unit tests (no server of any kind)."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[3]
CRD_PATH = REPO / "charts" / "retailflow-operator" / "crds" / "retailpipelines.yaml"
EXAMPLES = sorted((REPO / "operator" / "examples").glob("*.yaml"))


def load_docs(path: Path) -> list[dict]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


@pytest.fixture(scope="session")
def crd() -> dict:
    return load_docs(CRD_PATH)[0]


@pytest.fixture(scope="session")
def schema(crd: dict) -> dict:
    return crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]


@pytest.fixture()
def example() -> dict:
    """The default example RetailPipeline (operator/examples/retailpipeline.yaml), a fresh copy."""
    docs = load_docs(REPO / "operator" / "examples" / "retailpipeline.yaml")
    return copy.deepcopy(next(d for d in docs if d.get("kind") == "RetailPipeline"))


@pytest.fixture()
def secrets() -> dict:
    return {
        "mysql": {"username": "retail", "password": "mysql-pw-1"},
        "warehouse": {"username": "warehouse", "password": "wh-pw-1"},
        "lake": {"access_key_id": "lake-key", "secret_access_key": "lake-secret-1"},
        "airbyte": {"client_id": "cid", "client_secret": "csecret"},
        "airflow": {"username": "admin", "password": "af-pw"},
    }
