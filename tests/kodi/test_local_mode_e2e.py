"""A profile on the server's own machine (local delivery) against a real Kodi 20.1: the server
runs the Kodi script itself, for the PIN and for the end of a ticket.

A ticket issued on the page -> its PIN is Kids' lock code -> the PIN opens Kids and the Kodi
side reports the login -> at expiry, on "End now" and when a running ticket is deleted, the
server logs Kids off and gives it a new secret, so the used PIN opens nothing. One Kodi serves
the file's tests in order.
"""

import time

import pytest

from kodi_harness import Profile
from kt_server import REPO, Server

SCRIPT = REPO / "scripts" / "execute-on-kodi_set-passwd-per-profile.sh"
KODI_MASTER_PIN = "2580"
KODI_PROFILES = [Profile("Kids", pin="1234"), Profile("Tickets")]
NEW_PASSWORD = "correct-horse-42"
LOGIN_SCREEN = ("Master user", False)


def wait_until(what, check, timeout, interval=0.5):
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for: {what}")
        time.sleep(interval)


@pytest.fixture(scope="module")
def local(kodi, tmp_path_factory):
    """The server on the Kodi machine: its script reaches the module's Kodi."""
    tmp = tmp_path_factory.mktemp("local")
    env = {k: v for k, v in kodi.env.items() if k.startswith("KODI_")}
    env.update(ROCKET_KODI_SCRIPT=str(SCRIPT), ROCKET_DELIVERY_TIMEOUT="120", RUST_LOG="info")
    server = Server(tmp, env=env)
    server.start()
    server.admin.first_log_in(NEW_PASSWORD)
    # The Kodi side reports logins with a device token: a device whose PINs the server's own
    # script sets (delivery "local"), with Kids on it.
    token = server.cli("device", "add", "This machine", check=True).stdout.strip()
    device = server.value("SELECT id FROM devices")
    server.admin.post(f"/devices/{device}/delivery", delivery="local")
    location = server.admin.post("/profiles", name="Kids", device=str(device))
    profile_id = int(location.rsplit("/", 1)[1])
    yield dict(server=server, token=token, profile_id=profile_id)
    server.close()


def explain(local, kodi) -> str:
    return "--- server log ---\n%s\n--- kodi log ---\n%s" % (
        local["server"].log()[-3000:], kodi.log_tail(30))


def ticket_in_use(local, kodi, minutes: int) -> tuple:
    """A ticket issued on the page, set as Kids' PIN, used on the TV and reported: (id, PIN)."""
    server = local["server"]
    pin = server.issue_ticket(local["profile_id"], minutes)
    wait_until("the server to set the PIN on the TV",
               lambda: (server.delivery(pin) or ("",))[0] == "applied", 120, 1)
    wait_until("Kodi back after the restart",
               lambda: kodi.answers() and kodi.state() == LOGIN_SCREEN, 60)
    assert kodi.load_profile("Kids", pin=pin) is True, explain(local, kodi)
    status, body = server.api(local["token"], "/api/login", {"lock_code": pin})
    assert status == 200, (status, body)
    ticket = server.value("SELECT id FROM tickets WHERE lock_code = ? AND state = 'in_use'", pin)
    return ticket, pin


def assert_ended_on_the_tv(local, kodi, pin, within: float):
    """Kids is logged off within `within` s and then its PIN opens it no more."""
    wait_until("Kids logged off", lambda: kodi.answers() and kodi.state() == LOGIN_SCREEN,
               within, 0.5)
    wait_until("Kids re-locked with a new secret",
               lambda: "end exit=0" in exec_log(local) and kodi.answers()
               and kodi.state() == LOGIN_SCREEN and relocked(local), 120, 1)
    assert kodi.load_profile("Kids", pin=pin) is False, "the ended ticket's PIN opens Kids no more"


def exec_log(local) -> str:
    path = local["server"].tmp / "server-exec.log"
    return path.read_text() if path.exists() else ""


def relocked(local) -> bool:
    return local["server"].row(
        "SELECT 1 FROM ticket_ends WHERE status = 'done' AND updated_at >= ?",
        local.setdefault("since", 0)) is not None


def test_the_server_ends_a_session_on_end_now(local, kodi):
    local["since"] = int(time.time())
    ticket, pin = ticket_in_use(local, kodi, 30)
    local["server"].admin.post(f"/tickets/{ticket}/end")
    assert_ended_on_the_tv(local, kodi, pin, within=20)


def test_the_server_ends_a_session_at_expiry(local, kodi):
    local["since"] = int(time.time())
    ticket, pin = ticket_in_use(local, kodi, 1)
    expires = local["server"].value("SELECT expires_at FROM tickets WHERE id = ?", ticket)
    wait_until("the expiry", lambda: time.time() >= expires - 3, 70, 1)
    assert kodi.state() == ("Kids", True), "the session lasts until its expiry"
    assert_ended_on_the_tv(local, kodi, pin, within=25)
    assert time.time() - expires < 25, "logged off on time"


def test_deleting_a_running_ticket_ends_its_session(local, kodi):
    local["since"] = int(time.time())
    ticket, pin = ticket_in_use(local, kodi, 30)
    local["server"].admin.post(f"/tickets/{ticket}/delete")
    assert_ended_on_the_tv(local, kodi, pin, within=20)
