"""The service (service.py) and the script (default.py), run as Kodi runs them: the entry
file itself, importing resources.lib.kodi_tickets from the add-on folder, on the fake Kodi."""
import runpy
import sys
import threading

import pytest

from addon_fakes import ADDON_DIR, AGENT, FakeAgent, expires_in, ok_result, refused
from kodi_tickets import protocol
from kodi_tickets import service as service_module
from kodi_tickets import strings as S


@pytest.fixture
def run(kodi, monkeypatch):
    monkeypatch.syspath_prepend(str(ADDON_DIR))

    def run_entry(name, *args):
        path = str(ADDON_DIR / name)
        monkeypatch.setattr(sys, "argv", [path] + list(args))
        runpy.run_path(path, run_name="__main__")
        # Kodi waits for every thread of a script: the Listener must be gone.
        assert not [t for t in threading.enumerate() if t.name == "kodi-tickets-listener"]

    return run_entry


def po(kodi, string_id, *args):
    text = kodi.strings[string_id]
    return text.format(*args) if args else text


def session(minutes, profile="Kids"):
    return {"profile": profile, "expires_at": expires_in(minutes * 60), "remaining_seconds": minutes * 60 - 10}


def load_profile_after(seconds):
    """What the agent does after an accepted PIN: Kodi loads the profile and stops services."""
    return lambda kodi: kodi.abort(after=seconds)


# -- the service in the PIN-pad profile ----------------------------------------------------


def test_the_pin_pad_comes_back_after_cancel_and_bad_pins_until_a_ticket_opens_a_profile(kodi, run):
    agent = FakeAgent(pins={"1234": ok_result("Kids")})
    agent.on_ok = load_profile_after(1.0)
    kodi.agent = agent
    kodi.profile = "Tickets"
    kodi.pin_inputs = ["", "99", "5555", "1234"]
    run("service.py")
    assert len(kodi.numeric_calls) == 4
    heading = po(kodi, S.ADDON_NAME)
    assert kodi.dialogs("ok") == [(heading, po(kodi, S.PIN_FORMAT)), (heading, po(kodi, S.REASON_UNKNOWN_PIN))]
    assert kodi.dialogs("notification") == [(heading, "Welcome — 42 minutes")]
    assert [d["pin"] for d in kodi.sent("kodi_tickets.pin")] == ["5555", "1234"]
    # Stopped as soon as Kodi asked (the profile load), not after the 30 s grace.
    assert kodi.aborted and kodi.clock == pytest.approx(kodi.abort_at)


def test_the_pin_pad_comes_back_if_the_profile_does_not_load(kodi, run):
    kodi.agent = FakeAgent(pins={"1234": ok_result("Kids")})
    kodi.pin_inputs = ["1234"]  # then nothing: Kodi stops the service at the second pad
    run("service.py")
    assert len(kodi.numeric_calls) == 2
    assert kodi.numeric_at[1] - kodi.numeric_at[0] >= service_module.LOGIN_GRACE


def test_agent_not_running_then_the_pin_pad_again(kodi, run):
    kodi.agent = FakeAgent(running=False)
    kodi.pin_inputs = ["1234"]
    run("service.py")
    assert kodi.dialogs("ok") == [(po(kodi, S.ADDON_NAME), po(kodi, S.AGENT_NOT_RUNNING))]
    assert len(kodi.numeric_calls) == 2
    assert kodi.numeric_at[1] <= protocol.PING_TIMEOUT + 1.0


@pytest.mark.parametrize("profile, setting", [("tickets", "Tickets"), ("Lobby", " lobby "), ("TICKETS", "tickets")])
def test_the_pin_pad_profile_name_is_a_setting_and_case_insensitive(kodi, run, profile, setting):
    kodi.profile = profile
    kodi.settings["pinpad_profile"] = setting
    run("service.py")
    assert len(kodi.numeric_calls) == 1


def test_no_pin_pad_when_the_setting_is_off(kodi, run):
    kodi.settings["pinpad_on_login"] = False
    kodi.agent = FakeAgent(session={"profile": None, "expires_at": None, "remaining_seconds": None})
    kodi.abort_at = 10.0
    run("service.py")
    assert kodi.numeric_calls == []
    assert kodi.sent("kodi_tickets.time_left")  # the ordinary profile behaviour instead


def test_abort_while_the_pin_pad_is_open(kodi, run):
    def kodi_stops(k):
        k.abort()
        return ""

    kodi.agent = FakeAgent()
    kodi.pin_inputs = [kodi_stops]
    run("service.py")
    assert kodi.broadcasts == [] and kodi.shown == []
    assert kodi.clock == 0.0


def test_abort_while_checking_a_pin(kodi, run):
    kodi.agent = FakeAgent(answer_pins=False)
    kodi.pin_inputs = ["1234"]
    kodi.abort_at = 5.0
    run("service.py")
    assert kodi.clock == pytest.approx(5.0)
    assert kodi.dialogs("ok") == []


# -- the service in a ticket's profile -----------------------------------------------------


