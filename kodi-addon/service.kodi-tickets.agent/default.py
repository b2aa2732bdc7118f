"""Entry point of the service (and of RunScript(service.kodi-tickets.agent,pair))."""
import sys

from resources.lib import pairing

pairing.main(sys.argv[1:])
