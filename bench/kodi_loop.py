#!/usr/bin/env python3
"""The loop a person feels on a real Kodi, for the benchmark (`kodi-tickets-bench --only kodi`).

    bench/kodi_loop.py --server-bin target/release/kodi-tickets-server \\
                       --agent-bin target/release/kodi-tickets-agent [--rounds 5] [--rest 60]

Kodi 20.1 under Xvfb, the real server and the real agent, as the real-Kodi tests run them
(tests/kodi/kodi_harness.py, tests/kt_server.py and the e2e tests' helpers, imported). Two
boxes one after the other, each with a server of its own:

- PIN pad: the add-on's PIN pad in the unlocked "Tickets" profile, the agent in PIN-pad mode;
- native: the ticket's PIN becomes Kids' lock code, so the agent's script restarts Kodi.

Each round issues a ticket on the admin's form, types its PIN on the TV at once, waits for
the profile to open and for an open admin page to show the ticket in use, then moves the
ticket's end 10 s ahead in the server's database and waits for the TV's login screen. After
the native rounds a profile stays logged in while the agent is watched at rest.

Prints one JSON object on stdout (or into --out): the measured rounds and details of each
figure, keyed as in the benchmark's JSON; `skipped` says why nothing was measured (no Kodi
here). Progress goes to stderr. bench/README.md says what each figure means.
"""

import argparse
import json
import os
import re
import shlex
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "tests"), str(REPO / "tests" / "kodi")]

from kodi_harness import HarnessError, KodiHarness, Profile, missing_requirements  # noqa: E402

MASTER = "Master user"
MASTER_PIN = "2580"
# Kodi answers on its new JSON-RPC server this long after a switch at the latest.
SWITCH_TIMEOUT = 60
# A ticket's end moved this far ahead reaches the agent first: the server re-reads a
# device's sessions every 5 s (server/src/routes/agent.rs, TICK).
END_AHEAD = 10
# The first line Kodi logs when it starts a profile switch or a log-off (it stops its
# network services first).
SWITCH_BEGINS = "ES: Stopping event server"


def say(text):
    print("== " + text, file=sys.stderr, flush=True)


class Failed(Exception):
    """A round could not be measured; the message says what was seen."""


def wait_for(what, check, timeout, interval=0.02):
    """Polls `check` until it returns something true; that value. The e2e tests' poll, with
    a timeout raised as a round that could not be measured."""
    from test_agent_e2e import wait_until
    try:
        return wait_until(what, check, timeout, interval)
    except AssertionError as e:
        raise Failed(str(e)) from None


def start_kodi(profiles, retries):
    """A fresh Kodi at its login screen. Like the Kodi tests (tests/kodi/conftest.py), a Kodi
    that fails to start under Xvfb is started once more from scratch, loudly."""
    for attempt in (1, 2):
        kodi = KodiHarness(profiles=profiles, master_pin=MASTER_PIN)
        try:
            return kodi.start()
        except HarnessError as e:
            if attempt == 2:
                raise
            retries.append(str(e).splitlines()[0])
            print("\n!!!!! KODI FAILED TO START; STARTING IT ONCE MORE !!!!!\n%s" % e,
                  file=sys.stderr, flush=True)


def at_login_screen(kodi):
    return kodi.answers(timeout=2) and kodi.state() == (MASTER, False)


class OpenPage(threading.Thread):
    """The admin's profile page left open in a browser: holds `GET /events` and at each
    `change` re-reads the page naming that change, as the page script does; notes when
    each ticket's row is first read in use."""

    def __init__(self, server, profile_id):
        super().__init__(daemon=True)
        self.server = server
        self.profile_id = profile_id
        self.in_use_at = {}
        self.changed = threading.Condition()
        self.closed = False

    def close(self):
        """Leaves the page (its stream ends with the server)."""
        self.closed = True

    def run(self):
        opener, url = self.server.admin.opener, self.server.url
        while not self.closed:
            try:
                # The server sends a heartbeat every 15 s.
                with opener.open(url + "/events", timeout=60) as stream:
                    event, data = None, ""
                    for raw in stream:
                        line = raw.decode("utf-8", "replace").rstrip("\r\n")
                        if line.startswith("event:"):
                            event = line[6:].strip()
                        elif line.startswith("data:"):
                            data = line[5:].strip()
                        elif not line:
                            if event == "change":
                                self.reread(data)
                            event, data = None, ""
            except OSError as e:
                if self.closed:
                    return
                say("the open page's stream broke (%s); opening it again" % e)
                time.sleep(0.5)

    def reread(self, change):
        request = urllib.request.Request(
            "%s/profiles/%d" % (self.server.url, self.profile_id),
            headers={"X-Live-Change": change})
        with self.server.admin.opener.open(request, timeout=10) as r:
            html = r.read().decode("utf-8", "replace")
        now = time.time()
        with self.changed:
            for m in re.finditer(r'id="ticket-(\d+)" data-state="in_use"', html):
                self.in_use_at.setdefault(int(m.group(1)), now)
            self.changed.notify_all()

    def wait_in_use(self, ticket_id, timeout=30):
        """When the page first showed the ticket's row in use (wall clock)."""
        with self.changed:
            if not self.changed.wait_for(lambda: ticket_id in self.in_use_at, timeout):
                raise Failed("the open page did not show ticket %d in use within %d s"
                             % (ticket_id, timeout))
            return self.in_use_at[ticket_id]


