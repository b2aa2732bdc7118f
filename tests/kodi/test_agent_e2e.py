"""The whole chain against a real Kodi 20.1: the real server, the real agent, the real script.

A ticket created on the server -> the agent applies it (Kodi restarted with the new lock
code) -> Profiles.LoadProfile with the PIN opens Kids, another PIN does not -> the agent
reports the login -> the server shows the ticket in use with its expiry -> at expiry Kodi is
logged off and the used PIN no longer opens Kids. One Kodi serves the file's tests in order.
"""

import hashlib
import http.cookiejar
import json
import os
import re
import signal
import socket
import sqlite3
import subprocess
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from kodi_harness import Profile

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "scripts" / "execute-on-kodi_set-passwd-per-profile.sh"
SERVER_BIN = REPO / "target" / "debug" / "kodi-tickets-server"
AGENT_BIN = REPO / "target" / "debug" / "kodi-tickets-agent"

KODI_MASTER_PIN = "2580"
KODI_PROFILES = [Profile("Kids", pin="1234"), Profile("Tickets")]
NEW_PASSWORD = "correct-horse-42"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(what, check, timeout, interval=0.5):
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for: {what}")
        time.sleep(interval)


class Server:
    """The real server binary on a temp database; restartable on the same port and data."""

    def __init__(self, tmp: Path):
        if not SERVER_BIN.is_file():
            subprocess.run(["cargo", "build", "-q", "-p", "kodi-tickets-server"], cwd=REPO, check=True)
        self.tmp = tmp
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.db = tmp / "data" / "kt.db"
        self.env = dict(os.environ,
                        ROCKET_ADDRESS="127.0.0.1", ROCKET_PORT=str(self.port),
                        ROCKET_DATA_DIR=str(tmp / "data"),
                        ROCKET_DATABASES='{kodi_tickets={url="sqlite://%s"}}' % self.db,
                        ROCKET_EXEC_LOG=str(tmp / "server-exec.log"), RUST_LOG="info", NO_COLOR="1")
        self.process = None
        self.log = open(tmp / "server.log", "ab")
        cookies = http.cookiejar.CookieJar()
        self.browser = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(cookies))

    def start(self):
        self.process = subprocess.Popen([str(SERVER_BIN)], cwd=REPO, env=self.env,
                                        stdout=self.log, stderr=subprocess.STDOUT)
        wait_until("the server's /healthz", self._healthy, 60)

    def _healthy(self):
        try:
            with urllib.request.urlopen(self.url + "/healthz", timeout=2) as r:
                return r.status == 200
        except OSError:
            return False

    def stop(self):
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def cli(self, *args) -> str:
        out = subprocess.run([str(SERVER_BIN), *args], cwd=REPO, env=self.env,
                             capture_output=True, text=True, timeout=60, check=True)
        return out.stdout.strip()

    # -- the admin's browser, as plain HTTP
    def page(self, path: str) -> str:
        with self.browser.open(self.url + path, timeout=10) as r:
            return r.read().decode()

    def post(self, path: str, **fields) -> str:
        token = re.search(r'name="csrf_token" value="([^"]+)"', self.page("/login")).group(1)
        data = urllib.parse.urlencode(dict(fields, csrf_token=token)).encode()
        with self.browser.open(self.url + path, data=data, timeout=30) as r:
            return r.geturl()

    def admin(self):
        self.post("/login", username="admin", password="admin123")
        self.post("/password", current_password="admin123", new_password=NEW_PASSWORD,
                  confirm_password=NEW_PASSWORD)

    def ticket(self, profile_id: int, minutes: int) -> str:
        self.post(f"/profiles/{profile_id}/tickets", length=str(minutes))
        with sqlite3.connect(self.db) as db:
            return db.execute("SELECT lock_code FROM tickets ORDER BY id DESC LIMIT 1").fetchone()[0]

    def delivery(self, pin: str):
        with sqlite3.connect(self.db) as db:
            return db.execute(
                "SELECT d.status, d.last_message FROM deliveries d JOIN tickets t ON t.id = d.ticket_id "
                "WHERE t.lock_code = ? ORDER BY d.id DESC LIMIT 1", (pin,)).fetchone()

    def api_ticket(self, token: str, pin: str) -> dict:
        request = urllib.request.Request(self.url + f"/api/ticket/{pin}",
                                         headers={"Authorization": f"Bearer {token}"})
        with urllib.request.urlopen(request, timeout=10) as r:
            return json.loads(r.read())