def test_time_left_on_start_then_the_warnings(kodi, run):
    kodi.profile = "Kids"
    kodi.agent = FakeAgent(session=session(42))
    kodi.schedule(10.0, AGENT, "kodi_tickets.warning", {"profile": "Kids", "minutes_left": 5})
    kodi.schedule(11.0, AGENT, "kodi_tickets.warning", {"profile": "Teens", "minutes_left": 5})  # not ours
    kodi.schedule(12.0, AGENT, "kodi_tickets.warning", {"profile": "kids", "minutes_left": 1})
    kodi.schedule(13.0, AGENT, "kodi_tickets.warning", {"profile": "Kids", "minutes_left": "soon"})  # malformed
    kodi.abort_at = 20.0
    run("service.py")
    heading = po(kodi, S.ADDON_NAME)
    assert kodi.dialogs("notification") == [
        (heading, "42 minutes left"),
        (heading, "5 minutes left"),
        (heading, "1 minute left"),
    ]
    times = [t for kind, _, _, t in kodi.shown]
    assert times[0] >= service_module.START_DELAY
    assert 10.0 <= times[1] <= 10.0 + service_module.IDLE_STEP
    assert kodi.numeric_calls == [] and kodi.dialogs("ok") == []
    assert kodi.clock == pytest.approx(20.0)


def test_the_profile_name_is_read_once_at_start_and_never_while_stopping(kodi, run):
    kodi.profile = "Kids"
    kodi.agent = FakeAgent(session=session(42))
    kodi.abort_at = 8.0
    run("service.py")
    assert kodi.info_label_reads == [("System.ProfileName", False)]


def test_nothing_is_shown_on_start_without_a_session(kodi, run):
    kodi.profile = "Master user"
    kodi.agent = FakeAgent()
    kodi.abort_at = 10.0
    run("service.py")
    assert kodi.sent("kodi_tickets.time_left")
    assert kodi.shown == []


def test_nothing_is_shown_on_start_without_the_agent_and_warnings_still_come_through(kodi, run):
    kodi.profile = "Kids"
    kodi.agent = FakeAgent(running=False)
    kodi.schedule(12.0, AGENT, "kodi_tickets.warning", {"profile": "Kids", "minutes_left": 5})
    kodi.abort_at = 15.0
    run("service.py")
    assert kodi.dialogs("notification") == [(po(kodi, S.ADDON_NAME), "5 minutes left")]


def test_the_time_left_question_is_resent_while_the_agent_reconnects(kodi, run, monkeypatch):
    kodi.profile = "Kids"
    agent = FakeAgent(running=False, session=session(30))
    kodi.agent = agent
    advance = kodi.advance

    def advance_and_reconnect(seconds):
        advance(seconds)
        agent.running = kodi.clock >= 4.5

    monkeypatch.setattr(kodi, "advance", advance_and_reconnect)
    kodi.abort_at = 10.0
    run("service.py")
    assert kodi.dialogs("notification") == [(po(kodi, S.ADDON_NAME), "30 minutes left")]
    assert len({d["request_id"] for d in kodi.sent("kodi_tickets.time_left")}) == 1


def test_settings_can_turn_off_time_left_and_warnings(kodi, run):
    kodi.profile = "Kids"
    kodi.settings["time_left_on_start"] = False
    kodi.settings["relay_warnings"] = False
    kodi.agent = FakeAgent(session=session(42))
    kodi.schedule(3.0, AGENT, "kodi_tickets.warning", {"profile": "Kids", "minutes_left": 5})
    kodi.abort_at = 6.0
    run("service.py")
    assert kodi.broadcasts == []
    assert kodi.shown == []


def test_abort_during_the_start_delay(kodi, run):
    kodi.profile = "Kids"
    kodi.agent = FakeAgent(session=session(42))
    kodi.abort_at = 1.0
    run("service.py")
    assert kodi.broadcasts == [] and kodi.shown == []
    assert kodi.clock == pytest.approx(1.0)


# -- the script --------------------------------------------------------------------------


def test_the_script_shows_the_time_left_in_a_dialog(kodi, run):
    kodi.profile = "Kids"
    kodi.agent = FakeAgent(session=session(42))
    run("default.py")
    assert kodi.dialogs() == [(po(kodi, S.ADDON_NAME), "42 minutes left")]
    assert kodi.dialogs("ok") == kodi.dialogs()


def test_the_script_notify_mode_shows_a_notification(kodi, run):
    kodi.profile = "Kids"
    kodi.agent = FakeAgent(session={"profile": "Kids", "expires_at": expires_in(61), "remaining_seconds": None})
    run("default.py", "notify")
    assert kodi.dialogs() == [(po(kodi, S.ADDON_NAME), "2 minutes left")]
    assert kodi.dialogs("notification") == kodi.dialogs()


def test_the_script_without_a_session(kodi, run):
    kodi.profile = "Master user"
    kodi.agent = FakeAgent()
    run("default.py")
    assert kodi.dialogs("ok") == [(po(kodi, S.ADDON_NAME), po(kodi, S.NO_SESSION))]


