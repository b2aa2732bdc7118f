"""Fixtures for tests against a real Kodi (Debian's kodi 20.x under Xvfb).

Needs Debian's `kodi`, `xvfb` (and `xauth`) packages and pytest; nothing else.

Fixtures:
  kodi_factory  module-scoped: kodi_factory(profiles=[...], master_pin="2580") starts one
                more KodiHarness; all of them are stopped at the end of the module.
  kodi          module-scoped: one shared Kodi per test file, at the login screen. A test
                module may set KODI_PROFILES (list of kodi_harness.Profile) and
                KODI_MASTER_PIN (None = no master lock) to change what is seeded; default:
                master lock 2580, "Kids" numeric PIN 1234, "Tickets" unlocked.

On a failing test the report gets the tail of every running harness's kodi.log, and a
screenshot plus a copy of kodi.log go to tests/artifacts/ (git-ignored; or
$KODI_TEST_ARTIFACTS) as kodi-failure-<test>-<n>.png / .kodi.log.
"""

import os
import re
import shutil
import sys
from pathlib import Path

import pytest

from kodi_harness import HarnessError, KodiHarness, Profile, missing_requirements

DEFAULT_PROFILES = [Profile("Kids", pin="1234"), Profile("Tickets")]
DEFAULT_MASTER_PIN = "2580"
ARTIFACTS = Path(os.environ.get("KODI_TEST_ARTIFACTS")
                 or Path(__file__).resolve().parents[1] / "artifacts")


# Kodi start-ups that failed and were tried once more: printed at the end of the run.
START_RETRIES = []


class KodiFactory:
    def __init__(self):
        self.instances = []

    def __call__(self, profiles=None, master_pin=DEFAULT_MASTER_PIN, **kw) -> KodiHarness:
        """A fresh Kodi at its login screen. NOTE: a Kodi that fails to *start* under Xvfb
        is started once more from scratch, loudly; nothing else in these tests is retried."""
        for attempt in (1, 2):
            k = KodiHarness(profiles=DEFAULT_PROFILES if profiles is None else profiles,
                            master_pin=master_pin, **kw)
            self.instances.append(k)
            try:
                k.start()
                return k
            except HarnessError as e:
                if attempt == 2:
                    raise
                START_RETRIES.append(str(e))
                print("\n!!!!! KODI FAILED TO START; STARTING IT ONCE MORE !!!!!\n%s" % e,
                      file=sys.stderr)

    def stop_all(self):
        for k in self.instances:
            k.stop()


@pytest.fixture(scope="module")
def kodi_factory():
    missing = missing_requirements()
    if missing:
        pytest.skip("no real Kodi here: missing " + ", ".join(missing))
    f = KodiFactory()
    try:
        yield f
    finally:
        f.stop_all()


@pytest.fixture(scope="module")
def kodi(request, kodi_factory) -> KodiHarness:
    profiles = getattr(request.module, "KODI_PROFILES", DEFAULT_PROFILES)
    master_pin = getattr(request.module, "KODI_MASTER_PIN", DEFAULT_MASTER_PIN)
    return kodi_factory(profiles=profiles, master_pin=master_pin)


def _harnesses(item):
    found = []
    for name in ("kodi", "kodi_factory"):
        v = item.funcargs.get(name) if hasattr(item, "funcargs") else None
        if isinstance(v, KodiHarness):
            found.append(v)
        elif isinstance(v, KodiFactory):
            found.extend(v.instances)
    seen, out = set(), []
    for k in found:
        if id(k) not in seen and k.tmp is not None and k.tmp.exists():
            seen.add(id(k))
            out.append(k)
    return out


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """On failure: kodi.log tails in the report; screenshot + kodi.log into ARTIFACTS."""
    outcome = yield
    report = outcome.get_result()
    if report.when != "call" or not report.failed:
        return
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", item.name)
    for i, k in enumerate(_harnesses(item)):
        report.sections.append(("kodi #%d %r" % (i, k), k.log_tail(80)))
        try:
            ARTIFACTS.mkdir(parents=True, exist_ok=True)
            base = ARTIFACTS / ("kodi-failure-%s-%d" % (safe, i))
            k.screenshot(base.with_suffix(".png"))
            if k.kodi_log.exists():
                shutil.copyfile(k.kodi_log, base.with_suffix(".kodi.log"))
        except Exception as e:  # reporting must never hide the real failure
            report.sections.append(("kodi #%d artifacts" % i, "could not save: %r" % e))


def pytest_terminal_summary(terminalreporter):
    if START_RETRIES:
        terminalreporter.section("KODI START-UP RETRIED", sep="!")
        for reason in START_RETRIES:
            terminalreporter.write_line(reason.splitlines()[0] if reason else "(no reason)")
        terminalreporter.write_line("%d Kodi start-up(s) failed and were tried once more"
                                    % len(START_RETRIES))
