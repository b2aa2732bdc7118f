"""What the add-on does on screen: the PIN pad, the time left, the agent's warnings.

Everything Kodi-specific comes in through `env` (kodi.py builds the real one, the tests a fake):

    env.ui.pin_pad(heading) -> str          masked numeric pad; "" when cancelled
    env.ui.ok(heading, message)             a dialog with an OK button (blocks)
    env.ui.notify(heading, message)         a toast notification (does not block)
    env.ui.progress(heading, message)       -> object with update(percent), cancelled(), close()
    env.waiter.wait(seconds) -> bool        sleep; True when Kodi asks the add-on to stop
    env.waiter.abort_requested() -> bool
    env.bus                                 a bus.Bus
    env.text(string_id, *args) -> str       a string from strings.po, {0} filled in
    env.now() -> aware datetime (UTC)
    env.log(message)

Nothing is shown once Kodi has asked the add-on to stop: the user is leaving the profile, and
Kodi kills a service that is still busy 5 s after that. No modal dialog opens while the agent
is switching profiles either (env.bus.holding(), after a `closing` message): Kodi cannot
finish a switch while a script holds a modal dialog open.
"""
from . import protocol
from . import strings as S
from .bus import Reply

# "Checking PIN" opens only when the agent's answer takes longer than this (the server is far
# or slow): a quick answer, the usual case, opens and closes no dialog on the TV, which costs
# Kodi a few frames each way before the profile can load.
PROGRESS_AFTER = 0.5


class Outcome:
    """How one go at the PIN pad ended."""

    OK = "ok"  # the agent accepted the PIN and is loading the ticket's profile
    CANCELLED = "cancelled"  # the user closed the pad (or the progress dialog)
    FAILED = "failed"  # the agent refused the PIN; `reason` says why
    AGENT_DOWN = "agent_down"  # no pong: the agent is not running
    NO_ANSWER = "no_answer"  # pong, but no result in time
    ABORTED = "aborted"  # Kodi asked the add-on to stop
    HELD = "held"  # the agent is switching profiles (`closing`): no dialog now

    __slots__ = ("kind", "reason", "profile", "expires_at")

    def __init__(self, kind, reason=None, profile=None, expires_at=None):
        self.kind = kind
        self.reason = reason
        self.profile = profile
        self.expires_at = expires_at

    def __repr__(self):
        return "Outcome(%r, reason=%r, profile=%r)" % (self.kind, self.reason, self.profile)


def _heading(env):
    return env.text(S.ADDON_NAME)


def _may_open_dialog(env):
    return not env.waiter.abort_requested() and not env.bus.holding()


def _show(env, string_id, *args):
    """An OK dialog, unless Kodi is stopping the add-on or the agent is switching profiles."""
    if _may_open_dialog(env):
        env.ui.ok(_heading(env), env.text(string_id, *args))


def _notify(env, message):
    if not env.waiter.abort_requested():
        env.ui.notify(_heading(env), message)


def minutes_text(env, minutes, one_id, many_id):
    """"1 minute …" or "N minutes …" (strings.po has no plural forms for add-ons)."""
    return env.text(one_id) if minutes == 1 else env.text(many_id, minutes)


def welcome_text(env, expires_at):
    minutes = protocol.minutes_until(expires_at, env.now())
    if minutes is None:
        return env.text(S.WELCOME)
    return minutes_text(env, minutes, S.WELCOME_ONE_MINUTE, S.WELCOME_MINUTES)