def test_the_script_without_the_agent(kodi, run):
    kodi.profile = "Kids"
    kodi.agent = FakeAgent(running=False)
    run("default.py", "timeleft")
    assert kodi.dialogs("ok") == [(po(kodi, S.ADDON_NAME), po(kodi, S.AGENT_NOT_RUNNING))]
    assert kodi.clock <= protocol.SESSION_TIMEOUT + 0.2


def test_the_script_in_the_pin_pad_profile_is_one_go_at_the_pin_pad(kodi, run):
    kodi.profile = "Tickets"
    kodi.agent = FakeAgent()
    kodi.pin_inputs = ["", "1234"]
    run("default.py")
    assert len(kodi.numeric_calls) == 1  # cancelled: no loop in the script
    assert kodi.abort_at is None
    assert kodi.broadcasts == []


def test_the_script_pinpad_mode_anywhere(kodi, run):
    kodi.profile = "Kids"
    kodi.agent = FakeAgent(pins={"1234": refused("rate_limited")})
    kodi.pin_inputs = ["1234"]
    run("default.py", "pinpad")
    assert kodi.dialogs("ok") == [(po(kodi, S.ADDON_NAME), po(kodi, S.REASON_RATE_LIMITED))]


def test_the_script_timeleft_mode_in_the_pin_pad_profile(kodi, run):
    kodi.profile = "Tickets"
    kodi.agent = FakeAgent(session=session(5, "Tickets"))
    run("default.py", " TimeLeft ")
    assert kodi.dialogs("ok") == [(po(kodi, S.ADDON_NAME), "5 minutes left")]
    assert kodi.numeric_calls == []


# -- the agent switching profiles (`closing`, proposed addition to PROTOCOL.md) -------------


def agent_switches(request_id="c1"):
    """While the PIN pad is open, the agent announces a profile switch: the add-on must close
    the pad (Kodi cannot switch while a script holds a modal dialog) and say so."""

    def typing(kodi):
        kodi.deliver_now(AGENT, "kodi_tickets.closing", {"request_id": request_id} if request_id else {})
        assert kodi.closed_by_builtin == ["numericinput"]
        return ""  # what Kodi's numeric dialog returns when Dialog.Close closed it

    return typing


def test_closing_closes_the_pin_pad_answers_and_opens_nothing_until_the_switch(kodi, run):
    kodi.agent = FakeAgent()
    kodi.pin_inputs = [agent_switches("c1"), "1234"]
    kodi.abort_at = 10.0  # the switch: Kodi stops the service
    run("service.py")
    assert len(kodi.numeric_calls) == 1
    assert kodi.sent("kodi_tickets.closed") == [{"request_id": "c1"}]
    assert kodi.sent("kodi_tickets.pin") == [] and kodi.shown == []
    assert kodi.clock == pytest.approx(10.0)


def test_the_pin_pad_comes_back_when_no_switch_follows_closing(kodi, run):
    kodi.agent = FakeAgent()
    kodi.pin_inputs = [agent_switches(None)]  # then nothing: Kodi stops the service
    run("service.py")
    assert len(kodi.numeric_calls) == 2
    assert kodi.numeric_at[1] >= protocol.HOLD_AFTER_CLOSING
    assert kodi.sent("kodi_tickets.closed") == []  # no request_id, no answer


def test_closing_while_idle_is_answered(kodi, run):
    kodi.profile = "Kids"
    kodi.settings["time_left_on_start"] = False
    kodi.agent = FakeAgent()
    kodi.schedule(3.0, AGENT, "kodi_tickets.closing", {"request_id": "c7"})
    kodi.abort_at = 5.0
    run("service.py")
    assert kodi.sent("kodi_tickets.closed") == [{"request_id": "c7"}]


def test_no_dialog_while_the_agent_switches(kodi, env):
    from kodi_tickets import flows

    kodi.agent = FakeAgent(pins={"1234": refused("unknown_pin")}, session=session(42), delay=1.0)
    kodi.schedule(0.5, AGENT, "kodi_tickets.closing", {"request_id": "c2"})
    kodi.pin_inputs = ["1234"]
    # The refusal arrives during the hold: no OK dialog (a notification would be fine).
    assert flows.pin_pad(env).kind == flows.Outcome.FAILED
    assert kodi.dialogs("ok") == []
    assert flows.show_time_left(env, dialog=True) == flows.TimeLeft.SHOWN
    assert kodi.dialogs("ok") == []
    assert flows.pin_pad(env).kind == flows.Outcome.HELD
    assert len(kodi.numeric_calls) == 1


def test_the_progress_dialog_holds_closed_back_until_it_is_closed(kodi, env):
    """The agent switches once the add-on says `closed`: while the PIN's progress dialog is
    open the result in it has not been handled (welcome shown) yet."""
    assert not env.ui.modal_open()
    progress = env.ui.progress(po(kodi, S.ADDON_NAME), po(kodi, S.CHECKING_PIN))
    assert env.ui.modal_open()
    progress.close()
    assert not env.ui.modal_open()
    progress.close()
    assert not env.ui.modal_open(), "closing twice counts once"
