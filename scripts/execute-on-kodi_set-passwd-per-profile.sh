#!/bin/sh
# execute-on-kodi_set-passwd-per-profile.sh -- make PIN the lock code of one Kodi profile
#
# Usage:
#   execute-on-kodi_set-passwd-per-profile.sh PROFILE:PIN
#   execute-on-kodi_set-passwd-per-profile.sh --log-off PROFILE
#
#   --log-off ends PROFILE's session if it is the one in use: System.LogOff
#   through Kodi's EventServer (UDP $KODI_EVENTSERVER_HOST:$KODI_EVENTSERVER_PORT,
#   default 127.0.0.1:9777; sent again every 5 s, it may be lost), then waits
#   for the login screen. Exit 0: PROFILE is not (or no longer) in use; 75: the
#   login screen did not come within 20 s. Nothing else changes.
#
#   The argument is split at the LAST ':' (so PROFILE may itself contain ':').
#   PIN must be exactly 4 ASCII digits ("0000".."9999"). PROFILE must be
#   non-empty, valid UTF-8, without control characters or newlines. PROFILE is
#   matched against the <name> of every profile in profiles.xml
#   case-insensitively (ASCII only), and the first match wins, exactly as
#   Kodi's own name lookup (CProfileManager::GetProfileIndex) does. The master
#   profile (index 0) is refused.
#
# What it does (Kodi 20/21; README.md, "Applying PINs to Kodi"):
#   Kodi reads profiles.xml only when it starts and rewrites it from memory
#   later, so an edit made while Kodi runs is lost. Therefore:
#    1. check the argument (nothing is touched if it is bad);
#    2. find $KODI_USERDATA/profiles.xml and the profile;
#    3. take a lock (flock on the userdata directory, waits at most 30 s) so
#       two runs never overlap;
#    4. busy check: if Kodi's JSON-RPC answers, ask GUI.GetProperties
#       {"properties":["currentwindow"]} (a window, or the topmost modal
#       dialog). No profile session is in use only while Kodi shows its login
#       screen: window 10029, or a lock-code dialog over it (PIN pad 10109,
#       gamepad 10110: someone typing a PIN), with the master profile loaded
#       (the login screen runs as the master profile; Profiles.GetCurrentProfile
#       and Profiles.GetProfiles tell). Anything else means a session is in
#       use: nothing is changed and Kodi is NOT stopped (exit 75).
#       (NOT XBMC.GetInfoBooleans System.LoggedOn: asked ~20-40 ms after a
#       Profiles.LoadProfile answered, it freezes Kodi 20.1 for good.)
#       If the port is closed, Kodi is taken as not running. (If a
#       process named $KODI_PROC_NAME is running while the port is closed --
#       Kodi restarts its network services on every profile switch -- the
#       port is retried for up to 3 s first.) If the port accepts but gives no
#       valid answer in time, exit 75 (cannot tell; retry later);
#    5. stop Kodi ($KODI_STOP_CMD);
#    6. re-read profiles.xml (Kodi rewrote it on exit) and set, for that
#       profile only: <lockmode>1</lockmode> (numeric),
#       <lockcode>lowercase md5 hex of PIN</lockcode>; and at the top level
#       <useloginscreen>true</useloginscreen> and <lastloaded>0</lastloaded>
#       (Kodi then boots to the login screen). Missing elements are created.
#       Everything else keeps its value. The file is written atomically (temp
#       file in the same directory, fsync, rename), keeping mode and owner;
#       While Kodi is stopped, "Allow remote control by programs"
#       (services.esenabled) is switched back on in every profile's
#       guisettings.xml that has it off (a note on stderr names the profile):
#       off, Kodi closes JSON-RPC and the EventServer in that profile.
#    7. start Kodi ($KODI_START_CMD) with SIGPIPE ignored -- also after a
#       failed step 6.
#   If the master profile has no lock (lockmode 0), a WARNING goes to stderr:
#   Kodi does not enforce profile lock codes without a master lock.
#   The PIN and its MD5 are never printed. stdout gets only the success line
#     lock code set for profile "NAME"
#   everything else (errors, warnings, output of the stop/start commands)
#   goes to stderr.
#   Note: a session started between the busy check and the stop would be
#   ended by the stop; the window is the duration of the check's answers.
#
# Environment:
#   KODI_USERDATA         Kodi userdata directory holding profiles.xml
#                         (default: $HOME/.kodi/userdata)
#   KODI_JSONRPC_HOST     JSON-RPC (raw TCP) host (default: 127.0.0.1)
#   KODI_JSONRPC_PORT     JSON-RPC (raw TCP) port (default: 9090)
#   KODI_JSONRPC_TIMEOUT  seconds for connecting and for the answer
#                         (default: 2; 0 < value <= 60)
#   KODI_STOP_CMD         command that stops Kodi and returns only once it is
#                         gone, run with `sh -c` (unset or empty: default)
#                         default: `systemctl stop kodi` if a kodi.service unit
#                         exists, else `pkill -x $KODI_PROC_NAME` and wait until
#                         no such process is left (at most 15 s; still running
#                         after that = failure). Non-zero exit = failure.
#   KODI_START_CMD        command that starts Kodi, run with `sh -c`
#                         (unset or empty: default)
#                         default: `systemctl start kodi` if a kodi.service unit
#                         exists, else `kodi-standalone` detached with setsid
#                         (nohup if setsid is missing), output to /dev/null.
#                         On a box without systemd set it explicitly (user,
#                         HOME, DISPLAY of the Kodi session).
#   KODI_PROC_NAME        Kodi's process name (default: kodi.bin; e.g.
#                         kodi-x11 or kodi-gbm for source builds); used by the
#                         default stop and by the closed-port retry above.
#
# Exit codes:
#   0   lock code set, Kodi started again
#   1   failure: python3 missing, profiles.xml unreadable/unparsable or not
#       writable, stop command failed (profiles.xml NOT changed), start
#       command failed (profiles.xml WAS changed), bad KODI_JSONRPC_HOST
#   2   bad input: wrong argument count, malformed PROFILE:PIN, the master
#       profile, or a malformed KODI_JSONRPC_PORT/KODI_JSONRPC_TIMEOUT/
#       KODI_PROC_NAME (nothing touched)
#   3   not found: profiles.xml missing, or no profile with that name
#   75  busy (EX_TEMPFAIL): a profile session is in use, Kodi's JSON-RPC gave
#       no valid answer, or another run holds the lock; nothing changed, try
#       again later
#
# Requires: a POSIX sh (busybox ash, dash or bash), python3 (standard library
# only); flock, pkill/pgrep,
# setsid/systemctl for the defaults.

