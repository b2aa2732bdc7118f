"""The PIN pad flow (flows.pin_pad) on the fake Kodi, through the real adapter."""
import pytest

from addon_fakes import FakeAgent, ok_result, refused
from kodi_tickets import flows, protocol
from kodi_tickets import strings as S
from kodi_tickets.flows import Outcome


def po(kodi, string_id, *args):
    text = kodi.strings[string_id]
    return text.format(*args) if args else text


def test_a_valid_pin_opens_the_profile_and_says_welcome(kodi, env):
    kodi.agent = FakeAgent(pins={"1234": ok_result("Kids", 42 * 60 - 20)})
    kodi.pin_inputs = ["1234"]
    outcome = flows.pin_pad(env)
    assert outcome.kind == Outcome.OK
    assert outcome.profile == "Kids"
    # The masked numeric pad, with the heading from strings.po.
    assert kodi.numeric_calls == [(0, po(kodi, S.ENTER_PIN), "", True)]
    # Ping first, then the PIN.
    assert [m for _, m, _ in kodi.broadcasts] == ["kodi_tickets.ping", "kodi_tickets.pin"]
    assert kodi.sent("kodi_tickets.pin")[0]["pin"] == "1234"
    assert kodi.dialogs("notification") == [(po(kodi, S.ADDON_NAME), "Welcome — 42 minutes")]
    assert kodi.dialogs("ok") == []


@pytest.mark.parametrize(
    "seconds, text",
    [(60, "Welcome — 1 minute"), (30, "Welcome — 1 minute"), (90 * 60, "Welcome — 90 minutes")],
)
def test_welcome_minutes(kodi, env, seconds, text):
    kodi.agent = FakeAgent(pins={"1234": ok_result("Kids", seconds)})
    kodi.pin_inputs = ["1234"]
    assert flows.pin_pad(env).kind == Outcome.OK
    assert kodi.dialogs("notification")[0][1] == text


def test_welcome_without_a_known_end(kodi, env):
    kodi.agent = FakeAgent(pins={"1234": {"ok": True, "profile": "Kids", "expires_at": None, "reason": None}})
    kodi.pin_inputs = ["1234"]
    assert flows.pin_pad(env).kind == Outcome.OK
    assert kodi.dialogs("notification")[0][1] == "Welcome"


@pytest.mark.parametrize("bad", ["1", "123", "12345", "0000000"])
def test_a_pin_without_exactly_4_digits_is_asked_again(kodi, env, bad):
    kodi.agent = FakeAgent(pins={"4321": ok_result()})
    kodi.pin_inputs = [bad, "4321"]
    assert flows.pin_pad(env).kind == Outcome.OK
    assert len(kodi.numeric_calls) == 2
    assert kodi.dialogs("ok") == [(po(kodi, S.ADDON_NAME), po(kodi, S.PIN_FORMAT))]
    # The malformed PIN never left the add-on.
    assert [d["pin"] for d in kodi.sent("kodi_tickets.pin")] == ["4321"]


def test_cancel_sends_nothing(kodi, env):
    kodi.agent = FakeAgent()
    kodi.pin_inputs = [""]
    assert flows.pin_pad(env).kind == Outcome.CANCELLED
    assert kodi.broadcasts == []
    assert kodi.shown == []


def test_agent_not_running_says_so_within_3_seconds(kodi, env):
    kodi.agent = FakeAgent(running=False)
    kodi.pin_inputs = ["1234"]
    assert flows.pin_pad(env).kind == Outcome.AGENT_DOWN
    assert kodi.clock <= protocol.PING_TIMEOUT + 0.2
    assert kodi.dialogs("ok") == [(po(kodi, S.ADDON_NAME), po(kodi, S.AGENT_NOT_RUNNING))]
    assert kodi.sent("kodi_tickets.pin") == []


def test_jsonrpc_failure_is_agent_not_running(kodi, env):
    kodi.jsonrpc_error = True
    kodi.pin_inputs = ["1234"]
    assert flows.pin_pad(env).kind == Outcome.AGENT_DOWN
    assert kodi.dialogs("ok")[0][1] == po(kodi, S.AGENT_NOT_RUNNING)


