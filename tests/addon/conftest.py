"""Fixtures for the add-on's unit tests: a fake Kodi (addon_fakes.py) behind stub xbmc,
xbmcgui, xbmcaddon and xbmcvfs modules, installed in sys.modules before the add-on loads."""
import time

import pytest

import addon_fakes

addon_fakes.install()


@pytest.fixture
def kodi(monkeypatch):
    fake = addon_fakes.FakeKodi()
    addon_fakes.STATE["kodi"] = fake
    # The add-on measures its time-outs with time.monotonic; here time is the fake clock, which
    # only the add-on's waitForAbort calls move.
    monkeypatch.setattr(time, "monotonic", lambda: fake.clock)
    yield fake
    addon_fakes.STATE["kodi"] = None


@pytest.fixture
def env(kodi):
    """The add-on's real Env (kodi.py) on the fake Kodi."""
    from kodi_tickets import kodi as adapter

    import xbmcaddon

    import xbmc

    built = adapter.Env(xbmcaddon.Addon(), xbmc.Monitor())
    listener = adapter.Listener(built.bus, built.ui).start()
    yield built
    listener.stop()
    assert not listener.is_alive()