set -u

PROG=${0##*/}
LOCK_WAIT=30

err() { printf '%s: %s\n' "$PROG" "$*" >&2; }

LOGOFF=
if [ "$#" -eq 2 ] && [ "$1" = --log-off ]; then
  LOGOFF=$2
  SPEC=
elif [ "$#" -eq 1 ]; then
  SPEC=$1
else
  err "usage: $PROG PROFILE:PIN  (PIN = exactly 4 digits)"
  err "       $PROG --log-off PROFILE"
  exit 2
fi

if ! command -v python3 >/dev/null 2>&1; then
  err "python3 not found"
  exit 1
fi

UD=${KODI_USERDATA:-${HOME:-}/.kodi/userdata}
PROFILES_XML=$UD/profiles.xml
PROC_NAME=${KODI_PROC_NAME:-kodi.bin}
export KODI_PROC_NAME="$PROC_NAME"

# ---------------------------------------------------------------------------
# Python part (standard library only). Modes:
#   check PATH  validate PROFILE:PIN (env _KODI_SETPW_SPEC), find the profile
#   busy        JSON-RPC session check
#   edit PATH   validate again, edit profiles.xml atomically, print the name
# The PIN travels in the environment of python3 only (never in argv).
PYCODE=$(cat <<'PY'
import errno, hashlib, json, os, re, socket, stat, struct, sys, tempfile, time, unicodedata
import xml.etree.ElementTree as ET

PROG = os.environ.get("_KODI_SETPW_PROG", "set-passwd")
EX_FAIL, EX_USAGE, EX_NOTFOUND, EX_BUSY = 1, 2, 3, 75
# Kodi's window ids (xbmc/guilib/WindowIDs.h): WINDOW_LOGIN_SCREEN, and the
# dialogs the login screen asks for a lock code with (WINDOW_DIALOG_NUMERIC, the
# PIN pad, and WINDOW_DIALOG_GAMEPAD)
WINDOW_LOGIN_SCREEN = 10029
LOCK_CODE_DIALOGS = (10109, 10110)

def say(msg):
    print("%s: %s" % (PROG, msg), file=sys.stderr, flush=True)

def die(code, msg):
    say(msg)
    sys.exit(code)

_ASCII_LOWER = {c: c + 32 for c in range(ord("A"), ord("Z") + 1)}

def ascii_lower(s):
    # Kodi's StringUtils::EqualsNoCase folds ASCII letters only
    return s.translate(_ASCII_LOWER)

def parse_spec():
    raw = os.environb.get(b"_KODI_SETPW_SPEC")
    if raw is None:
        die(EX_USAGE, "internal error: no argument passed")
    try:
        spec = raw.decode("utf-8")
    except UnicodeDecodeError:
        die(EX_USAGE, "bad argument: not valid UTF-8")
    if ":" not in spec:
        die(EX_USAGE, "bad argument: expected PROFILE:PIN")
    name, pin = spec.rsplit(":", 1)
    if not re.fullmatch(r"[0-9]{4}", pin):
        die(EX_USAGE, "bad argument: the PIN must be exactly 4 digits (0000-9999)")
    if name == "":
        die(EX_USAGE, "bad argument: empty profile name")
    for ch in name:
        if unicodedata.category(ch) in ("Cc", "Cs", "Zl", "Zp"):
            die(EX_USAGE, "bad argument: the profile name contains control characters or line breaks")
    return name, pin

def quoted(name):
    return '"%s"' % name

def load(path):
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except FileNotFoundError:
        die(EX_NOTFOUND, "%s not found (set KODI_USERDATA to Kodi's userdata directory)" % path)
    except OSError as e:
        die(EX_FAIL, "cannot read %s: %s" % (path, e.strerror or e))
    try:
        parser = ET.XMLParser(target=ET.TreeBuilder(insert_comments=True, insert_pis=True))
        parser.feed(raw)
        root = parser.close()
    except ET.ParseError as e:
        die(EX_FAIL, "cannot parse %s: %s" % (path, e))
    if not isinstance(root.tag, str) or root.tag.lower() != "profiles":
        die(EX_FAIL, "%s has no <profiles> root element" % path)
    return raw, root

def profiles_of(root):
    return [c for c in root if c.tag == "profile"]

def child_text(el, tag):
    c = el.find(tag)
    if c is None or c.text is None:
        return ""
    return c.text

def find_profile(root, name, path):
    profs = profiles_of(root)
    want = ascii_lower(name)
    hits = [i for i, p in enumerate(profs) if ascii_lower(child_text(p, "name")) == want]
    if not hits:
        die(EX_NOTFOUND, "no profile named %s in %s" % (quoted(name), path))
    idx = hits[0]
    if idx == 0:
        die(EX_USAGE, "refusing to set a lock code on the master profile (%s)"
            % quoted(child_text(profs[0], "name")))
    if len(hits) > 1:
        say("note: %d profiles match %s case-insensitively; like Kodi, using the first one (index %d)"
            % (len(hits), quoted(name), idx))
    return idx, profs[idx]

def master_locked(root):
    # CProfile::Load + CLock::Validate: mode outside 1..3 -> 0; code "" or "-" -> 0
    profs = profiles_of(root)
    if not profs:
        return False
    m = profs[0]
    try:
        mode = int(child_text(m, "lockmode").strip())
    except ValueError:
        mode = 0
    code = child_text(m, "lockcode").strip()
    return 1 <= mode <= 3 and code not in ("", "-")

# ---- check -----------------------------------------------------------------
def mode_check(path):
    name, _pin = parse_spec()
    _raw, root = load(path)
    find_profile(root, name, path)

# ---- busy ------------------------------------------------------------------
def env_port():
    v = os.environ.get("KODI_JSONRPC_PORT") or "9090"
    if not re.fullmatch(r"[0-9]{1,5}", v) or not 1 <= int(v) <= 65535:
        die(EX_USAGE, "bad KODI_JSONRPC_PORT %r" % v)
    return int(v)

def env_timeout():
    v = os.environ.get("KODI_JSONRPC_TIMEOUT") or "2"
    try:
        t = float(v)
    except ValueError:
        t = -1.0
    if not 0 < t <= 60:
        die(EX_USAGE, "bad KODI_JSONRPC_TIMEOUT %r (seconds, 0 < t <= 60)" % v)
    return t

def kodi_process_running():
    want = (os.environ.get("KODI_PROC_NAME") or "kodi.bin")[:15]
    try:
        pids = [p for p in os.listdir("/proc") if p.isdigit()]
    except OSError:
        return False
    for p in pids:
        try:
            with open("/proc/%s/comm" % p, "rb") as f:
                if f.read().rstrip(b"\n").decode("utf-8", "replace") == want:
                    return True
        except OSError:
            pass
    return False

class Unsure(Exception):
    """Kodi's JSON-RPC gave no usable answer; the text says why."""

class Rpc:
    """One JSON-RPC connection (raw TCP) to Kodi, as KODI_JSONRPC_* say."""

    def __init__(self):
        self.host = os.environ.get("KODI_JSONRPC_HOST") or "127.0.0.1"
        self.port = env_port()
        self.timeout = env_timeout()
        self.where = "%s:%d" % (self.host, self.port)
        self.sock = None
        self.pending = b""  # bytes read but not decoded yet (the start of the next object)
        self.calls = 0

    def connect(self):
        """True once connected; False when the port is closed (Kodi not running)."""
        try:
            self.sock = socket.create_connection((self.host, self.port), timeout=self.timeout)
            return True
        except ConnectionRefusedError:
            return False
        except socket.gaierror as e:
            die(EX_FAIL, "cannot resolve KODI_JSONRPC_HOST %r: %s" % (self.host, e))
        except socket.timeout:
            raise Unsure("connecting to Kodi JSON-RPC at %s timed out" % self.where)
        except OSError as e:
            raise Unsure("connecting to Kodi JSON-RPC at %s failed: %s" % (self.where, e.strerror or e))

    def close(self):
        if self.sock is not None:
            try:
                self.sock.close()
            except OSError:
                pass
            self.sock = None

    def call(self, method, params):
        """Send one request on the connection, return its "result" (anything else: Unsure)."""
        self.calls += 1
        req_id = "kodi-tickets-set-passwd-%d" % self.calls
        req = {"jsonrpc": "2.0", "id": req_id, "method": method, "params": params}
        deadline = time.monotonic() + self.timeout
        dec = json.JSONDecoder()
        try:
            self.sock.sendall(json.dumps(req).encode())
            raw = self.pending
            while True:
                # objects are streamed without separators; keep incomplete UTF-8 tails
                try:
                    buf = raw.decode("utf-8")
                except UnicodeDecodeError as e:
                    if e.start < len(raw) - 3:
                        raise Unsure("invalid reply from %s" % self.where)
                    buf = raw[:e.start].decode("utf-8")
                pos = 0
                while True:
                    while pos < len(buf) and buf[pos] in " \t\r\n":
                        pos += 1
                    if pos >= len(buf):
                        break
                    if buf[pos] not in "{[":
                        raise Unsure("%s does not speak JSON-RPC" % self.where)
                    try:
                        obj, pos = dec.raw_decode(buf, pos)
                    except ValueError:
                        break  # incomplete object, read more
                    if isinstance(obj, dict) and obj.get("id") == req_id:
                        self.pending = raw[len(buf[:pos].encode("utf-8")):]
                        if "result" not in obj:
                            raise Unsure("Kodi refused %s" % method)
                        return obj["result"]
                left = deadline - time.monotonic()
                if left <= 0:
                    raise Unsure("no answer from Kodi JSON-RPC at %s within %gs" % (self.where, self.timeout))
                self.sock.settimeout(left)
                chunk = self.sock.recv(65536)
                if not chunk:
                    raise Unsure("Kodi JSON-RPC at %s closed the connection without answering" % self.where)
                raw += chunk
                if len(raw) > (4 << 20):
                    raise Unsure("oversized reply from %s" % self.where)
        except socket.timeout:
            raise Unsure("no answer from Kodi JSON-RPC at %s within %gs" % (self.where, self.timeout))
        except OSError as e:
            raise Unsure("talking to %s failed: %s" % (self.where, e.strerror or e))

def logged_in_profile(rpc, name_wanted=True):
    """The profile whose session is in use (True if not `name_wanted`), or None at the
    login screen."""
    def unexpected():
        raise Unsure("unexpected JSON-RPC answer from %s" % rpc.where)

    def label(obj):
        name = obj.get("label") if isinstance(obj, dict) else None
        return name if isinstance(name, str) else unexpected()

    # NOTE: not XBMC.GetInfoBooleans System.LoggedOn: Kodi answers it on its main
    # thread, and one arriving ~20-40 ms after a Profiles.LoadProfile answered
    # freezes Kodi 20.1 for good. GUI.GetProperties is answered on the JSON-RPC
    # thread. It reports the topmost modal dialog instead of the window under it.
    res = rpc.call("GUI.GetProperties", {"properties": ["currentwindow"]})
    window = res.get("currentwindow") if isinstance(res, dict) else None
    wid = window.get("id") if isinstance(window, dict) else None
    if not isinstance(wid, int) or isinstance(wid, bool):
        unexpected()
    if wid == WINDOW_LOGIN_SCREEN or wid in LOCK_CODE_DIALOGS:
        # The login screen runs as the master profile. Another profile with
        # that window: a login in progress (seen for ~0.1 s on 20.1).
        current = label(rpc.call("Profiles.GetCurrentProfile", {}))
        res = rpc.call("Profiles.GetProfiles", {})
        listed = res.get("profiles") if isinstance(res, dict) else None
        if not isinstance(listed, list) or not listed:
            unexpected()
        if ascii_lower(current) == ascii_lower(label(listed[0])):
            return None
        return current
    return label(rpc.call("Profiles.GetCurrentProfile", {})) if name_wanted else True

def env_proc_name():
    pname = os.environ.get("KODI_PROC_NAME") or "kodi.bin"
    if "/" in pname or not pname.strip():
        die(EX_USAGE, "bad KODI_PROC_NAME %r" % pname)
    return pname

def mode_busy():
    pname = env_proc_name()
    unsure = "busy: cannot tell whether a profile session is in use (%s), try later"
    rpc = Rpc()
    try:
        connected = rpc.connect()
        if not connected and kodi_process_running():
            # Kodi restarts its network services on every profile switch: the port
            # is closed for ~0.5-1.5 s. Give it a moment before concluding anything.
            end = time.monotonic() + 3.0
            while not connected and time.monotonic() < end:
                time.sleep(0.25)
                connected = rpc.connect()
            if not connected:
                say("note: a %s process is running but JSON-RPC at %s is closed; "
                    "taking Kodi as not in use" % (pname, rpc.where))
        if not connected:
            return  # Kodi not running (or JSON-RPC off): not busy
        if logged_in_profile(rpc, name_wanted=False) is None:
            return
        die(EX_BUSY, "busy: a profile session is in use, try later")
    except Unsure as e:
        die(EX_BUSY, unsure % e)
    finally:
        rpc.close()

# ---- log off ---------------------------------------------------------------
def env_eventserver():
    host = os.environ.get("KODI_EVENTSERVER_HOST") or "127.0.0.1"
    v = os.environ.get("KODI_EVENTSERVER_PORT") or "9777"
    if not re.fullmatch(r"[0-9]{1,5}", v) or not 1 <= int(v) <= 65535:
        die(EX_USAGE, "bad KODI_EVENTSERVER_PORT %r" % v)
    return host, int(v)

def send_log_off(address):
    """System.LogOff through Kodi's EventServer (UDP): HELO, then ACTION "execute builtin"."""
    uid = (os.getpid() ^ int(time.time())) & 0xFFFFFFFF

    def packet(ptype, payload):
        # header: signature, version 2.0, type, sequence 1 of 1, payload size, client uid, reserved
        return (b"XBMC" + bytes([2, 0]) + struct.pack("!HIIHI", ptype, 1, 1, len(payload), uid)
                + b"\0" * 10 + payload)

    helo = packet(0x01, b"kodi-tickets\0" + bytes([0]) + struct.pack("!HII", 0, 0, 0))
    action = packet(0x0A, bytes([0x01]) + b"System.LogOff\0")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.sendto(helo, address)
        time.sleep(0.2)  # the EventServer registers the client before it takes actions
        s.sendto(action, address)

def login_state():
    """(connected, profile logged in or None, the master profile's name); Unsure when Kodi
    answers nothing usable."""
    rpc = Rpc()
    try:
        if not rpc.connect():
            return False, None, None
        current = logged_in_profile(rpc)
        res = rpc.call("Profiles.GetProfiles", {})
        listed = res.get("profiles") if isinstance(res, dict) else None
        master = listed[0].get("label") if isinstance(listed, list) and listed and isinstance(listed[0], dict) else None
        return True, current, master
    finally:
        rpc.close()

def mode_logoff():
    """Ends the session of profile $_KODI_SETPW_LOGOFF, if it is the one in use, and
    returns only once Kodi shows its login screen again (75 if that is not seen)."""
    name = os.environ.get("_KODI_SETPW_LOGOFF") or ""
    if not name or any(unicodedata.category(ch) in ("Cc", "Cs", "Zl", "Zp") for ch in name):
        die(EX_USAGE, "bad argument: expected a profile name")
    address = env_eventserver()
    sent = 0
    deadline = time.monotonic() + 20
    last = 0.0
    while True:
        try:
            connected, current, master = login_state()
            in_use = connected and current is not None and ascii_lower(current) == ascii_lower(name)
            # Right after a log-off the master profile is current before the login screen
            # shows: not done yet.
            leaving = connected and current is not None and master is not None \
                and ascii_lower(current) == ascii_lower(master)
        except Unsure:
            connected, in_use, leaving = None, False, False  # switching profiles: look again
        if connected and not in_use and not leaving:
            print("logged off profile %s" % quoted(name) if sent
                  else "profile %s is not logged in" % quoted(name))
            return
        if connected is False and not kodi_process_running():
            print("Kodi is not running: profile %s is not logged in" % quoted(name))
            return
        if time.monotonic() > deadline:
            die(EX_BUSY, "busy: Kodi did not show its login screen after System.LogOff "
                "(sent %d times), try later" % sent)
        # NOTE: System.LogOff only while the ticket profile itself is seen logged in:
        # sent at the login screen or in the master profile it leaves JSON-RPC down.
        # A lost UDP packet is sent again after 5 s.
        if in_use and (sent == 0 or time.monotonic() > last + 5):
            send_log_off(address)
            sent += 1
            last = time.monotonic()
        time.sleep(0.25)

# ---- edit ------------------------------------------------------------------
def insert_after(parent, i, new):
    """Insert new after child i (-1 = first), copying the surrounding indentation."""
    kids = list(parent)
    if not kids:
        parent.append(new)
        return
    if i < 0:
        new.tail = parent.text
        parent.insert(0, new)
    elif i < len(kids) - 1:
        new.tail = kids[i].tail
        parent.insert(i + 1, new)
    else:
        new.tail = kids[i].tail
        kids[i].tail = parent.text if (parent.text or "").strip() == "" else None
        parent.insert(i + 1, new)

def set_child(parent, tag, value, after_tags=(), first=False):
    els = [c for c in parent if c.tag == tag]
    if els:
        for e in els:  # Kodi reads the first; keep any duplicates consistent
            e.text = value
        return
    new = ET.Element(tag)
    new.text = value
    if first:
        insert_after(parent, -1, new)
        return
    pos = len(parent) - 1
    hits = [i for i, c in enumerate(parent) if c.tag in after_tags]
    if hits:
        pos = hits[-1]
    insert_after(parent, pos, new)

BEFORE_LOCKMODE = ("id", "name", "directory", "thumbnail", "hasdatabases",
                   "canwritedatabases", "hassources", "canwritesources",
                   "lockaddonmanager", "locksettings", "lockfiles", "lockmusic",
                   "lockvideo", "lockpictures", "lockprograms", "lockgames")

DEFAULT_DECL = '<?xml version="1.0" encoding="UTF-8" standalone="yes" ?>'

def serialize(raw, root):
    decl = DEFAULT_DECL
    m = re.match(rb"\A(?:\xef\xbb\xbf)?\s*(<\?xml\b[^>]*\?>)", raw)
    if m:
        d = m.group(1).decode("ascii", "replace")
        enc = re.search(r"""encoding\s*=\s*["']([^"']*)["']""", d)
        if enc is None or enc.group(1).lower() in ("utf-8", "utf8"):
            decl = d
    body = ET.tostring(root, encoding="unicode", short_empty_elements=False)
    return (decl + "\n" + body + "\n").encode("utf-8")

def md5hex(pin):
    try:
        h = hashlib.md5(pin.encode("ascii"), usedforsecurity=False)
    except TypeError:
        h = hashlib.md5(pin.encode("ascii"))
    return h.hexdigest()

def atomic_write(path, data):
    real = os.path.realpath(path)
    st = os.stat(real)
    d = os.path.dirname(real) or "."
    fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(real) + ".", suffix=".tmp", dir=d)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fchmod(f.fileno(), stat.S_IMODE(st.st_mode))
            fst = os.fstat(f.fileno())
            if (fst.st_uid, fst.st_gid) != (st.st_uid, st.st_gid):
                try:
                    os.fchown(f.fileno(), st.st_uid, st.st_gid)
                except OSError:
                    say("warning: could not keep the owner (uid %d gid %d) of %s"
                        % (st.st_uid, st.st_gid, real))
            os.fsync(f.fileno())
        os.replace(tmp, real)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    try:
        dfd = os.open(d, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    except OSError:
        pass

# Kodi's "Allow remote control by programs on this system": off, it closes JSON-RPC and the
# EventServer, and the profile is saved so (its own guisettings.xml).
REMOTE_CONTROL_OFF = re.compile(
    rb'(<setting\b[^>]*\bid="services\.esenabled"[^>]*>)\s*false\s*(</setting>)')

def profile_folder(ud, prof):
    d = child_text(prof, "directory").strip()
    if d.startswith("special://masterprofile/"):
        d = d[len("special://masterprofile/"):]
    return d if os.path.isabs(d) else os.path.join(ud, d)

def restore_remote_control(path, root):
    """Switches remote control by programs back on in every profile that has it off, while
    Kodi is stopped (it rewrites guisettings.xml when it exits)."""
    ud = os.path.dirname(path)
    for prof in profiles_of(root):
        settings = os.path.join(profile_folder(ud, prof), "guisettings.xml")
        try:
            with open(settings, "rb") as f:
                raw = f.read()
        except OSError:
            continue
        fixed, n = REMOTE_CONTROL_OFF.subn(rb"\1true\2", raw)
        if n:
            try:
                atomic_write(settings, fixed)
            except OSError as e:
                say("warning: cannot switch remote control back on in %s: %s"
                    % (settings, e.strerror or e))
                continue
            say("note: remote control by programs was off in profile %s (the agent cannot "
                "see or end its sessions so); switched back on" % quoted(child_text(prof, "name")))

def mode_edit(path):
    name, pin = parse_spec()
    raw, root = load(path)
    idx, prof = find_profile(root, name, path)
    code = md5hex(pin)

    set_child(prof, "lockmode", "1", BEFORE_LOCKMODE)
    set_child(prof, "lockcode", code, ("lockmode",))
    set_child(root, "lastloaded", "0", first=True)
    set_child(root, "useloginscreen", "true", ("lastloaded",))

    data = serialize(raw, root)
    # sanity check of what is about to be written
    check = ET.fromstring(data)
    cp = profiles_of(check)
    if (len(cp) != len(profiles_of(root)) or child_text(cp[idx], "lockcode") != code
            or child_text(cp[idx], "lockmode") != "1"):
        die(EX_FAIL, "internal error: edited profiles.xml does not verify; not written")
    try:
        atomic_write(path, data)
    except OSError as e:
        die(EX_FAIL, "cannot write %s: %s" % (path, e.strerror or e))
    restore_remote_control(path, root)

    pname = child_text(prof, "name")
    if not master_locked(root):
        say("WARNING: the master profile has NO lock (lockmode 0). Kodi does NOT enforce "
            "profile lock codes without a master lock: anyone at the TV can open profile %s "
            "without its PIN. Set a master lock code in Kodi "
            "(Settings > Interface > Master lock)." % quoted(pname))
    sys.stdout.write(pname + "\n")

def main():
    mode = sys.argv[1] if len(sys.argv) > 1 else ""
    try:
        if mode == "check":
            mode_check(sys.argv[2])
        elif mode == "busy":
            mode_busy()
        elif mode == "logoff":
            mode_logoff()
        elif mode == "edit":
            mode_edit(sys.argv[2])
        else:
            die(EX_FAIL, "internal error: unknown mode %r" % mode)
    except SystemExit:
        raise
    except BaseException as e:  # never let a traceback (or anything else) leak
        die(EX_FAIL, "internal error: %s" % type(e).__name__)

main()
PY
)

run_py() {
  _KODI_SETPW_SPEC=$SPEC _KODI_SETPW_LOGOFF=$LOGOFF _KODI_SETPW_PROG=$PROG \
    python3 -c "$PYCODE" "$@"
}

HAVE_UNIT=
have_kodi_unit() {
  if [ -z "$HAVE_UNIT" ]; then
    HAVE_UNIT=no
    if command -v systemctl >/dev/null 2>&1 &&
       systemctl cat kodi.service >/dev/null 2>&1; then
      HAVE_UNIT=yes
    fi
  fi
  [ "$HAVE_UNIT" = yes ]
}

default_stop() {
  if have_kodi_unit; then
    systemctl stop kodi
    return
  fi
  pkill -x "$PROC_NAME"
  rc=$?
  # pkill: 1 = no such process (Kodi not running), which is fine
  [ "$rc" -le 1 ] || return "$rc"
  i=0
  while [ "$i" -lt 150 ]; do
    pgrep -x "$PROC_NAME" >/dev/null 2>&1 || return 0
    sleep 0.1
    i=$((i + 1))
  done
  echo "$PROC_NAME still running 15 s after SIGTERM" >&2
  return 1
}

default_start() {
  if have_kodi_unit; then
    systemctl start kodi
    return
  fi
  if ! command -v kodi-standalone >/dev/null 2>&1; then
    echo "kodi-standalone not found (set KODI_START_CMD)" >&2
    return 127
  fi
  if command -v setsid >/dev/null 2>&1; then
    (setsid kodi-standalone </dev/null >/dev/null 2>&1 &)
  else
    (nohup kodi-standalone </dev/null >/dev/null 2>&1 &)
  fi
}

# fd 9 holds the lock: never hand it to Kodi or to the stop/start commands
stop_kodi() {
  if [ -n "${KODI_STOP_CMD:-}" ]; then
    sh -c "$KODI_STOP_CMD" >&2 9<&-
  else
    (default_stop) >&2 9<&-
  fi
}

# NOTE: Kodi is started with SIGPIPE ignored (an ignored signal stays ignored across exec), as
# systemd starts services: Kodi 20.1 does not ignore it itself, and dies of it when a JSON-RPC
# client goes away while Kodi writes to it (a broadcast, a late answer).
start_kodi() {
  if [ -n "${KODI_START_CMD:-}" ]; then
    (trap '' PIPE; sh -c "$KODI_START_CMD") >&2 9<&-
  else
    (trap '' PIPE; default_start) >&2 9<&-
  fi
}

# 1+2. validate the argument, find profiles.xml and the profile
if [ -z "$LOGOFF" ]; then
  run_py check "$PROFILES_XML"
  rc=$?
  [ "$rc" -eq 0 ] || exit "$rc"
fi

# 3. one run at a time
if command -v flock >/dev/null 2>&1; then
  if ! exec 9<"$UD"; then
    err "cannot open $UD"
    exit 1
  fi
  if ! flock -w "$LOCK_WAIT" 9; then
    err "busy: another run is changing profiles.xml, try later"
    exit 75
  fi
fi

# --log-off PROFILE: end that profile's session (EventServer System.LogOff) and wait for
# the login screen; nothing else changes
if [ -n "$LOGOFF" ]; then
  run_py logoff 9<&-
  exit $?
fi

# 4. busy check (changes nothing)
run_py busy 9<&-
rc=$?
[ "$rc" -eq 0 ] || exit "$rc"

# 5. stop Kodi
stop_kodi
rc=$?
if [ "$rc" -ne 0 ]; then
  err "stopping Kodi failed (exit $rc); profiles.xml not changed"
  exit 1
fi

# 6. edit profiles.xml
NAME=$(run_py edit "$PROFILES_XML" 9<&-)
rc=$?
if [ "$rc" -ne 0 ]; then
  err "profiles.xml not changed; starting Kodi again"
  start_kodi
  src=$?
  [ "$src" -eq 0 ] || err "starting Kodi failed too (exit $src)"
  exit "$rc"
fi

# 7. start Kodi
start_kodi
rc=$?
if [ "$rc" -ne 0 ]; then
  err "profiles.xml WAS updated (lock code set for profile \"$NAME\") but starting Kodi failed (exit $rc); start Kodi by hand"
  exit 1
fi

printf 'lock code set for profile "%s"\n' "$NAME"
exit 0
