"""Tests for scripts/execute-on-kodi_set-passwd-per-profile.sh.

The script is POSIX sh (LibreELEC has only busybox ash): KT_SCRIPT_SHELL names the shell the
suite runs it with (e.g. "busybox sh", "dash", "bash"); unset, its #! line (/bin/sh) does.
Standard library + pytest only. No real Kodi: profiles.xml lives in a temp
userdata, JSON-RPC is either a closed port or a small fake TCP server, and the
stop/start commands only log what they were asked to do (and snapshot
profiles.xml at that moment).
"""
import hashlib
import json
import os
import shlex
import socket
import stat
import subprocess
import threading
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parent.parent / "execute-on-kodi_set-passwd-per-profile.sh"
SHELL = shlex.split(os.environ.get("KT_SCRIPT_SHELL", ""))
SHELLS = (["busybox", "sh"], ["dash"], ["bash"])


def script(*args):
    """The command line that runs the script with `args`, under KT_SCRIPT_SHELL if set."""
    return [*SHELL, str(SCRIPT), *args]


def md5(s):
    return hashlib.md5(s.encode()).hexdigest()


MASTER_CODE = md5("2580")
ROOM_CODE = md5("1111")


def profile_block(pid, name, directory, lockmode, lockcode, lastdate, with_lock=True):
    lock = (
        "        <lockmode>%d</lockmode>\n"
        "        <lockcode>%s</lockcode>\n" % (lockmode, lockcode)
        if with_lock else ""
    )
    return (
        "    <profile>\n"
        "        <id>%d</id>\n"
        "        <name>%s</name>\n"
        '        <directory pathversion="1">%s</directory>\n'
        '        <thumbnail pathversion="1"></thumbnail>\n'
        "        <hasdatabases>true</hasdatabases>\n"
        "        <canwritedatabases>false</canwritedatabases>\n"
        "        <hassources>true</hassources>\n"
        "        <canwritesources>false</canwritesources>\n"
        "        <lockaddonmanager>false</lockaddonmanager>\n"
        "        <locksettings>0</locksettings>\n"
        "        <lockfiles>false</lockfiles>\n"
        "        <lockmusic>false</lockmusic>\n"
        "        <lockvideo>false</lockvideo>\n"
        "        <lockpictures>false</lockpictures>\n"
        "        <lockprograms>false</lockprograms>\n"
        "        <lockgames>false</lockgames>\n"
        "%s"
        "        <lastdate>%s</lastdate>\n"
        "    </profile>\n" % (pid, name, directory, lock, lastdate)
    )


def profiles_xml(master_locked=True, kids_lock=True, useloginscreen=True, extra=()):
    """A Kodi 20 profiles.xml as CProfileManager::Save writes it."""
    out = ['<?xml version="1.0" encoding="UTF-8" standalone="yes" ?>\n<profiles>\n',
           "    <lastloaded>2</lastloaded>\n"]
    if useloginscreen:
        out.append("    <useloginscreen>false</useloginscreen>\n")
    out.append("    <autologin>-1</autologin>\n")
    out.append("    <nextIdProfile>%d</nextIdProfile>\n" % (3 + len(extra)))
    out.append(profile_block(0, "Master user", "special://masterprofile/",
                             1 if master_locked else 0,
                             MASTER_CODE if master_locked else "-",
                             "27/11/2024 - 15:02"))
    out.append(profile_block(1, "Kids", "profiles/Kids/", 0, "-", "-", with_lock=kids_lock))
    out.append(profile_block(2, "Room 12", "profiles/Room 12/", 1, ROOM_CODE,
                             "26/11/2024 - 20:41"))
    for i, name in enumerate(extra):
        esc = name.replace("&", "&amp;").replace("<", "&lt;")
        out.append(profile_block(3 + i, esc, "profiles/x%d/" % i, 0, "-", "-"))
    out.append("</profiles>\n")
    return "".join(out)


def parse(path):
    return ET.parse(path).getroot()


def profile(root, name):
    for p in root.findall("profile"):
        if p.findtext("name") == name:
            return p
    raise KeyError(name)


