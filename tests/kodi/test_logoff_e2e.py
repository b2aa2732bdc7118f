"""The agent's log-off holds against a real Kodi 20.1: a ticket profile opened without a
running ticket is logged off; a session whose child switched Kodi's control services off
(Settings > Services > Control, `services.esenabled`) still ends: the agent restarts Kodi; a
log-off lost on the way (UDP) is sent again. Until Kodi shows its login screen the page says
"TV not yet logged off".

The real server, agent and script, as in test_agent_e2e.py. One Kodi serves the file's tests
in order.
"""

import socket
import threading
import time

import pytest

from test_agent_e2e import (Agent, explain, kids_md5, kids_on_a_box, md5,
                            use_ticket_and_wait_for_report, wait_logged_off_at, wait_until)
from kodi_harness import RpcConnectionError, RpcError

# Seconds: the agent restarts a Kodi that stays unreachable this long after a session's
# end (20 s grace after the watcher's 3 s), then Kodi starts in a few seconds.
RESTART_WITHIN = 60


class LossyRelay:
    """A UDP relay in front of Kodi's EventServer, as a lossy network would be: after
    `lose_next_log_off()`, every packet from the next new client socket is dropped (the agent
    opens a socket per log-off); all others are passed on."""

    def __init__(self, kodi_port: int):
        self.kodi = ("127.0.0.1", kodi_port)
        self.socket = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.socket.bind(("127.0.0.1", 0))
        self.socket.settimeout(0.2)
        self.port = self.socket.getsockname()[1]
        self.seen = set()  # client source ports
        self.losing = None  # True: lose the next new client's packets; then its port
        self.clients_since_armed = 0
        self.dropped = self.forwarded = 0
        self.out = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.running = True
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def lose_next_log_off(self):
        self.dropped = self.forwarded = self.clients_since_armed = 0
        self.losing = True

    def run(self):
        while self.running:
            try:
                packet, (_, port) = self.socket.recvfrom(2048)
            except socket.timeout:
                continue
            if port not in self.seen:
                self.seen.add(port)
                self.clients_since_armed += 1
                if self.losing is True:
                    self.losing = port
            if port == self.losing:
                self.dropped += 1
            else:
                self.out.sendto(packet, self.kodi)
                self.forwarded += 1

    def close(self):
        self.running = False
        self.thread.join()
        self.socket.close()
        self.out.close()


@pytest.fixture(scope="module")
def system(kodi, tmp_path_factory):
    """Server + device + profile "Kids" on it + a running agent, sharing the module's Kodi.
    The agent reaches Kodi's EventServer through a relay that can lose packets."""
    tmp = tmp_path_factory.mktemp("logoff-e2e")
    server, token, profile_id = kids_on_a_box(tmp)
    agent = Agent(tmp, server, token, kodi)
    relay = LossyRelay(kodi.eventserver_port)
    agent.env["KODI_TICKETS_AGENT_KODI_EVENTSERVER"] = f"127.0.0.1:{relay.port}"
    agent.start()
    yield dict(server=server, agent=agent, token=token, profile_id=profile_id, tmp=tmp, relay=relay)
    agent.stop()
    relay.close()
    server.close()


def agent_log(system) -> str:
    return (system["tmp"] / "agent.log").read_text(errors="replace")


def armed_ticket(system, kodi, minutes):
    server = system["server"]
    pin = server.issue_ticket(system["profile_id"], minutes)
    wait_until("the agent to apply the PIN",
               lambda: (server.delivery(pin) or ("",))[0] == "applied", 120, interval=1)
    wait_until("Kodi back after the restart",
               lambda: kodi.answers() and kodi.state() == ("Master user", False), 60)
    return pin


def test_a_ticket_profile_opened_without_a_running_ticket_is_logged_off(system, kodi):
    pin = armed_ticket(system, kodi, 1)
    ticket = use_ticket_and_wait_for_report(system, kodi, pin)
    wait_logged_off_at(system, kodi, ticket, pin)

    # Kids' lock code is now a secret no ticket has; someone who has it gets in anyway.
    assert kodi.load_profile("Kids", md5=kids_md5(kodi)) is True, explain(system, kodi)
    wait_until("the agent to log Kids off", lambda: kodi.answers() and kodi.logged_on() is False,
               30, interval=0.5)
    assert "no ticket runs in the logged-in profile: logging off" in agent_log(system)


