"""The server binary's connections, as a client on the LAN sees them: the gate in front of
Rocket caps connections per client address, cuts off requests sent too slowly, and still
tells the login limits which address each request came from.

Loopback addresses 127.0.0.2, .3, … stand for other machines on the LAN: Linux routes the
whole 127.0.0.0/8 to this machine, and the server sees each as a client address of its own.
"""

import http.client
import re
import resource
import socket
import time
import urllib.parse

import pytest

from kt_server import Server

CAP = 64  # the default connections_per_address


@pytest.fixture(scope="module")
def server():
    # A short request limit, so that slow requests are cut off within the test's time.
    with Server(prefix="kt-connections-", env={"ROCKET_REQUEST_TIMEOUT": "2"}) as srv:
        yield srv


@pytest.fixture(scope="module")
def patient_server():
    """The default request limit (30 s): the idle connections a cap test holds must stay
    counted while it opens the rest (on a busy machine, 1,100 take more than 2 s)."""
    with Server(prefix="kt-connections-") as srv:
        yield srv


def connect(srv: Server, source: str) -> socket.socket:
    return socket.create_connection(("127.0.0.1", srv.port), timeout=10,
                                    source_address=(source, 0))


def get(srv: Server, source: str, path: str = "/healthz") -> int:
    conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=10,
                                      source_address=(source, 0))
    try:
        conn.request("GET", path)
        return conn.getresponse().status
    finally:
        conn.close()


def closed_within(sock: socket.socket, seconds: float) -> tuple[bool, bytes]:
    """Whether the server closed `sock` within `seconds`, and what it sent before."""
    sock.settimeout(seconds)
    received = b""
    try:
        while chunk := sock.recv(4096):
            received += chunk
        return True, received
    except socket.timeout:
        return False, received
    except ConnectionResetError:
        return True, received


def test_idle_connections_from_one_address_do_not_lock_out_the_others(patient_server):
    server = patient_server
    # The attack that took the server down: 1,100 idle connections from one address.
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 4096)), hard))
    held = []
    try:
        for _ in range(1_100):
            held.append(connect(server, "127.0.0.10"))
        # Past the cap, each connection is answered 503 and closed.
        closed, answer = closed_within(held[-1], 10)
        assert closed and answer.startswith(b"HTTP/1.1 503"), answer
        assert b"Too many connections from your address" in answer
        # Other addresses are served as usual, the same address is not.
        assert get(server, "127.0.0.11") == 200
        assert get(server, "127.0.0.11", "/login") == 200
        assert get(server, "127.0.0.10") == 503
    finally:
        for sock in held:
            sock.close()
    # Their places are freed when they close.
    deadline = time.monotonic() + 10
    while get(server, "127.0.0.10") != 200:
        assert time.monotonic() < deadline, "the address stays locked out after closing"
        time.sleep(0.1)


def test_the_cap_holds_exactly(patient_server):
    server = patient_server
    held = [connect(server, "127.0.0.12") for _ in range(CAP)]
    try:
        # The first CAP connections are served (one request on the last of them shows it).
        held[-1].sendall(b"GET /healthz HTTP/1.1\r\nhost: 127.0.0.1\r\n\r\n")
        assert held[-1].recv(12) == b"HTTP/1.1 200"
        extra = connect(server, "127.0.0.12")
        closed, answer = closed_within(extra, 10)
        assert closed and answer.startswith(b"HTTP/1.1 503"), answer
        extra.close()
    finally:
        for sock in held:
            sock.close()


