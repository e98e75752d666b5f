"""The fresh-machine bootstrap: uv without touching the system Python (hack/uv.sh), and `make up`
refusing before it downloads anything where Docker or kind is missing (hack/kind-up.sh)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]
pytestmark = pytest.mark.integration


def copy_hack(tmp_path: Path, *names: str) -> Path:
    """A throwaway checkout holding only the named hack/ scripts (so nothing lands in the real one)."""
    hack = tmp_path / "checkout" / "hack"
    hack.mkdir(parents=True)
    for name in names:
        shutil.copy2(REPO / "hack" / name, hack / name)
    return hack


def test_uv_is_bootstrapped_into_a_venv_of_its_own(tmp_path):
    hack = copy_hack(tmp_path, "uv.sh", "lib.sh")
    tools = tmp_path / "checkout" / ".tools"
    env = {**os.environ, "UV_BOOTSTRAP_FORCE": "1"}
    result = subprocess.run(["bash", str(hack / "uv.sh")], env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    uv = tools / "bin" / "uv"
    # uv runs from the bootstrap venv, not from the interpreter's own site-packages
    assert uv.resolve().is_relative_to((tools / "uv-venv").resolve())
    version = subprocess.run([str(uv), "--version"], capture_output=True, text=True, check=True).stdout
    assert version.startswith("uv ")
    # a second run is a quiet no-op
    again = subprocess.run(["bash", str(hack / "uv.sh")], env=env, capture_output=True, text=True, timeout=60)
    assert again.returncode == 0 and again.stderr == ""


def test_without_the_venv_module_it_names_the_package(tmp_path):
    hack = copy_hack(tmp_path, "uv.sh", "lib.sh")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "python3").write_text(
        "#!/bin/sh\n"
        # `python3 -c 'import venv, ensurepip'` fails as on Debian without python3-venv
        'case "$2" in *ensurepip*) echo "ModuleNotFoundError: No module named ensurepip" >&2; exit 1;; esac\n'
        f'exec {sys.executable} "$@"\n'
    )
    (bin_dir / "python3").chmod(0o755)
    env = {**os.environ, "UV_BOOTSTRAP_FORCE": "1", "PATH": f"{bin_dir}:/usr/bin:/bin"}
    result = subprocess.run(["bash", str(hack / "uv.sh")], env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    assert "apt-get install -y python3-venv" in result.stderr
    assert not (tmp_path / "checkout" / ".tools" / "uv-venv").exists()


def test_make_up_without_kind_downloads_nothing(tmp_path):
    hack = copy_hack(tmp_path, "kind-up.sh", "lib-kind.sh", "lib.sh", "tools.sh", "uv.sh")
    shutil.copy2(REPO / "Makefile", hack.parent / "Makefile")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("bash", "make", "dirname", "cat", "python3"):
        (bin_dir / tool).symlink_to(shutil.which(tool))
    result = subprocess.run(["make", "--no-print-directory", "up"], cwd=hack.parent,
                            env={"PATH": str(bin_dir), "HOME": str(tmp_path)},
                            capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    assert "missing: docker" in result.stderr and "missing: kind" in result.stderr
    assert not (tmp_path / "checkout" / ".tools").exists(), "helm/kubectl were fetched before the preflight"
