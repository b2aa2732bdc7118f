"""The messages between the add-on and the agent, as kodi-addon/PROTOCOL.md documents them.

Pure Python: no Kodi module is imported here, so the unit tests run it as it is.
"""
import json
import math
import re
import uuid
from datetime import datetime, timedelta, timezone

SENDER = "service.kodi-tickets"
AGENT_SENDER = "kodi-tickets-agent"

PREFIX = "kodi_tickets."
PING = PREFIX + "ping"
PONG = PREFIX + "pong"
PIN = PREFIX + "pin"
RESULT = PREFIX + "result"
TIME_LEFT = PREFIX + "time_left"
SESSION = PREFIX + "session"
WARNING = PREFIX + "warning"
# Proposed addition to PROTOCOL.md (not in it yet): before the agent switches profile, logs
# off or stops Kodi it sends `closing`; the add-on closes its dialogs, opens none for
# HOLD_AFTER_CLOSING seconds and answers `closed` with the same request_id. A modal dialog a
# script holds open while Kodi switches profile stalls the switch 5 s until Kodi kills the
# script (seen with Kodi 20.1: log-off with the PIN pad open).
CLOSING = PREFIX + "closing"
CLOSED = PREFIX + "closed"
HOLD_AFTER_CLOSING = 15.0

# The answer each request waits for.
ANSWER_TO = {PING: PONG, PIN: RESULT, TIME_LEFT: SESSION}

REASONS = ("unknown_pin", "rate_limited", "server_unreachable", "kodi_error", "bad_request")

# Seconds. No pong within PING_TIMEOUT: the agent is not running (PROTOCOL.md).
PING_TIMEOUT = 3.0
# The agent asks the server, which may be slow or unreachable: it answers `server_unreachable`
# itself after its own timeout, so this is only the add-on's last resort.
RESULT_TIMEOUT = 15.0
# The agent answers time_left from what it knows, without the server.
SESSION_TIMEOUT = 5.0

PIN_LENGTH = 4
_DIGITS = frozenset("0123456789")

# Kodi's Monitor sees JSONRPC.NotifyAll messages as "Other.<message>".
_ANNOUNCEMENT_PREFIX = "Other."


class Message:
    """One message of the bus: its name (without "Other."), its data object and its sender."""

    __slots__ = ("name", "data", "sender")

    def __init__(self, name, data, sender=""):
        self.name = name
        self.data = data
        self.sender = sender

    @property
    def request_id(self):
        rid = self.data.get("request_id")
        return rid if isinstance(rid, str) and rid else None

    def __repr__(self):
        return "Message(%r, %r, %r)" % (self.name, self.data, self.sender)


def new_request_id():
    """A random string the answers repeat."""
    return uuid.uuid4().hex


def is_valid_pin(pin):
    """Exactly 4 ASCII digits (str.isdigit would also take other scripts' digits)."""
    return isinstance(pin, str) and len(pin) == PIN_LENGTH and all(c in _DIGITS for c in pin)


def notify_all_request(message, data, request_id=1):
    """The JSON-RPC request text that broadcasts `message` with `data` on Kodi's bus."""
    return json.dumps(
        {
            "jsonrpc": "2.0",
            "id": request_id,
            "method": "JSONRPC.NotifyAll",
            "params": {"sender": SENDER, "message": message, "data": data},
        }
    )


def notify_all_succeeded(response_text):
    """True when Kodi answered the NotifyAll request with "OK"."""
    try:
        response = json.loads(response_text)
    except (TypeError, ValueError):
        return False
    return isinstance(response, dict) and response.get("result") == "OK"


def parse_notification(sender, method, data):
    """The Message in a Monitor.onNotification call, or None when it is not ours or malformed."""
    if not isinstance(method, str):
        return None
    name = method[len(_ANNOUNCEMENT_PREFIX):] if method.startswith(_ANNOUNCEMENT_PREFIX) else method
    if not name.startswith(PREFIX):
        return None
    try:
        payload = json.loads(data) if isinstance(data, (str, bytes)) else data
    except ValueError:
        return None
    if not isinstance(payload, dict):
        return None
    return Message(name, payload, sender if isinstance(sender, str) else "")


_RFC3339 = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(?:\.(\d+))?"
    r"(?:([Zz])|([+-])(\d{2}):(\d{2}))$"
)


def parse_rfc3339(text):
    """An aware datetime from an RFC 3339 timestamp, or None.

    Written out because datetime.strptime is unreliable in Kodi's embedded Python and
    fromisoformat only takes "Z" from Python 3.11 on."""
    if not isinstance(text, str):
        return None
    m = _RFC3339.match(text.strip())
    if not m:
        return None
    year, month, day, hour, minute, second = (int(g) for g in m.groups()[:6])
    fraction = m.group(7) or "0"
    micro = int((fraction + "000000")[:6])
    if m.group(8):
        tz = timezone.utc
    else:
        offset = timedelta(hours=int(m.group(10)), minutes=int(m.group(11)))
        tz = timezone(offset if m.group(9) == "+" else -offset)
    try:
        return datetime(year, month, day, hour, minute, min(second, 59), micro, tzinfo=tz)
    except ValueError:
        return None


def minutes_until(expires_at, now):
    """Whole minutes left until `expires_at` (RFC 3339), rounded up; None when unknown."""
    end = parse_rfc3339(expires_at)
    if end is None:
        return None
    return minutes_from_seconds((end - now).total_seconds())


def minutes_from_seconds(seconds):
    """Whole minutes, rounded up so that 30 s left still reads "1 minute"; never negative."""
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not math.isfinite(seconds):
        return None
    return max(0, int(math.ceil(seconds / 60.0)))


def whole_minutes(value):
    """A `minutes_left` value as a whole number of minutes; None when it is not a number >= 0."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        return None
    return int(round(value))
