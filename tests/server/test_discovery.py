"""A box finds the server on the LAN (mDNS), so that pairing it takes only the code.

The server runs on a machine of its own (tests/kt_netns.py: a network namespace joined to
this one by virtual cables) and announces itself there; the agent on this machine, the box,
looks for it with `discover` and `pair CODE`. Needs root, as ./scripts/test runs.
"""

import re
import socket
import subprocess

import pytest

from kt_netns import ServerMachine
from kt_server import REPO, Server

AGENT_BIN = REPO / "target" / "debug" / "kodi-tickets-agent"


@pytest.fixture
def machine():
    machine = ServerMachine.or_skip()
    yield machine
    machine.remove()


def agent(*args: str, config=None) -> subprocess.CompletedProcess:
    if not AGENT_BIN.is_file():
        subprocess.run(["cargo", "build", "-q", "-p", "kodi-tickets-agent"], cwd=REPO, check=True)
    options = ["--config", str(config)] if config else []
    return subprocess.run([str(AGENT_BIN), *options, *args], capture_output=True, text=True,
                          timeout=60, env={"PATH": "/usr/bin:/bin"})


def test_a_box_finds_the_server_and_pairs_with_the_code_alone(machine, tmp_path):
    with Server(tmp_path, netns=machine.name, address=machine.phone_address) as server:
        found = agent("discover")
        assert found.returncode == 0, found
        lines = found.stdout.strip().splitlines()
        assert len(lines) == 1, found.stdout
        url, name = lines[0].split("\t")
        assert name == f"Kodi Tickets on {socket.gethostname()}", name
        assert url in (f"http://{machine.box_address}:{server.port}",
                       f"http://{machine.phone_address}:{server.port}"), url

        code = server.cli("device", "pair-code", "Den", check=True).stdout.strip()
        config = tmp_path / "agent.toml"
        paired = agent("pair", code, config=config)
        assert paired.returncode == 0, paired
        assert f"found “{name}” at {url}" in paired.stderr, paired.stderr
        assert f"paired as “Den” with {url}" in paired.stdout, paired.stdout
        written = config.read_text()
        assert f'server_url = "{url}"' in written and "device_token" in written, written
        assert server.value("SELECT name FROM devices") == "Den"

        # Not a code, and no address: a usage error, nothing looked for.
        refused = agent("pair", "http://192.168.1.10:5000", config=tmp_path / "other.toml")
        assert refused.returncode == 2 and "Usage: kodi-tickets-agent pair" in refused.stderr
        assert not (tmp_path / "other.toml").exists()


def test_a_server_told_not_to_announce_is_not_found(machine, tmp_path):
    with Server(tmp_path, netns=machine.name, address=machine.phone_address,
                env={"ROCKET_ANNOUNCE": "false"}) as server:
        found = agent("discover")
        assert found.returncode == 1, found
        assert "no Kodi Tickets server answered" in found.stderr, found.stderr
        code = server.cli("device", "pair-code", "Den", check=True).stdout.strip()
        paired = agent("pair", code, config=tmp_path / "agent.toml")
        assert paired.returncode == 1, paired
        said = paired.stderr.strip()
        assert re.fullmatch(r"kodi-tickets-agent: no Kodi Tickets server answered on this "
                            r"network: give its address, e.g\. .*", said), said
        assert not (tmp_path / "agent.toml").exists()