def not_yet_logged_off_shown(system) -> bool:
    page = system["server"].admin.page(f"/profiles/{system['profile_id']}")
    return "TV not yet logged off" in page


def logged_off_at(system, ticket_id):
    return system["server"].value("SELECT logged_off_at FROM tickets WHERE id = ?", ticket_id)


def test_a_session_ends_even_with_kodis_control_services_switched_off(system, kodi):
    pin = armed_ticket(system, kodi, 1)
    ticket = use_ticket_and_wait_for_report(system, kodi, pin)

    # The child switches "Allow remote control by programs" off: JSON-RPC and the
    # EventServer close, the agent sees nothing and cannot send System.LogOff.
    try:
        kodi.rpc("Settings.SetSettingValue", {"setting": "services.esenabled", "value": False},
                 retry_for=0)
    except (RpcConnectionError, RpcError):
        pass  # the port closes while it answers
    wait_until("Kodi's control services to close", lambda: not kodi.answers(timeout=1), 15)

    # Time is up, but Kodi cannot be told yet: the page says so (the agent waits 20 s
    # before it restarts Kodi).
    expires = time.mktime(time.strptime(ticket["expires_at"], "%Y-%m-%dT%H:%M:%SZ")) - time.timezone
    wait_until("the ticket's end", lambda: time.time() >= expires + 1, 90, interval=0.5)
    assert not_yet_logged_off_shown(system), "an ended ticket on a TV still logged in"
    wait_until("the ticket to expire on the server",
               lambda: system["server"].ticket_state(pin) == "expired",
               120, interval=1)
    wait_until("the agent to restart Kodi and Kodi to show its login screen",
               lambda: kodi.answers(timeout=1) and kodi.logged_on() is False,
               RESTART_WITHIN + 15, interval=1)
    log = agent_log(system)
    assert "restarting Kodi" in log and "Kodi restarted to end the session" in log, \
        explain(system, kodi)
    wait_until("the agent to re-lock Kids with a new secret",
               lambda: kodi.answers() and kids_md5(kodi) != md5(pin) and not kodi.logged_on(),
               90, interval=1)
    wait_until("Kodi back after the re-lock", lambda: kodi.answers(), 60)
    assert kodi.load_profile("Kids", pin=pin) is False, "the used PIN opens Kids no more"
    wait_until("the agent to report the log-off", lambda: logged_off_at(system, ticket["id"]), 30)
    assert not not_yet_logged_off_shown(system)


def test_a_lost_log_off_is_sent_again_until_kodi_shows_the_login_screen(system, kodi):
    relay = system["relay"]
    pin = armed_ticket(system, kodi, 1)
    ticket = use_ticket_and_wait_for_report(system, kodi, pin)
    relay.lose_next_log_off()
    expires = time.mktime(time.strptime(ticket["expires_at"], "%Y-%m-%dT%H:%M:%SZ")) - time.timezone
    wait_until("the first log-off, lost", lambda: relay.dropped >= 3,
               max(0, expires - time.time()) + 15, interval=0.2)
    assert kodi.state() == ("Kids", True), "the lost log-off ended nothing"
    assert not_yet_logged_off_shown(system)
    wait_until("the log-off sent again and Kodi at its login screen",
               lambda: kodi.answers() and kodi.logged_on() is False, 30, interval=0.5)
    assert relay.forwarded >= 3 and relay.clients_since_armed >= 2, vars(relay)
    assert time.time() - expires < 25, "logged off on time, lost packets and all"
    wait_until("the agent to report the log-off", lambda: logged_off_at(system, ticket["id"]), 30)
    assert not not_yet_logged_off_shown(system)
    wait_until("the agent to re-lock Kids with a new secret",
               lambda: kodi.answers() and kids_md5(kodi) != md5(pin) and not kodi.logged_on(),
               90, interval=1)
    wait_until("Kodi back after the re-lock", lambda: kodi.answers(), 60)
    assert kodi.load_profile("Kids", pin=pin) is False, "the used PIN opens Kids no more"
