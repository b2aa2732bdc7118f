"""The agent's log-off holds against a real Kodi 20.1: a ticket profile opened without a
running ticket is logged off, and a session whose child switched Kodi's control services off
(Settings > Services > Control, `services.esenabled`) still ends: the agent restarts Kodi.

The real server, agent and script, as in test_agent_e2e.py. One Kodi serves the file's tests
in order.
"""

import pytest

from kt_server import Server
from test_agent_e2e import (NEW_PASSWORD, Agent, explain, kids_md5, md5,
                            use_ticket_and_wait_for_report, wait_logged_off_at, wait_until)
from kodi_harness import RpcConnectionError, RpcError

# Seconds: the agent restarts a Kodi that stays unreachable this long after a session's
# end (20 s grace after the watcher's 3 s), then Kodi starts in a few seconds.
RESTART_WITHIN = 60


@pytest.fixture(scope="module")
def system(kodi, tmp_path_factory):
    """Server + device + profile "Kids" on it + a running agent, sharing the module's Kodi."""
    tmp = tmp_path_factory.mktemp("logoff-e2e")
    server = Server(tmp, env={"RUST_LOG": "info"})
    server.start()
    server.admin.first_log_in(NEW_PASSWORD)
    token = server.cli("device", "add", "Living room", check=True).stdout.strip()
    device_id = server.value("SELECT id FROM devices")
    location = server.admin.post("/profiles", name="Kids", device=str(device_id))
    profile_id = int(location.rsplit("/", 1)[1])
    agent = Agent(tmp, server, token, kodi)
    agent.start()
    yield dict(server=server, agent=agent, token=token, profile_id=profile_id, tmp=tmp)
    agent.stop()
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


def test_a_session_ends_even_with_kodis_control_services_switched_off(system, kodi):
    pin = armed_ticket(system, kodi, 1)
    use_ticket_and_wait_for_report(system, kodi, pin)

    # The child switches "Allow remote control by programs" off: JSON-RPC and the
    # EventServer close, the agent sees nothing and cannot send System.LogOff.
    try:
        kodi.rpc("Settings.SetSettingValue", {"setting": "services.esenabled", "value": False},
                 retry_for=0)
    except (RpcConnectionError, RpcError):
        pass  # the port closes while it answers
    wait_until("Kodi's control services to close", lambda: not kodi.answers(timeout=1), 15)

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