def issue(server, profile_id, minutes):
    """A ticket issued on the admin's form: (ticket id, PIN, wall clock before the POST)."""
    posted = time.time()
    pin = server.issue_ticket(profile_id, minutes)
    ticket_id = server.value(
        "SELECT id FROM tickets WHERE lock_code = ? AND state = 'unused'", pin)
    return ticket_id, pin, posted


def end_soon(server, ticket_id):
    """Moves a running ticket's end to END_AHEAD s from now in the server's database (as
    "+15 min" moves it, but shorter than any form allows); the new end, Unix seconds."""
    end = int(time.time()) + END_AHEAD
    with sqlite3.connect(server.db_path, timeout=30) as db:
        changed = db.execute("UPDATE tickets SET expires_at = ? WHERE id = ? AND state = 'in_use'",
                             (end, ticket_id)).rowcount
    if changed != 1:
        raise Failed("ticket %d is not in use on the server" % ticket_id)
    return end


def time_up(kodi, server, ticket_id):
    """Moves the running ticket's end near and waits for the TV's login screen: (seconds
    from the end to the login screen, seconds from the end to Kodi starting the log-off);
    negative: early.

    NOTE: the harness's own wait for a switch, used for one the agent makes: Kodi's state is
    final only once it has restarted its network services, and nothing is asked before
    (tests/kodi/kodi_harness.py says why)."""
    seen = len(kodi_log_lines(kodi))
    before = kodi._servers()
    end = end_soon(server, ticket_id)
    kodi._wait_switch(before, MASTER, False, end - time.time() + SWITCH_TIMEOUT,
                      "the agent logging the profile off at its end")
    back = time.time()
    return back - end, first_logged(kodi, seen, SWITCH_BEGINS) - end


def kodi_log_lines(kodi):
    try:
        return kodi.kodi_log.read_text(errors="replace").splitlines()
    except OSError:
        return []


def first_logged(kodi, seen, text):
    """When Kodi logged the first line with `text` after its first `seen` lines, by the
    line's own stamp (local time to the millisecond), on the wall clock."""
    for line in kodi_log_lines(kodi)[seen:]:
        m = re.match(r"(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d)\.(\d{3}) .*" + re.escape(text), line)
        if m:
            at = time.mktime(time.strptime(m.group(1), "%Y-%m-%d %H:%M:%S"))
            return at + int(m.group(2)) / 1000
    raise Failed("Kodi did not log %r" % text)


def figure(rounds, **details):
    """A figure's rounds (seconds, or its unit) and details, to the millisecond or so."""
    tidy = lambda v: [round(x, 4) for x in v] if isinstance(v, list) else round(v, 4)
    return {"rounds": tidy(rounds), "details": {k: tidy(v) for k, v in details.items()}}


# ---------------------------------------------------------------- PIN pad

