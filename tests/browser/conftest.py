"""Fixtures for the browser tests: a Kodi Tickets server of its own and a headless Chromium.

Needs `pip install pytest selenium`, Debian's `chromium` and `chromium-driver` packages
(/usr/bin/chromium, /usr/bin/chromedriver), and cargo to build the server if it is not built.
Nothing is downloaded: Selenium is handed the system driver and browser.
"""

import os
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "tests" / "artifacts"
CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
STARTUP_TIMEOUT = 60

FAKE_KODI = """#!/bin/sh
# Stands in for the Kodi script: records the "Profile:PIN" it was asked to apply.
printf '%s\\n' "$1" >> "{applied}"
exit 0
"""


def server_binary() -> Path:
    """The server to test: $KODI_TICKETS_SERVER_BIN, else the debug build (built if missing)."""
    configured = os.environ.get("KODI_TICKETS_SERVER_BIN")
    if configured:
        path = Path(configured)
        if not path.is_file():
            pytest.fail(f"KODI_TICKETS_SERVER_BIN={configured} does not exist")
        return path
    path = REPO / "target" / "debug" / "kodi-tickets-server"
    if not path.is_file():
        subprocess.run(["cargo", "build", "-q", "-p", "kodi-tickets-server"], cwd=REPO, check=True)
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Server:
    binary: Path
    tmp: Path
    env: dict
    url: str
    log_path: Path
    applied_path: Path
    process: subprocess.Popen = field(default=None, repr=False)

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError as e:
            return f"(no server log: {e})"

    def cli(self, *args: str) -> subprocess.CompletedProcess:
        """Runs the server binary as a command with the server's settings and working folder."""
        return subprocess.run(
            [str(self.binary), *args],
            cwd=REPO, env=self.env, capture_output=True, text=True, timeout=60,
        )


def wait_healthy(server: Server) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT
    last = None
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            pytest.fail(f"the server exited with {server.process.returncode}:\n{server.log()}")
        try:
            with urllib.request.urlopen(server.url + "/healthz", timeout=2) as r:
                if r.status == 200:
                    return
        except (urllib.error.URLError, OSError) as e:
            last = e
        time.sleep(0.1)  # polling a port that is not listening yet
    pytest.fail(f"/healthz did not answer 200 within {STARTUP_TIMEOUT} s ({last}):\n{server.log()}")


@pytest.fixture
def server():
    binary = server_binary()
    tmp = Path(tempfile.mkdtemp(prefix="kt-browser-"))
    data = tmp / "data"
    applied = tmp / "applied.txt"
    script = tmp / "fake-kodi.sh"
    script.write_text(FAKE_KODI.format(applied=applied))
    script.chmod(0o755)
    port = free_port()
    env = dict(os.environ)
    env.update({
        "ROCKET_ADDRESS": "127.0.0.1",
        "ROCKET_PORT": str(port),
        "ROCKET_DATA_DIR": str(data),
        "ROCKET_DATABASES": f'{{kodi_tickets={{url="sqlite://{data}/kt.db"}}}}',
        "ROCKET_EXEC_LOG": str(tmp / "exec.log"),
        "ROCKET_KODI_SCRIPT": str(script),
        "NO_COLOR": "1",  # a plain server log
    })
    srv = Server(binary, tmp, env, f"http://127.0.0.1:{port}", tmp / "server.log", applied)
    with open(srv.log_path, "wb") as log:
        srv.process = subprocess.Popen(
            [str(binary)], cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT,
        )
    try:
        wait_healthy(srv)
        yield srv
    finally:
        srv.process.terminate()
        try:
            srv.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            srv.process.kill()
            srv.process.wait()
        shutil.rmtree(tmp, ignore_errors=True)


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


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """On failure, adds the server's log, the browser's console and its last page to the report."""
    outcome = yield
    report = outcome.get_result()
    if report.when != "call" or not report.failed:
        return
    srv = item.funcargs.get("server")
    if srv is not None:
        report.sections.append(("server log", srv.log()))
    b = item.funcargs.get("browser")
    if b is not None and b.driver is not None:
        try:
            b.drain_console()
            report.sections.append((
                "browser",
                f"at {b.driver.current_url}\nconsole:\n"
                + "\n".join(f"  {e['level']} {e['message']}" for e in b.console),
            ))
            if srv is not None:
                shot = ARTIFACTS / f"failure-{item.name}.png"
                ARTIFACTS.mkdir(parents=True, exist_ok=True)
                b.driver.save_screenshot(str(shot))
                report.sections.append(("failure screenshot", str(shot)))
        except Exception as e:  # a dead browser must not hide the real failure
            report.sections.append(("browser", f"(unavailable: {e})"))
