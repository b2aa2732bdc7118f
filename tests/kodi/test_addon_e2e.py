"""The add-on's PIN pad inside a real Kodi 20.1, with the real server and the real agent.

The built zip is unpacked into the test HOME's add-ons folder (Kodi stopped), enabled while
the unlocked "Tickets" profile is loaded -> the add-on's PIN pad opens (a screenshot goes to
tests/artifacts/addon-pinpad.png) -> a wrong PIN typed with Input.SendText is refused on
screen and the pad comes back, still in Tickets -> the PIN of a 1-minute ticket issued on the
server opens "Kids" (whose own lock code nobody types) and the server shows the ticket in use
-> at expiry the agent logs Kids off and loads Tickets again: the PIN pad is back.

The agent runs in PIN-pad mode (KODI_TICKETS_AGENT_PIN_PAD_PROFILE=Tickets). The add-on keeps
its default settings (PIN-pad profile "Tickets", PIN pad on login). One Kodi serves the file's
tests in order; each test needs the one before it.

Never sends XBMC.GetInfoBooleans / XBMC.GetInfoLabels while the agent may be switching
profiles (they deadlock Kodi 20.1 right after a LoadProfile): only Profiles.GetCurrentProfile,
GUI.GetProperties, Addons.GetAddonDetails, Input.* and JSONRPC.NotifyAll are used here, plus
the harness's load_profile, which waits for the switch itself.
"""

import calendar
import json
import socket
import subprocess
import time
import uuid
import xml.etree.ElementTree as ET
import zipfile

import pytest

from kodi_harness import Profile
from kt_server import REPO, Server
from test_agent_e2e import NEW_PASSWORD, Agent, api_ticket, wait_until

ADDON_ID = "service.kodi-tickets"
PIN_PAD_PROFILE = "Tickets"
# Kids' own lock code: a secret of the box, never typed. The agent logs Kids in with its MD5.
KIDS_SECRET = "7391"
WRONG_PIN = "0000"

KODI_MASTER_PIN = "2580"
KODI_PROFILES = [Profile("Kids", pin=KIDS_SECRET), Profile(PIN_PAD_PROFILE)]

# Kodi's window ids (GUI.GetProperties currentwindow names the topmost dialog).
NUMERIC_DIALOG = 10109  # WINDOW_DIALOG_NUMERIC: xbmcgui.Dialog().numeric, the PIN pad
OK_DIALOG = 12002  # WINDOW_DIALOG_OK: the add-on's refusal message

ARTIFACTS = REPO / "tests" / "artifacts"


# ---------------------------------------------------------------- looking at Kodi

def current_window(kodi) -> int:
    return kodi.rpc("GUI.GetProperties", {"properties": ["currentwindow"]})["currentwindow"]["id"]


def current_profile(kodi) -> str:
    return kodi.current_profile()  # Profiles.GetCurrentProfile: safe during a switch


def addon_lines(kodi) -> list:
    """The add-on's own lines of this Kodi's kodi.log ("[service.kodi-tickets] ...")."""
    try:
        text = kodi.kodi_log.read_text(errors="replace")
    except OSError:
        return []
    tag = "[%s] " % ADDON_ID
    return [line.split(tag, 1)[1] for line in text.splitlines() if tag in line]


def pad_open(kodi, profile=PIN_PAD_PROFILE) -> bool:
    """The PIN pad shows in the PIN-pad profile."""
    return current_profile(kodi) == profile and current_window(kodi) == NUMERIC_DIALOG


def settled_screenshot(kodi, path, timeout=5.0):
    """A screenshot once the screen has stopped changing (dialogs animate in)."""
    frame = kodi.fbdir / "Xvfb_screen0"
    deadline = time.monotonic() + timeout
    last = frame.read_bytes()
    while time.monotonic() < deadline:
        time.sleep(0.3)
        now = frame.read_bytes()
        if now == last:
            break
        last = now
    return kodi.screenshot(path)