def pin_pad(args, tmp, retries):
    from test_addon_e2e import ADDON_ID, KIDS_SECRET, PIN_PAD_PROFILE, agent_pong, pad_open
    from test_agent_e2e import Agent, kids_on_a_box

    say("PIN pad: Kodi, the add-on, the server and the agent")
    kodi = start_kodi([Profile("Kids", pin=KIDS_SECRET), Profile(PIN_PAD_PROFILE)], retries)
    server = agent = None
    try:
        built = subprocess.run([str(REPO / "scripts" / "build-addon"), "--out", str(tmp / "dist")],
                               cwd=REPO, capture_output=True, text=True, timeout=120, check=True)
        # Kodi finds new add-ons when it starts.
        kodi.stop_kodi()
        with zipfile.ZipFile(built.stdout.strip().splitlines()[-1]) as z:
            z.extractall(kodi.home / ".kodi" / "addons")
        kodi.start_kodi()
        kodi.wait_ready()
        server, token, profile_id = kids_on_a_box(tmp)
        kodi.load_profile(PIN_PAD_PROFILE)
        kodi.rpc("Addons.SetAddonEnabled", {"addonid": ADDON_ID, "enabled": True})
        wait_for("the add-on's PIN pad", lambda: pad_open(kodi), 30, 0.25)
        agent = Agent(tmp, server, token, kodi)
        agent.env["KODI_TICKETS_AGENT_PIN_PAD_PROFILE"] = PIN_PAD_PROFILE
        agent.start()
        wait_for("the agent on Kodi's bus", lambda: agent_pong(kodi), 30, 0.5)
        page = OpenPage(server, profile_id)
        page.start()

        opened, accepted, switching, to_page, late, late_ours = [], [], [], [], [], []
        for n in range(1, args.rounds + 1):
            say("PIN pad, round %d/%d" % (n, args.rounds))
            # A box at rest: the pad shows, and the agent hears the bus again after the switch.
            wait_for("the PIN pad", lambda: pad_open(kodi), SWITCH_TIMEOUT, 0.25)
            wait_for("the agent on Kodi's bus", lambda: agent_pong(kodi), 30, 0.5)
            seen = len(kodi_log_lines(kodi))
            before = kodi._servers()
            ticket_id, pin, posted = issue(server, profile_id, 30)
            typed = time.time()
            kodi.rpc("Input.SendText", {"text": pin, "done": True})
            kodi._wait_switch(before, "Kids", True, SWITCH_TIMEOUT, "the PIN pad opening Kids")
            now = time.time()
            opened.append(now - posted)
            accepted.append(first_logged(kodi, seen, "PIN accepted for profile 'Kids'") - typed)
            switching.append(now - first_logged(kodi, seen, SWITCH_BEGINS))
            to_page.append(page.wait_in_use(ticket_id) - typed)
            late_, ours_ = time_up(kodi, server, ticket_id)
            late.append(late_)
            late_ours.append(ours_)
        page.close()
        return {
            "kodi_pinpad_ticket_to_open_s": figure(
                opened, max_s=max(opened), typed_to_addon_accepted_s=accepted,
                kodi_switch_s=switching,
                ours_s=[o - s for o, s in zip(opened, switching)]),
            "kodi_pinpad_pin_to_page_s": figure(to_page, max_s=max(to_page)),
            "kodi_pinpad_time_up_late_s": figure(
                late, max_s=max(late), earliest_s=min(late), end_to_log_off_start_s=late_ours),
        }
    except (Failed, HarnessError) as e:
        raise Failed("PIN pad: %s\n--- agent log ---\n%s\n%s" % (
            e, agent.log_tail() if agent and agent.process else "(not started)", kodi.log_tail(30)))
    finally:
        if agent is not None:
            agent.stop()
        if server is not None:
            server.close()
        kodi.stop()


# ---------------------------------------------------------------- native

def stamped(command, name, stamps):
    """`command` (run by the Kodi script with `sh -c`) writing when it began and ended."""
    def mark(what):
        return "printf '%s %%s\\n' \"$(date +%%s.%%N)\" >> %s" % (what, shlex.quote(str(stamps)))
    return "%s; %s; rc=$?; %s; exit $rc" % (mark(name + "-begin"), command, mark(name + "-end"))


def stamps_after(stamps, since):
    """{"stop-begin": t, ...}: the first of each stamp written after `since`."""
    found = {}
    for line in stamps.read_text().splitlines():
        name, at = line.split()
        if float(at) >= since:
            found.setdefault(name, float(at))
    return found


def agent_sees_login_screen(agent_log):
    """Whether the last session the agent's watcher reported is the login screen."""
    said = [line for line in agent_log.read_text(errors="replace").splitlines()
            if "Kodi session changed" in line]
    return bool(said) and "logged_on: false" in said[-1]


def relocks(exec_log):
    try:
        return sum(" relock exit=0 " in line for line in exec_log.read_text().splitlines())
    except OSError:
        return 0


