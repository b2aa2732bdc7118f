"""Fixtures for the API documentation test: a Kodi Tickets server of its own, with a temporary
database and a fake Kodi script, and a helper that seeds a ticket with a chosen PIN.

The server fixture is the one of tests/browser/conftest.py without its Selenium parts (that
module imports selenium, which this test does not need). Needs pytest, curl, bash and cargo
to build the server if it is not built.
"""

import os
import shutil
import socket
import sqlite3
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
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
    db_path: Path
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

    def seed_ticket(self, profile: str, lock_code: str, length: int) -> int:
        """Inserts an unused ticket with exactly this PIN (and its profile if new) straight into
        the server's SQLite file; returns the ticket's id. The admin page draws PINs at random,
        so this is the way to get the documented one. No delivery row: the API does not need
        one, and the delivery tables are not what this test is about."""
        now = int(time.time())
        db = sqlite3.connect(self.db_path, timeout=30)
        try:
            with db:
                db.execute(
                    "INSERT INTO profiles (name, created_at, updated_at) VALUES (?, ?, ?)"
                    " ON CONFLICT (name) DO NOTHING",
                    (profile, now, now),
                )
                (profile_id,) = db.execute(
                    "SELECT id FROM profiles WHERE name = ?", (profile,)
                ).fetchone()
                ticket_id = db.execute(
                    "INSERT INTO tickets (profile_id, lock_code, length, state, created_at)"
                    " VALUES (?, ?, ?, 'unused', ?)",
                    (profile_id, lock_code, length, now),
                ).lastrowid
        finally:
            db.close()
        return ticket_id


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
    tmp = Path(tempfile.mkdtemp(prefix="kt-docs-"))
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
    srv = Server(
        binary, tmp, env, f"http://127.0.0.1:{port}", data / "kt.db",
        tmp / "server.log", applied,
    )
    with open(srv.log_path, "wb") as log:
        srv.process = subprocess.Popen(
            [str(binary)], cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT,
        )
    try:
        wait_healthy(srv)  # the server has created and migrated its database by now
        yield srv
    finally:
        srv.process.terminate()
        try:
            srv.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            srv.process.kill()
            srv.process.wait()
        shutil.rmtree(tmp, ignore_errors=True)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """On failure, adds the server's log to the report."""
    outcome = yield
    report = outcome.get_result()
    if report.when != "call" or not report.failed:
        return
    srv = item.funcargs.get("server")
    if srv is not None:
        report.sections.append(("server log", srv.log()))
