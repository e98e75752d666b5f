"""The dags packages' shared facts and files: the catalog reaches a built wheel and the image as the
file itself (in the checkout each package only links to ``generator/retailflow_generator/catalog.json``),
paths follow ``RETAILFLOW_HOME`` with the specific variables winning, and an optional step without its
peer is skipped with the reason."""

from __future__ import annotations

import shlex
import subprocess
import zipfile
from pathlib import Path

import pytest

from retailflow_pipeline import paths, tasks

REPO = Path(__file__).resolve().parents[3]
CATALOG = REPO / "generator" / "retailflow_generator" / "catalog.json"
PACKAGES = ("retailflow_pipeline", "retailflow_ingest")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> zipfile.ZipFile:
    out = tmp_path_factory.mktemp("wheel")
    done = subprocess.run([str(REPO / ".tools" / "bin" / "uv"), "build", "--wheel", "--quiet", "--out-dir", str(out),
                           str(REPO / "dags")], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    (built,) = out.glob("*.whl")
    with zipfile.ZipFile(built) as archive:
        yield archive


@pytest.mark.parametrize("package", PACKAGES)
def test_the_wheel_holds_the_catalog_itself_in_each_package(wheel, package):
    assert wheel.read(f"{package}/catalog.json") == CATALOG.read_bytes()


def test_the_wheel_installs_the_ingestion_engine_as_its_own_package_with_its_cli(wheel):
    names = set(wheel.namelist())
    assert {"retailflow_ingest/cli.py", "retailflow_ingest/engine.py", "retailflow_ingest/LAKE_README.md"} <= names
    assert not any(n.startswith("retailflow_pipeline/ingest/") for n in names)
    (entry_points,) = [n for n in names if n.endswith(".dist-info/entry_points.txt")]
    assert "retailflow-ingest = retailflow_ingest.cli:entry" in wheel.read(entry_points).decode()


@pytest.mark.parametrize("package", PACKAGES)
def test_the_image_gets_the_catalog_file_where_the_links_are(package):
    """In the build context the links would point nowhere (generator/ lands elsewhere in the image): the
    context leaves them out and the Dockerfile copies the file itself into each package."""
    link = REPO / "dags" / package / "catalog.json"
    assert link.is_symlink() and link.resolve() == CATALOG.resolve()
    ignored = [line.strip() for line in (REPO / ".dockerignore").read_text().splitlines()]
    assert f"dags/{package}/catalog.json" in ignored
    dockerfile = (REPO / "Dockerfile").read_text().replace("\\\n", " ")
    copies = [shlex.split(line)[1:] for line in dockerfile.splitlines() if line.startswith("COPY ")]
    sources_by_destination = {words[-1]: words[:-1] for words in copies}
    assert sources_by_destination[f"/opt/airflow/dags/{package}/"] == ["--chown=airflow:0",
                                                                       "generator/retailflow_generator/catalog.json"]
    # after the dags/ folder, or that copy would not be the last word
    assert max(i for i, words in enumerate(copies) if words[-1] == f"/opt/airflow/dags/{package}/") > \
        max(i for i, words in enumerate(copies) if words[-1] == "/opt/airflow/dags/")


def test_paths_are_below_retailflow_home(tmp_path):
    env = {"RETAILFLOW_HOME": str(tmp_path)}
    assert paths.dbt_project_dir(env) == tmp_path / "dbt"
    assert paths.dbt_manifest(env) == tmp_path / "dbt" / "target" / "manifest.json"
    assert paths.stores_csv(env) == tmp_path / "data" / "store_locations.csv"
    assert paths.local_lake_dir(env) == tmp_path / ".lake"
    assert paths.superset_bundle_dir(env) == tmp_path / "charts" / "retailflow" / "files" / "superset" / "bundle"
    assert paths.openmetadata_workflows_dir(env) == tmp_path / "charts" / "retailflow" / "files" / "openmetadata"
    assert paths.openmetadata_metadata_bin(env) == tmp_path / ".tools" / "openmetadata" / "bin" / "metadata"


def test_a_specific_variable_wins_over_the_home(tmp_path):
    env = {"RETAILFLOW_HOME": str(tmp_path), "RETAILFLOW_DBT_PROJECT_DIR": "/srv/dbt", "RETAILFLOW_DATA_DIR": "/srv/data",
           "RETAILFLOW_DBT_MANIFEST": "/srv/manifest.json", "RETAILFLOW_SUPERSET_BUNDLE": "/srv/bundle",
           "RETAILFLOW_OPENMETADATA_WORKFLOWS": "/srv/workflows"}
    assert paths.dbt_project_dir(env) == Path("/srv/dbt")
    assert paths.dbt_target_dir(env) == Path("/srv/dbt/target")
    assert paths.dbt_manifest(env) == Path("/srv/manifest.json")
    assert paths.stores_csv(env) == Path("/srv/data/store_locations.csv")
    assert paths.superset_bundle_dir(env) == Path("/srv/bundle")
    assert paths.openmetadata_workflows_dir(env) == Path("/srv/workflows")


def test_without_a_home_the_paths_are_the_checkouts_from_any_working_directory(tmp_path):
    code = "from retailflow_pipeline import paths; print(paths.dbt_project_dir({}), paths.stores_csv({}))"
    done = subprocess.run([str(REPO / "dags" / ".venv" / "bin" / "python"), "-c", code], cwd=tmp_path,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == [str(REPO / "dbt"), str(REPO / "data" / "store_locations.csv")]


@pytest.mark.parametrize("step, reason", [(tasks.refresh_dashboards, "RETAILFLOW_SUPERSET_URL is not set"),
                                          (tasks.run_governance, "RETAILFLOW_OPENMETADATA_URL is not set")])
def test_an_optional_step_without_its_peer_is_skipped_saying_why(step, reason):
    with pytest.raises(tasks.StepSkipped, match=reason):
        step({})


def test_the_secrets_an_optional_step_reads_from_its_environment_are_masked_in_the_task_log():
    """Governance and the dashboards' refresh read passwords and tokens from the environment, where
    Airflow's log masker does not look; a peer's answer or a workflow's output quoting one would show
    it in the task log. The step registers them first: the log shows ``***`` instead."""
    from airflow.sdk._shared.secrets_masker import redact

    env = {"RETAILFLOW_OPENMETADATA_TOKEN": "om-token-2f7c9e", "RETAILFLOW_SUPERSET_PASSWORD": "superset-pw-5d1a",
           "RETAILFLOW_WAREHOUSE_URL": "postgresql://warehouse:wh%40pw-91xq@db:5432/warehouse",
           "RETAILFLOW_SUPERSET_URL": "http://superset:8088"}

    def step(env):
        return {"output": "token om-token-2f7c9e, password superset-pw-5d1a, wh@pw-91xq and wh%40pw-91xq"
                          " at http://superset:8088"}

    logged = redact(tasks.optional_step(step, env)["output"])
    assert [s for s in ("om-token-2f7c9e", "superset-pw-5d1a", "wh@pw-91xq", "wh%40pw-91xq") if s in logged] == []
    assert logged.count("***") == 4 and "http://superset:8088" in logged  # only the secrets


@pytest.mark.parametrize("seconds", [float("inf"), float("nan"), 1e12, -1.0])
def test_the_audit_tasks_settle_window_out_of_range_is_a_clear_error(seconds):
    """$RETAILFLOW_AUDIT_SETTLE_SECONDS reaches the DAG's audit task as a float: infinity crashed in
    timedelta, 1e12 in a date far beyond the calendar. The task refuses it before connecting."""
    from retailflow_pipeline.audit import AuditError
    from retailflow_pipeline.settings import local_defaults

    with pytest.raises(AuditError, match=r"RETAILFLOW_AUDIT_SETTLE_SECONDS must be 0 to 604800 s \(a week\)"):
        tasks.run_audit(local_defaults().to_dict(), seconds)
