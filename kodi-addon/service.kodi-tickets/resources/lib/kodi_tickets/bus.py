"""The add-on's side of the bus: send a request, route the answers by request_id, wait.

Kodi delivers notifications to an xbmc.Monitor, which hands each one to Bus.on_notification
(kodi.py wires that). Waiting is done by a `waiter` whose wait(seconds) returns True once
Kodi asks the add-on to stop: in Kodi it is Monitor.waitForAbort, which also runs the queued
onNotification callbacks, so answers arrive while we wait. No Kodi module is imported here.
"""
import threading
import time

from . import protocol

# Each wait step for an answer. Kodi runs the Listener's callbacks only between its own wait
# steps (kodi.py), so an answer reaches a waiting request after both: at 0.1 s each, a ping
# and a PIN cost up to 0.4 s on the TV. Kodi's waitForAbort wakes at once on abort anyway.
STEP = 0.02
# After an answer, the agent's next message comes soon (`closing` follows an accepted PIN):
# the Listener keeps its short step this long.
FOLLOW_UP = 2.0
# Re-send a ping or time_left that has no answer yet after this long (see Bus.request).
RESEND_EVERY = 1.0
# Warnings kept for the service to relay; older ones are dropped.
MAX_WARNINGS = 10


class Reply:
    """The outcome of one request: `status` is one of the constants below."""

    ANSWERED = "answered"
    TIMEOUT = "timeout"
    ABORTED = "aborted"
    CANCELLED = "cancelled"
    SEND_FAILED = "send_failed"

    __slots__ = ("status", "message")

    def __init__(self, status, message=None):
        self.status = status
        self.message = message

    @property
    def answered(self):
        return self.status == Reply.ANSWERED

    @property
    def data(self):
        return self.message.data if self.message is not None else {}

    def __repr__(self):
        return "Reply(%r, %r)" % (self.status, self.message)


class Bus:
    """Requests to the agent and the messages it sends unasked (warnings).

    send(message, data) -> bool broadcasts one message (JSONRPC.NotifyAll in Kodi).
    waiter.wait(seconds) -> bool sleeps, True when Kodi asks us to stop.
    clock() -> seconds, monotonic.
    """

    def __init__(self, send, waiter, clock=time.monotonic, log=None, new_request_id=protocol.new_request_id):
        self._send = send
        self._waiter = waiter
        self._clock = clock
        self._log = log or (lambda message: None)
        self._new_request_id = new_request_id
        self._lock = threading.Lock()
        self._pending = {}  # request_id -> the answer's message name
        self._answers = {}  # request_id -> Message
        self._warnings = []
        self._hold_until = None  # clock time until which no dialog may open (after `closing`)
        self._closing = []  # request ids of `closing` messages not yet acknowledged
        self._answered_at = None  # clock time of the last answer to one of our requests

    # -- receiving (called from the Monitor) --------------------------------------------

    def on_notification(self, sender, method, data):
        """Takes every notification Kodi delivers; keeps only answers we wait for and warnings."""
        message = protocol.parse_notification(sender, method, data)
        if message is None or message.sender == protocol.SENDER:
            return  # not ours, malformed, or our own broadcast coming back
        with self._lock:
            if message.name == protocol.WARNING:
                self._warnings.append(message)
                del self._warnings[:-MAX_WARNINGS]
                return
            if message.name == protocol.CLOSING:
                self._hold_locked(message.request_id)
                return
            rid = message.request_id
            if rid is None or self._pending.get(rid) != message.name:
                return  # an answer to someone else's request (or the other entry point's)
            # The first answer counts: the agent answers once per request_id.
            self._answers.setdefault(rid, message)
            self._answered_at = self._clock()

    def expecting(self):
        """True while a request waits for its answer, and shortly after one came: then the
        agent's messages should reach the add-on at once, not at its idle pace."""
        with self._lock:
            if self._pending:
                return True
            return self._answered_at is not None and self._clock() - self._answered_at < FOLLOW_UP

    def take_warnings(self):
        """The warnings received since the last call, oldest first."""
        with self._lock:
            warnings, self._warnings = self._warnings, []
        return warnings

    def _hold_locked(self, request_id):
        self._hold_until = self._clock() + protocol.HOLD_AFTER_CLOSING
        self._closing.append(request_id)

    def holding(self):
        """True while the agent is switching profiles (after `closing`): open no dialog."""
        with self._lock:
            return self._hold_until is not None and self._clock() < self._hold_until

    def take_closing(self):
        """The request ids of the `closing` messages received since the last call."""
        with self._lock:
            closing, self._closing = self._closing, []
        return closing

    def acknowledge_closing(self, request_id):
        """Tells the agent that no dialog of the add-on is open any more."""
        self._send(protocol.CLOSED, {"request_id": request_id})

    # -- requesting -----------------------------------------------------------------------

    def request(self, name, data, timeout, on_tick=None, resend_every=None):
        """Sends request `name` and waits up to `timeout` seconds for its answer.

        on_tick(fraction_of_timeout_elapsed) is called on every step; returning True cancels
        the wait (e.g. the user pressed Cancel on a progress dialog).
        resend_every: send the same request (same request_id) again after so many seconds
        without an answer. Notifications reach only the clients connected at that moment,
        and the agent's connection to Kodi drops for a second or two after every profile
        switch: a re-sent ping or time_left gets through once it is back. Never used for a
        PIN (the agent answers a PIN once per request_id)."""
        answer_name = protocol.ANSWER_TO[name]
        rid = self._new_request_id()
        payload = dict(data)
        payload["request_id"] = rid
        with self._lock:
            self._pending[rid] = answer_name
        try:
            if not self._send(name, payload):
                self._log("could not send %s" % name)
                return Reply(Reply.SEND_FAILED)
            start = last_sent = self._clock()
            while True:
                with self._lock:
                    message = self._answers.pop(rid, None)
                if message is not None:
                    return Reply(Reply.ANSWERED, message)
                elapsed = self._clock() - start
                if elapsed >= timeout:
                    return Reply(Reply.TIMEOUT)
                if on_tick is not None and on_tick(elapsed / timeout):
                    return Reply(Reply.CANCELLED)
                if self._waiter.wait(STEP):
                    return Reply(Reply.ABORTED)
                now = self._clock()
                if resend_every is not None and now - last_sent >= resend_every and now - start < timeout:
                    last_sent = now
                    self._send(name, payload)
        finally:
            with self._lock:
                self._pending.pop(rid, None)
                self._answers.pop(rid, None)

    def ping(self):
        return self.request(protocol.PING, {}, protocol.PING_TIMEOUT, resend_every=RESEND_EVERY)

    def send_pin(self, pin, on_tick=None):
        return self.request(protocol.PIN, {"pin": pin}, protocol.RESULT_TIMEOUT, on_tick)

    def time_left(self):
        return self.request(protocol.TIME_LEFT, {}, protocol.SESSION_TIMEOUT, resend_every=RESEND_EVERY)
