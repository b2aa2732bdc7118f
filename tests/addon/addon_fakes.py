"""Fake Kodi for the add-on's unit tests (conftest.py installs it, the tests import helpers).

Stub modules xbmc, xbmcgui, xbmcaddon and xbmcvfs go into sys.modules before the add-on is
imported. They act on one FakeKodi (the `kodi` fixture, new for each test) with a fake clock:

- xbmc.executeJSONRPC(JSONRPC.NotifyAll) records the broadcast, echoes it back to every
  Monitor (as real Kodi does) and hands it to `kodi.agent`, a FakeAgent whose answers are
  scheduled on the fake clock;
- xbmc.Monitor.waitForAbort(t) in the test's (main) thread moves the clock by t, delivers the
  notifications due by then through onNotification (Kodi runs a Monitor's callbacks only in
  the thread that made it, while that thread waits) and returns True once `kodi.abort_at`
  is reached. A Monitor made in another thread (the add-on's Listener) gets its
  notifications in its own waitForAbort, which never moves the clock; the main thread's
  waitForAbort returns only once every such thread has handled what it was given and is
  waiting again, so the tests stay deterministic;
- xbmcgui.Dialog().numeric answers from `kodi.pin_inputs`; when the list runs out, Kodi is
  stopping the add-on (abort requested, "" returned), so every loop ends;
- ok / notification / progress dialogs are recorded in `kodi.shown`;
- xbmcaddon.Addon().getLocalizedString reads the add-on's real strings.po.
"""
import json
import re
import sys
import threading
import types
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
ADDON_DIR = ROOT / "kodi-addon" / "service.kodi-tickets"
LIB_DIR = ADDON_DIR / "resources" / "lib"
STRINGS_PO = ADDON_DIR / "resources" / "language" / "resource.language.en_gb" / "strings.po"

# No __pycache__ inside the add-on folder (scripts/build-addon leaves it out anyway).
sys.dont_write_bytecode = True
if str(LIB_DIR) not in sys.path:
    sys.path.insert(0, str(LIB_DIR))


def parse_po(path=STRINGS_PO):
    """{id: msgid} of a Kodi strings.po (msgctxt "#NNNNN" then msgid "...")."""
    strings = {}
    context = None
    for line in path.read_text(encoding="utf-8").splitlines():
        m = re.match(r'^msgctxt "#(\d+)"$', line)
        if m:
            context = int(m.group(1))
            continue
        m = re.match(r'^msgid "(.*)"$', line)
        if m and context is not None:
            if context in strings:
                raise AssertionError("string id %d twice in strings.po" % context)
            strings[context] = re.sub(r"\\(.)", lambda e: {"n": "\n", "t": "\t"}.get(e.group(1), e.group(1)), m.group(1))
            context = None
    return strings


AGENT = "kodi-tickets-agent"


class FakeAgent:
    """Answers the add-on's requests like the agent (PROTOCOL.md), after `delay` fake seconds."""

    def __init__(self, running=True, pins=None, session=None, delay=0.2, answer_pins=True):
        self.running = running
        self.pins = dict(pins or {})  # pin -> fields of the result (without request_id)
        self.session = session if session is not None else {"profile": None, "expires_at": None, "remaining_seconds": None}
        self.delay = delay
        self.answer_pins = answer_pins
        self.received = []
        self.answered = set()
        self.on_ok = None  # called with the FakeKodi when a PIN is accepted (e.g. load the profile)

    def __call__(self, kodi, message, data):
        self.received.append((message, data))
        if not self.running:
            return
        rid = data.get("request_id")
        if message == "kodi_tickets.ping":
            kodi.schedule(self.delay, AGENT, "kodi_tickets.pong", {"request_id": rid, "agent_version": "1.0.0"})
        elif message == "kodi_tickets.pin" and self.answer_pins and rid not in self.answered:
            self.answered.add(rid)
            result = self.pins.get(
                data.get("pin"), {"ok": False, "reason": "unknown_pin", "profile": None, "expires_at": None}
            )
            kodi.schedule(self.delay, AGENT, "kodi_tickets.result", dict(result, request_id=rid))
            if result.get("ok") and self.on_ok:
                self.on_ok(kodi)
        elif message == "kodi_tickets.time_left":
            kodi.schedule(self.delay, AGENT, "kodi_tickets.session", dict(self.session, request_id=rid))

    def messages(self, name):
        return [data for message, data in self.received if message == name]