def native(args, tmp, retries):
    from test_agent_e2e import Agent, kids_on_a_box

    say("native: Kodi, the server and the agent")
    kodi = start_kodi([Profile("Kids", pin="1234")], retries)
    server = agent = None
    try:
        server, token, profile_id = kids_on_a_box(tmp)
        agent = Agent(tmp, server, token, kodi)
        stamps = tmp / "stop-start.stamps"
        stamps.touch()
        agent.env["KODI_TICKETS_AGENT_KODI_STOP_COMMAND"] = stamped(
            shlex.quote(str(kodi.stop_script)), "stop", stamps)
        agent.env["KODI_TICKETS_AGENT_KODI_START_COMMAND"] = stamped(
            shlex.quote(str(kodi.start_script)), "start", stamps)
        exec_log = tmp / "agent-exec.log"
        agent.start()
        agent_log = tmp / "agent.log"
        wait_for("the agent connected to the server",
                 lambda: "connected to the server" in agent_log.read_text(errors="replace"), 30, 0.2)
        page = OpenPage(server, profile_id)
        page.start()

        def ticket_opened():
            """On a box at rest, issues a ticket and types its PIN on Kodi's login screen as
            soon as Kodi is back from the agent's restart: (ticket id, before the POST, Kodi
            ready, PIN typed, Kids open, shown in use)."""
            wait_for("Kodi at its login screen", lambda: at_login_screen(kodi), SWITCH_TIMEOUT, 0.2)
            wait_for("the agent seeing Kodi's login screen",
                     lambda: agent_sees_login_screen(agent_log), SWITCH_TIMEOUT, 0.2)
            old_pid = kodi.kodi_pid
            ticket_id, pin, posted = issue(server, profile_id, 30)
            wait_for("the agent's script to restart Kodi", lambda: kodi.kodi_pid != old_pid,
                     SWITCH_TIMEOUT)
            wait_for("Kodi's login screen after the restart", lambda: at_login_screen(kodi),
                     SWITCH_TIMEOUT, 0.05)
            ready = time.time()
            typed = kodi.type_pin_at_login_screen("Kids", pin)
            opened = time.time()
            return ticket_id, posted, ready, typed, opened, page.wait_in_use(ticket_id)

        totals, ours, kodi_stop, kodi_start, kodi_load = [], [], [], [], []
        to_stop, between, to_page, after_open, late, late_ours = [], [], [], [], [], []
        for n in range(1, args.rounds + 1):
            say("native, round %d/%d" % (n, args.rounds))
            ticket_id, posted, ready, typed, opened, shown = ticket_opened()
            at = stamps_after(stamps, posted)
            # Less the harness moving to Kids on the login screen: a person's time.
            totals.append(opened - posted - (typed - ready))
            kodi_stop.append(at["stop-end"] - at["stop-begin"])
            kodi_start.append(ready - at["start-begin"])
            kodi_load.append(opened - typed)
            to_stop.append(at["stop-begin"] - posted)
            between.append(at["start-begin"] - at["stop-end"])
            ours.append(totals[-1] - kodi_stop[-1] - kodi_start[-1] - kodi_load[-1])
            to_page.append(shown - typed)
            after_open.append(shown - opened)

            relocked = relocks(exec_log)
            late_, ours_ = time_up(kodi, server, ticket_id)
            late.append(late_)
            late_ours.append(ours_)
            # The used PIN is replaced by a secret: Kodi restarts once more.
            wait_for("the agent's re-lock of Kids", lambda: relocks(exec_log) > relocked,
                     SWITCH_TIMEOUT, 0.2)

        say("native, the agent at rest for %d s with Kids logged in" % args.rest)
        ticket_opened()
        page.close()
        figures = at_rest(args, agent)
        figures.update({
            "kodi_native_ticket_to_open_s": figure(
                totals, max_s=max(totals), kodi_stop_s=kodi_stop, kodi_start_s=kodi_start,
                kodi_load_profile_s=kodi_load, post_to_stop_s=to_stop,
                stop_to_start_s=between),
            "kodi_native_ours_s": figure(ours, max_s=max(ours)),
            "kodi_start_s": figure(kodi_start, max_s=max(kodi_start)),
            "kodi_native_pin_to_page_s": figure(
                to_page, max_s=max(to_page), kodi_load_profile_s=kodi_load,
                after_profile_open_s=after_open),
            "kodi_native_time_up_late_s": figure(
                late, max_s=max(late), earliest_s=min(late), end_to_log_off_start_s=late_ours),
        })
        return figures
    except (Failed, HarnessError) as e:
        raise Failed("native: %s\n--- agent log ---\n%s\n%s" % (
            e, agent.log_tail() if agent and agent.process else "(not started)", kodi.log_tail(30)))
    finally:
        if agent is not None:
            agent.stop()
        if server is not None:
            server.close()
        kodi.stop()


