"""A machine of its own for the server, in the Python test suites: a Linux network namespace
joined to this machine by two virtual cables, `box` (a Kodi box's) and `phone` (the tests',
standing for the parent's phone), each on an address of its own. Pulling the box's cable
drops its packets without a word, as an unplugged box or a Wi-Fi gone does; the server's
announcements on the LAN (mDNS) reach this machine over both.

    machine = ServerMachine.or_skip()       # needs root and iproute2
    server = Server(tmp, netns=machine.name, address=machine.phone_address)
    machine.pull_box_cable(); machine.plug_box_cable()
    machine.remove()
"""

import os
import shutil
import subprocess

import pytest


def ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, text=True)


class ServerMachine:
    """A network namespace with two cables to this machine (see the module's text)."""

    @classmethod
    def or_skip(cls) -> "ServerMachine":
        if os.geteuid() != 0 or not shutil.which("ip"):
            pytest.skip("a network namespace needs root and iproute2 (./scripts/test runs as root)")
        return cls()

    def __init__(self):
        n = os.getpid() % 10_000
        self.name = f"kt-server-{n}"
        self.box_cable = f"ktbox{n}"
        self.phone_cable = f"ktphone{n}"
        self.box_address = "10.231.0.2"
        self.phone_address = "10.231.1.2"
        # Left over by a run that was killed: gone first, or the names and addresses clash.
        self.remove()
        ip("netns", "add", self.name)
        try:
            for cable, subnet in ((self.box_cable, "10.231.0"), (self.phone_cable, "10.231.1")):
                ip("link", "add", cable, "type", "veth", "peer", "name", "eth-" + cable,
                   "netns", self.name)
                ip("addr", "add", f"{subnet}.1/24", "dev", cable)
                ip("link", "set", cable, "up")
                ip("-n", self.name, "addr", "add", f"{subnet}.2/24", "dev", "eth-" + cable)
                ip("-n", self.name, "link", "set", "eth-" + cable, "up")
            ip("-n", self.name, "link", "set", "lo", "up")
        except BaseException:
            self.remove()
            raise

    def pull_box_cable(self) -> None:
        ip("link", "set", self.box_cable, "down")

    def plug_box_cable(self) -> None:
        ip("link", "set", self.box_cable, "up")

    def remove(self) -> None:
        # NOTE: the kernel takes a namespace's own devices down later, in the background: the
        # cables are removed here first (one end takes the other with it), so that the next
        # machine can have their names and addresses at once.
        for cable in (self.box_cable, self.phone_cable):
            subprocess.run(["ip", "link", "del", cable], capture_output=True)
        subprocess.run(["ip", "netns", "del", self.name], capture_output=True)
