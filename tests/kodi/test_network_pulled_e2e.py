"""A box whose network is pulled during a running session, against a real Kodi 20.1.

The server runs on a machine of its own: a Linux network namespace, joined to this one (the
Kodi box: Kodi, the agent, the script) by two virtual cables. The agent reaches the server
over one of them; the tests, standing for the parent's phone, over the other. Pulling the
agent's cable drops its packets without a word, as an unplugged box or a Wi-Fi gone does.

What must hold: the server shows the box offline, and the profile's page says what that means
for the running session, within a minute; the session still ends on time on the TV and the
used PIN stops working, with no server; once the cable is back the agent reconnects by itself
and reports the log-off, and the page is as if nothing had happened.

Needs root (network namespaces), as ./scripts/test runs; skipped, saying so, otherwise.
"""

import time

import pytest

from kt_netns import ServerMachine
from kt_server import Server
from test_agent_e2e import (NEW_PASSWORD, Agent, explain, kids_md5, md5,
                            use_ticket_and_wait_for_report, wait_until)

# Seconds: the server drops a client whose packets stay unacknowledged for 20 s, and its
# streams send a heartbeat every 15 s; what is left is the page's own update.
OFFLINE_SHOWN_WITHIN = 60
# The agent takes a stream silent for 45 s as dead, then retries at most every 30 s.
BACK_WITHIN = 90


@pytest.fixture(scope="module")
def system(kodi, tmp_path_factory):
    machine = ServerMachine.or_skip()
    tmp = tmp_path_factory.mktemp("network-pulled")
    server = Server(tmp, env={"RUST_LOG": "info"}, netns=machine.name,
                    address=machine.phone_address)
    agent = None
    try:
        server.start()
        server.admin.first_log_in(NEW_PASSWORD)
        token = server.cli("device", "add", "Living room", check=True).stdout.strip()
        device_id = server.value("SELECT id FROM devices")
        location = server.admin.post("/profiles", name="Kids", device=str(device_id))
        agent = Agent(tmp, server, token, kodi)
        agent.env["KODI_TICKETS_AGENT_SERVER_URL"] = f"http://{machine.box_address}:{server.port}"
        agent.start()
        yield dict(server=server, agent=agent, token=token, machine=machine, tmp=tmp,
                   profile_id=int(location.rsplit("/", 1)[1]))
    finally:
        if agent:
            agent.stop()
        server.close()
        machine.remove()


def profile_page(system) -> str:
    return system["server"].admin.page(f"/profiles/{system['profile_id']}")


def agent_log(system) -> str:
    return (system["tmp"] / "agent.log").read_text(errors="replace")


def test_a_session_ends_on_time_with_the_box_cut_off_and_the_box_catches_up(system, kodi):
    server, machine = system["server"], system["machine"]
    pin = server.issue_ticket(system["profile_id"], 2)
    wait_until("the agent to apply the PIN over its cable",
               lambda: (server.delivery(pin) or ("",))[0] == "applied", 120, interval=1)
    wait_until("Kodi back after the restart",
               lambda: kodi.answers() and kodi.state() == ("Master user", False), 60)
    ticket = use_ticket_and_wait_for_report(system, kodi, pin)
    assert "offline" not in profile_page(system)

    machine.pull_box_cable()
    pulled = time.monotonic()
    wait_until("the page to say the box went offline during the session",
               lambda: "went offline while someone uses this profile" in profile_page(system),
               OFFLINE_SHOWN_WITHIN, interval=1)
    print(f"offline shown {time.monotonic() - pulled:.1f} s after the cable was pulled")
    assert kodi.state() == ("Kids", True), "the session goes on: " + explain(system, kodi)

    # The agent ends the session on time, with no server to ask, and re-locks Kids.
    expires = time.mktime(time.strptime(ticket["expires_at"], "%Y-%m-%dT%H:%M:%SZ")) - time.timezone
    wait_until("Kids logged in until the expiry", lambda: time.time() >= expires - 3 or None,
               max(0, expires - time.time()) + 5, interval=1)
    assert kodi.state() == ("Kids", True), "never early: " + explain(system, kodi)
    wait_until("the agent to log Kids off at expiry",
               lambda: kodi.answers() and kodi.logged_on() is False, 30, interval=1)
    assert time.time() - expires < 25, "logged off on time"
    wait_until("the agent to re-lock Kids with a new secret",
               lambda: kodi.answers() and kids_md5(kodi) != md5(pin) and not kodi.logged_on(),
               90, interval=1)
    wait_until("Kodi back after the re-lock", lambda: kodi.answers(), 60)
    assert kodi.load_profile("Kids", pin=pin) is False, "the used PIN opens Kids no more"
    # The server cannot know the TV is logged off yet, and says so.
    wait_until("the server to show the ticket ended",
               lambda: server.ticket_state(pin) == "expired", 30)
    page = profile_page(system)
    assert "TV not yet logged off" in page and "is offline" in page, page
    assert server.value("SELECT logged_off_at FROM tickets WHERE id = ?", ticket["id"]) is None

    machine.plug_box_cable()
    wait_until("the agent to reconnect and report the log-off",
               lambda: server.value("SELECT logged_off_at FROM tickets WHERE id = ?", ticket["id"]),
               BACK_WITHIN, interval=1)
    logged_off_at = server.value("SELECT logged_off_at FROM tickets WHERE id = ?", ticket["id"])
    assert expires - 1 <= logged_off_at <= expires + 25, (logged_off_at, expires)
    # The stream comes back on the agent's next try (it retries at most every 30 s).
    wait_until("the page to show the box online again",
               lambda: "offline" not in profile_page(system), 45, interval=1)
    assert "TV not yet logged off" not in profile_page(system)
    log = agent_log(system)
    assert "nothing heard from the server" in log or "server stream broke" in log, log[-3000:]

    # The box gets PINs again: a new ticket is armed over the plugged cable.
    again = server.issue_ticket(system["profile_id"], 30)
    wait_until("the agent to apply the next PIN",
               lambda: (server.delivery(again) or ("",))[0] == "applied", 120, interval=1)
    wait_until("Kodi back after the restart", lambda: kodi.answers(), 60)
    assert kids_md5(kodi) == md5(again)
