"""The real Kodi Tickets server for the Python test suites under tests/ (standard library only).

    srv = Server(fake_kodi=True)        # a temp folder of its own, removed by close()
    srv = Server(tmp, env={...})        # or in a folder the caller owns (kept by close())
    srv.start()                         # on a free port; returns once /healthz answers 200
    srv.stop(); srv.start()             # or srv.restart(): same port, same database
    srv.cli("device", "add", "TV")      # the binary as a command, with the server's settings
    srv.admin.first_log_in("new-pass")  # the admin's browser as plain HTTP (cookies + CSRF)
    srv.api(token, "/api/login", {...}) # a device's Bearer-token JSON call: (status, body)
    srv.close()

tests/conftest.py puts this folder on sys.path (pytest's rootdir conftest) and builds its
`server` fixture on it; tests/kodi/test_agent_e2e.py drives one across restarts.
"""

import contextlib
import http.cookiejar
import json
import os
import re
import shutil
import socket
import sqlite3
import subprocess
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
STARTUP_TIMEOUT = 60
DEFAULT_USERNAME = "admin"
DEFAULT_PASSWORD = "admin123"
# A device on this server's machine (parameter: its name), then a profile on it (the device's
# name, the profile's name).
PUT_ON_LOCAL_BOX = (
    "UPDATE devices SET delivery = 'local' WHERE name = ?",
    "UPDATE profiles SET device_id = (SELECT id FROM devices WHERE name = ?) WHERE name = ?",
)

FAKE_KODI = """#!/bin/sh
# Stands in for the Kodi script: records its arguments ("Profile:PIN", "--log-off Profile").
printf '%s\\n' "$*" >> "{applied}"
exit 0
"""


def server_binary() -> Path:
    """The server to test: $KODI_TICKETS_SERVER_BIN, else the debug build (built if missing)."""
    configured = os.environ.get("KODI_TICKETS_SERVER_BIN")
    if configured:
        path = Path(configured)
        if not path.is_file():
            raise AssertionError(f"KODI_TICKETS_SERVER_BIN={configured} does not exist")
        return path
    path = REPO / "target" / "debug" / "kodi-tickets-server"
    if not path.is_file():
        subprocess.run(["cargo", "build", "-q", "-p", "kodi-tickets-server"], cwd=REPO, check=True)
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def stop_process(process, timeout: float = 10) -> None:
    """SIGTERM, then SIGKILL if `process` is still there after `timeout` s; reaps it."""
    if process is None or process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


class AdminSession:
    """The admin's browser as plain HTTP: a cookie jar, and the CSRF token for each form."""

    def __init__(self, url: str):
        self.url = url
        self.opener = urllib.request.build_opener(
            urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()))

    def page(self, path: str) -> str:
        with self.opener.open(self.url + path, timeout=10) as r:
            return r.read().decode()

    def post(self, path: str, **fields) -> str:
        """Submits a form (with a fresh CSRF token); returns the URL it ended at."""
        token = re.search(r'name="csrf_token" value="([^"]+)"', self.page("/login")).group(1)
        data = urllib.parse.urlencode(dict(fields, csrf_token=token)).encode()
        with self.opener.open(self.url + path, data=data, timeout=30) as r:
            return r.geturl()

    def first_log_in(self, new_password: str) -> None:
        """The first start: logs in with the default password and replaces it."""
        self.post("/login", username=DEFAULT_USERNAME, password=DEFAULT_PASSWORD)
        self.post("/password", current_password=DEFAULT_PASSWORD, new_password=new_password,
                  confirm_password=new_password)