class FakeKodi:
    def __init__(self):
        self.clock = 0.0
        self.abort_at = None
        self.monitors = []
        self.scheduled = []  # [time, seq, sender, method, data_text]
        self._seq = 0
        self.broadcasts = []  # (sender, message, data)
        self.agent = FakeAgent(running=False)
        self.jsonrpc_error = False
        self.pin_inputs = []
        self.numeric_calls = []
        self.numeric_at = []  # fake clock at each PIN pad
        self.shown = []  # ("ok" | "notification" | "progress", heading, message, clock)
        self.progress_cancel_after = None  # fake seconds after which the progress dialog is cancelled
        self.strings = parse_po()
        self.string_ids_used = set()
        self.settings = {
            "pinpad_on_login": True,
            "pinpad_profile": "Tickets",
            "time_left_on_start": True,
            "relay_warnings": True,
        }
        self.profile = "Tickets"
        self.info_label_reads = []  # (label, aborted at the time)
        self.logs = []
        self.waits = []
        self.builtins = []  # xbmc.executebuiltin calls
        self.open_modal = None  # the modal dialog open now ("numericinput" / "okdialog")
        self.closed_by_builtin = []
        self.cond = threading.Condition(threading.RLock())
        self.generation = 0  # moves with the clock and with each delivery

    # -- time and abort -------------------------------------------------------------------

    @property
    def aborted(self):
        return self.abort_at is not None and self.clock >= self.abort_at

    def abort(self, after=0.0):
        with self.cond:
            self.abort_at = self.clock + after
            self.cond.notify_all()

    def schedule(self, delay, sender, message, data):
        """A notification Kodi delivers `delay` fake seconds from now, as Other.<message>."""
        with self.cond:
            self._seq += 1
            text = data if isinstance(data, str) else json.dumps(data)
            self.scheduled.append([self.clock + delay, self._seq, sender, "Other." + message, text])
            self.scheduled.sort()

    def advance(self, seconds):
        """Moves the clock (main thread only), delivering what falls due."""
        assert threading.current_thread() is threading.main_thread()
        target = self.clock + seconds
        while True:
            with self.cond:
                if not (self.scheduled and self.scheduled[0][0] <= target):
                    break
                when, _, sender, method, text = self.scheduled.pop(0)
                self.clock = max(self.clock, when)
                monitors = list(self.monitors)
            for monitor in monitors:
                monitor._deliver(sender, method, text)
            with self.cond:
                self.generation += 1
                self.cond.notify_all()
            self.settle()
        with self.cond:
            self.clock = target
            self.generation += 1
            self.cond.notify_all()
        self.settle()

    def deliver_now(self, sender, message, data):
        """A notification Kodi delivers at once (e.g. while a modal dialog is open)."""
        self.schedule(0.0, sender, message, data)
        self.advance(0.0)

    def settle(self, timeout=5.0):
        """Waits until every other thread's Monitor has handled its notifications and waits
        again (or its thread ended)."""
        import time as real_time  # time.monotonic is the fake clock in the tests

        def settled():
            return all(m._idle() for m in self.monitors if m._thread is not threading.current_thread())

        deadline = real_time.perf_counter() + timeout
        with self.cond:
            # Short slices: a thread that ends does not notify.
            while not self.cond.wait_for(settled, 0.002):
                assert real_time.perf_counter() < deadline, "a Monitor thread did not settle"

    # -- what the stub modules call ------------------------------------------------------

    def execute_jsonrpc(self, text):
        request = json.loads(text)
        if self.jsonrpc_error or request.get("method") != "JSONRPC.NotifyAll":
            return json.dumps({"id": request.get("id"), "jsonrpc": "2.0", "error": {"code": -32602, "message": "Invalid params."}})
        params = request["params"]
        assert set(params) == {"sender", "message", "data"}, params
        self.broadcasts.append((params["sender"], params["message"], params["data"]))
        self.schedule(0.0, params["sender"], params["message"], params["data"])  # Kodi echoes to us too
        self.agent(self, params["message"], params["data"])
        return json.dumps({"id": request.get("id"), "jsonrpc": "2.0", "result": "OK"})

    def text_from_po(self, text):
        """Is `text` one of strings.po's strings (with {0} filled in by a number)?"""
        for template in self.strings.values():
            pattern = "^" + re.escape(template).replace(r"\{0\}", r"-?\d+") + "$"
            if re.match(pattern, text):
                return True
        return False

    def sent(self, name):
        return [data for sender, message, data in self.broadcasts if message == name]

    def dialogs(self, kind=None):
        return [(heading, message) for k, heading, message, _ in self.shown if kind is None or k == kind]


