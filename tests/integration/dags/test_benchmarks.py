"""`make bench-ingest` and `make bench-scale` still work: each script, run at a small size on the real
servers, exits 0 and prints every ``bench:`` line the READMEs' benchmark tables are made of.
bench-scale also writes its CSV row, and neither leaves a database behind. bench-scale's Airflow
step is followed up to Airflow's start: the manifest it parsed and the dbt project it hands over.
A whole Airflow run would cost about 40 s more of the suite's budget.

Speed is not asserted: benchmarks are not tests, and at these sizes the figures mean nothing. What
is asserted is that the scripts run. ``make bench-scale`` once failed at its Airflow step at every
size, for several commits, and no test noticed: it handed Airflow the manifest's folder as the dbt
project. bench-peers needs the peers' own environment (``make peers-env``: dlt, Sling, pgloader),
and bench-dags, bench-operator and bench-generator are not run here.

The leftover check looks only at the run under test: each script runs through ``LAUNCH``, which
prints every name the script gives a throwaway database (``throwaway_name``), and after the run no
database on the servers may carry that run's random tag. A benchmark or another suite running beside
this test, whose databases come and go, changes nothing."""

from __future__ import annotations

import csv
import json
import os
import re
import subprocess
import sys
import types
from pathlib import Path
from urllib.parse import unquote, urlsplit

import psycopg
import pymysql
import pytest
from support.databases import env_url

