"""bus.py through the Kodi adapter (kodi.py) on the fake Kodi: requests, routing by
request_id, time-outs, abort."""
import itertools
import json

import pytest

from addon_fakes import AGENT, FakeAgent
from kodi_tickets import bus as bus_module
from kodi_tickets import kodi as adapter
from kodi_tickets import protocol
from kodi_tickets import strings
from kodi_tickets.bus import Bus, Reply


@pytest.fixture
def ids():
    counter = itertools.count(1)
    return lambda: "rid-%d" % next(counter)


@pytest.fixture
def bus(kodi, ids):
    monitor = adapter.BusMonitor()
    b = Bus(adapter.send, adapter.Waiter(monitor), clock=lambda: kodi.clock, new_request_id=ids)
    monitor.handler = b.on_notification
    b.monitor = monitor
    return b


def test_ping_is_answered_by_the_pong_with_its_request_id(kodi, bus):
    kodi.agent = FakeAgent(delay=0.3)
    reply = bus.ping()
    assert reply.status == Reply.ANSWERED
    assert reply.data == {"request_id": "rid-1", "agent_version": "1.0.0"}
    assert kodi.sent("kodi_tickets.ping") == [{"request_id": "rid-1"}]
    assert 0.3 <= kodi.clock < 0.5
    # Sent as the add-on, as PROTOCOL.md says.
    assert {sender for sender, _, _ in kodi.broadcasts} == {"service.kodi-tickets"}


def test_answers_to_other_requests_are_ignored(kodi, bus):
    kodi.agent = FakeAgent(running=False)
    # Someone else's pong, a result and a session for our id (wrong kinds), then ours.
    kodi.schedule(0.1, AGENT, "kodi_tickets.pong", {"request_id": "someone-else", "agent_version": "x"})
    kodi.schedule(0.2, AGENT, "kodi_tickets.result", {"request_id": "rid-1", "ok": True})
    kodi.schedule(0.3, AGENT, "kodi_tickets.session", {"request_id": "rid-1"})
    kodi.schedule(0.4, AGENT, "kodi_tickets.pong", {"agent_version": "no id"})
    kodi.schedule(0.5, AGENT, "kodi_tickets.pong", "{broken json")
    kodi.schedule(0.6, AGENT, "kodi_tickets.pong", {"request_id": "rid-1", "agent_version": "ours"})
    kodi.schedule(0.7, AGENT, "kodi_tickets.pong", {"request_id": "rid-1", "agent_version": "second"})
    reply = bus.ping()
    assert reply.answered
    assert reply.data["agent_version"] == "ours"
    assert 0.6 <= kodi.clock < 0.8


def test_our_own_broadcast_coming_back_is_not_an_answer(kodi, bus):
    kodi.agent = FakeAgent(running=False)
    # A pong with our request_id but sent by the add-on itself (e.g. the other entry point).
    kodi.schedule(0.1, "service.kodi-tickets", "kodi_tickets.pong", {"request_id": "rid-1"})
    reply = bus.ping()
    assert reply.status == Reply.TIMEOUT


def test_no_pong_within_3_seconds_is_a_timeout_and_the_ping_is_resent(kodi, bus):
    kodi.agent = FakeAgent(running=False)
    reply = bus.ping()
    assert reply.status == Reply.TIMEOUT
    assert protocol.PING_TIMEOUT <= kodi.clock <= protocol.PING_TIMEOUT + 0.15
    # Re-sent each second with the same request_id, for an agent that is reconnecting.
    assert kodi.sent("kodi_tickets.ping") == [{"request_id": "rid-1"}] * 3
    # Never a wait longer than a step, so an abort is seen at once.
    assert max(kodi.waits) <= bus_module.STEP


def test_a_pong_to_a_resent_ping_counts(kodi, bus, monkeypatch):
    agent = FakeAgent(running=False)
    kodi.agent = agent
    advance = kodi.advance

    def advance_and_reconnect(seconds):  # the agent is back 1.5 s in
        advance(seconds)
        agent.running = kodi.clock >= 1.5

    monkeypatch.setattr(kodi, "advance", advance_and_reconnect)
    reply = bus.ping()
    assert reply.answered
    assert 2.0 <= kodi.clock < 2.5  # the re-send at 2 s got through
    assert len(kodi.sent("kodi_tickets.ping")) == 3


def test_the_answer_to_a_timed_out_request_does_not_leak_into_the_next(kodi, bus):
    kodi.agent = FakeAgent(running=False)
    kodi.schedule(3.5, AGENT, "kodi_tickets.pong", {"request_id": "rid-1", "agent_version": "late"})
    assert bus.ping().status == Reply.TIMEOUT
    kodi.agent = FakeAgent(delay=1.0)
    reply = bus.ping()
    assert reply.answered
    assert reply.data["request_id"] == "rid-2"
    assert reply.data["agent_version"] == "1.0.0"


