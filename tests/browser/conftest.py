"""Fixtures for the browser tests: a headless Chromium (the Kodi Tickets server of each test,
`server`, is tests/conftest.py's).

Needs `pip install pytest selenium`, Debian's `chromium` and `chromium-driver` packages
(/usr/bin/chromium, /usr/bin/chromedriver), and cargo to build the server if it is not built.
Nothing is downloaded: Selenium is handed the system driver and browser.
"""

import shutil
import tempfile
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service

ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"
CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"


def chromium(width: int, height: int, profile_dir: Path, phone: bool = False) -> webdriver.Chrome:
    """Headless Chromium with a window of width x height, or, for `phone`, an emulated phone
    screen of that size (headless windows are never narrower than 500 px)."""
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in [
        "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
        "--disable-quic", "--no-first-run", "--disable-background-networking",
        "--disable-component-update", "--disable-sync",
        f"--user-data-dir={profile_dir}", f"--window-size={width},{height}",
    ]:
        options.add_argument(flag)
    if phone:
        options.add_experimental_option("mobileEmulation", {
            "deviceMetrics": {"width": width, "height": height, "pixelRatio": 2.0, "touch": True, "mobile": True},
        })
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(30)
    return driver


class Browser:
    """Starts Chromium on demand at a given window size; keeps every console entry."""

    def __init__(self):
        self.driver = None
        self.profile_dir = None
        self.console = []

    def start(self, width=1280, height=900, phone=False) -> webdriver.Chrome:
        self.profile_dir = Path(tempfile.mkdtemp(prefix="kt-chromium-"))
        self.driver = chromium(width, height, self.profile_dir, phone)
        return self.driver

    def drain_console(self) -> list:
        """The console entries since the last call (ChromeDriver hands each one out once)."""
        if self.driver is None:
            return []
        entries = self.driver.get_log("browser")
        self.console.extend(entries)
        return entries

    def close(self):
        if self.driver is not None:
            try:
                self.drain_console()
            except Exception:  # the browser may be gone already
                pass
            self.driver.quit()
        if self.profile_dir is not None:
            shutil.rmtree(self.profile_dir, ignore_errors=True)


@pytest.fixture
def browser():
    b = Browser()
    try:
        yield b
    finally:
        b.close()


@pytest.fixture(scope="session")
def artifacts() -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    """On failure, adds the browser's console and its last page to the report (tests/conftest.py
    adds the server's log before)."""
    report = yield
    b = item.funcargs.get("browser")
    if report.when == "call" and report.failed and b is not None and b.driver is not None:
        try:
            b.drain_console()
            report.sections.append((
                "browser",
                f"at {b.driver.current_url}\nconsole:\n"
                + "\n".join(f"  {e['level']} {e['message']}" for e in b.console),
            ))
            if item.funcargs.get("server") is not None:
                shot = ARTIFACTS / f"failure-{item.name}.png"
                ARTIFACTS.mkdir(parents=True, exist_ok=True)
                b.driver.save_screenshot(str(shot))
                report.sections.append(("failure screenshot", str(shot)))
        except Exception as e:  # a dead browser must not hide the real failure
            report.sections.append(("browser", f"(unavailable: {e})"))
    return report
