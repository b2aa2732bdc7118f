"""Kodi Tickets agent add-on: pairs this box from the settings dialog.

The agent itself runs as a system service (system.d/, started by LibreELEC); this Python
service only reacts to the settings: when a pairing code is entered, it runs the agent's
`pair` with the server's address, shows the outcome on the TV, empties the code (it works
once) and restarts the agent's service. RunScript(service.kodi-tickets.agent,pair) does the
same with the settings as they are.
"""

import os
import subprocess

import xbmc
import xbmcaddon
import xbmcgui

ADDON = xbmcaddon.Addon()
ADDON_ID = ADDON.getAddonInfo("id")
START = os.path.join(ADDON.getAddonInfo("path"), "bin", "kodi-tickets-agent.start")
PREFIX = "kodi-tickets-agent: "


def text(string_id):
    return ADDON.getLocalizedString(string_id)


def log(message):
    xbmc.log("[%s] %s" % (ADDON_ID, message), xbmc.LOGINFO)


def restart_agent():
    """Restarts the agent's unit where systemd runs it (LibreELEC); elsewhere nothing runs it."""
    unit = ADDON_ID + ".service"
    try:
        subprocess.run(["systemctl", "restart", unit], timeout=30, check=False,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired) as e:
        log("cannot restart %s: %s" % (unit, e))


def pair():
    """Pairs with the code in the settings, if there is one; True when it worked."""
    server = ADDON.getSetting("server_url").strip()
    code = ADDON.getSetting("pairing_code").strip()
    if not code:
        return False
    # The code works once, right or wrong: emptied first, so that saving it does not pair again.
    ADDON.setSetting("pairing_code", "")
    try:
        done = subprocess.run(["/bin/sh", START, "pair", server, code], timeout=60,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              universal_newlines=True)
        lines = (done.stdout + done.stderr).strip().splitlines()
        answer = lines[-1] if lines else ""
        ok = done.returncode == 0
    except (OSError, subprocess.TimeoutExpired) as e:
        answer, ok = str(e), False
    answer = answer[len(PREFIX):] if answer.startswith(PREFIX) else answer
    log("pairing with %s: %s" % (server, answer))
    if ok:
        xbmcgui.Dialog().notification(text(32000), text(32010), xbmcgui.NOTIFICATION_INFO, 8000)
        restart_agent()
    else:
        xbmcgui.Dialog().ok(text(32011), answer)
    return ok


class SettingsMonitor(xbmc.Monitor):
    def onSettingsChanged(self):
        pair()



def main(argv):
    if argv == ["pair"]:
        pair()
    else:
        SettingsMonitor().waitForAbort()
