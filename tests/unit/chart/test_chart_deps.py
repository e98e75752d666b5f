"""`make up` fails fast, with one line, when a pinned chart cannot be fetched (hack/chart-deps.sh).

The script runs with the real helm (.tools/bin/helm) against chart repositories on loopback: a
closed port (a repository that cannot be reached), and a small repository served from a temporary
folder (``helm package`` + ``helm repo index``; a stand-in for a real chart repository, serving the
same index.yaml + archive layout). helm's own state goes to a temporary HELM_*_HOME.
"""

from __future__ import annotations

import functools
import os
import subprocess
import threading
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from support.ports import refusing_port

REPO = Path(__file__).resolve().parents[3]
SCRIPT = REPO / "hack" / "chart-deps.sh"
HELM = REPO / ".tools" / "bin" / "helm"


@pytest.fixture
def helm_env(tmp_path) -> dict[str, str]:
    if not HELM.exists():
        pytest.fail(f"{HELM} is missing: run `make tools`")
    home = tmp_path / "helm"
    return os.environ | {"HELM": str(HELM), "HELM_CACHE_HOME": str(home / "cache"),
                         "HELM_CONFIG_HOME": str(home / "config"), "HELM_DATA_HOME": str(home / "data")}


@pytest.fixture
def closed_port() -> Iterator[int]:
    """A loopback port where nothing answers, held for the test (``refusing_port``): no other program
    can start listening there while the script runs."""
    with refusing_port() as port:
        yield port


def _umbrella(folder: Path, *deps: tuple[str, str, str]) -> Path:
    folder.mkdir(parents=True)
    lines = ["apiVersion: v2", "name: umbrella", "version: 0.1.0", "dependencies:"]
    for name, version, repository in deps:
        lines += [f"  # {name}: a comment holding version: 9.9.9 is not a pin",
                  f"  - name: {name}", f"    version: {version}", f"    repository: {repository}",
                  f"    condition: {name}.enabled"]
    (folder / "Chart.yaml").write_text("\n".join(lines) + "\n")
    return folder


def _run(chart: Path, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(SCRIPT), str(chart)], env=env, capture_output=True, text=True,
                          timeout=60, check=False)


@pytest.fixture
def chart_repository(tmp_path, helm_env):
    """A chart repository on loopback holding one chart, ``sub`` 1.0.0."""
    served = tmp_path / "served"
    source = tmp_path / "sub"
    (source / "templates").mkdir(parents=True)
    (source / "Chart.yaml").write_text("apiVersion: v2\nname: sub\nversion: 1.0.0\n")
    subprocess.run([str(HELM), "package", str(source), "-d", str(served)], env=helm_env, check=True,
                   capture_output=True)
    server = ThreadingHTTPServer(("127.0.0.1", 0),
                                 functools.partial(_QuietHandler, directory=str(served)))
    url = f"http://127.0.0.1:{server.server_address[1]}/"
    subprocess.run([str(HELM), "repo", "index", str(served), "--url", url], env=helm_env, check=True,
                   capture_output=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield url
    finally:
        server.shutdown()
        server.server_close()


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, *_args):
        return


def test_an_unreachable_repository_fails_with_one_line_naming_chart_version_and_repository(tmp_path, helm_env,
                                                                                         closed_port):
    url = f"http://127.0.0.1:{closed_port}/"
    chart = _umbrella(tmp_path / "umbrella", ("openmetadata", "1.13.1", url))

    proc = _run(chart, helm_env)

    assert proc.returncode == 1
    assert proc.stderr.splitlines() == [
        f"error: cannot fetch pinned chart(s) of {chart}: openmetadata 1.13.1 from {url} (repository unreachable)"]
    assert not (chart / "charts").exists()


def test_a_version_missing_from_the_index_is_named_and_nothing_is_downloaded(tmp_path, helm_env, chart_repository,
                                                                             closed_port):
    dead = f"http://127.0.0.1:{closed_port}/"
    chart = _umbrella(tmp_path / "umbrella", ("sub", "2.0.7", chart_repository), ("other", "3.3.2", dead))

    proc = _run(chart, helm_env)

    assert proc.returncode == 1
    assert proc.stderr.splitlines() == [
        f"error: cannot fetch pinned chart(s) of {chart}: sub 2.0.7 from {chart_repository} "
        f"(not in the repository's index.yaml); other 3.3.2 from {dead} (repository unreachable)"]
    assert not (chart / "charts").exists()


def test_pins_that_exist_are_fetched(tmp_path, helm_env, chart_repository):
    chart = _umbrella(tmp_path / "umbrella", ("sub", "1.0.0", chart_repository))

    proc = _run(chart, helm_env)

    assert proc.returncode == 0, proc.stderr
    assert (chart / "charts" / "sub-1.0.0.tgz").is_file()


def test_make_up_fetches_the_dependencies_through_the_check():
    kind_up = (REPO / "hack" / "kind-up.sh").read_text()
    assert '"$ROOT/hack/chart-deps.sh" "$CHART"' in kind_up
    assert [line for line in kind_up.splitlines()
            if "helm dependency" in line and not line.lstrip().startswith("#")] == []
