"""What scripts/package put into dist/, checked as an installer and a box would meet it.

Runs after `scripts/package` (a step of .ci/run of its own, see README "Packages"): the
Debian packages' contents, fields and units; the amd64 server and agent unpacked side by
side into one scratch root, the server started from there; every binary's glibc needs; the
aarch64 and armv7 agents run under qemu-user.
"""

import hashlib
import re
import shutil
import subprocess
import tempfile
import time
import urllib.request
import zipfile
from pathlib import Path

import pytest

from kt_server import free_port, stop_process

REPO = Path(__file__).resolve().parents[2]
DIST = REPO / "dist"
SCRIPT = "execute-on-kodi_set-passwd-per-profile.sh"
ARCHES = {"agent": ["amd64", "arm64", "armhf"], "server": ["amd64", "arm64"]}
QEMU = {"aarch64": "qemu-aarch64-static", "armv7": "qemu-arm-static"}


def only(pattern: str) -> Path:
    found = sorted(DIST.glob(pattern))
    assert len(found) == 1, f"dist/{pattern}: {found} (run scripts/package first)"
    return found[0]


def deb(part: str, arch: str) -> Path:
    return only(f"kodi-tickets-{part}_*_{arch}.deb")


def field(package: Path, name: str) -> str:
    return subprocess.run(["dpkg-deb", "-f", str(package), name], check=True,
                          capture_output=True, text=True).stdout.strip()


def files_of(package: Path) -> set[str]:
    listing = subprocess.run(["dpkg-deb", "-c", str(package)], check=True, capture_output=True,
                             text=True).stdout
    return {line.split(None, 5)[5].removeprefix(".").split(" -> ")[0]
            for line in listing.splitlines() if not line.startswith("d")}


def newest_glibc(binary: Path) -> tuple[int, int]:
    symbols = subprocess.run(["readelf", "--dyn-syms", "--wide", str(binary)], check=True,
                             capture_output=True, text=True).stdout
    versions = {tuple(map(int, v)) for v in re.findall(r"@GLIBC_(\d+)\.(\d+)", symbols)}
    assert versions, f"{binary.name} links no glibc symbol at all?"
    return max(versions)


def test_checksums_cover_every_file():
    sums = dict(reversed(line.split("  ", 1)) for line in
                (DIST / "SHA256SUMS").read_text().splitlines())
    shipped = {p.name for p in DIST.iterdir() if p.name != "SHA256SUMS"}
    assert set(sums) == shipped
    for name, digest in sums.items():
        assert hashlib.sha256((DIST / name).read_bytes()).hexdigest() == digest, name


@pytest.mark.parametrize("part,arch", [(p, a) for p, arches in ARCHES.items() for a in arches])
def test_each_package_holds_its_parts_and_says_what_it_needs(part, arch):
    package = deb(part, arch)
    assert field(package, "Package") == f"kodi-tickets-{part}"
    assert field(package, "Architecture") == arch
    assert "libc6 (>= 2.17)" in field(package, "Depends")
    files = files_of(package)
    expected = {f"/usr/bin/kodi-tickets-{part}", f"/usr/lib/kodi-tickets-{part}/{SCRIPT}",
                f"/usr/lib/systemd/system/kodi-tickets-{part}.service"}
    if part == "server":
        expected |= {"/etc/kodi-tickets/server.toml", "/usr/lib/sysusers.d/kodi-tickets-server.conf",
                     "/usr/share/kodi-tickets-server/templates/layout.html.hbs"}
    assert expected <= files, expected - files


