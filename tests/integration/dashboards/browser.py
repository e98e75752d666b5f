"""Headless Chromium (Debian's /usr/bin/chromium through chromedriver, driven by Selenium) on Superset:
log in, open a dashboard, wait until every chart has rendered or failed, screenshot it.

Also a script, for the pictures under docs/ (taken from a Superset with the demo's data):

    RETAILFLOW_SUPERSET_URL=… RETAILFLOW_SUPERSET_USERNAME=… RETAILFLOW_SUPERSET_PASSWORD=… \\
        python tests/integration/dashboards/browser.py docs/
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException, TimeoutException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--disable-quic", "--no-first-run"]
#: What a chart draws when it rendered: ECharts paints a canvas, tables a <table>, big numbers a header line.
RENDERED = "canvas, table, .header-line"
#: Superset's error panels (ErrorAlert, antd error alerts) and its empty-result message.
ERROR = "[data-test='error-alert'], .ant-alert-error, [data-test='alert-error'], .error-alert"
NO_RESULTS = "No results"
BUNDLE = Path(__file__).resolve().parents[3] / "charts" / "retailflow" / "files" / "superset" / "bundle"


def bundle_dashboards(bundle: Path = BUNDLE) -> dict[str, int]:
    """slug -> number of charts placed on it, for each dashboard of the bundle, in file order."""
    import yaml

    found = {}
    for path in sorted((bundle / "dashboards").glob("*.yaml")):
        config = yaml.safe_load(path.read_text())
        found[config["slug"]] = sum(1 for v in config["position"].values() if isinstance(v, dict) and v.get("type") == "CHART")
    return found


@dataclass
class ChartState:
    title: str
    rendered: bool
    error: str | None
    no_results: bool


@dataclass
class DashboardPage:
    slug: str
    charts: list[ChartState] = field(default_factory=list)
    png: Path | None = None
    seconds: float = 0.0


class Browser:
    def __init__(self, base_url: str, *, width: int = 1600, height: int = 1200) -> None:
        self.base_url = base_url.rstrip("/")
        self.profile = tempfile.mkdtemp(prefix="retailflow-chromium-")
        options = webdriver.ChromeOptions()
        options.binary_location = CHROMIUM
        for flag in FLAGS:
            options.add_argument(flag)
        options.add_argument(f"--window-size={width},{height}")
        options.add_argument(f"--user-data-dir={self.profile}")
        self.width = width
        self.driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)

    def close(self) -> None:
        self.driver.quit()
        shutil.rmtree(self.profile, ignore_errors=True)

    def __enter__(self) -> Browser:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def login(self, username: str, password: str, timeout: float = 120) -> None:
        """Sign in through Superset's login form. On a loaded machine a click can land before the
        form is live and nothing is sent: a form still showing after 20 s is loaded and filled
        again (a wrong password fails the same way each time, and ends in a timeout)."""
        d = self.driver
        deadline = time.monotonic() + timeout
        while True:
            d.get(f"{self.base_url}/login/")
            WebDriverWait(d, 60).until(lambda d: d.find_elements(By.ID, "username"))
            d.find_element(By.ID, "username").send_keys(username)
            d.find_element(By.ID, "password").send_keys(password)
            d.find_element(By.XPATH, "//button[normalize-space()='Sign in']").click()
            try:
                WebDriverWait(d, min(20.0, max(1.0, deadline - time.monotonic()))).until(
                    lambda d: "/login" not in d.current_url)
                return
            except TimeoutException:
                if time.monotonic() >= deadline:
                    raise TimeoutException(f"still on Superset's login page after {timeout:.0f} s") from None

    def _states(self) -> list[ChartState]:
        states = []
        for holder in self.driver.find_elements(By.CSS_SELECTOR, "[data-test='dashboard-component-chart-holder']"):
            title = " ".join(e.text for e in holder.find_elements(By.CSS_SELECTOR, "[data-test='editable-title']"))
            container = holder.find_elements(By.CSS_SELECTOR, "[data-test='chart-container']")
            errors = holder.find_elements(By.CSS_SELECTOR, ERROR)
            states.append(ChartState(
                title=title.strip(),
                rendered=bool(container and container[0].find_elements(By.CSS_SELECTOR, RENDERED)),
                error=errors[0].text.strip() or "error panel" if errors else None,
                no_results=NO_RESULTS in holder.text,
            ))
        return states

    def dashboard(self, slug: str, expected_charts: int, png: Path | None = None, timeout: float = 120,
                  native_filters: str = "") -> DashboardPage:
        """Open a dashboard and wait until all ``expected_charts`` charts are drawn (or one failed).

        ``native_filters`` (rison, as Superset writes it into the URL) presets filter values."""
        started = time.monotonic()
        d = self.driver
        query = f"?native_filters={native_filters}" if native_filters else ""
        d.get(f"{self.base_url}/superset/dashboard/{slug}/{query}")
        page = DashboardPage(slug)
        deadline = time.monotonic() + timeout
        while True:
            try:
                page.charts = self._states()
            except StaleElementReferenceException:  # React re-rendered under us: look again
                page.charts = []
            settled = len(page.charts) >= expected_charts and all(
                c.rendered or c.error or c.no_results for c in page.charts)
            if settled or time.monotonic() > deadline:
                break
            time.sleep(1)
        # ECharts animates its first paint; let it finish before the picture.
        time.sleep(1.5)
        if png is not None:
            height = d.execute_script(
                "const g = document.querySelector('[data-test=\"grid-container\"]') || document.body;"
                "return Math.ceil(g.getBoundingClientRect().bottom + window.scrollY) + 48;")
            d.set_window_size(self.width, max(800, int(height)))
            time.sleep(1)
            png.parent.mkdir(parents=True, exist_ok=True)
            d.save_screenshot(str(png))
            page.png = png
        page.seconds = time.monotonic() - started
        return page

    def big_numbers(self) -> dict[str, str]:
        """Title -> the figure each big-number chart on the page shows."""
        numbers = {}
        for holder in self.driver.find_elements(By.CSS_SELECTOR, "[data-test='dashboard-component-chart-holder']"):
            figure = holder.find_elements(By.CSS_SELECTOR, ".header-line")
            if figure:
                title = holder.find_element(By.CSS_SELECTOR, "[data-test='editable-title']").text.strip()
                numbers[title] = figure[0].text.strip()
        return numbers


def main(argv: list[str]) -> int:
    out = Path(argv[0] if argv else "docs")
    url = os.environ["RETAILFLOW_SUPERSET_URL"]
    with Browser(url) as browser:
        browser.login(os.environ["RETAILFLOW_SUPERSET_USERNAME"], os.environ["RETAILFLOW_SUPERSET_PASSWORD"])
        for slug, count in bundle_dashboards().items():
            page = browser.dashboard(slug, count, out / f"dashboard-{slug}.png")
            bad = [c for c in page.charts if not c.rendered or c.error or c.no_results]
            print(f"{page.png}: {len(page.charts)} charts, {len(bad)} not rendered, {page.seconds:.1f} s")
            if bad:
                return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
