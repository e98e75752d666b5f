"""`make docs` for real: ``hack/docs.sh`` builds dbt's docs site from a real warehouse and serves it.

The script runs as ``make docs`` runs it, pointed at this suite's throwaway warehouse
(``RETAILFLOW_WAREHOUSE_URL``), a free port (``RETAILFLOW_DOCS_PORT``; dbt's server binds it once the
docs are generated, and when another program took it meanwhile the script says so and is run again on a
fresh one; the module's site is started so, with the first port picked held by another socket), its own
dbt target directory
(``DBT_TARGET_PATH``, dbt's own setting) and its own pid/log folder (``RETAILFLOW_RUN_DIR``), so the
checkout's ``dbt/target`` and a docs server ``make docs`` left running are never touched.
``hack/stop.sh`` (``make stop``) ends it. The assertions are what a user of the site sees: the page,
the catalog of the mart tables with the warehouse's own columns, and the lineage.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path

import psycopg
import pytest

from support import ports
from support.ports import PortTaken, start_on_free_port

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[3]
MARTS = {"orders", "customers", "product_sales", "sales_by_region", "top_customers"}
CHROMIUM = Path("/usr/bin/chromium")


def _get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=10) as response:
        assert response.status == 200, url
        return response.read()


def _answers(port: int) -> bool:
    try:
        _get(f"http://127.0.0.1:{port}/catalog.json")
        return True
    except OSError:
        return False


def serve_docs(env: dict[str, str], attempts: list[tuple[int, subprocess.CompletedProcess]] | None = None,
               ) -> tuple[int, subprocess.CompletedProcess]:
    """``hack/docs.sh`` with ``env`` on a free port: (the port, the script's result). ``attempts``: each run
    of the script is appended to it as (port, result), a run that found its port taken included."""
    def start(port: int) -> tuple[int, subprocess.CompletedProcess]:
        done = subprocess.run([str(REPO / "hack" / "docs.sh")], env=env | {"RETAILFLOW_DOCS_PORT": str(port)}, cwd=REPO,
                              capture_output=True, text=True, timeout=600, check=False)
        if attempts is not None:
            attempts.append((port, done))
        if done.returncode != 0 and f"docs: port {port} is taken by another program" in done.stderr:
            raise PortTaken(port, "make docs")
        return port, done

    return start_on_free_port(start)


def stop_docs(env: dict[str, str]) -> None:
    subprocess.run([str(REPO / "hack" / "stop.sh")], env=env, cwd=REPO, capture_output=True, timeout=60, check=False)


def docs_env(workdir: Path, warehouse) -> dict[str, str]:
    return os.environ | {
        "RETAILFLOW_WAREHOUSE_URL": warehouse.url,
        "RETAILFLOW_RUN_DIR": str(workdir / "run"),
        "DBT_TARGET_PATH": str(workdir / "target"),
        "DBT_LOG_PATH": str(workdir / "logs"),
    }


@pytest.fixture(scope="module")
def docs_site(warehouse):
    """`hack/docs.sh` on the throwaway warehouse, started as a user whose port another program holds: the
    first port picked is taken, so the script's first run says so and it is run again on a fresh port (what
    each run did is kept in ``attempts``); stopped by `hack/stop.sh` afterwards."""
    workdir = Path(tempfile.mkdtemp(prefix="retailflow-docs-"))
    env = docs_env(workdir, warehouse)
    taken = ports.listening_socket()
    picks = [taken.getsockname()[1]]
    attempts: list[tuple[int, subprocess.CompletedProcess]] = []
    try:
        free_port = ports.free_port
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(ports, "free_port", lambda: picks.pop(0) if picks else free_port())
            port, done = serve_docs(env, attempts)
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
        yield {"url": f"http://127.0.0.1:{port}", "port": port, "target": workdir / "target",
               "run": workdir / "run", "stdout": done.stdout, "taken_port": taken.getsockname()[1],
               "attempts": attempts}
    finally:
        stop_docs(env)
        taken.close()
        shutil.rmtree(workdir, ignore_errors=True)


def test_the_site_answers_and_says_where(docs_site):
    page = _get(docs_site["url"] + "/").decode()
    assert "<title>dbt Docs</title>" in page
    assert f"http://127.0.0.1:{docs_site['port']}" in docs_site["stdout"]
    # built into the target directory given, not the checkout's
    assert (docs_site["target"] / "catalog.json").exists() and (docs_site["target"] / "index.html").exists()


def test_a_port_taken_while_the_docs_are_generated_is_left_for_a_fresh_one(docs_site):
    """dbt's server binds the port after `dbt docs generate` (seconds): when another program holds the picked
    port by then (the module's site, started so), the script says so and exits, and run again on a fresh
    port, the site comes up there all the same."""
    (refused_port, refused), _ = docs_site["attempts"]
    assert refused_port == docs_site["taken_port"]
    assert refused.returncode == 1, refused.stdout[-3000:] + refused.stderr[-3000:]
    assert f"docs: port {refused_port} is taken by another program" in refused.stderr, refused.stderr[-3000:]
    assert "<title>dbt Docs</title>" in _get(docs_site["url"] + "/").decode()


def test_the_catalog_holds_the_marts_with_the_warehouse_columns(docs_site, warehouse):
    catalog = json.loads(_get(docs_site["url"] + "/catalog.json"))
    with psycopg.connect(warehouse.url) as conn:
        rows = conn.execute("select table_name, column_name from information_schema.columns "
                            "where table_schema = 'marts'").fetchall()
    real: dict[str, set[str]] = {}
    for table, column in rows:
        real.setdefault(table, set()).add(column)
    assert set(real) == MARTS
    for mart in MARTS:
        node = catalog["nodes"][f"model.retailflow.{mart}"]
        assert node["metadata"]["schema"] == "marts" and node["metadata"]["database"] == warehouse.database
        assert set(node["columns"]) == real[mart], mart


def test_the_lineage_has_stg_orders_upstream_of_top_customers(docs_site):
    manifest = json.loads(_get(docs_site["url"] + "/manifest.json"))
    parents = manifest["parent_map"]
    seen, todo = set(), ["model.retailflow.top_customers"]
    while todo:
        for parent in parents.get(todo.pop(), []):
            if parent not in seen:
                seen.add(parent)
                todo.append(parent)
    assert "model.retailflow.stg_retail__orders" in seen
    assert "source.retailflow.retail.orders" in seen


def test_the_model_page_in_chromium_links_its_upstream_model(docs_site, tmp_path):
    if not CHROMIUM.exists():
        pytest.skip("chromium is not installed: run `make services` (apt, as root)")
    url = docs_site["url"] + "/#!/model/model.retailflow.top_customers"
    dom = subprocess.run(
        [str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--disable-quic", "--no-first-run",
         f"--user-data-dir={tmp_path / 'profile'}", "--virtual-time-budget=15000", "--dump-dom", url],
        capture_output=True, text=True, timeout=120, check=False,
    ).stdout
    # the model page, drawn by the site's JavaScript, links the model it is built from
    assert "model.retailflow.top_customers" in dom
    assert 'href="#!/model/model.retailflow.customers"' in dom, dom[-3000:]


def test_make_stop_ends_the_server(docs_site):
    pid = int((docs_site["run"] / "docs.pid").read_text())
    env = os.environ | {"RETAILFLOW_RUN_DIR": str(docs_site["run"])}
    subprocess.run([str(REPO / "hack" / "stop.sh")], env=env, cwd=REPO, check=True, capture_output=True, timeout=60)
    deadline = time.monotonic() + 20
    while _answers(docs_site["port"]) and time.monotonic() < deadline:
        time.sleep(0.25)
    assert not _answers(docs_site["port"])
    assert not Path(f"/proc/{pid}").exists() or b"zombie" in Path(f"/proc/{pid}/status").read_bytes().lower()
