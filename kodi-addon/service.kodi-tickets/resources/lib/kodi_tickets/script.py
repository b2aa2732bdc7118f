"""The script (xbmc.python.script): what the add-on does when it is run by hand or by
RunScript(service.kodi-tickets[,MODE]).

    MODE      what it does
    (none)    the PIN pad in the PIN-pad profile, else a dialog with the time left
    pinpad    the PIN pad (one go)
    timeleft  a dialog with the time left
    notify    a notification with the time left (for a remote key: keymaps can RunScript)
"""
from . import flows

MODES = ("pinpad", "timeleft", "notify")


def mode_for(args, settings, profile):
    mode = args[0].strip().lower() if args and isinstance(args[0], str) else ""
    if mode in MODES:
        return mode
    return "pinpad" if settings.is_pinpad_profile(profile) else "timeleft"


def run(env, settings, profile, args):
    mode = mode_for(args, settings, profile)
    env.log("script: %s" % mode)
    if mode == "pinpad":
        return flows.pin_pad(env)
    return flows.show_time_left(env, dialog=(mode == "timeleft"))
