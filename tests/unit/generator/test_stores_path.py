"""`stores` without `--out` writes the CSV the ingestion engine reads, from any working directory.

The engine's rule is `stores_csv` in `dags/retailflow_pipeline/paths.py` (stdlib only), loaded here from
its file: the generator's environment does not install the DAGs' packages, and its own copy of the rule
(`cli.default_stores_csv`) must give the same path."""

import importlib.util
import os
from pathlib import Path

import pytest
from retailflow_generator import cli
from retailflow_generator import stores as stores_module
from retailflow_generator.stores import build_stores, stores_csv

REPO_ROOT = Path(__file__).resolve().parents[3]


def _engine_paths():
    spec = importlib.util.spec_from_file_location("engine_paths", REPO_ROOT / "dags" / "retailflow_pipeline" / "paths.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


ENGINE_PATHS = _engine_paths()


@pytest.fixture
def elsewhere(tmp_path, monkeypatch):
    """A working directory outside the checkout, with neither RETAILFLOW_DATA_DIR nor RETAILFLOW_HOME set."""
    folder = tmp_path / "elsewhere"
    folder.mkdir()
    monkeypatch.chdir(folder)
    monkeypatch.delenv("RETAILFLOW_DATA_DIR", raising=False)
    monkeypatch.delenv("RETAILFLOW_HOME", raising=False)
    return folder


@pytest.mark.parametrize("variable", ["RETAILFLOW_DATA_DIR", "RETAILFLOW_HOME"])
def test_stores_writes_where_the_engine_reads_from_another_folder(elsewhere, tmp_path, monkeypatch, capsys, variable):
    monkeypatch.setenv(variable, str(tmp_path / "configured"))
    engine_reads = ENGINE_PATHS.stores_csv(os.environ)
    assert cli.main(["stores"]) == 0
    assert engine_reads.is_file(), f"not written where the engine reads it ({engine_reads})"
    assert engine_reads.read_text(encoding="utf-8") == stores_csv(build_stores())
    assert capsys.readouterr().out.rstrip().endswith(f" to {engine_reads}")
    assert list(elsewhere.iterdir()) == [], "nothing is written below the working directory"


def test_stores_defaults_to_the_checkouts_data_folder_from_another_folder(elsewhere, monkeypatch):
    # the checkout's committed CSV is not rewritten here (other work shares it): the path is captured instead
    written = []
    monkeypatch.setattr(stores_module, "write_csv", lambda path, _stores: written.append(Path(path)) or Path(path))
    assert cli.main(["stores"]) == 0
    engine_reads = ENGINE_PATHS.stores_csv({})
    assert engine_reads == REPO_ROOT / "data" / "store_locations.csv"
    assert [p.resolve() for p in written] == [engine_reads.resolve()]
    assert cli.default_stores_csv({}) == engine_reads


def test_an_explicit_out_still_wins(elsewhere, tmp_path, monkeypatch):
    monkeypatch.setenv("RETAILFLOW_DATA_DIR", str(tmp_path / "configured"))
    assert cli.main(["stores", "--out", "mine/stores.csv"]) == 0
    assert (elsewhere / "mine" / "stores.csv").read_text(encoding="utf-8") == stores_csv(build_stores())
    assert not (tmp_path / "configured").exists()