REASONS = [
    ("unknown_pin", S.REASON_UNKNOWN_PIN),
    ("rate_limited", S.REASON_RATE_LIMITED),
    ("server_unreachable", S.REASON_SERVER_UNREACHABLE),
    ("kodi_error", S.REASON_KODI_ERROR),
    ("bad_request", S.REASON_BAD_REQUEST),
    ("a_reason_from_a_newer_agent", S.REASON_BAD_REQUEST),
    (None, S.REASON_BAD_REQUEST),
]


@pytest.mark.parametrize("reason, string_id", REASONS)
def test_each_reason_shows_its_message(kodi, env, reason, string_id):
    kodi.agent = FakeAgent(pins={"1234": refused(reason)})
    kodi.pin_inputs = ["1234"]
    outcome = flows.pin_pad(env)
    assert outcome.kind == Outcome.FAILED
    assert outcome.reason == reason
    assert kodi.dialogs("ok") == [(po(kodi, S.ADDON_NAME), po(kodi, string_id))]
    assert kodi.dialogs("notification") == []


def test_every_documented_reason_has_its_own_message():
    assert set(S.REASON_MESSAGES) == set(protocol.REASONS)
    assert len(set(S.REASON_MESSAGES.values())) == len(protocol.REASONS)


def test_no_result_in_time_says_so(kodi, env):
    kodi.agent = FakeAgent(answer_pins=False)
    kodi.pin_inputs = ["1234"]
    assert flows.pin_pad(env).kind == Outcome.NO_ANSWER
    assert kodi.clock <= protocol.PING_TIMEOUT + protocol.RESULT_TIMEOUT
    assert kodi.dialogs("ok") == [(po(kodi, S.ADDON_NAME), po(kodi, S.NO_ANSWER))]


def test_a_progress_dialog_shows_while_the_pin_is_checked(kodi, env):
    kodi.agent = FakeAgent(pins={"1234": ok_result()}, delay=2.0)
    kodi.pin_inputs = ["1234"]
    flows.pin_pad(env)
    assert kodi.dialogs("progress") == [(po(kodi, S.ADDON_NAME), po(kodi, S.CHECKING_PIN))]


def test_cancelling_the_progress_dialog_stops_waiting(kodi, env):
    kodi.agent = FakeAgent(answer_pins=False)
    kodi.progress_cancel_after = 1.0
    kodi.pin_inputs = ["1234"]
    assert flows.pin_pad(env).kind == Outcome.CANCELLED
    assert kodi.dialogs("ok") == []


def test_abort_while_waiting_for_the_result_returns_promptly_and_shows_nothing(kodi, env):
    kodi.agent = FakeAgent(answer_pins=False, delay=0.2)
    kodi.pin_inputs = ["1234"]
    kodi.abort_at = 4.0
    assert flows.pin_pad(env).kind == Outcome.ABORTED
    assert kodi.clock == pytest.approx(4.0)
    assert kodi.dialogs("ok") == [] and kodi.dialogs("notification") == []


def test_abort_while_waiting_for_the_pong(kodi, env):
    kodi.agent = FakeAgent(running=False)
    kodi.pin_inputs = ["1234"]
    kodi.abort_at = 1.0
    assert flows.pin_pad(env).kind == Outcome.ABORTED
    assert kodi.clock == pytest.approx(1.0)
    assert kodi.dialogs("ok") == []


def test_abort_closing_the_pin_pad(kodi, env):
    kodi.agent = FakeAgent()

    def kodi_stops(k):
        k.abort()
        return ""

    kodi.pin_inputs = [kodi_stops]
    assert flows.pin_pad(env).kind == Outcome.ABORTED
    assert kodi.broadcasts == [] and kodi.shown == []


def test_the_pin_is_never_logged(kodi, env):
    kodi.agent = FakeAgent(pins={"2468": refused("unknown_pin")})
    kodi.pin_inputs = ["2468"]
    flows.pin_pad(env)
    assert kodi.logs
    assert not any("2468" in message for _, message in kodi.logs)


def test_a_quick_answer_opens_no_progress_dialog(kodi, env):
    kodi.agent = FakeAgent(pins={"1234": ok_result()}, delay=flows.PROGRESS_AFTER / 4)
    kodi.pin_inputs = ["1234"]
    assert flows.pin_pad(env).kind == Outcome.OK
    assert kodi.dialogs("progress") == []