def pin_pad(env):
    """One go at the PIN pad: ask for a PIN until it has the right form, check it with the
    agent, say how it went. Returns an Outcome; never blocks longer than the dialogs the user
    keeps open plus PING_TIMEOUT + RESULT_TIMEOUT."""
    while True:
        if env.waiter.abort_requested():
            return Outcome(Outcome.ABORTED)
        if env.bus.holding():
            return Outcome(Outcome.HELD)
        pin = env.ui.pin_pad(env.text(S.ENTER_PIN))
        if env.waiter.abort_requested():
            return Outcome(Outcome.ABORTED)
        if env.bus.holding():
            return Outcome(Outcome.HELD)  # closed for a profile switch: not the user's cancel
        if not pin:
            return Outcome(Outcome.CANCELLED)
        if not protocol.is_valid_pin(pin):
            _show(env, S.PIN_FORMAT)
            continue
        break

    # Is the agent there at all? (Asked only now: at boot Kodi may be up before the agent.)
    pong = env.bus.ping()
    if pong.status == Reply.ABORTED:
        return Outcome(Outcome.ABORTED)
    if not pong.answered:
        env.log("no pong from the agent (%s)" % pong.status)
        _show(env, S.AGENT_NOT_RUNNING)
        return Outcome(Outcome.AGENT_DOWN)

    progress = None

    def tick(fraction):
        nonlocal progress
        if progress is None:
            if fraction * protocol.RESULT_TIMEOUT < PROGRESS_AFTER:
                return False
            progress = env.ui.progress(_heading(env), env.text(S.CHECKING_PIN))
        progress.update(min(100, int(fraction * 100)))
        return progress.cancelled()

    try:
        reply = env.bus.send_pin(pin, tick)
    finally:
        if progress is not None:
            progress.close()

    if reply.status == Reply.ABORTED:
        return Outcome(Outcome.ABORTED)
    if reply.status == Reply.CANCELLED:
        return Outcome(Outcome.CANCELLED)
    if not reply.answered:
        env.log("no result from the agent (%s)" % reply.status)
        _show(env, S.NO_ANSWER)
        return Outcome(Outcome.NO_ANSWER)

    data = reply.data
    if data.get("ok") is True:
        profile, expires_at = data.get("profile"), data.get("expires_at")
        env.log("PIN accepted for profile %r until %s" % (profile, expires_at))
        _notify(env, welcome_text(env, expires_at))
        return Outcome(Outcome.OK, profile=profile, expires_at=expires_at)

    reason = data.get("reason")
    env.log("PIN refused: %r" % (reason,))
    _show(env, S.reason_message(reason))
    return Outcome(Outcome.FAILED, reason=reason if isinstance(reason, str) else None)


def session_minutes(data, now):
    """Minutes left in a `kodi_tickets.session` answer; None when no session is known."""
    minutes = protocol.minutes_from_seconds(data.get("remaining_seconds"))
    if minutes is None:
        minutes = protocol.minutes_until(data.get("expires_at"), now)
    return minutes


class TimeLeft:
    """What show_time_left found."""

    SHOWN = "shown"
    NO_SESSION = "no_session"
    AGENT_DOWN = "agent_down"
    ABORTED = "aborted"


def show_time_left(env, dialog, quiet=False):
    """Asks the agent how long the session has left and shows it: in an OK dialog when
    `dialog`, else as a notification. `quiet`: show nothing unless a session is known (used
    on start, where the master profile has no ticket and the agent may still be starting)."""
    reply = env.bus.time_left()
    if reply.status == Reply.ABORTED:
        return TimeLeft.ABORTED

    def show(message):
        if dialog:
            if _may_open_dialog(env):
                env.ui.ok(_heading(env), message)
        else:
            _notify(env, message)

    if not reply.answered:
        env.log("no session answer from the agent (%s)" % reply.status)
        if not quiet:
            show(env.text(S.AGENT_NOT_RUNNING))
        return TimeLeft.AGENT_DOWN
    minutes = session_minutes(reply.data, env.now())
    if minutes is None:
        if not quiet:
            show(env.text(S.NO_SESSION))
        return TimeLeft.NO_SESSION
    if env.waiter.abort_requested():
        return TimeLeft.ABORTED
    show(minutes_text(env, minutes, S.ONE_MINUTE_LEFT, S.MINUTES_LEFT))
    return TimeLeft.SHOWN


def relay_warnings(env, profile):
    """Shows the agent's warnings for this profile as notifications; returns how many."""
    shown = 0
    for warning in env.bus.take_warnings():
        target = warning.data.get("profile")
        if isinstance(target, str) and isinstance(profile, str) and target.casefold() != profile.casefold():
            continue
        minutes = protocol.whole_minutes(warning.data.get("minutes_left"))
        if minutes is None:
            continue
        _notify(env, minutes_text(env, minutes, S.ONE_MINUTE_LEFT, S.MINUTES_LEFT))
        shown += 1
    return shown
