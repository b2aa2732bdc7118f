"""Entry point of the script (xbmc.python.script): RunScript(service.kodi-tickets[,MODE])."""
import sys

from resources.lib.kodi_tickets import kodi

kodi.run_script(sys.argv[1:])
