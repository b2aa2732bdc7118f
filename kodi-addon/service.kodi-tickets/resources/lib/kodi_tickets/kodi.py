"""The thin adapter between Kodi and the add-on's logic: the only module that imports xbmc*.

run_service() and run_script(args) are what the entry points (service.py, default.py) call.

Two threads. The entry point's own thread runs the logic, which blocks in Kodi's modal
dialogs (the PIN pad, OK dialogs) and waits on a plain xbmc.Monitor. A Listener thread owns
the Monitor that receives the bus: Kodi runs a Monitor's callbacks only in the thread that
made it, and only while that thread waits in waitForAbort, so answers and the agent's
`closing` arrive even while the PIN pad is open. On `closing` the Listener closes the
add-on's dialogs (Dialog.Close builtin) and answers `closed`.
"""
import threading
import time
from datetime import datetime, timezone

import xbmc
import xbmcaddon
import xbmcgui

from . import bus as bus_module
from . import config, protocol, script, service
from .bus import Bus

ADDON_ID = "service.kodi-tickets"
# Kodi's waitForAbort(0) waits forever: never pass less than this.
MIN_WAIT = 0.01
NOTIFICATION_MS = 6000


def log(message, level=None):
    xbmc.log("[%s] %s" % (ADDON_ID, message), xbmc.LOGINFO if level is None else level)


def send(message, data):
    """Broadcasts one message on Kodi's bus (JSONRPC.NotifyAll, in-process)."""
    try:
        response = xbmc.executeJSONRPC(protocol.notify_all_request(message, data))
    except Exception as error:  # noqa: BLE001 - a failed send is reported, not raised
        log("NotifyAll %s failed: %r" % (message, error), xbmc.LOGWARNING)
        return False
    if not protocol.notify_all_succeeded(response):
        log("NotifyAll %s failed: %s" % (message, response), xbmc.LOGWARNING)
        return False
    return True


class BusMonitor(xbmc.Monitor):
    """Hands every notification to `handler`; Kodi runs these callbacks while the add-on
    waits in waitForAbort."""

    def __init__(self):
        super().__init__()
        self.handler = None

    def onNotification(self, sender, method, data):  # noqa: N802 - Kodi's name
        handler = self.handler
        if handler is None:
            return
        try:
            handler(sender, method, data)
        except Exception as error:  # noqa: BLE001 - never let a bad message kill the service
            log("ignoring notification %s: %r" % (method, error), xbmc.LOGWARNING)


class Waiter:
    def __init__(self, monitor):
        self._monitor = monitor

    def wait(self, seconds):
        return self._monitor.waitForAbort(max(seconds, MIN_WAIT))

    def abort_requested(self):
        return self._monitor.abortRequested()


class Listener(threading.Thread):
    """Receives the bus in its own thread (see the module docstring) until Kodi asks the
    add-on to stop or stop() is called, and handles `closing`."""

    # Kodi runs the Monitor's callbacks only between the steps of waitForAbort: the step is
    # how late a message from the agent can be handled. Short while the add-on expects one;
    # at rest, few wake-ups (a Raspberry Pi runs Kodi on the same cores).
    STEP = 0.1
    SHORT_STEP = bus_module.STEP
    # After closing the dialogs, how long to wait for the logic's modal call to return.
    CLOSE_WAIT = 1.5

    def __init__(self, bus, ui):
        super().__init__(name="kodi-tickets-listener", daemon=True)
        self._bus = bus
        self._ui = ui
        self._stop_event = threading.Event()
        self._ready = threading.Event()
        self._unanswered = []  # (request_id, deadline) of `closing` messages
        self.monitor = None

    def start(self):
        super().start()
        self._ready.wait(5.0)
        return self

    def stop(self):
        self._stop_event.set()
        if self.is_alive() and threading.current_thread() is not self:
            self.join(2.0)

    def run(self):
        try:
            self.monitor = BusMonitor()
            self.monitor.handler = self._bus.on_notification
        finally:
            self._ready.set()
        try:
            while not self._stop_event.is_set() and not self.monitor.waitForAbort(self.step()):
                self.pump()
        finally:
            self.monitor.handler = None

    def step(self):
        """Seconds until the next round: short while an answer or a follow-up is expected, or
        while a `closing` still waits for its `closed`."""
        return self.SHORT_STEP if self._unanswered or self._bus.expecting() else self.STEP

    def pump(self):
        """One round: close the dialogs for each new `closing`, and answer `closed` once the
        logic's modal call has returned (or after CLOSE_WAIT)."""
        for request_id in self._bus.take_closing():
            log("agent is switching profiles: closing dialogs")
            self._ui.close_dialogs()
            self._unanswered.append((request_id, time.monotonic() + self.CLOSE_WAIT))
        if not self._unanswered:
            return
        waiting = []
        for request_id, deadline in self._unanswered:
            if self._ui.modal_open() and time.monotonic() < deadline:
                waiting.append((request_id, deadline))
            elif request_id is not None:
                self._bus.acknowledge_closing(request_id)
        self._unanswered = waiting