def test_server_and_agent_install_side_by_side(tmp_path):
    server, agent = deb("server", "amd64"), deb("agent", "amd64")
    shared = files_of(server) & files_of(agent)
    assert not shared, f"both packages ship {shared}"
    with tempfile.TemporaryDirectory() as control:
        subprocess.run(["dpkg-deb", "-e", str(server), control], check=True)
        conffiles = (Path(control) / "conffiles").read_text().split()
        assert conffiles == ["/etc/kodi-tickets/server.toml"]
        postinst = (Path(control) / "postinst").read_text()
        assert "systemd-sysusers kodi-tickets-server.conf" in postinst
        assert "deb-systemd-helper" in postinst, "the unit is enabled on install"
    # A scratch root with this machine's systemd units (the targets the packages' units
    # name), /bin and /lib as on a merged-/usr system, and both packages unpacked into it.
    root = tmp_path / "root"
    shutil.copytree("/usr/lib/systemd/system", root / "usr/lib/systemd/system", symlinks=True)
    (root / "bin").symlink_to("usr/bin")
    (root / "lib").symlink_to("usr/lib")
    for package in (server, agent):
        subprocess.run(["dpkg-deb", "-x", str(package), str(root)], check=True)
    units = [root / "usr/lib/systemd/system" / f"kodi-tickets-{p}.service"
             for p in ("server", "agent")]
    verify = subprocess.run(["systemd-analyze", "verify", f"--root={root}", *map(str, units)],
                            capture_output=True, text=True)
    problems = [line for line in (verify.stdout + verify.stderr).splitlines()
                if "kodi-tickets" in line]
    assert verify.returncode == 0 and not problems, verify.stdout + verify.stderr
    server_unit = units[0].read_text()
    for line in ("User=kodi-tickets", "StateDirectoryMode=0700",
                 "Environment=ROCKET_CONFIG=/etc/kodi-tickets/server.toml"):
        assert line in server_unit
    assert "RestartPreventExitStatus=78" in units[1].read_text()


