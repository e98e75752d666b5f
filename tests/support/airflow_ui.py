"""The Airflow 3 UI in a real headless Chromium (Debian's ``/usr/bin/chromium``), driven by Playwright.

Playwright's own browser download is never used (no internet): ``launch(executable_path=...)``.
Used by ``tests/integration/dags/test_airflow_ui.py`` and, to refresh the pictures under ``docs/``::

    hack/with-env dags/.venv/bin/python tests/support/airflow_ui.py --run-id <run id> --out docs
"""

from __future__ import annotations

import argparse
import os
import re
from dataclasses import dataclass
from pathlib import Path

CHROMIUM = os.environ.get("RETAILFLOW_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--disable-quic", "--no-first-run"]
STATES = ("Success", "Failed", "Skipped", "Upstream Failed", "Running", "Queued", "Scheduled", "Deferred",
          "Up For Retry", "Up For Reschedule", "Removed", "Restarting", "No Status")


@dataclass
class RunPage:
    run_state: str | None
    task_states: dict[str, str]
    text: str


def parse_run_page(text: str) -> RunPage:
    """The run's state and each listed task's state, from the run page's text."""
    lines = [line.strip() for line in text.splitlines()]
    run_state = None
    tasks: dict[str, str] = {}
    for i, line in enumerate(lines):
        nxt = next((x for x in lines[i + 1:i + 4] if x), "")
        state = next((s for s in STATES if nxt == s or nxt.startswith(s + "\t")), None)
        if state is None:
            continue
        if re.fullmatch(r"[A-Za-z_][\w.\-\[\]]*", line) and not line.startswith(("manual__", "scheduled__")):
            tasks[line] = state
        elif line.startswith(("manual__", "scheduled__")) and run_state is None:
            run_state = state
    return RunPage(run_state, tasks, text)


class AirflowUI:
    def __init__(self, url: str, username: str, password: str, *, width: int = 1600, height: int = 1000):
        self.url, self.username, self._password = url.rstrip("/"), username, password
        self.size = {"width": width, "height": height}

    def __enter__(self) -> "AirflowUI":
        from playwright.sync_api import sync_playwright

        self._pw = sync_playwright().start()
        self.browser = self._pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        self.page = self.browser.new_page(viewport=self.size)
        self.page.set_default_timeout(120_000)
        return self

    def __exit__(self, *exc) -> None:
        self.browser.close()
        self._pw.stop()

    def login(self) -> None:
        page = self.page
        page.goto(f"{self.url}/auth/login?next=%2F")
        page.get_by_label("Username").fill(self.username)
        page.get_by_label("Password").fill(self._password)
        page.get_by_role("button", name="Sign in").click()
        page.wait_for_url(lambda u: "/auth/" not in u)

    def _translated(self) -> None:
        """Wait until the UI has loaded its texts (it shows keys such as ``tabs.overview`` before)."""
        self.page.wait_for_function("() => document.body.innerText.length > 50"
                                    " && !/\\b(tabs|nav|dagDetails)\\.[a-zA-Z]/.test(document.body.innerText)")

    def dag(self, dag_id: str, screenshot: Path | None = None) -> str:
        page = self.page
        page.goto(f"{self.url}/dags/{dag_id}")
        self._translated()
        page.get_by_text(dag_id).first.wait_for()
        expand = page.get_by_role("button", name=re.compile("Expand all task groups", re.I))
        if expand.count():
            expand.first.click()
        page.wait_for_load_state("networkidle")
        if screenshot:
            page.screenshot(path=str(screenshot), full_page=True)
        return page.inner_text("body")

    def run(self, dag_id: str, run_id: str, screenshot: Path | None = None) -> RunPage:
        page = self.page
        page.goto(f"{self.url}/dags/{dag_id}/runs/{run_id}")
        self._translated()
        page.get_by_text("Task Instances").first.wait_for()
        page.get_by_text("audit", exact=True).first.wait_for()  # not the "Audit Log" tab
        page.wait_for_load_state("networkidle")
        if screenshot:
            page.screenshot(path=str(screenshot), full_page=True)
        return parse_run_page(page.inner_text("body"))


def main() -> None:
    p = argparse.ArgumentParser(description="Screenshots of retail_pipeline in the Airflow UI")
    p.add_argument("--url", default=f"http://127.0.0.1:{os.environ.get('RETAILFLOW_AIRFLOW_PORT') or 8080}")
    p.add_argument("--username", default="admin")
    p.add_argument("--run-id", required=True)
    p.add_argument("--out", type=Path, default=Path("docs"))
    args = p.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    with AirflowUI(args.url, args.username, os.environ["RETAILFLOW_AIRFLOW_ADMIN_PASSWORD"]) as ui:
        ui.login()
        ui.dag("retail_pipeline")
        page = ui.run("retail_pipeline", args.run_id, args.out / "airflow-retail-pipeline-run.png")
    print(f"run {args.run_id}: {page.run_state}; {len(page.task_states)} tasks listed")


if __name__ == "__main__":
    main()
