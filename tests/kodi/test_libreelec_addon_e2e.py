"""The agent's service add-on (LibreELEC's way to run a daemon) on a real Kodi 20.1.

The zip is built as scripts/package builds it, with this machine's agent as its x86_64 binary,
and installed into the test Kodi. Its settings get only a pairing code (what the settings
dialog saves; the server announces itself on the LAN and the agent finds it), the add-on pairs (RunScript(...,pair) through JSON-RPC, as
its settings button does), then the agent is started the way LibreELEC's unit starts it: its
start script, with nothing but Kodi's ports (and the test Kodi's stop and start commands,
which LibreELEC's `systemctl stop kodi` stands for) given. A ticket issued on the server is
then armed, opens the profile on the TV and shows in use on the server: no token typed, no
file edited.
"""

import re
import subprocess
import zipfile

import pytest

from kodi_harness import Profile
from kt_server import REPO, Server, stop_process
from test_agent_e2e import AGENT_BIN, NEW_PASSWORD, kids_md5, md5, wait_until

ADDON_ID = "service.kodi-tickets.agent"
SCRIPT = REPO / "scripts" / "execute-on-kodi_set-passwd-per-profile.sh"

KODI_MASTER_PIN = "2580"
KODI_PROFILES = [Profile("Kids", pin="1234")]


@pytest.fixture(scope="module")
def box(kodi, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("libreelec-addon")
    if not AGENT_BIN.is_file():
        subprocess.run(["cargo", "build", "-q", "-p", "kodi-tickets-agent"], cwd=REPO, check=True)
    built = subprocess.run(
        [str(REPO / "scripts" / "build-addon"), "--addon", ADDON_ID,
         "--bin", f"{AGENT_BIN}=kodi-tickets-agent-x86_64", "--bin", f"{SCRIPT}={SCRIPT.name}",
         "--out", str(tmp / "dist")],
        cwd=REPO, capture_output=True, text=True, timeout=120)
    assert built.returncode == 0, built.stderr
    addon = kodi.home / ".kodi" / "addons" / ADDON_ID
    data = kodi.userdata / "addon_data" / ADDON_ID
    # Listening on every address, the server announces itself on the LAN (mDNS): the box
    # finds it, and only the pairing code is entered on the TV.
    server = Server(tmp, env={"RUST_LOG": "info", "ROCKET_ADDRESS": "0.0.0.0"})
    server.start()
    log = open(tmp / "agent.log", "ab")
    state = dict(server=server, addon=addon, data=data, tmp=tmp, agent=None, log=log)
    try:
        server.admin.first_log_in(NEW_PASSWORD)
        # Kodi finds new add-ons when it starts: unpacked while it is stopped.
        kodi.stop_kodi()
        with zipfile.ZipFile(built.stdout.strip().splitlines()[-1]) as z:
            z.extractall(addon.parent)
        kodi.start_kodi()
        kodi.wait_ready()
        yield state
    finally:
        stop_process(state["agent"])
        log.close()
        server.close()


def agent_log(box) -> str:
    return (box["tmp"] / "agent.log").read_text(errors="replace")[-4000:]


def test_the_addon_pairs_from_its_settings(box, kodi):
    server, data = box["server"], box["data"]
    code = server.cli("device", "pair-code", "Living room", check=True).stdout.strip()
    assert re.fullmatch(r"\d{6}", code)
    # What Kodi's settings dialog saves, for the master profile: the code, no address.
    data.mkdir(parents=True, exist_ok=True)
    (data / "settings.xml").write_text(
        '<settings version="2">\n'
        '    <setting id="server_url" default="true"></setting>\n'
        f'    <setting id="pairing_code">{code}</setting>\n'
        '</settings>\n')
    assert kodi.rpc("Addons.SetAddonEnabled", {"addonid": ADDON_ID, "enabled": True}) == "OK"
    assert kodi.rpc("Addons.ExecuteAddon", {"addonid": ADDON_ID, "params": ["pair"]}) == "OK"
    config = data / "agent.toml"
    wait_until("the add-on to pair the box", config.is_file, 60)
    text = wait_until("the config to hold the token",
                      lambda: (lambda t: t if "device_token" in t else None)(config.read_text()), 10)
    found = re.search(r'server_url = "http://([0-9.]+):(\d+)"', text)
    assert found and int(found.group(2)) == server.port, text
    # The address found goes into the settings, for the person to see.
    wait_until("the add-on to keep the server it found",
               lambda: f"http://{found.group(1)}:{server.port}" in (data / "settings.xml").read_text(),
               10)
    assert config.stat().st_mode & 0o077 == 0, "the token is the box's secret"
    assert server.value("SELECT name FROM devices") == "Living room"
    wait_until("the add-on to say so in Kodi's log",
               lambda: "paired as" in kodi.kodi_log.read_text(errors="replace"), 10)
    # The code works once: emptied from the settings, so that saving them again does not pair.
    wait_until("the code to be emptied",
               lambda: code not in (data / "settings.xml").read_text(), 10)


def test_a_ticket_works_through_the_addon_started_agent(box, kodi):
    server = box["server"]
    if not (box["data"] / "agent.toml").is_file():
        pytest.fail("the box did not pair (see the test above)")
    device_id = server.value("SELECT id FROM devices")
    location = server.admin.post("/profiles", name="Kids", device=str(device_id))
    profile_id = int(location.rsplit("/", 1)[1])
    env = dict(kodi.env,
               KODI_TICKETS_AGENT_KODI_JSONRPC=f"127.0.0.1:{kodi.jsonrpc_port}",
               KODI_TICKETS_AGENT_KODI_EVENTSERVER=f"127.0.0.1:{kodi.eventserver_port}",
               KODI_TICKETS_AGENT_KODI_STOP_COMMAND=kodi.env["KODI_STOP_CMD"],
               KODI_TICKETS_AGENT_KODI_START_COMMAND=kodi.env["KODI_START_CMD"],
               RUST_LOG="info,jsonrpsee=warn", NO_COLOR="1")
    # As LibreELEC's unit: /bin/sh and the start script (busybox ash there; any POSIX sh).
    box["agent"] = subprocess.Popen(
        ["/bin/sh", str(box["addon"] / "bin" / "kodi-tickets-agent.start")],
        env=env, stdout=box["log"], stderr=subprocess.STDOUT)
    pin = server.issue_ticket(profile_id, 30)
    wait_until("the agent to apply the PIN",
               lambda: (server.delivery(pin) or ("",))[0] == "applied", 120, interval=1)
    assert kids_md5(kodi) == md5(pin), agent_log(box)
    # Its state and its log live in the add-on's data folder (LibreELEC's /var is a tmpfs).
    assert (box["data"] / "state.json").is_file() and (box["data"] / "exec.log").is_file()
    wait_until("Kodi back after the restart",
               lambda: kodi.answers() and kodi.state() == ("Master user", False), 60)
    assert kodi.load_profile("Kids", pin="0000") is False
    assert kodi.load_profile("Kids", pin=pin) is True, agent_log(box)
    wait_until("the server to show the ticket in use",
               lambda: server.ticket_state(pin) == "in_use", 30)
    ticket_id = server.value("SELECT id FROM tickets WHERE lock_code = ?", pin)
    server.admin.post(f"/tickets/{ticket_id}/end")
    wait_until("the agent to log Kids off after 'End now'",
               lambda: kodi.answers() and kodi.logged_on() is False, 30, interval=1)