def snapshot(el):
    """Everything Kodi could read from an element: tags, attributes, texts, in order."""
    return [(e.tag, dict(e.attrib), e.text or "") for e in el.iter()]


# --------------------------------------------------------------------------
# fake Kodi JSON-RPC (raw TCP, objects streamed without separators)

# window ids GUI.GetProperties currentwindow gave on Kodi 20.1 (a modal dialog is
# reported instead of the window under it)
HOME = 10000
LOGIN_SCREEN = 10029
NUMERIC_INPUT = 10109  # the PIN pad
GAMEPAD_INPUT = 10110
OK_DIALOG = 12002
WINDOW_LABELS = {HOME: "Home", LOGIN_SCREEN: "Login screen", NUMERIC_INPUT: "Numeric Input",
                 GAMEPAD_INPUT: "Gamepad input", OK_DIALOG: "OK dialog"}


class FakeKodi:
    """window: an int -> answer GUI.GetProperties currentwindow with that id, and the
    profile methods with `profile` (current) and `master` (listed first); None -> accept,
    read, never answer; "http" -> reply like a web server; "error" -> answer every
    request with a JSON-RPC error; "odd" -> a currentwindow without an id. Unknown
    methods (XBMC.GetInfoBooleans among them) get Kodi's "Method not found" error."""

    def __init__(self, window, profile="Master user", master="Master user"):
        self.window = window
        self.profile = profile
        self.master = master
        self.requests = []
        self.stop = threading.Event()
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.sock.settimeout(0.1)
        self.port = self.sock.getsockname()[1]
        self.conns = []
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def methods(self):
        return [r.get("method") for r in self.requests]

    def _serve(self):
        while not self.stop.is_set():
            try:
                c, _ = self.sock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            self.conns.append(c)
            threading.Thread(target=self._handle, args=(c,), daemon=True).start()

    def _result(self, method):
        if self.window == "error":
            return None
        if method == "GUI.GetProperties":
            if self.window == "odd":
                return {"currentwindow": {"label": "Home"}}
            return {"currentwindow": {"id": self.window,
                                      "label": WINDOW_LABELS.get(self.window, "")}}
        if method == "Profiles.GetCurrentProfile":
            return {"label": self.profile}
        if method == "Profiles.GetProfiles":
            return {"limits": {"end": 2, "start": 0, "total": 2},
                    "profiles": [{"label": self.master}, {"label": "Kids"}]}
        return None

    def _handle(self, c):
        c.settimeout(0.1)
        dec = json.JSONDecoder()
        buf = ""
        while not self.stop.is_set():
            try:
                chunk = c.recv(4096)
            except socket.timeout:
                continue
            except OSError:
                return
            if not chunk:
                return
            buf += chunk.decode()
            while True:
                try:
                    obj, idx = dec.raw_decode(buf.lstrip())
                except ValueError:
                    break
                buf = buf.lstrip()[idx:]
                self.requests.append(obj)
                if self.window is None:
                    continue  # accept and never answer
                if self.window == "http":
                    c.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
                    continue
                note = {"jsonrpc": "2.0", "method": "GUI.OnScreensaverDeactivated",
                        "params": {"data": {"shuttingdown": False}, "sender": "xbmc"}}
                result = self._result(obj.get("method"))
                resp = {"id": obj.get("id"), "jsonrpc": "2.0"}
                if result is None:
                    resp["error"] = {"code": -32601, "message": "Method not found."}
                else:
                    resp["result"] = result
                payload = (json.dumps(note) + json.dumps(resp)).encode()
                # split mid-object: the client must cope with a streamed answer
                c.sendall(payload[: len(payload) // 2 + 7])
                time.sleep(0.05)
                c.sendall(payload[len(payload) // 2 + 7:])

    def close(self):
        self.stop.set()
        for s in [self.sock] + self.conns:
            try:
                s.close()
            except OSError:
                pass
        self.thread.join(1)


@pytest.fixture
def fake_kodi():
    servers = []

    def make(window, **kw):
        s = FakeKodi(window, **kw)
        servers.append(s)
        return s

    yield make
    for s in servers:
        s.close()


@pytest.fixture
def closed_port():
    """A port that refuses connections: bound, never listening (so nobody else takes it)."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind(("127.0.0.1", 0))
    yield s.getsockname()[1]
    s.close()


class Box:
    def __init__(self, tmp, port, xml_text):
        self.tmp = tmp
        self.ud = tmp / "home" / ".kodi" / "userdata"
        self.ud.mkdir(parents=True)
        self.xml = self.ud / "profiles.xml"
        if xml_text is not None:
            self.xml.write_text(xml_text, encoding="utf-8")
        self.log = tmp / "calls.log"
        self.at_stop = tmp / "at_stop.xml"
        self.at_start = tmp / "at_start.xml"
        q = shlex.quote
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("KODI_")}
        self.env.update({
            "HOME": str(tmp / "home"),
            "KODI_USERDATA": str(self.ud),
            "KODI_JSONRPC_HOST": "127.0.0.1",
            "KODI_JSONRPC_PORT": str(port),
            "KODI_PROC_NAME": "kt-no-such-proc",
            "KODI_STOP_CMD": "echo stop >> %s; cp %s %s" % (q(str(self.log)), q(str(self.xml)),
                                                            q(str(self.at_stop))),
            # also records whether the lock fd (9) leaked into the start command
            "KODI_START_CMD": "echo start >> %s; cp %s %s; if [ -e /proc/$$/fd/9 ]; then "
                              "echo fd9-leaked >> %s; fi; true"
                              % (q(str(self.log)), q(str(self.xml)), q(str(self.at_start)),
                                 q(str(self.log))),
        })
        self.port = port

    def calls(self):
        return self.log.read_text().split() if self.log.exists() else []

    def run(self, *args, **env):
        e = dict(self.env)
        e.update(env)
        r = subprocess.run(script(*args), env=e, capture_output=True, text=True,
                           timeout=40)
        out = r.stdout + r.stderr
        # never print the PIN or its MD5 (nor any lock code from the file)
        for a in args:
            pin = a.rsplit(":", 1)[-1]
            if len(pin) == 4 and pin.isdigit():
                assert md5(pin) not in out
                if pin not in str(self.port) and pin not in str(self.tmp):
                    assert pin not in out, out
        for code in (MASTER_CODE, ROOM_CODE):
            assert code not in out
        return r


@pytest.fixture
def make_box(tmp_path, closed_port):
    def make(xml_text="default", port=None, **kw):
        if xml_text == "default":
            xml_text = profiles_xml(**kw)
        return Box(tmp_path, closed_port if port is None else port, xml_text)
    return make


# --------------------------------------------------------------------------

def test_script_is_an_executable_posix_sh_script():
    assert os.access(SCRIPT, os.X_OK)
    assert SCRIPT.read_text().splitlines()[0] == "#!/bin/sh"
    for shell in SHELLS:
        assert subprocess.run([*shell, "-n", str(SCRIPT)]).returncode == 0, shell
    # shellcheck in POSIX mode: no bash-only syntax
    r = subprocess.run(["shellcheck", "-s", "sh", str(SCRIPT)], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout


@pytest.mark.parametrize("pin", ["1234", "0000", "0420", "9999", "0007"])
def test_sets_md5_lock_code(make_box, pin):
    box = make_box()
    before = box.xml.read_bytes()
    r = box.run("Kids:" + pin)
    assert r.returncode == 0, r.stderr
    assert r.stdout == 'lock code set for profile "Kids"\n'
    kids = profile(parse(box.xml), "Kids")
    assert kids.findtext("lockmode") == "1"
    assert kids.findtext("lockcode") == md5(pin)
    if pin == "1234":
        assert kids.findtext("lockcode") == "81dc9bdb52d04dc20036dbd8313ed055"
    # stop happened before the file changed, start after
    assert box.calls() == ["stop", "start"]
    assert box.at_stop.read_bytes() == before
    assert box.at_start.read_bytes() == box.xml.read_bytes()
    assert box.xml.read_bytes() != before


@pytest.mark.parametrize("arg,name", [("kIDS:4321", "Kids"), ("KIDS:4321", "Kids"),
                                      ("room 12:4321", "Room 12")])
def test_case_insensitive_name(make_box, arg, name):
    box = make_box()
    r = box.run(arg)
    assert r.returncode == 0, r.stderr
    assert r.stdout == 'lock code set for profile "%s"\n' % name
    assert profile(parse(box.xml), name).findtext("lockcode") == md5("4321")


def test_other_profiles_and_elements_unchanged(make_box):
    box = make_box()
    old = parse(box.xml)
    r = box.run("Kids:2468")
    assert r.returncode == 0, r.stderr
    new = parse(box.xml)
    for name in ("Master user", "Room 12"):
        assert snapshot(profile(new, name)) == snapshot(profile(old, name))
    # Kids: only lockmode/lockcode differ
    ok = [s for s in snapshot(profile(old, "Kids")) if s[0] not in ("lockmode", "lockcode")]
    nk = [s for s in snapshot(profile(new, "Kids")) if s[0] not in ("lockmode", "lockcode")]
    assert ok == nk
    # top level: only lastloaded/useloginscreen differ
    top = lambda root: [(c.tag, c.attrib, c.text) for c in root
                        if c.tag not in ("profile", "lastloaded", "useloginscreen")]
    assert top(new) == top(old)
    assert [p.findtext("name") for p in new.findall("profile")] == \
        ["Master user", "Kids", "Room 12"]
    # XML declaration kept
    assert box.xml.read_text().startswith(
        '<?xml version="1.0" encoding="UTF-8" standalone="yes" ?>')


def test_login_screen_and_lastloaded(make_box):
    box = make_box()
    root = parse(box.xml)
    assert root.findtext("useloginscreen") == "false" and root.findtext("lastloaded") == "2"
    assert box.run("Room 12:1357").returncode == 0
    root = parse(box.xml)
    assert root.findtext("useloginscreen") == "true"
    assert root.findtext("lastloaded") == "0"
    assert profile(root, "Room 12").findtext("lockcode") == md5("1357")


def test_atomic_replace_keeps_mode(make_box):
    box = make_box()
    os.chmod(box.xml, 0o640)
    names = sorted(os.listdir(box.ud))
    ino = os.stat(box.xml).st_ino
    assert box.run("Kids:1234").returncode == 0
    st = os.stat(box.xml)
    assert st.st_ino != ino, "profiles.xml must be replaced by rename, not rewritten in place"
    assert stat.S_IMODE(st.st_mode) == 0o640
    assert sorted(os.listdir(box.ud)) == names, "temp files left behind"
    assert box.calls() == ["stop", "start"]  # also: lock fd 9 not leaked to start


def test_creates_missing_elements(make_box):
    box = make_box(kids_lock=False, useloginscreen=False)
    root = parse(box.xml)
    assert root.find("useloginscreen") is None
    assert profile(root, "Kids").find("lockmode") is None
    assert box.run("Kids:0420").returncode == 0
    root = parse(box.xml)
    kids = profile(root, "Kids")
    assert kids.findtext("lockmode") == "1"
    assert kids.findtext("lockcode") == md5("0420")
    tags = [c.tag for c in kids]
    assert tags.index("lockmode") == tags.index("lockgames") + 1
    assert tags.index("lockcode") == tags.index("lockmode") + 1
    assert tags[-1] == "lastdate"
    assert root.findtext("useloginscreen") == "true"
    assert root.findtext("lastloaded") == "0"
    # indentation stays Kodi-like
    text = box.xml.read_text()
    assert "\n        <lockmode>1</lockmode>\n        <lockcode>" in text
    assert "\n    <useloginscreen>true</useloginscreen>\n" in text


@pytest.mark.parametrize("arg", [
    "Kids:123", "Kids:12345", "Kids:12a4", "Kids", "Kids:", ":1234", "Kids: 123",
    "Kids:1234\n", "Kids:\uff11\uff12\uff13\uff14", "Kids:\u0661\u0662\u0663\u0664",
    "Ki\nds:1234", "Kids\n:1234", "Kids\r:1234", "Ki\tds:1234", "Kids\x7f:1234",
    "Kids\u0085:1234", "Master user:1234", "MASTER USER:1234",
])
def test_bad_input_refused(make_box, arg):
    box = make_box()
    before = box.xml.read_bytes()
    r = box.run(arg)
    assert r.returncode == 2, (arg, r.stderr)
    assert r.stdout == ""
    assert r.stderr.strip()
    assert box.xml.read_bytes() == before
    assert box.calls() == []


@pytest.mark.parametrize("args", [[], ["Kids:1234", "extra"]])
def test_wrong_argument_count(make_box, args):
    box = make_box()
    r = box.run(*args)
    assert r.returncode == 2
    assert "usage" in r.stderr
    assert box.calls() == []


def test_bad_input_beats_missing_file(make_box):
    box = make_box(xml_text=None)
    assert box.run("Kids:12a4").returncode == 2


def test_unknown_profile(make_box):
    box = make_box()
    before = box.xml.read_bytes()
    r = box.run("Nobody:1234")
    assert r.returncode == 3
    assert "Nobody" in r.stderr
    assert box.xml.read_bytes() == before
    assert box.calls() == []


def test_kodi_umlaut_is_not_folded(make_box):
    # Kodi folds ASCII letters only
    box = make_box(extra=["Ärger"])
    assert box.run("ärger:1234").returncode == 3
    assert box.run("Ärger:1234").returncode == 0


def test_missing_profiles_xml(make_box):
    box = make_box(xml_text=None)
    r = box.run("Kids:1234")
    assert r.returncode == 3
    assert "profiles.xml" in r.stderr
    assert box.calls() == []
    # missing userdata directory too
    r = box.run("Kids:1234", KODI_USERDATA=str(box.tmp / "nowhere"))
    assert r.returncode == 3


def test_default_userdata_is_home(make_box):
    box = make_box()
    env = {k: v for k, v in box.env.items() if k != "KODI_USERDATA"}
    r = subprocess.run(script("Kids:1234"), env=env, capture_output=True, text=True,
                       timeout=40)
    assert r.returncode == 0, r.stderr
    assert profile(parse(box.xml), "Kids").findtext("lockcode") == md5("1234")


def test_busy_when_logged_on(make_box, fake_kodi):
    srv = fake_kodi(HOME, profile="Kids")
    box = make_box(port=srv.port)
    before = box.xml.read_bytes()
    r = box.run("Kids:1234")
    assert r.returncode == 75
    assert "busy: a profile session is in use, try later" in r.stdout + r.stderr
    assert box.xml.read_bytes() == before
    assert box.calls() == [], "Kodi must not be stopped while a session is in use"
    assert len(srv.requests) == 1
    req = srv.requests[0]
    assert req["method"] == "GUI.GetProperties"
    assert req["params"] == {"properties": ["currentwindow"]}
    assert req["jsonrpc"] == "2.0" and "id" in req


def test_busy_when_the_master_profile_is_logged_in(make_box, fake_kodi):
    # the login screen also runs as the master profile: only the window tells
    srv = fake_kodi(HOME)
    box = make_box(port=srv.port)
    r = box.run("Kids:1234")
    assert r.returncode == 75
    assert "busy: a profile session is in use" in r.stderr
    assert box.calls() == []
    assert srv.methods() == ["GUI.GetProperties"]


@pytest.mark.parametrize("dialog", [NUMERIC_INPUT, GAMEPAD_INPUT])
def test_lock_code_dialog_over_the_login_screen_is_not_busy(make_box, fake_kodi, dialog):
    # someone at the TV chose a profile and is asked for its PIN: no session yet
    srv = fake_kodi(dialog, profile="Master user", master="Master user")
    box = make_box(port=srv.port)
    r = box.run("Kids:8642")
    assert r.returncode == 0, r.stderr
    assert box.calls() == ["stop", "start"]
    assert profile(parse(box.xml), "Kids").findtext("lockcode") == md5("8642")
    assert srv.methods() == ["GUI.GetProperties", "Profiles.GetCurrentProfile",
                             "Profiles.GetProfiles"]


def test_lock_code_dialog_over_a_renamed_master_is_not_busy(make_box, fake_kodi):
    srv = fake_kodi(NUMERIC_INPUT, profile="Admin", master="admin")
    box = make_box(port=srv.port)
    r = box.run("Kids:8642")
    assert r.returncode == 0, r.stderr


def test_lock_code_dialog_in_a_profile_session_is_busy(make_box, fake_kodi):
    srv = fake_kodi(NUMERIC_INPUT, profile="Kids")
    box = make_box(port=srv.port)
    before = box.xml.read_bytes()
    r = box.run("Kids:8642")
    assert r.returncode == 75
    assert "busy: a profile session is in use" in r.stderr
    assert box.xml.read_bytes() == before
    assert box.calls() == []


def test_other_dialog_over_the_master_profile_is_busy(make_box, fake_kodi):
    # e.g. the wrong-PIN message at the login screen, or any dialog in a master session
    srv = fake_kodi(OK_DIALOG)
    box = make_box(port=srv.port)
    r = box.run("Kids:8642")
    assert r.returncode == 75
    assert "busy: a profile session is in use" in r.stderr
    assert box.calls() == []
    assert srv.methods() == ["GUI.GetProperties"]


@pytest.mark.parametrize("answer", ["error", "odd"])
def test_busy_when_the_window_answer_is_unusable(make_box, fake_kodi, answer):
    srv = fake_kodi(answer)
    box = make_box(port=srv.port)
    before = box.xml.read_bytes()
    t0 = time.monotonic()
    r = box.run("Kids:1234")
    assert r.returncode == 75
    assert time.monotonic() - t0 < 1.9  # recognised at once, not by timeout
    assert "busy: cannot tell whether a profile session is in use" in r.stderr
    assert box.xml.read_bytes() == before
    assert box.calls() == []


def test_busy_when_jsonrpc_never_answers(make_box, fake_kodi):
    srv = fake_kodi(None)
    box = make_box(port=srv.port)
    before = box.xml.read_bytes()
    t0 = time.monotonic()
    r = box.run("Kids:1234", KODI_JSONRPC_TIMEOUT="0.5")
    assert r.returncode == 75
    assert time.monotonic() - t0 < 10
    assert "busy" in r.stderr
    assert box.xml.read_bytes() == before
    assert box.calls() == []
    assert len(srv.requests) == 1


def test_busy_when_port_speaks_no_jsonrpc(make_box, fake_kodi):
    srv = fake_kodi("http")
    box = make_box(port=srv.port)
    before = box.xml.read_bytes()
    t0 = time.monotonic()
    r = box.run("Kids:1234")
    assert r.returncode == 75
    assert time.monotonic() - t0 < 1.9  # recognised at once, not by timeout
    assert box.xml.read_bytes() == before
    assert box.calls() == []


def test_not_logged_in_proceeds(make_box, fake_kodi):
    srv = fake_kodi(LOGIN_SCREEN)
    box = make_box(port=srv.port)
    before = box.xml.read_bytes()
    r = box.run("Kids:8642")
    assert r.returncode == 0, r.stderr
    assert box.calls() == ["stop", "start"]
    assert box.at_stop.read_bytes() == before
    assert profile(parse(box.xml), "Kids").findtext("lockcode") == md5("8642")
    assert srv.methods() == ["GUI.GetProperties", "Profiles.GetCurrentProfile",
                             "Profiles.GetProfiles"]
    assert srv.requests[0]["params"] == {"properties": ["currentwindow"]}
    assert len({r["id"] for r in srv.requests}) == 3
    assert not [m for m in srv.methods() if m.startswith("XBMC.")]


def test_busy_while_a_login_is_in_progress(make_box, fake_kodi):
    # Kodi 20.1 reports the new profile ~0.1 s before the login screen goes away
    srv = fake_kodi(LOGIN_SCREEN, profile="Kids")
    box = make_box(port=srv.port)
    before = box.xml.read_bytes()
    r = box.run("Kids:8642")
    assert r.returncode == 75
    assert "busy: a profile session is in use" in r.stderr
    assert box.xml.read_bytes() == before
    assert box.calls() == []


def test_stop_failure(make_box):
    box = make_box()
    before = box.xml.read_bytes()
    r = box.run("Kids:1234",
                KODI_STOP_CMD="echo stop >> %s; exit 7" % shlex.quote(str(box.log)))
    assert r.returncode == 1
    assert "not changed" in r.stderr
    assert box.xml.read_bytes() == before
    assert box.calls() == ["stop"]


def test_start_failure(make_box):
    box = make_box()
    r = box.run("Kids:1234",
                KODI_START_CMD="echo start >> %s; exit 5" % shlex.quote(str(box.log)))
    assert r.returncode == 1
    assert "WAS updated" in r.stderr
    assert r.stdout == ""
    assert box.calls() == ["stop", "start"]
    assert profile(parse(box.xml), "Kids").findtext("lockcode") == md5("1234")


def test_profile_gone_after_stop_still_restarts(make_box):
    # Kodi rewrites profiles.xml on exit: the script must re-read it after the stop,
    # and start Kodi again even when the edit cannot be made.
    box = make_box()
    other = profiles_xml().replace("<name>Kids</name>", "<name>Teens</name>")
    src = box.tmp / "rewritten.xml"
    src.write_text(other, encoding="utf-8")
    q = shlex.quote
    r = box.run("Kids:1234", KODI_STOP_CMD="echo stop >> %s; cp %s %s"
                % (q(str(box.log)), q(str(src)), q(str(box.xml))))
    assert r.returncode == 3
    assert box.calls() == ["stop", "start"]
    assert box.xml.read_text() == other


def test_pin_and_md5_never_printed(make_box, fake_kodi):
    # Box.run checks every run; here on the noisiest paths explicitly.
    box = make_box(master_locked=False)
    for arg in ("Kids:5791", "Room 12:5791", "Nobody:5791", "Master user:5791", "Kids:579"):
        r = box.run(arg)
        out = r.stdout + r.stderr
        assert "5791" not in out and md5("5791") not in out
    srv = fake_kodi(HOME, profile="Kids")
    box.env["KODI_JSONRPC_PORT"] = str(srv.port)
    r = box.run("Kids:5791")
    assert r.returncode == 75 and md5("5791") not in r.stdout + r.stderr


def test_master_without_lock_warns(make_box):
    box = make_box(master_locked=False)
    r = box.run("Kids:1234")
    assert r.returncode == 0, r.stderr
    assert "WARNING" in r.stderr and "master" in r.stderr.lower()
    assert "WARNING" not in r.stdout
    assert profile(parse(box.xml), "Kids").findtext("lockcode") == md5("1234")


def test_master_with_lock_no_warning(make_box):
    box = make_box(master_locked=True)
    r = box.run("Kids:1234")
    assert r.returncode == 0
    assert "WARNING" not in r.stderr


def test_profile_name_with_colon_and_ampersand(make_box):
    box = make_box(extra=["Movie: Night", "Tom & Jerry"])
    r = box.run("Movie: Night:4321")
    assert r.returncode == 0, r.stderr
    assert r.stdout == 'lock code set for profile "Movie: Night"\n'
    r = box.run("tom & jerry:1111")
    assert r.returncode == 0, r.stderr
    root = parse(box.xml)
    assert profile(root, "Movie: Night").findtext("lockcode") == md5("4321")
    assert profile(root, "Tom & Jerry").findtext("lockcode") == md5("1111")
    assert "<name>Tom &amp; Jerry</name>" in box.xml.read_text()


def test_duplicate_names_first_wins_like_kodi(make_box):
    box = make_box(extra=["kids"])
    r = box.run("KIDS:1234")
    assert r.returncode == 0, r.stderr
    root = parse(box.xml)
    assert profile(root, "Kids").findtext("lockcode") == md5("1234")
    assert profile(root, "kids").findtext("lockcode") == "-"
    assert "note" in r.stderr


def test_bad_env_values(make_box):
    box = make_box()
    before = box.xml.read_bytes()
    assert box.run("Kids:1234", KODI_JSONRPC_PORT="90x").returncode == 2
    assert box.run("Kids:1234", KODI_JSONRPC_TIMEOUT="-1").returncode == 2
    assert box.xml.read_bytes() == before
    assert box.calls() == []


def _has_kodi_unit():
    try:
        return subprocess.run(["systemctl", "cat", "kodi.service"], capture_output=True,
                              timeout=10).returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False


def test_default_stop_and_port_closed_during_profile_switch(make_box, tmp_path):
    """A Kodi process is running but its JSON-RPC port is closed (as during a profile
    switch): the port is retried for ~3 s, then the default stop (pkill -x
    $KODI_PROC_NAME, wait until gone) ends the process."""
    if _has_kodi_unit():
        pytest.skip("a kodi.service unit exists: the default stop would use systemctl")
    name = "kt-fk-%d" % (os.getpid() % 100000)
    fake = tmp_path / name
    fake.write_bytes(Path("/bin/sleep").read_bytes())
    fake.chmod(0o755)
    proc = subprocess.Popen([str(fake), "60"])
    threading.Thread(target=proc.wait, daemon=True).start()  # reap it like a parent would
    try:
        box = make_box()
        env = dict(box.env)
        del env["KODI_STOP_CMD"]
        env["KODI_PROC_NAME"] = name
        t0 = time.monotonic()
        r = subprocess.run(script("Kids:1234"), env=env, capture_output=True,
                           text=True, timeout=40)
        elapsed = time.monotonic() - t0
        assert r.returncode == 0, r.stderr
        assert "note" in r.stderr and name in r.stderr
        assert elapsed >= 2.5
        deadline = time.monotonic() + 5
        while proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert proc.poll() is not None, "default stop did not end the Kodi process"
        assert box.calls() == ["start"]
        assert profile(parse(box.xml), "Kids").findtext("lockcode") == md5("1234")
    finally:
        if proc.poll() is None:
            proc.kill()


# -------------------------------------------------------------------------- --log-off

def test_log_off_needs_exactly_a_profile_name(make_box):
    box = make_box()
    for args in (["--log-off"], ["--log-off", "Kids", "extra"], ["--log-off", "Ki\nds"]):
        r = box.run(*args)
        assert r.returncode == 2, (args, r.stderr)
    assert box.calls() == [], "nothing stopped or started"


def test_log_off_with_kodi_not_running_changes_nothing(make_box):
    box = make_box()
    before = box.xml.read_bytes()
    r = box.run("--log-off", "Kids")
    assert r.returncode == 0, r.stderr
    assert r.stdout == 'Kodi is not running: profile "Kids" is not logged in\n'
    assert box.xml.read_bytes() == before and box.calls() == []


# ------------------------------------------------------------- remote control switched off

GUISETTINGS = ('<settings version="2">\n'
               '    <setting id="services.esallinterfaces" default="true">false</setting>\n'
               '    <setting id="services.esenabled"%s>%s</setting>\n'
               '    <setting id="services.esport" default="true">9777</setting>\n'
               '</settings>\n')


def test_remote_control_switched_off_in_a_profile_is_switched_back_on(make_box):
    box = make_box()
    kids = box.ud / "profiles" / "Kids" / "guisettings.xml"
    room = box.ud / "profiles" / "Room 12" / "guisettings.xml"
    master = box.ud / "guisettings.xml"
    for path, on in ((kids, False), (room, True), (master, False)):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(GUISETTINGS % (' default="true"', "true") if on else GUISETTINGS % ("", "false"))
    room_before = room.read_bytes()
    r = box.run("Kids:1234")
    assert r.returncode == 0, r.stderr
    for path in (kids, master):
        assert ET.parse(path).getroot().find("setting[@id='services.esenabled']").text == "true"
        assert "esallinterfaces\" default=\"true\">false" in path.read_text(), "nothing else changes"
    assert room.read_bytes() == room_before, "a profile with it on is not rewritten"
    assert r.stderr.count("remote control by programs was off") == 2, r.stderr
    assert '"Kids"' in r.stderr and '"Master user"' in r.stderr
