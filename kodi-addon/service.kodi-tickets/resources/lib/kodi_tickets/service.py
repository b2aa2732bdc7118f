"""The service (xbmc.service, started at every login): the PIN pad in the PIN-pad profile,
the time left and the agent's warnings in every other profile.

Kodi stops the service on every profile switch and kills it 5 s after asking: every loop here
waits with env.waiter.wait, which returns at once when Kodi asks, and then nothing else runs.
The profile name and the settings are read once, before the loops (kodi.py): asking Kodi's
profile manager anything while it stops services deadlocks Kodi.
"""
from . import flows

# After an accepted PIN the agent loads the ticket's profile, which stops this service. If it
# has not happened after this long (the load failed), the PIN pad comes back.
LOGIN_GRACE = 30.0
# A breath between two PIN pads (after a cancel or a refused PIN).
RETRY_PAUSE = 0.5
# Before asking for the time left at login: the agent's connection to Kodi drops for a second
# or two on every profile switch (and time_left is re-sent while it is away).
START_DELAY = 2.0
# How often the idle service looks for warnings to relay.
IDLE_STEP = 0.5


def run(env, settings, profile):
    if settings.pinpad_on_login and settings.is_pinpad_profile(profile):
        env.log("PIN pad profile %r: showing the PIN pad" % profile)
        pin_pad_loop(env)
    else:
        env.log("profile %r: time left and warnings" % profile)
        session_loop(env, settings, profile)
    env.log("service stopped")


def pin_pad_loop(env):
    """The PIN pad, again and again, until Kodi stops the service. While the agent switches
    profiles (`closing`) flows.pin_pad returns HELD at once: the loop just waits."""
    while not env.waiter.abort_requested():
        outcome = flows.pin_pad(env)
        if outcome.kind == flows.Outcome.ABORTED:
            return
        pause = LOGIN_GRACE if outcome.kind == flows.Outcome.OK else RETRY_PAUSE
        if env.waiter.wait(pause):
            return


def session_loop(env, settings, profile):
    if settings.time_left_on_start:
        if env.waiter.wait(START_DELAY):
            return
        flows.show_time_left(env, dialog=False, quiet=True)
    while not env.waiter.wait(IDLE_STEP):
        if settings.relay_warnings:
            flows.relay_warnings(env, profile)
        else:
            env.bus.take_warnings()