pytestmark = [pytest.mark.integration, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[3]
BENCH = REPO / "tests" / "bench"
#: the names benchmarks give their throwaway databases (benchlib.throwaway_databases, bench_ingest.py)
BENCH_DATABASE = re.compile(r"^(retail|warehouse|airflow)_test_(bench|scale_\w+)_[0-9a-f]{8}$")


#: runs a benchmark script (argv[2], its arguments after it) with tests/ (argv[1]) on sys.path and
#: ``support.databases.throwaway_name`` wrapped to print each name it gives on stderr: the benchmarks
#: name their databases with it (benchlib.throwaway_databases, bench_ingest.py), and import it only
#: after this has replaced it
LAUNCH = """
import runpy, sys
sys.path.insert(0, sys.argv[1])
import support.databases as databases
name_of = databases.throwaway_name
def throwaway_name(*args, **kwargs):
    name = name_of(*args, **kwargs)
    print(f"throwaway database: {name}", file=sys.stderr, flush=True)
    return name
databases.throwaway_name = throwaway_name
sys.argv = sys.argv[2:]
runpy.run_path(sys.argv[0], run_name="__main__")
"""


def tagged(tag: str) -> set[str]:
    """The databases on the MySQL and the PostgreSQL server whose names end in ``_<tag>``: a run's
    random tag, so only that run's databases."""
    mysql = urlsplit(env_url("RETAILFLOW_MYSQL_URL"))
    conn = pymysql.connect(host=mysql.hostname, port=mysql.port or 3306, user=unquote(mysql.username or ""),
                           password=unquote(mysql.password or ""))
    try:
        with conn.cursor() as cur:
            cur.execute("show databases")
            found = {r[0] for r in cur.fetchall()}
    finally:
        conn.close()
    with psycopg.connect(env_url("RETAILFLOW_WAREHOUSE_URL"), autocommit=True) as pg:
        found |= {r[0] for r in pg.execute("select datname from pg_database").fetchall()}
    return {name for name in found if name.endswith(f"_{tag}")}


def run_bench(script: str, *args: str, timeout: float) -> tuple[dict[str, str], set[str]]:
    """The script's ``bench:`` lines as {name: value}, and the names of the throwaway databases it
    made; fails with its output if it exits non-zero."""
    done = subprocess.run([sys.executable, "-c", LAUNCH, str(REPO / "tests"), str(BENCH / script), *args], cwd=REPO,
                          env=os.environ.copy(), capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, f"{script} exited {done.returncode}:\n{done.stdout[-4000:]}\n{done.stderr[-4000:]}"
    found = dict(re.findall(r"^bench: (\S+) (.*?)(?:  # .*)?$", done.stdout, re.M))
    return found, set(re.findall(r"^throwaway database: (\S+)$", done.stderr, re.M))


def run_tag(databases: set[str], kind: str, services: set[str]) -> str:
    """The tag of the run's databases, having checked it named one per service, ``<service>_<kind>_<tag>``."""
    tags = {name.rsplit("_", 1)[-1] for name in databases}
    assert len(tags) == 1, f"not one run's databases: {databases}"
    (tag,) = tags
    assert databases == {f"{s}_{kind}_{tag}" for s in services}, databases
    assert all(BENCH_DATABASE.match(name) for name in databases), databases
    return tag


def assert_numbers(found: dict[str, str], names: list[str]) -> None:
    """Every name printed, as a number above 0: the figures checked are durations, row rates, CPU-seconds,
    peak RSS, sizes, row counts and ratios of such figures, none of which a working run measures as 0 (an
    RSS of 0 is an unread measurement, a rate of 0 a load that moved nothing). A figure that may be 0 or
    less, such as ``ingest_index_builds_seconds`` (the difference of two timings), is not passed here."""
    missing = [n for n in names if n not in found]
    assert not missing, f"bench lines missing: {missing}; printed: {sorted(found)}"
    for name in names:
        assert float(found[name]) > 0, f"bench: {name} {found[name]}"


def test_bench_ingest_prints_its_figures_and_drops_its_databases():
    # loads of about half a second: the clock's 10 ms ticks, read at both ends on each core, then move a
    # share of the cores by 0.04 at most (at 3000 orders, a load of 0.1 s, by 0.2)
    found, databases = run_bench("bench_ingest.py", "--orders", "60000", "--customers", "3000", "--products", "300",
                                 "--rounds", "1", "--no-dbt", timeout=300)
    assert_numbers(found, [
        "raw_pipe_rows_per_s", "ingest_full_rows_per_s", "ingest_vs_raw_pipe", "raw_pipe_airbyte_shape_rows_per_s",
        "ingest_vs_raw_pipe_airbyte_shape", "ingest_without_indexes_rows_per_s", "ingest_without_indexes_vs_raw_pipe",
        "ingest_full_with_lake_rows_per_s", "ingest_peak_rss_mb", "ingest_incremental_seconds", "incremental_vs_full",
        "ingest_incremental_cli_wall_seconds", "ingest_cli_outside_sync_seconds", "ingest_incremental_cli_cpu_seconds",
        "raw_pipe_cpu_seconds", "ingest_full_cpu_seconds", "ingest_cpu_vs_raw_pipe", "ingest_cpu_use", "raw_pipe_cpu_use",
        "ingest_vs_raw_pipe_cpu_bound",
    ])
    assert float(found["ingest_full_rows_per_s"]) > 0 and float(found["raw_pipe_rows_per_s"]) > 0
    # shares of the machine's cores, over the windows the CPU-seconds were read in (the ticks' rounding may
    # take them a little over 1 when other suites keep both cores busy)
    assert 0 < float(found["ingest_cpu_use"]) <= 1.1 and 0 < float(found["raw_pipe_cpu_use"]) <= 1.1, found
    # the floor in CPU: the engine cannot be slower than its CPU-seconds spread over every core, so the
    # ratio it would reach at full use is at least the ratio it reached, less the ticks' rounding and the
    # CPU of the engine's start and clean-up, which its own seconds leave out (about a tenth in all when
    # other suites keep both cores busy)
    assert float(found["ingest_vs_raw_pipe_cpu_bound"]) >= 0.8 * float(found["ingest_vs_raw_pipe"]), found
    assert tagged(run_tag(databases, "test_bench", {"retail", "warehouse"})) == set(), "databases left behind"


def test_bench_scale_runs_every_step_and_writes_its_csv(tmp_path):
    """Every step but the Airflow run, which the next test covers up to its start (a whole Airflow run
    here would take about 40 s more of the suite's budget)."""
    table = tmp_path / "scale.csv"
    found, databases = run_bench("bench_scale.py", "--scales", "10k", "--no-airflow", "--csv", str(table), timeout=600)
    steps = ["generator", "ingest_full", "ingest_incr", "dbt_build", "audit"]
    assert_numbers(found, [f"scale_10k_{s}_{m}" for s in steps for m in ("s", "rss_mb")]
                   + ["scale_10k_warehouse_mb", "scale_10k_incr_rows"])
    assert int(found["scale_10k_source_rows"]) > 10_000
    assert int(found["scale_10k_incr_rows"]) > 0  # the tick added or changed rows, and the sync saw them
    with table.open() as f:
        rows = list(csv.DictReader(f))
    assert [r["size"] for r in rows] == ["10k"]
    empty = [k for k, v in rows[0].items() if v in ("", None) and not k.startswith("dag_")]
    assert not empty, f"empty columns in {table.name}: {empty}"
    assert float(rows[0]["dbt_build_s"]) == pytest.approx(float(found["scale_10k_dbt_build_s"]), abs=0.01)
    assert tagged(run_tag(databases, "test_scale_10k", {"retail", "warehouse", "airflow"})) == set(), \
        "databases left behind"


def test_bench_scale_starts_airflow_on_the_dbt_project_its_manifest_was_parsed_from(tmp_path, monkeypatch):
    """bench_scale's Airflow step up to the start of Airflow: the manifest it parsed exists, and the
    project it hands Airflow is a dbt project (Cosmos reads ``dbt_project.yml`` from it). Taking the
    project from the manifest's folder instead made every size fail at this step, once."""
    sys.path.insert(0, str(BENCH))
    try:
        import bench_scale
    finally:
        sys.path.remove(str(BENCH))
    handed = {}

    class Started(Exception):
        pass

    def start_airflow(work, mysql_url, warehouse_url, meta_url, manifest, project):
        handed.update(manifest=Path(manifest), project=Path(project))
        raise Started

    monkeypatch.setattr(bench_scale, "start_airflow", start_airflow)
    databases = types.SimpleNamespace(mysql_url="mysql://unused/", warehouse_url=env_url("RETAILFLOW_WAREHOUSE_URL"),
                                      extra={"airflow": "postgresql://unused/"})
    with pytest.raises(Started):
        bench_scale.dag_run("10k", tmp_path, databases)
    assert json.loads(handed["manifest"].read_text())["metadata"]["project_name"] == "retailflow"
    assert (handed["project"] / "dbt_project.yml").is_file(), handed
