"""A real Kodi (Debian's kodi 20.x) on a private Xvfb display, for tests.

Standard library only. See /work/shared/KODI.md for the facts and traps this relies on.

    from kodi_harness import KodiHarness, Profile
    k = KodiHarness(profiles=[Profile("Kids", pin="1234"), Profile("Tickets")],
                    master_pin="2580")
    k.start()                       # Xvfb + Kodi, waits until JSON-RPC and EventServer are up
    k.current_profile()             # "Master user" (login screen)
    k.logged_on()                   # False
    k.load_profile("Kids", pin="0000")   # False (refused)
    k.load_profile("Kids", pin="1234")   # True, Kids is now current and logged on
    k.log_off()                     # EventServer System.LogOff, back at the login screen
    k.type_pin_at_login_screen("Kids", "1234")   # as a person: move, select, type on the pad
    k.eventserver_stops()           # [s, ...]: how long each EventServer stop took (kodi.log)
    subprocess.run([script, "Kids:4711"], env=k.env)   # stop/start commands of THIS Kodi
    k.stop()                        # kills Kodi and Xvfb, removes the temp dir

Each instance has its own temp HOME, X display (Xvfb -displayfd), JSON-RPC TCP port
(advancedsettings.xml) and EventServer UDP port (guisettings.xml services.esport), no sound
(~/.asoundrc null device), web server, zeroconf, UPnP, AirPlay off.

Kodi is started and stopped only through two generated shell scripts in the temp dir
(`start-kodi.sh`, `stop-kodi.sh`, also handed to the project's script as KODI_START_CMD /
KODI_STOP_CMD), so the harness's own restarts and the script's take the same path. The
current Kodi pid is in `kodi.pid`; every pid ever started is appended to `kodi.pids`.

Traps from KODI.md the helpers refuse to walk into (HarnessError):
  * load_profile() of the profile that is already loaded (incl. the master profile while
    the login screen shows, where "Master user" is the loaded profile);
  * log_off() when nobody is logged on;
  * "prompt": true is never sent.
And one found while building this (not in KODI.md as of writing): a JSON-RPC request that
needs Kodi's main thread (XBMC.GetInfoBooleans, XBMC.GetInfoLabels) arriving within
~20-40 ms after Profiles.LoadProfile answered "OK" deadlocks Kodi for good (the main thread,
loading the profile, joins the JSON-RPC TCP thread, which waits for the main thread).
So after a switch the helpers wait for the JSON-RPC and EventServer sockets to be re-created
(new inodes in /proc/net) before sending anything (Profiles.GetCurrentProfile, JSONRPC.Ping
and GUI.GetProperties were not affected; log-off was not affected), and logged_on() reads
GUI.GetProperties currentwindow instead of System.LoggedOn: tests poll it while the agent
switches profiles (polled during a log-off, GetInfoBooleans once answered with no result).

Processes: the test process makes itself a child subreaper (prctl) so the Kodis that outlive
the start script can be reaped here (reap(); exit_statuses): in containers/VMs whose PID 1
does not reap orphans, a stopped Kodi would otherwise stay a zombie, and `kill -0`/pgrep
would still "see" it. Liveness checks here treat zombies as dead.
"""

import atexit
import ctypes
import hashlib
import json
import os
import re
import select
import shlex
import shutil
import signal
import socket
import struct
import subprocess
import tempfile
import time
import xml.etree.ElementTree as ET
import zlib
from dataclasses import dataclass
from glob import glob
from pathlib import Path
from typing import Optional

__all__ = [
    "KodiHarness", "Profile", "HarnessError", "RpcError", "RpcConnectionError",
    "md5hex", "find_kodi_bin", "missing_requirements",
]

MASTER_NAME = "Master user"
DEFAULT_START_TIMEOUT = float(os.environ.get("KODI_HARNESS_START_TIMEOUT", "120"))
DEFAULT_SWITCH_TIMEOUT = float(os.environ.get("KODI_HARNESS_SWITCH_TIMEOUT", "60"))

_live_instances = set()


class HarnessError(RuntimeError):
    """The harness could not do what was asked (Kodi down, a trap refused, a timeout)."""


class RpcError(Exception):
    """Kodi answered a JSON-RPC request with an error object."""

    def __init__(self, method, error):
        self.method = method
        self.error = error if isinstance(error, dict) else {"message": repr(error)}
        self.code = self.error.get("code")
        self.message = self.error.get("message")
        super().__init__("%s -> error %s %s" % (method, self.code, json.dumps(self.error)))


class RpcConnectionError(HarnessError):
    """No answer: the port is closed, or the connection dropped before the answer came."""


def md5hex(code: str) -> str:
    """Kodi's lock code format: lowercase MD5 hex of the code."""
    return hashlib.md5(code.encode("utf-8")).hexdigest()


def find_kodi_bin() -> Optional[str]:
    env = os.environ.get("KODI_BIN")
    if env and os.access(env, os.X_OK):
        return env
    for p in sorted(glob("/usr/lib/*/kodi/kodi.bin")) + ["/usr/lib/kodi/kodi.bin"]:
        if os.access(p, os.X_OK):
            return p
    return None


def missing_requirements() -> list:
    """What is missing to run a real Kodi here (empty list = nothing)."""
    missing = []
    if not find_kodi_bin():
        missing.append("kodi.bin (apt-get install kodi)")
    if not shutil.which("Xvfb"):
        missing.append("Xvfb (apt-get install xvfb)")
    if not os.path.isdir("/proc/self"):
        missing.append("/proc (Linux)")
    return missing


def _ascii_lower(s: str) -> str:
    # Kodi compares profile names with StringUtils::EqualsNoCase (ASCII folding only)
    return "".join(chr(ord(c) + 32) if "A" <= c <= "Z" else c for c in s)


