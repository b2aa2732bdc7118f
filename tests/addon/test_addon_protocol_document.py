"""The add-on's message names and reasons are the ones kodi-addon/PROTOCOL.md documents."""

import re
from pathlib import Path

from kodi_tickets import protocol

DOCUMENT = (Path(__file__).resolve().parents[2] / "kodi-addon" / "PROTOCOL.md").read_text()


def documented(name: str, direction: str) -> bool:
    return any(line.startswith(f"| `{name}` | {direction}") for line in DOCUMENT.splitlines())


def test_every_message_the_addon_sends_or_hears_is_documented():
    for sent in (protocol.PING, protocol.PIN, protocol.TIME_LEFT, protocol.CLOSED):
        assert documented(sent, "add-on → agent"), sent
    for heard in (protocol.PONG, protocol.RESULT, protocol.SESSION, protocol.WARNING, protocol.CLOSING):
        assert documented(heard, "agent → add-on"), heard


def test_the_documented_reasons_are_the_addons():
    row = next(line for line in DOCUMENT.splitlines() if line.startswith(f"| `{protocol.RESULT}`"))
    reasons = row.split("is one of", 1)[1].split("`profile` and", 1)[0]
    assert set(re.findall(r"`([a-z_]+)`", reasons)) == set(protocol.REASONS)


def test_the_senders_are_the_documented_ones():
    assert f"the add-on sends as `{protocol.SENDER}`" in DOCUMENT
    assert f"the agent as `{protocol.AGENT_SENDER}`" in DOCUMENT