@pytest.mark.parametrize("slow_part", ["head", "body"])
def test_a_request_sent_slowly_is_cut_off(server, slow_part):
    sock = connect(server, "127.0.0.13")
    started = time.monotonic()
    if slow_part == "head":
        sock.sendall(b"GET /healthz HTTP/1.1\r\nhost: 127.0.0.1\r\n")
    else:
        sock.sendall(b"POST /api/login HTTP/1.1\r\nhost: 127.0.0.1\r\n"
                     b"content-type: application/json\r\ncontent-length: 100\r\n\r\n"
                     b'{"lock_code"')
    # Meanwhile everyone else is served.
    assert get(server, "127.0.0.14") == 200
    closed, answer = closed_within(sock, 15)
    elapsed = time.monotonic() - started
    sock.close()
    assert closed, "a half-sent request holds its connection for ever"
    assert answer == b"", answer
    assert elapsed >= 1.9, f"cut off after {elapsed:.1f} s, before the 2 s limit"


def test_a_request_sent_in_parts_within_the_limit_is_answered(server):
    sock = connect(server, "127.0.0.15")
    sock.sendall(b"GET /healthz HTTP/1.1\r\n")
    time.sleep(0.5)
    sock.sendall(b"host: 127.0.0.1\r\n\r\n")
    sock.settimeout(10)
    assert sock.recv(12) == b"HTTP/1.1 200"
    sock.close()


def wrong_login(srv: Server, source: str, username: str) -> int:
    """A login with a wrong password from `source`, as a browser sends it; its status."""
    conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=30,
                                      source_address=(source, 0))
    try:
        conn.request("GET", "/login")
        page = conn.getresponse()
        cookies = "; ".join(c.split(";", 1)[0] for c in page.headers.get_all("set-cookie") or [])
        token = re.search(r'name="csrf_token" value="([^"]+)"', page.read().decode()).group(1)
        body = urllib.parse.urlencode(
            {"username": username, "password": "wrong", "csrf_token": token})
        conn.request("POST", "/login", body=body, headers={
            "content-type": "application/x-www-form-urlencoded", "cookie": cookies,
            "origin": srv.url})
        answer = conn.getresponse()
        answer.read()
        return answer.status
    finally:
        conn.close()


def test_login_limits_still_count_per_client_address(server):
    # Behind the gate every connection reaches Rocket from loopback; the limits must still
    # see the client's own address. Unknown user names, so only the address limit applies.
    statuses = [wrong_login(server, "127.0.0.16", f"nobody{i}") for i in range(6)]
    assert statuses == [401] * 5 + [429], statuses
    assert wrong_login(server, "127.0.0.17", "nobody6") == 401


def device_badge(srv: Server, device_id: int) -> str:
    page = srv.admin.page("/devices")
    cell = re.search(rf'id="device-{device_id}-agent"[^>]*>(.*?)</td>', page, re.S)
    assert cell, page
    return re.sub(r"<[^>]+>", "", cell.group(1)).strip()


def test_a_box_whose_agent_stops_shows_offline_at_once(tmp_path):
    """The gate tells the box's event stream when its agent hangs up: the Devices page says
    offline within a second or two, not at the stream's next heartbeat (15 s)."""
    with Server(tmp_path) as srv:
        srv.admin.first_log_in("correct-horse-42")
        token = srv.cli("device", "add", "Den", check=True).stdout.strip()
        device_id = srv.value("SELECT id FROM devices")
        assert device_badge(srv, device_id) == "offline"
        agent = socket.create_connection(("127.0.0.1", srv.port), timeout=10)
        agent.sendall(f"GET /api/agent/events HTTP/1.1\r\nHost: 127.0.0.1:{srv.port}\r\nAccept: text/event-stream\r\n"
                      f"Authorization: Bearer {token}\r\n\r\n".encode())
        assert agent.recv(12) == b"HTTP/1.1 200"
        deadline = time.monotonic() + 10
        while device_badge(srv, device_id) != "online":
            assert time.monotonic() < deadline, "the box never showed online"
            time.sleep(0.1)

        agent.close()
        closed = time.monotonic()
        while device_badge(srv, device_id) != "offline":
            assert time.monotonic() - closed < 5, "still online 5 s after its agent hung up"
            time.sleep(0.1)
