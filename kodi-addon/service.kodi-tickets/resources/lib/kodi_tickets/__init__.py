"""Kodi Tickets add-on: the PIN pad and the time left, talking to the local agent over Kodi's
bus. kodi.py is the only module that imports Kodi's modules; the rest is tested without Kodi
(tests/addon)."""