class Progress:
    def __init__(self, heading, message, on_close):
        self._on_close = on_close
        self._dialog = xbmcgui.DialogProgress()
        self._dialog.create(heading, message)
        self._percent = None

    def update(self, percent):
        # Called on every wait step: Kodi redraws only when the figure moves.
        if percent != self._percent:
            self._percent = percent
            self._dialog.update(percent)

    def cancelled(self):
        return self._dialog.iscanceled()

    def close(self):
        self._dialog.close()
        on_close, self._on_close = self._on_close, None
        if on_close is not None:
            on_close()


class UI:
    # Kodi's names of the modal dialogs the add-on opens (Dialog().numeric, Dialog().ok).
    MODAL_WINDOWS = ("numericinput", "okdialog")

    def __init__(self, icon):
        self._icon = icon
        self._modal = 0
        self._lock = threading.Lock()

    def _modal_call(self, call, *args):
        with self._lock:
            self._modal += 1
        try:
            return call(*args)
        finally:
            self._modal_closed()

    def _modal_closed(self):
        with self._lock:
            self._modal -= 1

    def modal_open(self):
        with self._lock:
            return self._modal > 0

    def close_dialogs(self):
        """Closes the add-on's modal dialogs from another thread (asynchronously: Kodi's main
        thread does it, which it can only while it is not switching profiles yet)."""
        for window in self.MODAL_WINDOWS:
            xbmc.executebuiltin("Dialog.Close(%s,true)" % window)

    def pin_pad(self, heading):
        # type 0: numbers; "" default; True: masked. Returns "" on cancel.
        return self._modal_call(xbmcgui.Dialog().numeric, 0, heading, "", True)

    def ok(self, heading, message):
        self._modal_call(xbmcgui.Dialog().ok, heading, message)

    def notify(self, heading, message):
        xbmcgui.Dialog().notification(heading, message, self._icon or xbmcgui.NOTIFICATION_INFO, NOTIFICATION_MS)

    def progress(self, heading, message):
        """A progress dialog, counted as a modal dialog until it is closed: `closed` is sent
        only after it, so a PIN's result shown in it is handled before the agent switches."""
        with self._lock:
            self._modal += 1
        try:
            return Progress(heading, message, self._modal_closed)
        except Exception:
            self._modal_closed()
            raise


class Env:
    """What the logic (flows.py, service.py, script.py) needs from Kodi."""

    def __init__(self, addon, monitor):
        """monitor: a plain xbmc.Monitor of the calling thread, for waiting."""
        self._addon = addon
        self.waiter = Waiter(monitor)
        self.bus = Bus(send, self.waiter, clock=time.monotonic, log=log)
        self.ui = UI(addon.getAddonInfo("icon"))

    def text(self, string_id, *args):
        text = self._addon.getLocalizedString(string_id)
        return text.format(*args) if args else text

    @staticmethod
    def now():
        return datetime.now(timezone.utc)

    @staticmethod
    def log(message):
        log(message)


def read_settings(addon):
    return config.Settings.read(addon.getSettingBool, addon.getSettingString)


def current_profile():
    """The logged-in profile's name. Read it once, at start: never while Kodi stops services."""
    return xbmc.getInfoLabel("System.ProfileName")


def _start():
    addon = xbmcaddon.Addon()
    # Read before anything waits: never ask the profile manager once Kodi is stopping us.
    settings, profile = read_settings(addon), current_profile()
    env = Env(addon, xbmc.Monitor())
    listener = Listener(env.bus, env.ui).start()
    return env, listener, settings, profile


def run_service():
    env, listener, settings, profile = _start()
    try:
        service.run(env, settings, profile)
    finally:
        listener.stop()


def run_script(args):
    env, listener, settings, profile = _start()
    try:
        return script.run(env, settings, profile, list(args))
    finally:
        listener.stop()