class Server:
    """The server binary on a database of its own, in `tmp` (or a new temp folder); `start`,
    `stop` and `restart` keep the port and the data. With `fake_kodi` the server's Kodi
    script is a stand-in that appends each "Profile:PIN" it gets to `applied_path`. `env`
    adds to (or overrides) the server's environment."""

    def __init__(self, tmp: Path = None, *, prefix: str = "kt-server-", fake_kodi: bool = False,
                 env: dict = None, netns: str = None, address: str = "127.0.0.1"):
        self.binary = server_binary()
        self.owns_tmp = tmp is None
        self.tmp = Path(tempfile.mkdtemp(prefix=prefix)) if tmp is None else Path(tmp)
        data = self.tmp / "data"
        self.db_path = data / "kt.db"
        self.log_path = self.tmp / "server.log"
        self.port = free_port()
        # In the network namespace `netns` (a machine of its own), the server listens on all
        # its addresses, and the tests reach it at `address`.
        self.netns = netns
        self.url = f"http://{address}:{self.port}"
        self.env = dict(os.environ)
        self.env.update({
            "ROCKET_ADDRESS": "0.0.0.0" if netns else "127.0.0.1",
            "ROCKET_PORT": str(self.port),
            "ROCKET_DATA_DIR": str(data),
            "ROCKET_DATABASES": f'{{kodi_tickets={{url="sqlite://{self.db_path}"}}}}',
            "ROCKET_EXEC_LOG": str(self.tmp / "server-exec.log"),
            "NO_COLOR": "1",  # a plain server log
        })
        self.applied_path = None
        if fake_kodi:
            self.applied_path = self.tmp / "applied.txt"
            script = self.tmp / "fake-kodi.sh"
            script.write_text(FAKE_KODI.format(applied=self.applied_path))
            script.chmod(0o755)
            self.env["ROCKET_KODI_SCRIPT"] = str(script)
        self.env.update(env or {})
        self.process = None
        self.admin = AdminSession(self.url)

    # -- the process
    def start(self) -> "Server":
        """Starts the server (its output appended to `log_path`) and waits for /healthz."""
        with open(self.log_path, "ab") as log:
            inside = ["ip", "netns", "exec", self.netns] if self.netns else []
            self.process = subprocess.Popen(
                inside + [str(self.binary)], cwd=REPO, env=self.env, stdout=log, stderr=subprocess.STDOUT,
            )
        self.wait_healthy()  # the server has created and migrated its database by now
        return self

    def wait_healthy(self) -> None:
        deadline = time.monotonic() + STARTUP_TIMEOUT
        last = None
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"the server exited with {self.process.returncode}:\n{self.log()}")
            try:
                with urllib.request.urlopen(self.url + "/healthz", timeout=2) as r:
                    if r.status == 200:
                        return
            except OSError as e:  # URLError included
                last = e
            time.sleep(0.1)  # polling a port that is not listening yet
        raise AssertionError(
            f"/healthz did not answer 200 within {STARTUP_TIMEOUT} s ({last}):\n{self.log()}")

    def stop(self) -> None:
        stop_process(self.process)

    def restart(self) -> None:
        self.stop()
        self.start()

    def close(self) -> None:
        """Stops the server and removes its temp folder if it made it."""
        self.stop()
        if self.owns_tmp:
            shutil.rmtree(self.tmp, ignore_errors=True)

    def __enter__(self) -> "Server":
        try:
            return self.start()
        except BaseException:
            self.close()
            raise

    def __exit__(self, *exc) -> None:
        self.close()

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError as e:
            return f"(no server log: {e})"

    def cli(self, *args: str, check: bool = False) -> subprocess.CompletedProcess:
        """Runs the server binary as a command with the server's settings and working folder."""
        return subprocess.run(
            [str(self.binary), *args],
            cwd=REPO, env=self.env, capture_output=True, text=True, timeout=60, check=check,
        )

    # -- HTTP as a device: the JSON API
    def api(self, token: str, path: str, body=None) -> tuple:
        """A GET, or with `body` a JSON POST, with the device's Bearer token. Returns (status,
        the JSON answer), or for an error status (status, the body's text)."""
        headers = {"Authorization": f"Bearer {token}"}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        request = urllib.request.Request(
            self.url + path, data=data, headers=headers, method="GET" if body is None else "POST")
        try:
            with urllib.request.urlopen(request, timeout=10) as r:
                return r.status, json.loads(r.read())
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode(errors="replace")

    # -- the SQLite file, behind the server's back
    def _db(self):
        return contextlib.closing(sqlite3.connect(self.db_path, timeout=30))

    def row(self, sql: str, *params) -> tuple:
        """The first row `sql` selects, or None."""
        with self._db() as db:
            return db.execute(sql, params).fetchone()

    def value(self, sql: str, *params):
        """The first column of the first row `sql` selects; there must be one."""
        found = self.row(sql, *params)
        assert found is not None, f"no row for {sql!r} {params!r}"
        return found[0]

    def seed_ticket(self, profile: str, lock_code: str, length: int, device: str = None) -> int:
        """Inserts an unused ticket with exactly this PIN (and its profile if new) straight into
        the server's SQLite file; returns the ticket's id. The admin page draws PINs at random,
        so this is the way to get a chosen one. No delivery row: the API does not need one.
        With `device`, the profile is put on that Kodi box first (see `put_on_local_box`): only
        that device's token may use the ticket."""
        now = int(time.time())
        with self._db() as db:
            with db:  # one transaction
                db.execute(
                    "INSERT INTO profiles (name, created_at, updated_at) VALUES (?, ?, ?)"
                    " ON CONFLICT (name) DO NOTHING",
                    (profile, now, now),
                )
                (profile_id,) = db.execute(
                    "SELECT id FROM profiles WHERE name = ?", (profile,)).fetchone()
                if device is not None:
                    db.execute(PUT_ON_LOCAL_BOX[0], (device,))
                    db.execute(PUT_ON_LOCAL_BOX[1], (device, profile))
                return db.execute(
                    "INSERT INTO tickets (profile_id, lock_code, length, state, created_at)"
                    " VALUES (?, ?, ?, 'unused', ?)",
                    (profile_id, lock_code, length, now),
                ).lastrowid

    def put_on_local_box(self, profile: str, device: str) -> None:
        """What the admin does for a Kodi box on this server's machine: the device's PINs go by
        the server's own script ("this server's machine" on the Devices page), and the profile
        is on that box (its profile page). Only that device's token may use its tickets."""
        with self._db() as db:
            with db:
                db.execute(PUT_ON_LOCAL_BOX[0], (device,))
                db.execute(PUT_ON_LOCAL_BOX[1], (device, profile))

    def issue_ticket(self, profile_id: int, minutes: int) -> str:
        """A ticket issued by the admin's form (the server draws the PIN); returns its PIN."""
        self.admin.post(f"/profiles/{profile_id}/tickets", length=str(minutes))
        return self.value("SELECT lock_code FROM tickets ORDER BY id DESC LIMIT 1")

    def ticket_state(self, pin: str) -> str:
        """The state of the latest ticket with this PIN, as the admin's pages know it (devices
        see live tickets only)."""
        return self.value("SELECT state FROM tickets WHERE lock_code = ? ORDER BY id DESC LIMIT 1", pin)

    def delivery(self, pin: str) -> tuple:
        """(status, last_message) of the latest delivery of the ticket with this PIN, or None."""
        return self.row(
            "SELECT d.status, d.last_message FROM deliveries d JOIN tickets t ON t.id = d.ticket_id "
            "WHERE t.lock_code = ? ORDER BY d.id DESC LIMIT 1", pin)
