"""Kodi Tickets agent add-on: pairs this box from the settings dialog.

The agent itself runs as a system service (system.d/, started by LibreELEC); this Python
service only reacts to the settings: when a pairing code is entered, it runs the agent's
`pair` with the server's address (or, with no address, the code alone: the agent finds the
server on the network and the address it found goes into the settings), shows the outcome on
the TV, empties the code (it works once) and restarts the agent's service.
RunScript(service.kodi-tickets.agent,pair) does the same with the settings as they are.
"""

import os
import re
import subprocess

import xbmc
import xbmcaddon
import xbmcgui
import xbmcvfs

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


def server_setting():
    """The server's address from the settings; empty when none was entered."""
    server = ADDON.getSetting("server_url").strip()
    return "" if server in ("http://", "https://") else server


def server_paired_with():
    """The server the agent's config names (written by `pair`), or None."""
    config = os.path.join(xbmcvfs.translatePath(ADDON.getAddonInfo("profile")), "agent.toml")
    try:
        with open(config) as f:
            found = re.search(r'^server_url\s*=\s*"([^"]+)"', f.read(), re.MULTILINE)
    except OSError:
        return None
    return found.group(1) if found else None


def pair():
    """Pairs with the code in the settings, if there is one; True when it worked."""
    server = server_setting()
    code = ADDON.getSetting("pairing_code").strip()
    if not code:
        return False
    # The code works once, right or wrong: emptied first, so that saving it does not pair again.
    ADDON.setSetting("pairing_code", "")
    target = [server, code] if server else [code]
    try:
        done = subprocess.run(["/bin/sh", START, "pair"] + target, timeout=60,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              universal_newlines=True)
        ok = done.returncode == 0
        # Its answer is its last line: on stdout when it paired, on stderr when not (where a
        # line on the server it found comes first).
        said = (done.stdout if ok else done.stderr) or (done.stdout + done.stderr)
        lines = said.strip().splitlines()
        answer = lines[-1] if lines else ""
    except (OSError, subprocess.TimeoutExpired) as e:
        answer, ok = str(e), False
    answer = answer[len(PREFIX):] if answer.startswith(PREFIX) else answer
    log("pairing with %s: %s" % (server or "the server found on the network", answer))
    if ok:
        found = server_paired_with()
        if not server and found:
            ADDON.setSetting("server_url", found)
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