# ---------------------------------------------------------------- the agent at rest

def cpu_seconds(pid):
    """utime + stime of the whole process (its threads' included), seconds."""
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def switches(pid):
    """{thread id: voluntary + nonvoluntary context switches}."""
    counts = {}
    for task in Path("/proc/%d/task" % pid).iterdir():
        try:
            status = (task / "status").read_text()
        except OSError:
            continue
        counts[task.name] = sum(int(m) for m in re.findall(
            r"^(?:non)?voluntary_ctxt_switches:\s+(\d+)", status, re.M))
    return counts


def writes(pid):
    """Write system calls so far: each request to Kodi or the server is one or two."""
    with open("/proc/%d/io" % pid) as f:
        return int(re.search(r"^syscw:\s+(\d+)", f.read(), re.M).group(1))


def memory_mib(pid):
    with open("/proc/%d/status" % pid) as f:
        status = f.read()
    kib = lambda name: int(re.search(r"^%s:\s+(\d+)" % name, status, re.M).group(1))
    return kib("VmRSS") / 1024, kib("VmHWM") / 1024


def at_rest(args, agent):
    """The agent with Kids logged in on a 30-minute ticket, left alone for `args.rest` s."""
    pid = agent.process.pid
    # Past the login's report and its acknowledgements.
    time.sleep(5)
    cpu0, switches0, writes0, t0 = cpu_seconds(pid), switches(pid), writes(pid), time.monotonic()
    rss = []
    while time.monotonic() < t0 + args.rest:
        time.sleep(min(5, t0 + args.rest - time.monotonic()))
        rss.append(memory_mib(pid)[0])
    cpu1, switches1, writes1, t1 = cpu_seconds(pid), switches(pid), writes(pid), time.monotonic()
    minutes = (t1 - t0) / 60
    woken = sum(n - switches0.get(tid, 0) for tid, n in switches1.items())
    gone = sorted(set(switches0) - set(switches1))
    return {
        "kodi_agent_rest_cpu_pct": figure(
            [100 * (cpu1 - cpu0) / (t1 - t0)], cpu_ms=round(1000 * (cpu1 - cpu0)),
            seconds=round(t1 - t0, 1)),
        "kodi_agent_rest_wakeups_per_min": figure(
            [woken / minutes], threads=len(switches1), threads_gone=len(gone)),
        "kodi_agent_rest_rss_mib": figure([max(rss)], vmhwm_mib=memory_mib(pid)[1]),
        "kodi_agent_rest_writes_per_min": figure([(writes1 - writes0) / minutes]),
    }


# ---------------------------------------------------------------- main

def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--server-bin", required=True, type=Path)
    parser.add_argument("--agent-bin", required=True, type=Path)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--rest", type=int, default=60, help="seconds the agent is watched at rest")
    parser.add_argument("--out", type=Path, help="write the JSON here instead of stdout")
    args = parser.parse_args()

    result = {"skipped": None, "kodi_start_retries": [], "figures": {}}
    missing = missing_requirements()
    if missing:
        result["skipped"] = "no real Kodi here: missing " + ", ".join(missing)
    else:
        # Everything talks over loopback.
        for var in ("http_proxy", "https_proxy", "all_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"):
            os.environ.pop(var, None)
        os.environ["KODI_TICKETS_SERVER_BIN"] = str(args.server_bin.resolve())
        import test_agent_e2e
        # The e2e tests' agent, started from the binary under test.
        test_agent_e2e.AGENT_BIN = args.agent_bin.resolve()
        started = time.monotonic()
        for phase in (pin_pad, native):
            with tempfile.TemporaryDirectory(prefix="kodi-loop-") as tmp:
                result["figures"].update(phase(args, Path(tmp), result["kodi_start_retries"]))
        figures = result["figures"]
        late = (figures["kodi_pinpad_time_up_late_s"]["rounds"]
                + figures["kodi_native_time_up_late_s"]["rounds"])
        figures["kodi_time_up_latest_s"] = figure([max(late)])
        figures["kodi_time_up_earliest_s"] = figure([min(late)])
        result["duration_s"] = round(time.monotonic() - started, 1)
    text = json.dumps(result, indent=2) + "\n"
    if args.out:
        args.out.write_text(text)
    else:
        sys.stdout.write(text)


if __name__ == "__main__":
    try:
        main()
    except Failed as e:
        print("kodi_loop: %s" % e, file=sys.stderr)
        sys.exit(1)
