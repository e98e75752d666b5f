"""`make up PROFILE=…` (hack/kind-up.sh): the profile reaches `helm upgrade --install` as values files,
and the CRD is applied before the release. Run on a copy of hack/ whose external commands (docker,
kind, helm, kubectl and the image and chart-dependency scripts) are stand-ins that record their
arguments: nothing is created."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from support.helm_render import REPO

STUB = """#!/usr/bin/env bash
echo "$(basename "$0") $*" >> "$CALLS"
case "$(basename "$0") $*" in
  "helm get values"*) echo '{"pipeline": {"enabled": true, "name": "retail"}}' ;;
  "helm status"*) printf 'NOTES:\\nstand-in\\n' ;;
esac
"""


def run_up(tmp_path: Path, profile: str | None) -> tuple[subprocess.CompletedProcess, list[str]]:
    root = tmp_path / "repo"
    shutil.copytree(REPO / "hack", root / "hack", ignore=shutil.ignore_patterns("envs"))
    (root / "charts" / "retailflow").mkdir(parents=True)
    (root / "charts" / "retailflow-operator" / "crds").mkdir(parents=True)
    bin_dir = root / ".tools" / "bin"
    bin_dir.mkdir(parents=True)
    for name in ("docker", "kind", "helm", "kubectl"):
        (bin_dir / name).write_text(STUB)
    for script in ("tools.sh", "chart-deps.sh", "images.sh"):
        (root / "hack" / script).write_text(STUB)
    for path in [*bin_dir.iterdir(), *(root / "hack").glob("*.sh")]:
        path.chmod(0o755)
    calls = tmp_path / "calls"
    env = {"PATH": f"{bin_dir}:{os.environ['PATH']}", "CALLS": str(calls), "HOME": str(tmp_path)}
    if profile:
        env["PROFILE"] = profile
    proc = subprocess.run(["bash", str(root / "hack" / "kind-up.sh")], env=env, capture_output=True, text=True,
                          timeout=60, check=False)
    return proc, calls.read_text().splitlines() if calls.exists() else []


def helm_install(calls: list[str]) -> str:
    (line,) = [c for c in calls if c.startswith("helm upgrade --install")]
    return line


@pytest.mark.parametrize("profile", [None, "full"])
def test_the_full_profile_is_the_default_and_adds_no_values_file(tmp_path, profile):
    proc, calls = run_up(tmp_path, profile)
    assert proc.returncode == 0, proc.stderr
    assert " -f " not in helm_install(calls)


def test_the_lite_profile_installs_with_values_lite(tmp_path):
    proc, calls = run_up(tmp_path, "lite")
    assert proc.returncode == 0, proc.stderr
    assert "-f " + str(tmp_path / "repo" / "charts" / "retailflow" / "values-lite.yaml") in helm_install(calls)
    assert "(lite profile)" in proc.stdout


def test_the_crd_is_applied_before_the_release(tmp_path):
    _, calls = run_up(tmp_path, "lite")
    crd = next(i for i, c in enumerate(calls) if c.startswith("kubectl apply --server-side"))
    assert crd < calls.index(helm_install(calls))


def test_an_unknown_profile_stops_before_anything_runs(tmp_path):
    proc, calls = run_up(tmp_path, "medium")
    assert proc.returncode == 1 and calls == []
    assert "PROFILE=medium: use full" in proc.stderr


def test_make_passes_the_profile():
    out = subprocess.run(["make", "-n", "up", "PROFILE=lite"], cwd=REPO, capture_output=True, text=True, check=True)
    assert "PROFILE=lite hack/kind-up.sh" in out.stdout