def agent_pong(kodi, timeout=3.0) -> bool:
    """Does the agent answer a `kodi_tickets.ping` on Kodi's bus (PROTOCOL.md)? Sent with
    JSONRPC.NotifyAll on a raw TCP connection, which then receives every `Other.*`
    notification; the add-on ignores a pong to a request id it did not choose."""
    request_id = "test-" + uuid.uuid4().hex
    notify = {"jsonrpc": "2.0", "id": 1, "method": "JSONRPC.NotifyAll",
              "params": {"sender": "kodi-tickets-test", "message": "kodi_tickets.ping",
                         "data": {"request_id": request_id}}}
    try:
        sock = socket.create_connection(("127.0.0.1", kodi.jsonrpc_port), timeout=timeout)
    except OSError:
        return False
    decoder, text = json.JSONDecoder(), ""
    deadline = time.monotonic() + timeout
    try:
        sock.sendall(json.dumps(notify).encode())
        while time.monotonic() < deadline:
            sock.settimeout(max(0.05, deadline - time.monotonic()))
            try:
                chunk = sock.recv(65536)
            except OSError:
                return False
            if not chunk:
                return False
            text += chunk.decode("utf-8", "replace")
            while True:
                text = text.lstrip()
                try:
                    obj, end = decoder.raw_decode(text)
                except ValueError:
                    break
                text = text[end:]
                if obj.get("method") == "Other.kodi_tickets.pong":
                    data = obj.get("params", {}).get("data")
                    if isinstance(data, str):
                        data = json.loads(data)
                    if isinstance(data, dict) and data.get("request_id") == request_id:
                        return True
        return False
    finally:
        sock.close()


# ---------------------------------------------------------------- the system

@pytest.fixture(scope="module")
def box(kodi, tmp_path_factory):
    """The add-on unpacked into Kodi's HOME (Kodi restarted), server + device + "Kids" on it
    (delivered by the agent), and the agent in PIN-pad mode (not started)."""
    tmp = tmp_path_factory.mktemp("addon-e2e")
    built = subprocess.run([str(REPO / "scripts" / "build-addon"), "--out", str(tmp / "dist")],
                           cwd=REPO, capture_output=True, text=True, timeout=120)
    assert built.returncode == 0, built.stderr
    zip_path = built.stdout.strip().splitlines()[-1]
    # Kodi finds new add-ons when it starts: unpack while it is stopped (README.md's way).
    kodi.stop_kodi()
    with zipfile.ZipFile(zip_path) as z:
        z.extractall(kodi.home / ".kodi" / "addons")
    kodi.start_kodi()
    kodi.wait_ready()

    server = Server(tmp, env={"RUST_LOG": "info"})
    server.start()
    agent = None
    try:
        server.admin.first_log_in(NEW_PASSWORD)
        token = server.cli("device", "add", "Hotel room", check=True).stdout.strip()
        device_id = server.value("SELECT id FROM devices")
        location = server.admin.post("/profiles", name="Kids", device=str(device_id))
        profile_id = int(location.rsplit("/", 1)[1])
        agent = Agent(tmp, server, token, kodi)
        agent.env["KODI_TICKETS_AGENT_PIN_PAD_PROFILE"] = PIN_PAD_PROFILE
        state = dict(server=server, agent=agent, token=token, profile_id=profile_id, tmp=tmp,
                     zip=zip_path, done=set())
        yield state
    finally:
        if agent is not None:
            agent.stop()
        server.close()


def explain(box, kodi) -> str:
    agent = box["agent"]
    agent_log = agent.log_tail(60) if agent.process else "(agent not started)"
    return "\n--- agent log ---\n%s\n--- add-on lines of kodi.log ---\n%s\n%s" % (
        agent_log, "\n".join(addon_lines(kodi)[-20:]), kodi.log_tail(30))


def needs(box, step):
    if step not in box["done"]:
        pytest.skip("needs the step %r, which did not pass" % step)


# ---------------------------------------------------------------- the tests

def test_the_enabled_addon_shows_its_pin_pad_in_the_tickets_profile(box, kodi):
    addon = kodi.rpc("Addons.GetAddonDetails", {"addonid": ADDON_ID,
                                                 "properties": ["enabled", "installed", "version"]})
    built = ET.parse(REPO / "kodi-addon" / ADDON_ID / "addon.xml").getroot().get("version")
    assert addon["addon"]["installed"] and addon["addon"]["version"] == built, addon
    assert addon["addon"]["enabled"] is False, "Kodi installs unpacked add-ons disabled"
    assert current_profile(kodi) == "Master user" and current_window(kodi) == 10029, "login screen"

    assert kodi.load_profile(PIN_PAD_PROFILE) is True  # unlocked: no PIN
    assert kodi.rpc("Addons.SetAddonEnabled", {"addonid": ADDON_ID, "enabled": True}) == "OK"
    # Enabling a service add-on starts it at once (no new login needed).
    wait_until("the add-on's PIN pad", lambda: pad_open(kodi), 30, interval=0.25)
    assert any("PIN pad profile 'Tickets'" in line for line in addon_lines(kodi)), explain(box, kodi)
    shot = settled_screenshot(kodi, ARTIFACTS / "addon-pinpad.png")
    assert shot.stat().st_size > 10_000, "a real picture, not a blank screen"

    # The agent, in PIN-pad mode, with Tickets logged in: it leaves the box alone.
    box["agent"].start()
    wait_until("the agent to answer on Kodi's bus", lambda: agent_pong(kodi), 30, interval=0.5)
    assert pad_open(kodi), explain(box, kodi)
    box["done"].add("pad")


