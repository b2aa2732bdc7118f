"""Entry point of the service (xbmc.service): started by Kodi at every login."""
from resources.lib.kodi_tickets import kodi

kodi.run_service()