class Agent:
    def __init__(self, tmp: Path, server: Server, token: str, kodi):
        if not AGENT_BIN.is_file():
            subprocess.run(["cargo", "build", "-q", "-p", "kodi-tickets-agent"], cwd=REPO, check=True)
        self.env = dict(kodi.env,
                        KODI_TICKETS_AGENT_SERVER_URL=server.url,
                        KODI_TICKETS_AGENT_DEVICE_TOKEN=token,
                        KODI_TICKETS_AGENT_KODI_JSONRPC=f"127.0.0.1:{kodi.jsonrpc_port}",
                        KODI_TICKETS_AGENT_KODI_EVENTSERVER=f"127.0.0.1:{kodi.eventserver_port}",
                        KODI_TICKETS_AGENT_KODI_USERDATA=str(kodi.userdata),
                        KODI_TICKETS_AGENT_SCRIPT=str(SCRIPT),
                        KODI_TICKETS_AGENT_SCRIPT_TIMEOUT="120",
                        KODI_TICKETS_AGENT_KODI_STOP_COMMAND=kodi.env["KODI_STOP_CMD"],
                        KODI_TICKETS_AGENT_KODI_START_COMMAND=kodi.env["KODI_START_CMD"],
                        KODI_TICKETS_AGENT_STATE_FILE=str(tmp / "agent-state.json"),
                        KODI_TICKETS_AGENT_EXEC_LOG=str(tmp / "agent-exec.log"),
                        RUST_LOG="info,jsonrpsee=warn", NO_COLOR="1")
        self.log = open(tmp / "agent.log", "ab")
        self.process = None
        self.tmp = tmp

    def start(self):
        self.process = subprocess.Popen([str(AGENT_BIN)], env=self.env, stdout=self.log,
                                        stderr=subprocess.STDOUT)

    def kill(self):
        if self.process and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def stop(self):
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()

    def log_tail(self, n=40) -> str:
        lines = (self.tmp / "agent.log").read_text(errors="replace").splitlines()
        return "\n".join(lines[-n:])


@pytest.fixture(scope="module")
def system(kodi, tmp_path_factory):
    """Server + device + profile "Kids" on it + agent (not started), sharing the module's Kodi."""
    tmp = tmp_path_factory.mktemp("e2e")
    server = Server(tmp)
    server.start()
    server.admin()
    token = server.cli("device", "add", "Living room")
    with sqlite3.connect(server.db) as db:
        device_id = db.execute("SELECT id FROM devices").fetchone()[0]
    location = server.post("/profiles", name="Kids", device=str(device_id))
    profile_id = int(location.rsplit("/", 1)[1])
    agent = Agent(tmp, server, token, kodi)
    yield dict(server=server, agent=agent, token=token, profile_id=profile_id, tmp=tmp)
    agent.stop()
    server.stop()


def kids_md5(kodi) -> str:
    text = kodi.profiles_xml.read_text()
    block = re.search(r"<profile>\s*<id>\d+</id>\s*<name>Kids</name>.*?</profile>", text, re.S).group(0)
    return re.search(r"<lockcode>([^<]*)</lockcode>", block).group(1)


def md5(pin: str) -> str:
    return hashlib.md5(pin.encode()).hexdigest()


def explain(system, kodi) -> str:
    return "--- agent log ---\n%s\n--- kodi log ---\n%s" % (system["agent"].log_tail(), kodi.log_tail(30))


def use_ticket_and_wait_for_report(system, kodi, pin):
    """At the login screen: a wrong PIN is refused, the ticket's PIN opens Kids, and the
    agent reports the login. Returns the ticket JSON after the report."""
    server, token = system["server"], system["token"]
    wrong = "0000" if pin != "0000" else "0001"
    assert kodi.load_profile("Kids", pin=wrong) is False, "a wrong PIN must not open Kids"
    assert kodi.load_profile("Kids", pin=pin) is True, explain(system, kodi)
    return wait_until("the agent to report the login",
                      lambda: (lambda t: t if t["state"] == "in_use" else None)(server.api_ticket(token, pin)),
                      30)


