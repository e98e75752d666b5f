"""The OpenMetadata server the chart deploys and every ingestion client RetailFlow runs are the same
major.minor (the client refuses a server of another one), and every remote pin says where it was
verified. Read from the files themselves: Chart.yaml, values.yaml, hack/envs/openmetadata/uv.lock
and the OpenMetadata stand-in the governance tests run the client against."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import yaml

from support.openmetadata_standin import SERVER_VERSION

REPO = Path(__file__).resolve().parents[3]
CHART = REPO / "charts" / "retailflow"


def _major_minor(version: str) -> tuple[int, int]:
    major, minor = re.match(r"(\d+)\.(\d+)", version).groups()
    return int(major), int(minor)


def _dependency(name: str) -> dict:
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    (dep,) = [d for d in chart["dependencies"] if d["name"] == name]
    return dep


def test_the_ingestion_clients_match_the_openmetadata_server_the_chart_deploys():
    server = _dependency("openmetadata")["version"]  # the openmetadata chart's version is its appVersion
    lock = tomllib.loads((REPO / "hack" / "envs" / "openmetadata" / "uv.lock").read_text())
    (client,) = [p["version"] for p in lock["package"] if p["name"] == "openmetadata-ingestion"]
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    job_tag = values["jobs"]["openmetadataIngestion"]["image"]["tag"]

    clients = {"hack/envs/openmetadata/uv.lock (the Airflow image and the tests)": client,
               "jobs.openmetadataIngestion.image.tag": job_tag}
    assert {where: _major_minor(v) for where, v in clients.items()} == dict.fromkeys(clients, _major_minor(server))
    assert SERVER_VERSION == server, "the OpenMetadata stand-in must answer the version the chart deploys"


def test_every_remote_pin_cites_the_index_it_was_checked_in():
    lines = (CHART / "Chart.yaml").read_text().splitlines()
    for number, line in enumerate(lines):
        if line.strip().startswith("- name:"):
            block = lines[number:number + 5]
            if not any(re.search(r"repository:\s*https?://", b) for b in block):
                continue
            comment = []
            for above in reversed(lines[:number]):
                if not above.strip().startswith("#"):
                    break
                comment.insert(0, above)
            assert "index.yaml" in " ".join(comment), f"{line.strip()}: no comment citing the index it was checked in"
