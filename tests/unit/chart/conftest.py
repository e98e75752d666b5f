"""Fixtures of the chart tests; the render harness itself is support.helm_render."""

from __future__ import annotations

import pytest
import yaml

from support.helm_render import CRD_FILE, REAL_SUBCHARTS, UMBRELLA, Rendered, render


def pytest_report_header() -> str:
    real = ", ".join(REAL_SUBCHARTS) or "none: every upstream chart is a stand-in"
    return f"chart render: real upstream charts in charts/retailflow/charts/: {real}"


@pytest.fixture(scope="session")
def crd() -> dict:
    assert CRD_FILE.exists(), f"{CRD_FILE} is missing"
    return yaml.safe_load(CRD_FILE.read_text())


@pytest.fixture(scope="session")
def crd_schema(crd) -> dict:
    (version,) = [v for v in crd["spec"]["versions"] if v["name"] == "v1alpha1"]
    return version["schema"]["openAPIV3Schema"]


@pytest.fixture(scope="session")
def values() -> dict:
    return yaml.safe_load((UMBRELLA / "values.yaml").read_text())


@pytest.fixture(scope="session")
def defaults() -> Rendered:
    return render()
