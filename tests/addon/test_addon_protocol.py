"""protocol.py: PIN validation, message parsing, the NotifyAll request, times."""
import json
import math
from datetime import datetime, timedelta, timezone

import pytest

from kodi_tickets import protocol


@pytest.mark.parametrize("pin", ["0000", "1234", "9876"])
def test_four_ascii_digits_are_a_pin(pin):
    assert protocol.is_valid_pin(pin)


@pytest.mark.parametrize(
    "pin",
    ["", "1", "123", "12345", "12a4", "12 4", " 1234", "1234\n", "١٢٣٤", "１２３４", "-123", None, 1234, b"1234"],
)
def test_anything_else_is_not_a_pin(pin):
    assert not protocol.is_valid_pin(pin)


def test_notify_all_request_is_the_documented_broadcast():
    request = json.loads(protocol.notify_all_request("kodi_tickets.ping", {"request_id": "r1"}))
    assert request["jsonrpc"] == "2.0"
    assert request["method"] == "JSONRPC.NotifyAll"
    assert request["params"] == {
        "sender": "service.kodi-tickets",
        "message": "kodi_tickets.ping",
        "data": {"request_id": "r1"},
    }


@pytest.mark.parametrize(
    "response, ok",
    [
        ('{"id":1,"jsonrpc":"2.0","result":"OK"}', True),
        ('{"id":1,"jsonrpc":"2.0","error":{"code":-32602,"message":"Invalid params."}}', False),
        ("not json", False),
        (None, False),
        ("[]", False),
    ],
)
def test_notify_all_response(response, ok):
    assert protocol.notify_all_succeeded(response) is ok


def test_kodi_notifications_are_parsed_with_or_without_the_other_prefix():
    data = json.dumps({"request_id": "r1", "agent_version": "1.0.0"})
    for method in ("Other.kodi_tickets.pong", "kodi_tickets.pong"):
        message = protocol.parse_notification("kodi-tickets-agent", method, data)
        assert message.name == "kodi_tickets.pong"
        assert message.request_id == "r1"
        assert message.sender == "kodi-tickets-agent"
        assert message.data["agent_version"] == "1.0.0"


@pytest.mark.parametrize(
    "method, data",
    [
        ("Player.OnPlay", '{"item":{}}'),  # not ours
        ("Other.someone_else.pong", '{"request_id":"r1"}'),
        ("Other.kodi_tickets.pong", "{not json"),
        ("Other.kodi_tickets.pong", '"a string"'),
        ("Other.kodi_tickets.pong", "null"),
        ("Other.kodi_tickets.pong", "[1, 2]"),
        (None, "{}"),
    ],
)
def test_other_and_malformed_notifications_are_ignored(method, data):
    assert protocol.parse_notification("x", method, data) is None


@pytest.mark.parametrize("request_id", [None, "", 5, ["r1"]])
def test_a_request_id_must_be_a_non_empty_string(request_id):
    message = protocol.parse_notification("a", "Other.kodi_tickets.pong", json.dumps({"request_id": request_id}))
    assert message.request_id is None


def test_request_ids_are_random_and_distinct():
    ids = {protocol.new_request_id() for _ in range(1000)}
    assert len(ids) == 1000
    assert all(isinstance(i, str) and len(i) >= 16 for i in ids)


@pytest.mark.parametrize(
    "text, expected",
    [
        ("2026-11-27T18:30:00Z", datetime(2026, 11, 27, 18, 30, tzinfo=timezone.utc)),
        ("2026-11-27T18:30:00.123456789Z", datetime(2026, 11, 27, 18, 30, 0, 123456, tzinfo=timezone.utc)),
        ("2026-11-27t18:30:00z", datetime(2026, 11, 27, 18, 30, tzinfo=timezone.utc)),
        ("2026-11-27T20:30:00+02:00", datetime(2026, 11, 27, 18, 30, tzinfo=timezone.utc)),
        ("2026-11-27T16:00:00-02:30", datetime(2026, 11, 27, 18, 30, tzinfo=timezone.utc)),
    ],
)
def test_rfc3339_timestamps(text, expected):
    assert protocol.parse_rfc3339(text) == expected


@pytest.mark.parametrize("text", [None, "", "2026-11-27", "2026-11-27T18:30:00", "2026-13-01T00:00:00Z", "soon", 17])
def test_bad_timestamps_are_none(text):
    assert protocol.parse_rfc3339(text) is None


def test_minutes_until_rounds_up_and_never_goes_negative():
    now = datetime(2026, 11, 27, 18, 0, tzinfo=timezone.utc)
    assert protocol.minutes_until("2026-11-27T18:42:00Z", now) == 42
    assert protocol.minutes_until("2026-11-27T18:41:30Z", now) == 42
    assert protocol.minutes_until("2026-11-27T18:00:01Z", now) == 1
    assert protocol.minutes_until("2026-11-27T18:00:00Z", now) == 0
    assert protocol.minutes_until("2026-11-27T17:00:00Z", now) == 0
    assert protocol.minutes_until(None, now) is None
    assert protocol.minutes_until((now + timedelta(hours=2)).isoformat(), now) == 120


@pytest.mark.parametrize(
    "seconds, minutes",
    [(0, 0), (1, 1), (59.5, 1), (60, 1), (61, 2), (2520, 42), (-30, 0), (None, None), ("60", None), (True, None),
     (math.nan, None), (math.inf, None)],
)
def test_minutes_from_seconds(seconds, minutes):
    assert protocol.minutes_from_seconds(seconds) == minutes


@pytest.mark.parametrize("value, minutes", [(5, 5), (1, 1), (0, 0), (4.6, 5), (-1, None), (None, None), ("5", None), (False, None)])
def test_whole_minutes(value, minutes):
    assert protocol.whole_minutes(value) == minutes


def test_every_request_has_its_documented_answer():
    assert protocol.ANSWER_TO == {
        "kodi_tickets.ping": "kodi_tickets.pong",
        "kodi_tickets.pin": "kodi_tickets.result",
        "kodi_tickets.time_left": "kodi_tickets.session",
    }
    assert protocol.PING_TIMEOUT == 3.0