def _free_port(kind=socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _free_port_both() -> int:
    """A port that is free for TCP and UDP on 127.0.0.1."""
    for _ in range(50):
        p = _free_port(socket.SOCK_STREAM)
        try:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
                u.bind(("127.0.0.1", p))
            return p
        except OSError:
            continue
    raise HarnessError("no free port found")


def _proc_state(pid: int):
    """(state letter, ppid, comm) of a pid, or None if there is no such process."""
    try:
        with open("/proc/%d/stat" % pid, "rb") as f:
            data = f.read().decode("utf-8", "replace")
    except OSError:
        return None
    lp, rp = data.find("("), data.rfind(")")
    comm = data[lp + 1:rp]
    rest = data[rp + 2:].split()
    return rest[0], int(rest[1]), comm


def pid_alive(pid: Optional[int]) -> bool:
    """True if pid runs (a zombie is dead: in containers whose PID 1 does not reap
    orphans, a stopped Kodi stays a zombie and `kill -0` still succeeds)."""
    if not pid:
        return False
    st = _proc_state(pid)
    if st is None:
        return False
    if st[0] not in ("Z", "X"):
        return True
    try:  # a zombie leader whose other threads are still exiting (sockets still open)
        return len(os.listdir("/proc/%d/task" % pid)) > 1
    except OSError:
        return False


def _set_child_subreaper():
    """Become the reaper of our orphaned descendants (Kodi outlives the start script), so
    that the stopped Kodis can be reaped here instead of staying zombies forever when PID 1
    does not reap (containers, micro-VMs). Only pids the harness started are ever reaped."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER
    except Exception:
        pass


def _socket_inode(port: int, udp: bool) -> Optional[str]:
    """Inode of the socket bound to local `port` (TCP: the listening one), from /proc/net;
    None if there is none. A restarted server gets a new inode."""
    names = ("udp", "udp6") if udp else ("tcp", "tcp6")
    want = ":%04X" % port
    for n in names:
        try:
            with open("/proc/net/" + n) as f:
                next(f, None)
                for line in f:
                    parts = line.split()
                    if len(parts) < 10 or not parts[1].endswith(want):
                        continue
                    if udp or parts[3] == "0A":  # 0A = LISTEN
                        return parts[9]
        except OSError:
            continue
    return None


def _die_with_parent():
    """preexec_fn for Xvfb: SIGTERM it when the test process dies, even by SIGKILL or an
    unhandled SIGTERM (no atexit then). Kodi then loses its X server and exits too."""
    try:
        ctypes.CDLL(None).prctl(1, signal.SIGTERM, 0, 0, 0)  # PR_SET_PDEATHSIG
    except Exception:
        pass


def _port_bound(port: int, udp: bool) -> bool:
    return _socket_inode(port, udp) is not None


def _xml_escape(s: str) -> str:
    return s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


@dataclass
class Profile:
    """A profile to seed. pin -> numeric lock (lockmode 1, lockcode md5(pin)); no pin ->
    no lock. lockmode/lockcode override (lockcode is written as given, e.g. an MD5)."""
    name: str
    pin: Optional[str] = None
    lockmode: Optional[int] = None
    lockcode: Optional[str] = None
    directory: Optional[str] = None      # relative to userdata; default profiles/<name>/
    lastdate: str = "-"
    hasdatabases: bool = False           # share the master's databases: faster first login
    hassources: bool = False

    def lock(self):
        if self.lockmode is not None:
            return self.lockmode, self.lockcode if self.lockcode is not None else (
                md5hex(self.pin) if self.pin else "-")
        if self.pin is not None:
            return 1, md5hex(self.pin)
        return 0, "-"


def _profile_block(pid, name, directory, lockmode, lockcode, lastdate, hasdb, hassrc):
    b = lambda v: "true" if v else "false"
    return (
        "    <profile>\n"
        "        <id>%d</id>\n"
        "        <name>%s</name>\n"
        '        <directory pathversion="1">%s</directory>\n'
        '        <thumbnail pathversion="1"></thumbnail>\n'
        "        <hasdatabases>%s</hasdatabases>\n"
        "        <canwritedatabases>false</canwritedatabases>\n"
        "        <hassources>%s</hassources>\n"
        "        <canwritesources>false</canwritesources>\n"
        "        <lockaddonmanager>false</lockaddonmanager>\n"
        "        <locksettings>0</locksettings>\n"
        "        <lockfiles>false</lockfiles>\n"
        "        <lockmusic>false</lockmusic>\n"
        "        <lockvideo>false</lockvideo>\n"
        "        <lockpictures>false</lockpictures>\n"
        "        <lockprograms>false</lockprograms>\n"
        "        <lockgames>false</lockgames>\n"
        "        <lockmode>%d</lockmode>\n"
        "        <lockcode>%s</lockcode>\n"
        "        <lastdate>%s</lastdate>\n"
        "    </profile>\n"
        % (pid, _xml_escape(name), _xml_escape(directory), b(hasdb), b(hassrc),
           lockmode, _xml_escape(lockcode), _xml_escape(lastdate))
    )


GUISETTINGS = {
    "services.webserver": "false",
    "services.esenabled": "true",         # JSON-RPC over TCP + EventServer
    "services.esallinterfaces": "false",  # both on 127.0.0.1 only
    "services.zeroconf": "false",
    "services.wsdiscovery": "false",
    "services.upnp": "false",
    "services.airplay": "false",
    "general.addonupdates": "2",          # never
    "general.addonnotifications": "false",
}

START_SCRIPT = r"""#!/bin/sh
# Starts this harness's Kodi (HOME {home}, DISPLAY :{display}) unless it already runs.
# Does not wait for Kodi to be ready: returns once the new process runs kodi.bin (like
# `systemctl start kodi`); its pid goes to {pidfile}. Generated by tests/kodi/kodi_harness.py.
# alive: exists and not a zombie, or a zombie whose other threads still exit (they may
# still hold Kodi's sockets). Zombies count as gone: PID 1 may never reap them.
alive() {{ [ -n "$1" ] && [ -r "/proc/$1/stat" ] &&
  {{ ! sed 's/^.*) //' "/proc/$1/stat" | grep -q '^[ZX]' || [ "$(ls "/proc/$1/task" 2>/dev/null | wc -l)" -gt 1 ]; }}; }}
old=$(cat {pidfile} 2>/dev/null)
if alive "$old" && grep -q kodi.bin "/proc/$old/cmdline" 2>/dev/null; then
  echo "start-kodi: Kodi already running (pid $old)" >&2; exit 1
fi
if ! alive {xvfb_pid}; then
  echo "start-kodi: Xvfb (pid {xvfb_pid}, display :{display}) is not running" >&2; exit 1
fi
cd {home} || exit 1
env -i PATH=/usr/local/bin:/usr/bin:/bin HOME={home} DISPLAY=:{display} LANG=C.UTF-8 \
    XDG_RUNTIME_DIR={runtime} KODI_AE_SINK=ALSA \
    {kodi_bin} --windowing=x11 </dev/null >>{stdout_log} 2>&1 &
pid=$!
echo "$pid" > {pidfile}.tmp && mv {pidfile}.tmp {pidfile}
echo "$pid" >> {pidhistory}
# return once `env` has exec'd kodi.bin (or died)
i=0
while [ $i -lt 200 ] && alive "$pid" && [ "$(cat /proc/$pid/comm 2>/dev/null)" != kodi.bin ]; do
  i=$((i + 1)); sleep 0.05
done
echo "start-kodi: started Kodi pid $pid" >&2
exit 0
"""

STOP_SCRIPT = r"""#!/bin/sh
# Stops this harness's Kodi (pid in {pidfile}) and returns only once it is gone.
# SIGTERM (Kodi then rewrites profiles.xml, like a real stop); SIGKILL after {term_wait} s.
# Usage: stop-kodi.sh [KILL]  (KILL: SIGKILL at once, nothing written).
# Generated by tests/kodi/kodi_harness.py.
# alive: exists and not a zombie, or a zombie whose other threads still exit (they may
# still hold Kodi's sockets). Zombies count as gone: PID 1 may never reap them.
alive() {{ [ -n "$1" ] && [ -r "/proc/$1/stat" ] &&
  {{ ! sed 's/^.*) //' "/proc/$1/stat" | grep -q '^[ZX]' || [ "$(ls "/proc/$1/task" 2>/dev/null | wc -l)" -gt 1 ]; }}; }}
pid=$(cat {pidfile} 2>/dev/null)
if ! alive "$pid" || ! grep -q kodi.bin "/proc/$pid/cmdline" 2>/dev/null; then
  echo "stop-kodi: Kodi not running" >&2; exit 0
fi
sig=TERM; [ "${{1:-}}" = KILL ] && sig=KILL
kill -s $sig "$pid" 2>/dev/null
i=0
while alive "$pid"; do
  i=$((i + 1))
  if [ $i -ge {term_ticks} ]; then
    echo "stop-kodi: Kodi $pid still running {term_wait} s after SIG$sig, SIGKILL" >&2
    kill -s KILL "$pid" 2>/dev/null; sig=KILL; i=0
  fi
  sleep 0.1
done
echo "stop-kodi: Kodi $pid stopped (SIG$sig)" >&2
exit 0
"""


class KodiHarness:
    """One real Kodi + Xvfb. Attributes after start(): tmp, home, userdata, profiles_xml,
    kodi_log, display, jsonrpc_port, eventserver_port, start_script, stop_script,
    pid_file. Properties: env, kodi_pid."""

    def __init__(self, profiles=(), master_pin: Optional[str] = "2580",
                 master_name: str = MASTER_NAME, screen: str = "1280x720x24",
                 keep_tmp: bool = False, start_timeout: float = DEFAULT_START_TIMEOUT):
        self.profiles = [p if isinstance(p, Profile) else Profile(*p) if isinstance(p, (tuple, list))
                         else Profile(**p) if isinstance(p, dict) else Profile(str(p))
                         for p in profiles]
        self.master_pin = master_pin
        self.master_name = master_name
        self.screen = screen
        self.keep_tmp = keep_tmp
        self.start_timeout = start_timeout
        self.kodi_bin = find_kodi_bin()
        self.xvfb = None
        self.display = None
        self.tmp = None
        self._started = False
        self.exit_statuses = {}

    # ------------------------------------------------------------------ set-up
    def start(self):
        """Seed a fresh HOME, start Xvfb and Kodi, wait until both servers answer."""
        missing = missing_requirements()
        if missing:
            raise HarnessError("cannot run Kodi here, missing: " + ", ".join(missing))
        _set_child_subreaper()
        self.tmp = Path(tempfile.mkdtemp(prefix="kodi-harness-"))
        self.home = self.tmp / "home"
        self.userdata = self.home / ".kodi" / "userdata"
        self.profiles_xml = self.userdata / "profiles.xml"
        self.kodi_log = self.home / ".kodi" / "temp" / "kodi.log"
        self.kodi_old_log = self.home / ".kodi" / "temp" / "kodi.old.log"
        self.stdout_log = self.tmp / "kodi-stdout.log"
        self.xvfb_log = self.tmp / "xvfb.log"
        self.fbdir = self.tmp / "fb"
        self.runtime = self.tmp / "run"
        self.pid_file = self.tmp / "kodi.pid"
        self.pid_history = self.tmp / "kodi.pids"
        self.start_script = self.tmp / "start-kodi.sh"
        self.stop_script = self.tmp / "stop-kodi.sh"
        self.jsonrpc_port = _free_port_both()
        self.eventserver_port = _free_port_both()
        while self.eventserver_port == self.jsonrpc_port:
            self.eventserver_port = _free_port_both()
        _live_instances.add(self)
        self._started = True
        try:
            self._seed()
            self._start_xvfb()
            self._write_scripts()
            self.start_kodi()
            self.wait_ready(self.start_timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def _seed(self):
        for d in (self.userdata, self.fbdir, self.runtime, self.home / ".kodi" / "temp"):
            d.mkdir(parents=True, exist_ok=True)
        os.chmod(self.runtime, 0o700)
        (self.home / ".asoundrc").write_text("pcm.!default { type null }\nctl.!default { type null }\n")
        self.write_profiles_xml()
        (self.userdata / "advancedsettings.xml").write_text(
            "<advancedsettings version=\"1.0\">\n"
            "    <jsonrpc>\n"
            "        <compactoutput>true</compactoutput>\n"
            "        <tcpport>%d</tcpport>\n"
            "    </jsonrpc>\n"
            "</advancedsettings>\n" % self.jsonrpc_port)
        self._write_guisettings(self.userdata)

    def _write_guisettings(self, folder: Path):
        s = dict(GUISETTINGS)
        s["services.esport"] = str(self.eventserver_port)
        body = "".join('    <setting id="%s">%s</setting>\n' % (k, v) for k, v in s.items())
        (folder / "guisettings.xml").write_text('<settings version="2">\n%s</settings>\n' % body)

    def profile_dir(self, name: str) -> Path:
        for p in self.profiles:
            if p.name == name:
                return self.userdata / (p.directory or "profiles/%s/" % p.name)
        raise KeyError(name)

    def write_profiles_xml(self, profiles=None, master_pin="unchanged"):
        """(Re)write profiles.xml (and the profile folders with their guisettings.xml) from
        `profiles` / `master_pin` (default: the instance's). Only while Kodi is stopped:
        Kodi overwrites the file from memory."""
        if profiles is not None:
            self.profiles = [p if isinstance(p, Profile) else Profile(*p) for p in profiles]
        if master_pin != "unchanged":
            self.master_pin = master_pin
        if self.master_pin:
            mmode, mcode = 1, md5hex(self.master_pin)
        else:
            mmode, mcode = 0, "-"
        out = ['<?xml version="1.0" encoding="UTF-8" standalone="yes" ?>\n<profiles>\n',
               "    <lastloaded>0</lastloaded>\n",
               "    <useloginscreen>true</useloginscreen>\n",
               "    <autologin>-1</autologin>\n",
               "    <nextIdProfile>%d</nextIdProfile>\n" % (len(self.profiles) + 1),
               _profile_block(0, self.master_name, "special://masterprofile/", mmode, mcode,
                              "-", True, True)]
        for i, p in enumerate(self.profiles, start=1):
            directory = p.directory or "profiles/%s/" % p.name
            if directory.startswith("special://"):
                raise HarnessError("profile directory must be relative to userdata: %r" % directory)
            mode, code = p.lock()
            out.append(_profile_block(i, p.name, directory, mode, code, p.lastdate or "-",
                                      p.hasdatabases, p.hassources))
            folder = self.userdata / directory
            folder.mkdir(parents=True, exist_ok=True)
            if hasattr(self, "eventserver_port"):
                self._write_guisettings(folder)
        out.append("</profiles>\n")
        self.profiles_xml.write_text("".join(out), encoding="utf-8")

    def _start_xvfb(self):
        r, w = os.pipe()
        try:
            with open(self.xvfb_log, "wb") as log:
                self.xvfb = subprocess.Popen(
                    ["Xvfb", "-displayfd", str(w), "-screen", "0", self.screen,
                     "-nolisten", "tcp", "-noreset", "-fbdir", str(self.fbdir)],
                    pass_fds=(w,), stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                    preexec_fn=_die_with_parent)
        finally:
            os.close(w)
        buf = b""
        deadline = time.monotonic() + 30
        try:
            while b"\n" not in buf and time.monotonic() < deadline:
                ready, _, _ = select.select([r], [], [], 0.5)
                if ready:
                    chunk = os.read(r, 64)
                    if not chunk:
                        break
                    buf += chunk
                elif self.xvfb.poll() is not None:
                    break
        finally:
            os.close(r)
        num = buf.strip().decode("ascii", "replace")
        if not num.isdigit():
            raise HarnessError("Xvfb did not report a display (exit %s): %s"
                               % (self.xvfb.poll(), self._tail(self.xvfb_log, 20)))
        self.display = int(num)

    def _write_scripts(self):
        q = lambda p: shlex.quote(str(p))
        term_wait = 30
        self.start_script.write_text(START_SCRIPT.format(
            home=q(self.home), display=self.display, pidfile=q(self.pid_file),
            pidhistory=q(self.pid_history), xvfb_pid=self.xvfb.pid, runtime=q(self.runtime),
            kodi_bin=q(self.kodi_bin), stdout_log=q(self.stdout_log)))
        self.stop_script.write_text(STOP_SCRIPT.format(
            pidfile=q(self.pid_file), term_wait=term_wait, term_ticks=term_wait * 10))
        for p in (self.start_script, self.stop_script):
            p.chmod(0o755)

    # ------------------------------------------------------------ processes
    @property
    def kodi_pid(self) -> Optional[int]:
        """Pid of the Kodi started last (from kodi.pid), or None."""
        try:
            return int(self.pid_file.read_text().strip())
        except (OSError, ValueError):
            return None

    def kodi_running(self) -> bool:
        return pid_alive(self.kodi_pid)

    @property
    def env(self) -> dict:
        """A fresh copy of os.environ plus the settings of the project's script for THIS
        Kodi: KODI_USERDATA, KODI_JSONRPC_HOST/PORT, KODI_JSONRPC_TIMEOUT (10 s: a loaded
        2-core machine), KODI_EVENTSERVER_PORT, KODI_STOP_CMD, KODI_START_CMD,
        KODI_PROC_NAME."""
        e = dict(os.environ)
        e.update({
            "KODI_USERDATA": str(self.userdata),
            "KODI_JSONRPC_HOST": "127.0.0.1",
            "KODI_JSONRPC_PORT": str(self.jsonrpc_port),
            "KODI_JSONRPC_TIMEOUT": "10",
            "KODI_EVENTSERVER_PORT": str(self.eventserver_port),
            "KODI_STOP_CMD": shlex.quote(str(self.stop_script)),
            "KODI_START_CMD": shlex.quote(str(self.start_script)),
            "KODI_PROC_NAME": "kodi.bin",
        })
        return e

    def _run_script(self, script, *args, timeout=120):
        r = subprocess.run([str(script), *args], capture_output=True, text=True, timeout=timeout)
        self.reap()
        if r.returncode != 0:
            raise HarnessError("%s failed (exit %d): %s" % (script.name, r.returncode, r.stderr.strip()))
        return r

    def start_kodi(self):
        """Start Kodi (via start-kodi.sh); does not wait (see wait_ready)."""
        self._run_script(self.start_script)

    def stop_kodi(self, kill: bool = False):
        """Stop Kodi (via stop-kodi.sh) and wait until it is gone. kill=True: SIGKILL, so
        Kodi does not rewrite profiles.xml / guisettings.xml."""
        self._run_script(self.stop_script, *(["KILL"] if kill else []))

    def restart_kodi(self, timeout: Optional[float] = None):
        self.stop_kodi()
        self.start_kodi()
        self.wait_ready(timeout or self.start_timeout)

    def reap(self) -> bool:
        """Reap the Kodis this harness started that have exited and were re-parented to
        this process (see _set_child_subreaper); their exit statuses go to exit_statuses.
        Never touches other children. Returns True if no started Kodi is left unreaped."""
        try:
            pids = {int(x) for x in self.pid_history.read_text().split()}
        except (OSError, ValueError, AttributeError):
            return True
        me = os.getpid()
        done = True
        for pid in pids:
            st = _proc_state(pid)
            if not st or st[1] != me or not st[2].startswith("kodi"):
                continue  # gone, or not (yet) our child
            if st[0] != "Z":
                done = False
                continue
            try:
                rpid, status = os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                continue
            if rpid == pid:
                self.exit_statuses[pid] = (
                    "signal %d" % os.WTERMSIG(status) if os.WIFSIGNALED(status)
                    else "exit %d" % os.WEXITSTATUS(status))
            else:
                done = False  # leader is a zombie, other threads still exiting
        return done

    def exit_status(self, pid=None) -> str:
        """How Kodi `pid` (default: the current one) ended, if it was reaped here."""
        self.reap()
        pid = pid or self.kodi_pid
        return self.exit_statuses.get(pid, "unknown (not reaped here)")

    def stop(self):
        """Kill Kodi and Xvfb, reap them, remove the temp dir (unless keep_tmp). Idempotent."""
        if not self._started:
            return
        self._started = False
        try:
            if self.tmp is not None and self.stop_script.exists():
                try:
                    self.stop_kodi(kill=True)
                except Exception:
                    pid = self.kodi_pid
                    if pid_alive(pid):
                        try:
                            os.kill(pid, signal.SIGKILL)
                        except OSError:
                            pass
            # wait for every Kodi we started to be gone and reaped
            deadline = time.monotonic() + 15
            while time.monotonic() < deadline:
                reaped = self.reap()
                try:
                    pids = [int(x) for x in self.pid_history.read_text().split()]
                except (OSError, ValueError):
                    pids = []
                live = [p for p in pids if pid_alive(p) and (_proc_state(p) or ("", 0, ""))[2].startswith("kodi")]
                if not live and reaped:
                    break
                for p in live:
                    try:
                        os.kill(p, signal.SIGKILL)
                    except OSError:
                        pass
                time.sleep(0.1)
            self.reap()
            if self.xvfb is not None and self.xvfb.poll() is None:
                self.xvfb.terminate()
                try:
                    self.xvfb.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    self.xvfb.kill()
                    self.xvfb.wait()
        finally:
            _live_instances.discard(self)
            if self.tmp is not None and not self.keep_tmp:
                shutil.rmtree(self.tmp, ignore_errors=True)

    def __enter__(self):
        return self.start() if not self._started else self

    def __exit__(self, *exc):
        self.stop()

    # ------------------------------------------------------------- JSON-RPC
    SAFE_METHODS = re.compile(r"^(JSONRPC\.(Ping|Version|Introspect)|.*\.Get[A-Za-z]*)$")

    def rpc(self, method: str, params=None, timeout: float = 10.0, retry_for: float = 15.0):
        """One JSON-RPC call over raw TCP on a fresh connection; returns "result".

        Objects arrive streamed without separators and notifications may come first: both
        are handled. A refused/reset connect is retried for `retry_for` s (Kodi restarts
        its network services on every profile switch). A connection that drops after the
        request was sent is retried only for read-only methods (*.Get*, Ping, Version).
        Raises RpcError (Kodi's error object) or RpcConnectionError."""
        req_id = "h%d" % int(time.monotonic() * 1e6)
        req = {"jsonrpc": "2.0", "id": req_id, "method": method}
        if params is not None:
            if isinstance(params, dict) and params.get("prompt"):
                raise HarnessError('never send "prompt": true over TCP (blocks Kodi\'s TCP server)')
            req["params"] = params
        data = json.dumps(req).encode()
        safe = bool(self.SAFE_METHODS.match(method))
        deadline = time.monotonic() + retry_for
        delay = 0.1
        while True:
            try:
                return self._rpc_once(method, req_id, data, timeout)
            except _NotSent as e:
                last = e.cause
            except _NoAnswer as e:
                if not safe:
                    raise RpcConnectionError("%s: %s (request was sent; not retried)"
                                             % (method, e.cause))
                last = e.cause
            if time.monotonic() + delay > deadline:
                raise RpcConnectionError("%s: no answer from 127.0.0.1:%d within %.0f s (%s)"
                                         % (method, self.jsonrpc_port, retry_for, last))
            time.sleep(delay)
            delay = min(delay * 1.5, 1.0)

    def _rpc_once(self, method, req_id, data, timeout):
        try:
            sock = socket.create_connection(("127.0.0.1", self.jsonrpc_port), timeout=timeout)
        except OSError as e:
            raise _NotSent(e)
        try:
            try:
                sock.sendall(data)
            except OSError as e:
                raise _NotSent(e)
            dec = json.JSONDecoder()
            raw = b""
            end = time.monotonic() + timeout
            while True:
                left = end - time.monotonic()
                if left <= 0:
                    raise _NoAnswer("timed out after %.0f s" % timeout)
                sock.settimeout(left)
                try:
                    chunk = sock.recv(65536)
                except OSError as e:
                    raise _NoAnswer(e)
                if not chunk:
                    raise _NoAnswer("connection closed before the answer")
                raw += chunk
                try:
                    text = raw.decode("utf-8")
                except UnicodeDecodeError as e:
                    text = raw[:e.start].decode("utf-8")
                pos, used = 0, 0
                while True:
                    while pos < len(text) and text[pos] in " \t\r\n":
                        pos += 1
                    if pos >= len(text):
                        break
                    try:
                        obj, pos = dec.raw_decode(text, pos)
                    except ValueError:
                        break
                    used = pos
                    if isinstance(obj, dict) and obj.get("id") == req_id:
                        if "error" in obj:
                            raise RpcError(method, obj["error"])
                        return obj.get("result")
                    # anything else is a notification: skip it
                if used:
                    raw = text[used:].encode("utf-8") + raw[len(text.encode("utf-8")):]
        finally:
            sock.close()

    def answers(self, timeout: float = 3.0) -> bool:
        """True if JSON-RPC answers JSONRPC.Ping now."""
        try:
            return self.rpc("JSONRPC.Ping", timeout=timeout, retry_for=0) == "pong"
        except (RpcError, HarnessError):
            return False

    def wait_ready(self, timeout: Optional[float] = None) -> float:
        """Wait until the current Kodi runs, JSON-RPC answers and the EventServer port is
        bound. Returns the seconds waited. Raises HarnessError (with the log tail)."""
        timeout = timeout or self.start_timeout
        t0 = time.monotonic()
        deadline = t0 + timeout
        while True:
            if not self.kodi_running():
                self.reap()
                raise HarnessError("Kodi (pid %s) is not running (%s)\n%s"
                                   % (self.kodi_pid, self.exit_status(), self.log_tail()))
            if self.answers(timeout=5) and _port_bound(self.eventserver_port, udp=True):
                return time.monotonic() - t0
            if time.monotonic() > deadline:
                raise HarnessError("Kodi did not answer on JSON-RPC port %d / EventServer port %d "
                                   "within %.0f s\n%s" % (self.jsonrpc_port, self.eventserver_port,
                                                          timeout, self.log_tail()))
            time.sleep(0.2)

    def current_profile(self) -> str:
        """Label of Profiles.GetCurrentProfile ("Master user" at the login screen)."""
        return self.rpc("Profiles.GetCurrentProfile")["label"]

    LOGIN_SCREEN = 10029                 # WINDOW_LOGIN_SCREEN
    LOCK_CODE_DIALOGS = (10109, 10110)   # the PIN pad / gamepad code dialog it opens

    def current_window(self) -> int:
        """GUI.GetProperties currentwindow id: the topmost modal dialog if one is open
        (10109 PIN pad), else the active window (10029 login screen, 10000 home)."""
        res = self.rpc("GUI.GetProperties", {"properties": ["currentwindow"]})
        return res["currentwindow"]["id"]

    def logged_on(self) -> bool:
        """False at the login screen (also while it asks for a lock code), True once a
        profile is logged in. What System.LoggedOn says, without XBMC.GetInfoBooleans (see
        the module doc): the login screen runs as the master profile, and shows as window
        10029 or, while someone types a PIN, as a lock-code dialog."""
        if self.current_window() not in (self.LOGIN_SCREEN,) + self.LOCK_CODE_DIALOGS:
            return True
        return _ascii_lower(self.current_profile()) != _ascii_lower(self.master_name)

    def state(self):
        """(current profile label, logged on)."""
        return self.current_profile(), self.logged_on()

    def get_profiles(self) -> dict:
        """{name: lockmode} as Kodi sees them (Profiles.GetProfiles)."""
        res = self.rpc("Profiles.GetProfiles", {"properties": ["lockmode"]})
        return {p["label"]: p.get("lockmode") for p in res.get("profiles", [])}

    def _servers(self):
        """(JSON-RPC listening socket inode, EventServer socket inode)."""
        return (_socket_inode(self.jsonrpc_port, udp=False),
                _socket_inode(self.eventserver_port, udp=True))

    def _wait_switch(self, before, want_profile, want_logged_on, timeout, what):
        """After a profile switch was triggered: wait until Kodi has restarted BOTH network
        servers (their sockets have new inodes), WITHOUT talking JSON-RPC meanwhile, then
        wait (up to 5 s) for the expected state.

        Why not poll: a request that makes Kodi's TCP thread wait for the main thread
        (XBMC.GetInfoBooleans, XBMC.GetInfoLabels: ApplicationMessenger SendMsg) while the
        main thread stops the JSON-RPC server for the switch deadlocks Kodi for good
        (main thread joins the TCP thread, the TCP thread waits for the main thread). The
        helpers no longer send those, but the state is only final after the restart, and
        even then not at once: after a log-off GUI.GetProperties still shows the old window
        for ~0.2 s while the master profile already reads as current."""
        deadline = time.monotonic() + timeout
        while True:
            now = self._servers()
            if (now[0] is not None and now[1] is not None
                    and now[0] != before[0] and now[1] != before[1]):
                break
            if not self.kodi_running():
                raise HarnessError("Kodi died while %s (%s)\n%s"
                                   % (what, self.exit_status(), self.log_tail()))
            if time.monotonic() > deadline:
                raise HarnessError(
                    "%s: Kodi did not restart its network servers within %.0f s (sockets "
                    "before %r, now %r; a deadlock or a trap?)\n%s"
                    % (what, timeout, before, now, self.log_tail()))
            time.sleep(0.05)
        settled = time.monotonic() + 5
        while True:
            cur = self.state()
            if _ascii_lower(cur[0]) == _ascii_lower(want_profile) and cur[1] is want_logged_on:
                return
            if time.monotonic() > settled:
                raise HarnessError("%s: state is %r, expected (%r, logged on %s)\n%s"
                                   % (what, cur, want_profile, want_logged_on, self.log_tail()))
            time.sleep(0.05)

    def load_profile(self, name: str, pin: Optional[str] = None, md5: Optional[str] = None,
                     timeout: float = DEFAULT_SWITCH_TIMEOUT) -> bool:
        """Profiles.LoadProfile `name` with a PIN (encryption none) or its MD5 (encryption
        md5) or no password. False if Kodi refuses (error -32602: wrong/missing password or
        unknown profile). True once `name` is current, logged on, and the services are back.
        Refuses (HarnessError) to load the profile that is already loaded (KODI.md trap)."""
        cur = self.current_profile()
        if _ascii_lower(cur) == _ascii_lower(name):
            raise HarnessError("refusing Profiles.LoadProfile %r: it is the loaded profile "
                               "(Kodi would stop its network services for good)" % name)
        params = {"profile": name}
        if pin is not None:
            params["password"] = {"value": pin, "encryption": "none"}
        elif md5 is not None:
            params["password"] = {"value": md5, "encryption": "md5"}
        before = self._servers()
        try:
            res = self.rpc("Profiles.LoadProfile", params)
        except RpcError as e:
            if e.code == -32602:
                return False
            raise
        if res != "OK":
            raise HarnessError("Profiles.LoadProfile %r answered %r" % (name, res))
        self._wait_switch(before, name, True, timeout, "loading profile %r" % name)
        return True

    def type_pin_at_login_screen(self, name: str, pin: str,
                                 timeout: float = DEFAULT_SWITCH_TIMEOUT):
        """What a person does at the TV: at Kodi's own login screen, move to `name`, select
        it and type its right `pin` on the PIN pad it opens (Input.SendText, as a remote's
        app does). Returns when the PIN was sent (time.time()), once `name` is logged on and
        the services are back."""
        if self.logged_on():
            raise HarnessError("type_pin_at_login_screen: a profile is logged on")
        focused = lambda: self.rpc("XBMC.GetInfoLabels",
                                   {"labels": ["System.CurrentControl"]})["System.CurrentControl"]
        for key in ["Input.Right"] * 6 + ["Input.Left"] * 12:
            if _ascii_lower(focused()) == _ascii_lower(name):
                break
            self.rpc(key)
            time.sleep(0.2)
        else:
            raise HarnessError("the login screen never focused %r" % name)
        self.rpc("Input.Select")
        deadline = time.monotonic() + 10
        while self.current_window() != self.LOCK_CODE_DIALOGS[0]:
            if time.monotonic() > deadline:
                raise HarnessError("no PIN pad after selecting %r\n%s" % (name, self.log_tail()))
            time.sleep(0.05)
        before = self._servers()
        typed = time.time()
        self.rpc("Input.SendText", {"text": pin, "done": True})
        self._wait_switch(before, name, True, timeout, "typing the PIN for %r" % name)
        return typed

    def eventserver_stops(self) -> list:
        """Seconds each stop of the EventServer took in this run, from kodi.log ("ES:
        Stopping event server" to "ES: UDP Event server stopped"): at the start of every
        profile switch Kodi waits for it, and its thread notices only between 1 s waits."""
        stamp = lambda line: time.mktime(time.strptime(line[:19], "%Y-%m-%d %H:%M:%S")) + float(line[19:23])
        stops, began = [], None
        for line in Path(self.kodi_log).read_text(errors="replace").splitlines():
            if "ES: Stopping event server" in line:
                began = stamp(line)
            elif "ES: UDP Event server stopped" in line and began is not None:
                stops.append(round(stamp(line) - began, 3))
                began = None
        return stops

    # ---------------------------------------------------------- EventServer
    def send_builtin(self, builtin: str):
        """Send one builtin over the EventServer (UDP): HELO, then ACTION "execute builtin".
        No BYE: it could drop the queued action; Kodi forgets idle clients after 60 s."""
        uid = (os.getpid() ^ int(time.time())) & 0xFFFFFFFF

        def packet(ptype, payload):
            header = (b"XBMC" + bytes([2, 0]) + struct.pack("!HIIHI", ptype, 1, 1, len(payload), uid)
                      + b"\0" * 10)
            return header + payload

        helo = packet(0x01, b"kodi-harness\0" + bytes([0]) + struct.pack("!HII", 0, 0, 0))
        action = packet(0x0A, bytes([0x01]) + builtin.encode("utf-8") + b"\0")
        addr = ("127.0.0.1", self.eventserver_port)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.sendto(helo, addr)
            time.sleep(0.2)  # let the EventServer register the client first
            s.sendto(action, addr)

    def log_off(self, timeout: float = DEFAULT_SWITCH_TIMEOUT) -> bool:
        """End the profile session (EventServer System.LogOff) and wait until the login
        screen is back (not logged on, current "Master user", services up). Returns True.
        Refuses (HarnessError) when nobody is logged on (KODI.md trap)."""
        if not self.logged_on():
            raise HarnessError("refusing System.LogOff: nobody is logged on "
                               "(Kodi would leave its network services down)")
        before = self._servers()
        if before[1] is None:
            raise HarnessError("EventServer port %d is not bound" % self.eventserver_port)
        self.send_builtin("System.LogOff")
        self._wait_switch(before, self.master_name, False, timeout, "logging off")
        return True

    # -------------------------------------------------------------- reports
    @staticmethod
    def _tail(path, lines):
        try:
            with open(path, "rb") as f:
                f.seek(0, 2)
                size = f.tell()
                f.seek(max(0, size - 200_000))
                text = f.read().decode("utf-8", "replace")
        except OSError as e:
            return "(%s: %s)" % (path, e.strerror)
        return "\n".join(text.splitlines()[-lines:])

    def log_tail(self, lines: int = 60) -> str:
        """The last lines of kodi.log (this run) for failure messages."""
        if self.tmp is None:
            return "(Kodi never started)"
        out = "---- tail of %s ----\n%s" % (self.kodi_log, self._tail(self.kodi_log, lines))
        if not self.kodi_running() and self.stdout_log.exists() and self.stdout_log.stat().st_size:
            out += "\n---- tail of %s ----\n%s" % (self.stdout_log, self._tail(self.stdout_log, 10))
        return out

    def read_profiles(self) -> dict:
        """profiles.xml as Kodi left it: {"lastloaded", "useloginscreen", "profiles":
        [{"name", "lockmode", "lockcode", "directory", "lastdate"}, ...]}."""
        root = ET.parse(self.profiles_xml).getroot()
        txt = lambda el, tag: (el.findtext(tag) or "").strip()
        return {
            "lastloaded": txt(root, "lastloaded"),
            "useloginscreen": txt(root, "useloginscreen"),
            "profiles": [{"name": txt(p, "name"), "lockmode": txt(p, "lockmode"),
                          "lockcode": txt(p, "lockcode"), "directory": txt(p, "directory"),
                          "lastdate": txt(p, "lastdate")} for p in root.findall("profile")],
        }

    def screenshot(self, path) -> Path:
        """Write the Xvfb screen as PNG (from Xvfb's -fbdir XWD framebuffer file)."""
        fb = self.fbdir / "Xvfb_screen0"
        raw = fb.read_bytes()
        h = struct.unpack(">25I", raw[:100])
        (header_size, _ver, _fmt, _depth, width, height, _xoff, byte_order, _unit, _bo, _pad,
         bpp, bpl, _vc, rmask, gmask, bmask, _bits, _cmapent, ncolors) = h[:20]
        off = header_size + ncolors * 12
        if bpp != 32:
            raise HarnessError("screenshot: unsupported %d bits per pixel" % bpp)
        order = "little" if byte_order == 0 else "big"

        def idx(mask):  # byte index of an 8-bit channel mask inside a 32-bit pixel
            shift = (mask & -mask).bit_length() - 1
            return shift // 8 if order == "little" else 3 - shift // 8

        ri, gi, bi = idx(rmask), idx(gmask), idx(bmask)
        rows = []
        for y in range(height):
            row = raw[off + y * bpl: off + y * bpl + width * 4]
            out = bytearray(width * 3)
            out[0::3], out[1::3], out[2::3] = row[ri::4], row[gi::4], row[bi::4]
            rows.append(b"\0" + bytes(out))

        def chunk(kind, data):
            c = kind + data
            return struct.pack(">I", len(data)) + c + struct.pack(">I", zlib.crc32(c) & 0xFFFFFFFF)

        png = (b"\x89PNG\r\n\x1a\n"
               + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
               + chunk(b"IDAT", zlib.compress(b"".join(rows), 6)) + chunk(b"IEND", b""))
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(png)
        return path

    def __repr__(self):
        return "<KodiHarness display=:%s jsonrpc=%s es=%s pid=%s tmp=%s>" % (
            self.display, getattr(self, "jsonrpc_port", None),
            getattr(self, "eventserver_port", None), self.kodi_pid if self.tmp else None, self.tmp)


class _NotSent(Exception):
    def __init__(self, cause):
        self.cause = cause


class _NoAnswer(Exception):
    def __init__(self, cause):
        self.cause = cause


@atexit.register
def _stop_all():
    for k in list(_live_instances):
        try:
            k.stop()
        except Exception:
            pass
