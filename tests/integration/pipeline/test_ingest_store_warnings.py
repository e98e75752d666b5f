"""What the store CSV does to the dashboards is said by the ingest: orders that name a store whose line
was quarantined (dbt's relationships test would fail and skip the marts), and a region or country
that the last load did not have (a new bar on "sales by region")."""

from __future__ import annotations

from pathlib import Path

import pytest
from ingest_support import seed

from retailflow_ingest.engine import run

pytestmark = pytest.mark.integration

HEADER = "store_id,name,city,region,country,latitude,longitude,opened_at\n"
STORES = [
    "1,Central,Zürich,Europe,CH,47.376887,8.541694,2019-04-01\n",
    "2,Harbour,Hamburg,Europe,DE,53.551086,9.993682,2020-06-15\n",
    "3,Bay,Boston,North America,US,42.36,-71.06,2020-06-15\n",
    "4,Loop,Chicago,North America,US,41.88,-87.63,2021-01-01\n",
    "5,Park,Lyon,Europe,FR,45.764,4.8357,2021-02-01\n",
]


def write(path: Path, lines: list[str]) -> Path:
    path.write_text(HEADER + "".join(lines))
    return path


def test_quarantined_stores_still_named_by_orders_and_new_regions_are_reported(mysql_url, warehouse_url, tmp_path):
    seed(mysql_url)  # store orders name stores 1 + order_id % 5: 100 orders each
    first = run(mysql_url, warehouse_url, stores_csv=write(tmp_path / "a.csv", STORES))
    assert first.warnings == []

    edited = [*STORES[:2], "3,Bay,Bos\n", *STORES[3:], "6,Lagoon,Poseidonis,Atlantis,AT,10,10,2024-01-01\n"]
    second = run(mysql_url, warehouse_url, stores_csv=write(tmp_path / "b.csv", edited))

    assert second.streams["store_locations"].quarantined == 1
    assert "line 7: region 'Atlantis' is new (not in the last load)" in "\n".join(second.warnings)
    assert "line 7: country 'AT' is new" in "\n".join(second.warnings)
    [orphans] = [w for w in second.warnings if "name a store that is not loaded" in w]
    assert "100 order(s) name a store that is not loaded: store 3 (100 orders; quarantined, line 4:" in orphans
    assert '"raw"."store_locations_quarantine"' in orphans and "stg_retail__orders.store_id" in orphans
    assert "warning: store_locations: 100 order(s)" in second.summary()

    # a store dropped from the file (not quarantined) is named too; the full file again: no store missing
    third = run(mysql_url, warehouse_url, stores_csv=write(tmp_path / "c.csv", STORES[:4]))
    assert any("store 5 (100 orders; not in the CSV)" in w for w in third.warnings), third.warnings
    fourth = run(mysql_url, warehouse_url, stores_csv=write(tmp_path / "d.csv", STORES))
    assert not any("not loaded" in w for w in fourth.warnings), fourth.warnings


def test_the_cli_finds_the_store_csv_from_any_working_directory(mysql_url, warehouse_url, tmp_path):
    """`retailflow-ingest` run from another folder read `data/store_locations.csv` relative to it."""
    import os
    import subprocess
    import sys

    seed(mysql_url)
    env = {k: v for k, v in os.environ.items() if k != "RETAILFLOW_DATA_DIR"}
    env.update(RETAILFLOW_MYSQL_URL=mysql_url, RETAILFLOW_WAREHOUSE_URL=warehouse_url)
    done = subprocess.run([sys.executable, "-m", "retailflow_ingest.cli", "--no-lake"], cwd=tmp_path,
                          env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "store_locations: " in done.stdout and "loaded" in done.stdout