def wait_logged_off_at(system, kodi, ticket, pin):
    """Kodi is logged off when the ticket expires, and then the used PIN opens Kids no more."""
    expires = time.mktime(time.strptime(ticket["expires_at"], "%Y-%m-%dT%H:%M:%SZ")) - time.timezone
    wait_until("Kids logged in until the expiry", lambda: time.time() >= expires - 3 or None,
               max(0, expires - time.time()) + 5, interval=1)
    assert kodi.state() == ("Kids", True), "the session lasts until its expiry: " + explain(system, kodi)
    wait_until("the agent to log Kids off at expiry", lambda: kodi.answers() and kodi.logged_on() is False,
               30, interval=1)
    assert time.time() - expires < 25, "logged off on time"
    wait_until("the agent to re-lock Kids with a new secret",
               lambda: kodi.answers() and kids_md5(kodi) != md5(pin) and not kodi.logged_on(), 90, interval=1)
    wait_until("Kodi back after the re-lock", lambda: kodi.answers(), 60)
    assert kodi.load_profile("Kids", pin=pin) is False, "a used PIN never opens the profile again"
    assert server_state(system, pin) == "expired"


def server_state(system, pin):
    return system["server"].api_ticket(system["token"], pin)["state"]


def test_ticket_applied_used_reported_and_ended_by_an_agent_started_later(system, kodi):
    server, agent = system["server"], system["agent"]
    # Issued while the box's agent is not running yet: applied when it starts.
    pin = server.ticket(system["profile_id"], 1)
    assert server.delivery(pin)[0] == "pending"
    agent.start()
    wait_until("the agent to apply the PIN",
               lambda: (server.delivery(pin) or ("",))[0] == "applied", 120, interval=1)
    assert kids_md5(kodi) == md5(pin), "the PIN is Kids' lock code in profiles.xml"
    wait_until("Kodi back after the restart", lambda: kodi.answers() and kodi.state() == ("Master user", False), 60)
    assert f">{pin}<" in server.page(f"/profiles/{system['profile_id']}"), "the page shows the armed PIN"

    ticket = use_ticket_and_wait_for_report(system, kodi, pin)
    assert ticket["expires_at"] and ticket["used_at"]
    page = server.page(f"/profiles/{system['profile_id']}")
    assert 'class="table-danger" data-state="in_use"' in page, "the row turns red"
    wait_logged_off_at(system, kodi, ticket, pin)


def test_a_session_ends_on_time_across_server_and_agent_restarts(system, kodi):
    server, agent = system["server"], system["agent"]
    assert agent.process.poll() is None, explain(system, kodi)
    pin = server.ticket(system["profile_id"], 1)
    wait_until("the agent to apply the PIN",
               lambda: (server.delivery(pin) or ("",))[0] == "applied", 120, interval=1)
    wait_until("Kodi back after the restart", lambda: kodi.answers() and kodi.state() == ("Master user", False), 60)
    ticket = use_ticket_and_wait_for_report(system, kodi, pin)

    # Mid-session: the server restarts and the agent is killed without warning.
    server.stop()
    agent.kill()
    server.start()
    agent.start()
    wait_logged_off_at(system, kodi, ticket, pin)


def test_the_admin_ends_a_session_early(system, kodi):
    server = system["server"]
    pin = server.ticket(system["profile_id"], 30)
    wait_until("the agent to apply the PIN",
               lambda: (server.delivery(pin) or ("",))[0] == "applied", 120, interval=1)
    wait_until("Kodi back after the restart", lambda: kodi.answers() and kodi.state() == ("Master user", False), 60)
    use_ticket_and_wait_for_report(system, kodi, pin)

    # A second ticket issued meanwhile waits, and says why.
    waiting = server.ticket(system["profile_id"], 15)
    wait_until("the waiting ticket to say why",
               lambda: "in use on the TV" in ((server.delivery(waiting) or ("", ""))[1] or ""), 30)

    with sqlite3.connect(server.db) as db:
        ticket_id = db.execute("SELECT id FROM tickets WHERE lock_code = ? AND state = 'in_use'", (pin,)).fetchone()[0]
    server.post(f"/tickets/{ticket_id}/end")
    ended = time.monotonic()
    wait_until("the agent to log Kids off after 'End now'",
               lambda: kodi.answers() and kodi.logged_on() is False, 30, interval=1)
    assert time.monotonic() - ended < 20, "acted within seconds"
    # Then the waiting ticket is armed instead of a random secret.
    wait_until("the waiting ticket to be armed",
               lambda: (server.delivery(waiting) or ("",))[0] == "applied", 120, interval=1)
    wait_until("Kodi back", lambda: kodi.answers() and not kodi.logged_on(), 60)
    assert kids_md5(kodi) == md5(waiting)
    assert kodi.load_profile("Kids", pin=pin) is False, "the ended ticket's PIN is refused"