STATE = {"kodi": None}


def _kodi():
    kodi = STATE["kodi"]
    assert kodi is not None, "the `kodi` fixture is not in use"
    return kodi


def _make_stubs():
    xbmc = types.ModuleType("xbmc")
    xbmc.LOGDEBUG, xbmc.LOGINFO, xbmc.LOGWARNING, xbmc.LOGERROR, xbmc.LOGFATAL = 0, 1, 2, 3, 4

    def log(msg, level=xbmc.LOGDEBUG):
        _kodi().logs.append((level, msg))

    def executeJSONRPC(text):  # noqa: N802 - Kodi's name
        return _kodi().execute_jsonrpc(text)

    def getInfoLabel(label):  # noqa: N802
        kodi = _kodi()
        kodi.info_label_reads.append((label, kodi.aborted))
        return kodi.profile if label == "System.ProfileName" else ""

    def translatePath(path):  # noqa: N802 - gone from xbmc in Kodi 19+: must not be used
        raise AssertionError("xbmc.translatePath is gone in Kodi 19+: use xbmcvfs.translatePath")

    class Monitor:
        def __init__(self):
            kodi = _kodi()
            self._thread = threading.current_thread()
            self._inbox = []
            self._waiting = False
            self._generation = -1
            with kodi.cond:
                kodi.monitors.append(self)

        # -- the fake's plumbing ---------------------------------------------------------
        def _deliver(self, sender, method, text):
            if self._thread is threading.current_thread():
                self.onNotification(sender, method, text)
            elif self._thread.is_alive():
                kodi = _kodi()
                with kodi.cond:
                    self._inbox.append((sender, method, text))
                    kodi.cond.notify_all()

        def _idle(self):
            """Waiting, with nothing to handle, since the clock last moved."""
            kodi = _kodi()
            return not self._thread.is_alive() or (
                self._waiting and not self._inbox and self._generation == kodi.generation
            )

        def _wait_in_other_thread(self, kodi):
            # Returns when there is something to handle, on abort, or when the main thread
            # moved the clock: then the thread runs one round of its loop before it counts as
            # settled again (as if it, too, had waited that long).
            with kodi.cond:
                self._generation = kodi.generation
                self._waiting = True
                kodi.cond.notify_all()
                kodi.cond.wait_for(
                    lambda: self._inbox or kodi.aborted or kodi.generation != self._generation, 0.01
                )
                inbox, self._inbox = self._inbox, []
                self._waiting = False
            for sender, method, text in inbox:
                self.onNotification(sender, method, text)
            return kodi.aborted

        # -- Kodi's API --------------------------------------------------------------------
        def waitForAbort(self, timeout=-1):  # noqa: N802
            kodi = _kodi()
            # Kodi waits forever for 0 or a negative timeout: the add-on must never do that here.
            assert timeout is not None and timeout > 0, "waitForAbort(%r) would block forever" % (timeout,)
            if self._thread is not threading.main_thread():
                return self._wait_in_other_thread(kodi)
            kodi.waits.append(timeout)
            kodi.settle()
            if kodi.aborted:
                return True
            if kodi.abort_at is not None and kodi.abort_at <= kodi.clock + timeout:
                kodi.advance(kodi.abort_at - kodi.clock)
                return True
            kodi.advance(timeout)
            return kodi.aborted

        def abortRequested(self):  # noqa: N802
            return _kodi().aborted

        def onNotification(self, sender, method, data):  # noqa: N802
            pass

    def executebuiltin(command, wait=False):
        kodi = _kodi()
        kodi.builtins.append(command)
        m = re.match(r"^Dialog\.Close\((\w+),true\)$", command)
        if m and kodi.open_modal == m.group(1):
            kodi.closed_by_builtin.append(m.group(1))

    xbmc.log = log
    xbmc.executebuiltin = executebuiltin
    xbmc.executeJSONRPC = executeJSONRPC
    xbmc.getInfoLabel = getInfoLabel
    xbmc.translatePath = translatePath
    xbmc.Monitor = Monitor

    xbmcgui = types.ModuleType("xbmcgui")
    xbmcgui.NOTIFICATION_INFO = "info"
    xbmcgui.NOTIFICATION_WARNING = "warning"
    xbmcgui.NOTIFICATION_ERROR = "error"

    def _record(kind, heading, message):
        kodi = _kodi()
        assert not kodi.aborted, "%s dialog shown after Kodi asked the add-on to stop" % kind
        assert kodi.text_from_po(heading), "heading not from strings.po: %r" % heading
        assert kodi.text_from_po(message), "text not from strings.po: %r" % message
        kodi.shown.append((kind, heading, message, kodi.clock))

    class Dialog:
        def numeric(self, type, heading, defaultt="", bHiddenInput=False):  # noqa: A002,N803
            kodi = _kodi()
            assert not kodi.aborted, "PIN pad shown after Kodi asked the add-on to stop"
            assert kodi.text_from_po(heading), heading
            kodi.numeric_calls.append((type, heading, defaultt, bHiddenInput))
            kodi.numeric_at.append(kodi.clock)
            if not kodi.pin_inputs:
                kodi.abort()  # nothing more to type: Kodi stops the add-on, closing the dialog
                return ""
            item = kodi.pin_inputs.pop(0)
            kodi.open_modal = "numericinput"
            try:
                return item(kodi) if callable(item) else item
            finally:
                kodi.open_modal = None

        def ok(self, heading, message):
            _record("ok", heading, message)
            return True

        def notification(self, heading, message, icon="", time=5000, sound=True):  # noqa: A002
            _record("notification", heading, message)

    class DialogProgress:
        def create(self, heading, message=""):
            _record("progress", heading, message)
            self._opened = _kodi().clock
            self.closed = False

        def update(self, percent, message=""):
            assert 0 <= percent <= 100, percent

        def iscanceled(self):
            kodi = _kodi()
            after = kodi.progress_cancel_after
            return after is not None and kodi.clock - self._opened >= after

        def close(self):
            self.closed = True

    xbmcgui.Dialog = Dialog
    xbmcgui.DialogProgress = DialogProgress

    xbmcaddon = types.ModuleType("xbmcaddon")

    class Addon:
        def __init__(self, id=None):  # noqa: A002
            self.id = id or "service.kodi-tickets"

        def getLocalizedString(self, string_id):  # noqa: N802
            kodi = _kodi()
            kodi.string_ids_used.add(string_id)
            return kodi.strings.get(string_id, "")

        def getSettingBool(self, setting_id):  # noqa: N802
            value = _kodi().settings[setting_id]
            assert isinstance(value, bool), setting_id
            return value

        def getSettingString(self, setting_id):  # noqa: N802
            value = _kodi().settings[setting_id]
            assert isinstance(value, str), setting_id
            return value

        def getAddonInfo(self, key):  # noqa: N802
            return {
                "id": self.id,
                "name": "Kodi Tickets",
                "icon": str(ADDON_DIR / "resources" / "icon.png"),
                "path": str(ADDON_DIR),
            }.get(key, "")

    xbmcaddon.Addon = Addon

    xbmcvfs = types.ModuleType("xbmcvfs")
    xbmcvfs.translatePath = lambda path: path
    return {"xbmc": xbmc, "xbmcgui": xbmcgui, "xbmcaddon": xbmcaddon, "xbmcvfs": xbmcvfs}


def install():
    """Puts the stub modules into sys.modules (before the add-on's kodi.py is imported)."""
    for name, module in _make_stubs().items():
        sys.modules.setdefault(name, module)




def expires_in(seconds):
    """An RFC 3339 UTC timestamp `seconds` from now (wall clock, as the add-on computes)."""
    from datetime import datetime, timedelta, timezone

    return (datetime.now(timezone.utc) + timedelta(seconds=seconds)).strftime("%Y-%m-%dT%H:%M:%SZ")


def ok_result(profile="Kids", seconds=42 * 60 - 20):
    return {"ok": True, "reason": None, "profile": profile, "expires_at": expires_in(seconds)}


def refused(reason):
    return {"ok": False, "reason": reason, "profile": None, "expires_at": None}