def test_a_wrong_pin_is_refused_and_the_pad_comes_back(box, kodi):
    needs(box, "pad")
    server = box["server"]
    before = len(addon_lines(kodi))
    assert kodi.rpc("Input.SendText", {"text": WRONG_PIN, "done": True}) == "OK"

    wait_until("the add-on's refusal on screen",
               lambda: current_window(kodi) == OK_DIALOG
               and any("PIN refused: 'unknown_pin'" in line for line in addon_lines(kodi)[before:]),
               30, interval=0.25)
    assert current_profile(kodi) == PIN_PAD_PROFILE, "a wrong PIN opens nothing"
    settled_screenshot(kodi, ARTIFACTS / "addon-refused.png")
    assert server.value("SELECT COUNT(*) FROM tickets WHERE state != 'unused'") == 0

    assert kodi.rpc("Input.Select") == "OK"  # the OK button of the refusal
    wait_until("the PIN pad back after the refusal", lambda: pad_open(kodi), 15, interval=0.25)
    box["done"].add("refused")


def test_a_ticket_pin_opens_its_profile_and_the_pad_comes_back_at_expiry(box, kodi):
    needs(box, "refused")
    server, token = box["server"], box["token"]
    pin = server.issue_ticket(box["profile_id"], 1)
    assert pin not in (WRONG_PIN, KIDS_SECRET), "the server draws PINs at random; rerun"
    # In PIN-pad mode the agent has nothing to apply: it acknowledges the delivery at once.
    wait_until("the agent to acknowledge the ticket",
               lambda: (server.delivery(pin) or ("",))[0] == "applied", 30, interval=0.5)
    assert api_ticket(server, token, pin)["state"] == "unused"
    assert pad_open(kodi), explain(box, kodi)

    before = len(addon_lines(kodi))
    assert kodi.rpc("Input.SendText", {"text": pin, "done": True}) == "OK"
    wait_until("the ticket's profile to be loaded",
               lambda: current_profile(kodi) == "Kids" or None, 30, interval=0.25)
    accepted = [line for line in addon_lines(kodi)[before:] if "PIN accepted for profile 'Kids'" in line]
    ticket = api_ticket(server, token, pin)
    assert ticket["state"] == "in_use" and ticket["used_at"] and ticket["expires_at"], ticket
    expires = calendar.timegm(time.strptime(ticket["expires_at"], "%Y-%m-%dT%H:%M:%SZ"))
    assert 45 <= expires - time.time() <= 65, "a 1-minute ticket: %r" % ticket
    # Enabled once, in Tickets, it runs in Kids too: these profiles share the master's
    # databases (hasdatabases false), Addons33.db included. A profile with its own databases
    # needs it enabled while that profile is loaded (README.md says to check).
    assert kodi.rpc("Addons.GetAddonDetails", {"addonid": ADDON_ID, "properties": ["enabled"]}
                    )["addon"]["enabled"] is True
    wait_until("the add-on's service in Kids",
               lambda: any("profile 'Kids': time left" in line for line in addon_lines(kodi)[before:]),
               15, interval=0.25)

    # The session lasts until its expiry...
    wait_until("Kids in use until shortly before the expiry",
               lambda: time.time() >= expires - 3 or current_profile(kodi) != "Kids" or None,
               max(0.0, expires - time.time()) + 5, interval=1)
    assert current_profile(kodi) == "Kids", "the session ended early: " + explain(box, kodi)
    # ...then the agent logs Kids off and opens the PIN-pad profile again: the pad is back.
    wait_until("the PIN pad back after the expiry", lambda: pad_open(kodi), 45, interval=0.5)
    assert time.time() - expires < 40, "back to the PIN pad on time"
    settled_screenshot(kodi, ARTIFACTS / "addon-pinpad-after-expiry.png")
    wait_until("the server to show the ticket expired",
               lambda: server.ticket_state(pin) == "expired", 30, interval=1)
    agent_log = (box["tmp"] / "agent.log").read_text(errors="replace")
    assert "time is up: logging off" in agent_log, explain(box, kodi)
    assert box["agent"].process.poll() is None, "the agent still runs: " + explain(box, kodi)

    # The add-on heard the agent's `ok` before the switch stopped its service, so it showed
    # "Welcome - 1 minute" (README.md; PROTOCOL.md: ok = "the agent is loading that profile
    # now"). Checked last, so that the rest of the chain is proven even when this fails.
    assert accepted, ("the add-on never heard the agent's `ok` result for the ticket's PIN "
                      "(sent after Profiles.LoadProfile, when the PIN-pad service is already "
                      "being stopped?): " + explain(box, kodi))