def test_the_packaged_server_serves_its_pages(tmp_path):
    root = tmp_path / "root"
    subprocess.run(["dpkg-deb", "-x", str(deb("server", "amd64")), str(root)], check=True)
    port = free_port()
    # The package's own settings file, with its folders moved into the scratch root.
    env = {
        "ROCKET_CONFIG": str(root / "etc/kodi-tickets/server.toml"),
        "ROCKET_PROFILE": "release",
        "ROCKET_ADDRESS": "127.0.0.1",
        "ROCKET_PORT": str(port),
        "ROCKET_TEMPLATE_DIR": str(root / "usr/share/kodi-tickets-server/templates"),
        "ROCKET_DATA_DIR": str(tmp_path / "data"),
        "ROCKET_DATABASES": f'{{kodi_tickets={{url="sqlite://{tmp_path}/data/kt.db"}}}}',
        "ROCKET_EXEC_LOG": str(tmp_path / "exec.log"),
        "PATH": "/usr/bin:/bin",
    }
    log = (tmp_path / "server.log").open("wb")
    process = subprocess.Popen([str(root / "usr/bin/kodi-tickets-server")], cwd=tmp_path, env=env,
                               stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/login", timeout=2) as r:
                    page = r.read().decode()
                break
            except OSError:
                assert process.poll() is None, (tmp_path / "server.log").read_text()
                assert time.monotonic() < deadline, (tmp_path / "server.log").read_text()
                time.sleep(0.2)
        assert 'name="password"' in page
        assert (tmp_path / "data" / "kt.db").stat().st_mode & 0o077 == 0
    finally:
        stop_process(process)
        log.close()


@pytest.mark.parametrize("arch", ["x86_64", "aarch64", "armv7"])
def test_every_agent_needs_no_newer_glibc_than_2_17(arch):
    assert newest_glibc(only(f"kodi-tickets-agent-*-{arch}")) <= (2, 17)


@pytest.mark.parametrize("arch", ARCHES["server"])
def test_the_servers_need_no_newer_glibc_than_2_17(arch, tmp_path):
    subprocess.run(["dpkg-deb", "-x", str(deb("server", arch)), str(tmp_path)], check=True)
    assert newest_glibc(tmp_path / "usr/bin/kodi-tickets-server") <= (2, 17)


@pytest.mark.parametrize("arch", ["aarch64", "armv7"])
def test_the_arm_agents_run_under_qemu(arch, tmp_path):
    qemu = shutil.which(QEMU[arch])
    assert qemu, f"{QEMU[arch]} is missing (scripts/package --install installs it)"
    agent = only(f"kodi-tickets-agent-*-{arch}")
    version = subprocess.run([qemu, str(agent), "--version"], capture_output=True, text=True,
                             timeout=60)
    assert version.returncode == 0, version.stderr
    assert re.fullmatch(r"kodi-tickets-agent \d+\.\d+\.\d+\n", version.stdout)
    # `check` on a box whose server and Kodi do not answer: plain lines, and a failure.
    config = tmp_path / "agent.toml"
    config.write_text(f'server_url = "http://127.0.0.1:{free_port()}"\n'
                      'device_token = "kt_0000000000000000000000000000000000000000000"\n'
                      f'kodi_jsonrpc = "127.0.0.1:{free_port()}"\n'
                      f'state_file = "{tmp_path}/state.json"\n')
    check = subprocess.run([qemu, str(agent), "--config", str(config), "check"],
                           capture_output=True, text=True, timeout=120)
    assert check.returncode == 1, check.stdout + check.stderr
    assert "FAIL" in check.stdout and "Kodi" in check.stdout, check.stdout


def test_the_libreelec_addon_holds_every_agent_and_passes_kodis_checker():
    addon = only("service.kodi-tickets.agent-*.zip")
    with zipfile.ZipFile(addon) as z:
        names = set(z.namelist())
    root = "service.kodi-tickets.agent/"
    expected = {root + "addon.xml", root + "default.py", root + "resources/settings.xml",
                root + "system.d/service.kodi-tickets.agent.service",
                root + "bin/kodi-tickets-agent.start", root + "bin/" + SCRIPT}
    expected |= {root + f"bin/kodi-tickets-agent-{arch}" for arch in ("x86_64", "aarch64", "armv7")}
    assert expected <= names, expected - names
    assert {n.split("/")[0] for n in names} == {"service.kodi-tickets.agent"}, "one folder, the id"
    checked = subprocess.run([str(REPO / "scripts" / "check-addon"), str(addon)],
                             capture_output=True, text=True, timeout=600)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    only("service.kodi-tickets-*.zip")  # the PIN pad ships beside it


@pytest.mark.parametrize("shell", ["busybox sh", "dash", "bash"])
def test_the_addons_start_script_chooses_the_agent_that_runs(shell, tmp_path):
    kodi_home = tmp_path / ".kodi"
    with zipfile.ZipFile(only("service.kodi-tickets.agent-*.zip")) as z:
        z.extractall(kodi_home / "addons")
    start = kodi_home / "addons/service.kodi-tickets.agent/bin/kodi-tickets-agent.start"
    run = lambda *args: subprocess.run([*shell.split(), str(start), *args], capture_output=True,
                                       text=True, timeout=60, env={"PATH": "/usr/bin:/bin"})
    # On this x86_64 machine the x86_64 agent is the one that runs.
    version = run("--version")
    assert version.returncode == 0 and version.stdout.startswith("kodi-tickets-agent "), version
    data = kodi_home / "userdata/addon_data/service.kodi-tickets.agent"
    assert data.is_dir() and data.stat().st_mode & 0o077 == 0
    # Not paired: a plain line and 78, so that the unit waits instead of restarting.
    unpaired = run()
    assert unpaired.returncode == 78 and "not paired yet" in unpaired.stderr, unpaired
    # None that runs (an agent for another machine): said, not a cryptic exec error.
    for arch in ("aarch64", "armv7"):
        (start.parent / f"kodi-tickets-agent-{arch}").unlink()
    (start.parent / "kodi-tickets-agent-x86_64").write_bytes(b"\x7fELF not for this machine")
    none = run("--version")
    assert none.returncode == 78 and "none of the agents" in none.stderr, none