def test_abort_during_a_wait_returns_at_once(kodi, bus):
    kodi.agent = FakeAgent(running=True, answer_pins=False)
    kodi.abort_at = 1.25
    reply = bus.send_pin("1234")
    assert reply.status == Reply.ABORTED
    assert kodi.clock == pytest.approx(1.25)


def test_abort_already_requested_returns_without_waiting(kodi, bus):
    kodi.agent = FakeAgent(running=False)
    kodi.abort()
    assert bus.ping().status == Reply.ABORTED
    assert kodi.clock == 0.0


def test_a_pin_is_sent_once_and_never_resent(kodi, bus):
    kodi.agent = FakeAgent(running=True, answer_pins=False)
    reply = bus.send_pin("1234")
    assert reply.status == Reply.TIMEOUT
    assert protocol.RESULT_TIMEOUT <= kodi.clock <= protocol.RESULT_TIMEOUT + 0.15
    assert kodi.sent("kodi_tickets.pin") == [{"request_id": "rid-1", "pin": "1234"}]


def test_on_tick_can_cancel_the_wait(kodi, bus):
    kodi.agent = FakeAgent(running=True, answer_pins=False)
    fractions = []

    def tick(fraction):
        fractions.append(fraction)
        return kodi.clock >= 2.0

    assert bus.send_pin("1234", tick).status == Reply.CANCELLED
    assert kodi.clock == pytest.approx(2.0)
    assert fractions == sorted(fractions) and 0 <= fractions[0] and fractions[-1] < 1


def test_a_failed_send_returns_at_once(kodi, bus):
    kodi.jsonrpc_error = True
    assert bus.ping().status == Reply.SEND_FAILED
    assert kodi.clock == 0.0
    assert any("NotifyAll" in message for _, message in kodi.logs)


def test_warnings_are_kept_for_the_service_and_capped(kodi, bus):
    for minutes in range(15):
        kodi.schedule(0.0, AGENT, "kodi_tickets.warning", {"profile": "Kids", "minutes_left": minutes})
    kodi.advance(0.1)
    warnings = bus.take_warnings()
    assert [w.data["minutes_left"] for w in warnings] == list(range(5, 15))
    assert bus.take_warnings() == []


def test_a_monitor_never_raises_into_kodi(kodi):
    monitor = adapter.BusMonitor()

    def broken(sender, method, data):
        raise ValueError("boom")

    monitor.handler = broken
    monitor.onNotification(AGENT, "Other.kodi_tickets.pong", json.dumps({}))
    assert any("ignoring notification" in message for _, message in kodi.logs)
    monitor.handler = None
    monitor.onNotification(AGENT, "Other.kodi_tickets.pong", "{}")


def test_the_waiter_never_asks_kodi_to_wait_forever(kodi):
    waiter = adapter.Waiter(adapter.BusMonitor())
    assert waiter.wait(0) is False  # the fake asserts timeout > 0
    assert kodi.waits == [adapter.MIN_WAIT]


def test_the_bus_expects_the_agent_while_a_request_waits_and_just_after_its_answer(kodi, bus):
    seen = []
    kodi.agent = FakeAgent(delay=0.3)
    assert not bus.expecting()  # at rest
    reply = bus.request(protocol.PING, {}, protocol.PING_TIMEOUT, on_tick=lambda _: seen.append(bus.expecting()))
    assert reply.answered
    assert seen and all(seen)  # waiting
    assert bus.expecting()  # the answer has just come: a follow-up may too
    kodi.advance(bus_module.FOLLOW_UP + bus_module.STEP)
    assert not bus.expecting()


def test_the_listener_steps_short_only_while_the_agent_is_expected(kodi, bus):
    ui = adapter.UI(icon=None)
    listener = adapter.Listener(bus, ui)
    assert listener.step() == listener.STEP
    kodi.agent = FakeAgent(delay=0.1)
    assert bus.ping().answered
    assert listener.step() == listener.SHORT_STEP < listener.STEP
    kodi.advance(bus_module.FOLLOW_UP + bus_module.STEP)
    assert listener.step() == listener.STEP
    # A `closing` that waits for a dialog to close before its `closed` keeps it short too.
    progress = ui.progress(kodi.strings[strings.ADDON_NAME], kodi.strings[strings.CHECKING_PIN])
    kodi.deliver_now(AGENT, protocol.CLOSING, {"request_id": "closing-1"})
    listener.pump()
    assert listener.step() == listener.SHORT_STEP
    progress.close()
    listener.pump()
    assert kodi.sent(protocol.CLOSED) == [{"request_id": "closing-1"}]
    assert listener.step() == listener.STEP
