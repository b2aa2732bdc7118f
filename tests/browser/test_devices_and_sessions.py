"""Kodi boxes with an agent, in a real (headless) Chromium.

Adds the device "Living room" (its token is shown once), connects to the server as its agent
would (a streaming GET on /api/agent/events, read by a thread), reports Kodi's status, puts the
profile "Kids" on the box, and follows a ticket: the PIN goes to the agent's stream, not to the
server's own Kodi script; the agent acknowledges it; the ticket is used, extended and ended, and
each change reaches the stream as a session event. Closing the stream makes the box offline.
Screenshots go to tests/artifacts/.

Run:  python3 -m pytest -q -p no:cacheprovider tests/browser
"""

import http.client
import json
import re
import socket
import threading
import time
import urllib.parse
import urllib.request
from datetime import datetime

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.support.expected_conditions import staleness_of
from selenium.webdriver.support.ui import Select

from test_walkthrough import (
    classes,
    fill,
    flash,
    issue_ticket,
    kodi_login,
    create_profile,
    log_in_first_time,
    severe,
    ticket_status,
    wait,
    wait_for_path,
)

DEVICE = "Living room"
PROFILE = "Kids"
STREAM_WAIT = 10
# The server notices a closed stream when it next writes to it: a heartbeat every 15 s.
OFFLINE_WITHIN = 20


class AgentStream:
    """The agent's side of GET /api/agent/events: a connection kept open and a thread that
    parses the server-sent events into (event name, JSON data, time received)."""

    def __init__(self, url: str, token: str):
        parts = urllib.parse.urlsplit(url)
        self.conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
        self.conn.request("GET", "/api/agent/events", headers={
            "Authorization": f"Bearer {token}",
            "Accept": "text/event-stream",
        })
        # Kept to shut the connection down from this side while the thread blocks reading.
        self.sock = self.conn.sock
        self.response = self.conn.getresponse()
        assert self.response.status == 200, (self.response.status, self.response.read(2000))
        content_type = self.response.getheader("Content-Type", "")
        assert content_type.startswith("text/event-stream"), content_type
        self.sock.settimeout(None)  # a quiet stream is not an error
        self.events = []
        self.ended = None  # why the reading stopped, once it has
        self.changed = threading.Condition()
        self.thread = threading.Thread(target=self._read, name="agent-stream", daemon=True)
        self.thread.start()

    def _read(self):
        name, data = None, []
        try:
            while True:
                line = self.response.readline()
                if not line:
                    raise EOFError("the server ended the stream")
                line = line.decode().rstrip("\r\n")
                if line == "":
                    if data:
                        event = (name or "message", json.loads("\n".join(data)), time.time())
                        with self.changed:
                            self.events.append(event)
                            self.changed.notify_all()
                    name, data = None, []
                elif line.startswith(":"):
                    continue  # a heartbeat
                else:
                    field, _, value = line.partition(":")
                    value = value[1:] if value.startswith(" ") else value
                    if field == "event":
                        name = value
                    elif field == "data":
                        data.append(value)
        except Exception as e:  # the end of the stream, on either side
            with self.changed:
                self.ended = e
                self.changed.notify_all()

    def next_event(self, name: str, after: int, match=lambda data: True, timeout=STREAM_WAIT):
        """The first `name` event at index >= `after` whose data satisfies `match`, as
        (index, data); waits for it up to `timeout` seconds."""
        deadline = time.monotonic() + timeout
        with self.changed:
            while True:
                for i, (n, data, _) in enumerate(self.events[after:], start=after):
                    if n == name and match(data):
                        return i, data
                left = deadline - time.monotonic()
                if left <= 0 or self.ended is not None:
                    got = [(n, d) for n, d, _ in self.events]
                    raise AssertionError(
                        f"no {name!r} event on the agent stream within {timeout} s "
                        f"(stream ended: {self.ended!r}); received: {got}")
                self.changed.wait(left)

    def count(self) -> int:
        with self.changed:
            return len(self.events)

    def close(self):
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.conn.close()
        self.response.close()
        self.thread.join(5)


@pytest.fixture
def streams():
    """Agent streams opened by a test; closed at its end whatever happens."""
    opened = []
    yield opened
    for s in opened:
        s.close()


def unix(rfc3339: str) -> float:
    return datetime.fromisoformat(rfc3339.replace("Z", "+00:00")).timestamp()


def device_row(driver):
    rows = driver.find_elements(
        By.XPATH, f"//main//table/tbody/tr[td[1][starts-with(normalize-space(), '{DEVICE}')]]")
    assert len(rows) == 1, f"{len(rows)} rows for the device {DEVICE!r}"
    return rows[0]


def agent_badge(driver) -> str:
    badges = device_row(driver).find_elements(By.CSS_SELECTOR, "td:nth-child(2) .badge")
    return badges[0].text if badges else ""


def open_devices(driver, server):
    driver.get(server.url + "/devices")
    wait_for_path(driver, "/devices")


def ticket_cells(driver, state: str) -> tuple:
    """The ticket row in `state` and its cells by column heading."""
    row = driver.find_element(By.CSS_SELECTOR, f"#tickets tr[data-state='{state}']")
    headings = [th.text for th in driver.find_elements(By.CSS_SELECTOR, "#tickets thead th")]
    cells = [td.text for td in row.find_elements(By.TAG_NAME, "td")]
    return row, dict(zip(headings, cells))


def row_button(row, label: str):
    found = row.find_elements(By.XPATH, f".//*[self::button or self::a][normalize-space()='{label}']")
    return found[0] if found else None


def assert_kodi_script_not_run(server):
    ran = server.applied_path.read_text() if server.applied_path.exists() else ""
    assert ran == "", f"the server ran its own Kodi script for an agent's profile: {ran!r}"


def test_device_with_agent_and_running_session(server, browser, artifacts, streams):
    driver = browser.start(1280, 900)
    log_in_first_time(driver, server)

    # 1. Add the device: its token is shown once.
    driver.find_element(By.XPATH, "//nav//a[normalize-space()='Devices']").click()
    wait_for_path(driver, "/devices")
    assert driver.find_element(By.TAG_NAME, "h1").text == "Devices"
    fill(driver, name=DEVICE)
    driver.find_element(By.XPATH, "//main//button[normalize-space()='Add with a token']").click()
    wait(driver).until(lambda d: d.find_elements(By.ID, "new-token"))
    token = driver.find_element(By.ID, "new-token").text.strip()
    assert re.fullmatch(r"kt_\S{16,}", token), repr(token)
    kind, text = flash(driver)
    assert kind == "success" and f"“{DEVICE}” added" in text, (kind, text)
    open_devices(driver, server)
    assert not driver.find_elements(By.ID, "new-token")
    assert token not in driver.page_source, "the token is still on the page after a reload"
    assert agent_badge(driver) == "offline"
    delivery = Select(device_row(driver).find_element(By.CSS_SELECTOR, "select[name='delivery']"))
    assert delivery.first_selected_option.get_attribute("value") == "agent"
    assert delivery.first_selected_option.text == "agent"

    # 2. The agent connects and reports its Kodi.
    stream = AgentStream(server.url, token)
    streams.append(stream)
    open_devices(driver, server)
    badge = device_row(driver).find_element(By.CSS_SELECTOR, "td:nth-child(2) .badge")
    assert badge.text == "online" and "text-bg-success" in classes(badge), badge.get_attribute("outerHTML")
    status, body = server.api(token, "/api/agent/status", {
        "agent_version": "t", "kodi_reachable": True, "kodi_version": "20.1", "master_lock": False,
    })
    assert status == 200, (status, body)
    open_devices(driver, server)
    row = device_row(driver)
    kodi_cell = row.find_element(By.CSS_SELECTOR, "td:nth-child(3)")
    assert kodi_cell.text.startswith("Kodi 20.1"), kodi_cell.text
    warning = kodi_cell.find_element(By.CSS_SELECTOR, ".master-lock-warning")
    assert warning.is_displayed() and "text-danger" in classes(warning)
    assert "Master lock is off" in warning.text, warning.text
    assert not row.find_elements(By.XPATH, ".//*[contains(., 'Kodi does not answer')]")
    driver.save_screenshot(str(artifacts / "devices.png"))

    # 3. A profile on the device; its ticket goes to the agent, not to the local script.
    driver.find_element(By.XPATH, "//nav//a[normalize-space()='Profiles']").click()
    wait_for_path(driver, "/profiles")
    profile_id = create_profile(driver, PROFILE, box=DEVICE)
    where = driver.find_element(By.CSS_SELECTOR, "main h1 + div").text
    assert where.startswith(f"On {DEVICE}"), where

    driver.find_element(By.CSS_SELECTOR, "nav .breadcrumb a[href='/profiles']").click()
    wait_for_path(driver, "/profiles")
    card = driver.find_element(By.ID, f"profile-{profile_id}").text
    assert f"on {DEVICE}" in card, card
    driver.find_element(By.LINK_TEXT, PROFILE).click()
    wait_for_path(driver, rf"/profiles/{profile_id}")

    seen = stream.count()
    pin = issue_ticket(driver, profile_id)
    seen, arm = stream.next_event("arm", seen, lambda d: d.get("lock_code") == pin)
    assert arm["profile"] == PROFILE and arm["type"] == "arm", arm
    assert_kodi_script_not_run(server)
    assert ticket_status(driver) == "setting"
    assert "Being set on the TV" in driver.find_element(By.CSS_SELECTOR, "#tickets tbody tr").text
    assert not driver.find_elements(By.ID, "armed-pin")

    status, body = server.api(token, f"/api/agent/deliveries/{arm['delivery_id']}", {
        "outcome": "applied", "exit_code": 0, "message": "applied to Kodi",
    })
    assert status == 200, (status, body)
    driver.refresh()
    wait_for_path(driver, rf"/profiles/{profile_id}")
    row = driver.find_element(By.CSS_SELECTOR, "#tickets tr[data-state='unused']")
    assert ticket_status(driver) == "ready" and "table-success" in classes(row), row.get_attribute("outerHTML")
    assert driver.find_element(By.ID, "armed-pin").text == pin
    assert f"Ready on TV now: PIN {pin}" in driver.find_element(By.CSS_SELECTOR, "main h1 + div").text

    # 4. The Kodi box uses the PIN: the session reaches the agent; +15 min, then end it.
    status, body = kodi_login(server, token, pin)
    assert status == 200 and body["success"] is True and body["profile"] == PROFILE, (status, body)
    seen, session = stream.next_event("session", seen + 1, lambda d: d.get("ticket_id") == arm["ticket_id"])
    first_end = unix(session["expires_at"])
    assert first_end == unix(body["expires_at"]), (session, body)
    driver.refresh()
    wait_for_path(driver, rf"/profiles/{profile_id}")
    row, cell = ticket_cells(driver, "in_use")
    assert "table-danger" in classes(row), row.get_attribute("class")
    assert cell["PIN"] == pin and cell["Length"] == "30 min", cell
    assert not driver.find_elements(By.ID, "armed-pin"), "a used PIN is still shown as armed"
    for label in ("+15 min", "End now"):
        button = row_button(row, label)
        assert button is not None and button.is_displayed(), f"no visible {label!r} button"

    row_button(row, "+15 min").click()
    wait_for_path(driver, rf"/profiles/{profile_id}")
    wait(driver).until(lambda d: flash(d) is not None)
    kind, text = flash(driver)
    assert kind == "success" and text == f"Added 15 minutes to ticket {pin}.", (kind, text)
    row, cell = ticket_cells(driver, "in_use")
    assert cell["Length"] == "45 min", cell
    assert re.fullmatch(r"(44|45) min left", cell["Time left"]), cell
    seen, session = stream.next_event(
        "session", seen + 1, lambda d: d.get("ticket_id") == arm["ticket_id"])
    assert unix(session["expires_at"]) == first_end + 15 * 60, (session, first_end)
    driver.save_screenshot(str(artifacts / "profile-running.png"))

    # End now asks first: someone is watching.
    row_button(row, "End now").click()
    wait_for_path(driver, rf"/tickets/\d+/end")
    question = driver.find_element(By.CSS_SELECTOR, "main .card").text
    assert "Someone may be watching right now" in question and "within seconds" in question, question
    driver.find_element(By.XPATH, f"//main//button[normalize-space()='End ticket {pin} now']").click()
    wait_for_path(driver, rf"/profiles/{profile_id}")
    wait(driver).until(lambda d: flash(d) is not None)
    kind, text = flash(driver)
    assert kind == "success" and text.startswith(f"Ticket {pin} ended. The TV logs the profile off"), (kind, text)
    # Until the agent has seen the TV logged off, the row says so, in red.
    row, cell = ticket_cells(driver, "expired")
    assert "table-danger" in classes(row), row.get_attribute("class")
    assert re.fullmatch(r"TV not yet logged off; ended \d\d:\d\d \(ended early\)", cell["State"]), cell
    assert cell["Time left"] == "—", cell
    assert row_button(row, "+15 min") is None and row_button(row, "End now") is None
    seen, session = stream.next_event(
        "session", seen + 1, lambda d: d.get("ticket_id") == arm["ticket_id"])
    assert unix(session["expires_at"]) <= time.time(), session
    status, body = server.api(token, f"/api/agent/sessions/{arm['ticket_id']}/logged-off",
                              {"at": session["expires_at"]})
    assert status == 200, (status, body)
    driver.refresh()
    row, cell = ticket_cells(driver, "expired")
    assert "table-secondary" in classes(row), row.get_attribute("class")
    assert re.fullmatch(r"Ended \d\d:\d\d \(ended early\)", cell["State"]), cell

    # 2 (end). The agent goes away: the box turns offline once the server notices.
    stream.close()
    started = time.monotonic()
    open_devices(driver, server)
    while agent_badge(driver) != "offline":
        if time.monotonic() - started > OFFLINE_WITHIN:
            raise AssertionError(
                f"the device still shows {agent_badge(driver)!r} {OFFLINE_WITHIN} s after its "
                "agent closed the event stream")
        time.sleep(0.5)  # the server notices at its next write to the stream
        open_devices(driver, server)

    # Nothing ever ran the server's own Kodi script for this profile.
    assert_kodi_script_not_run(server)

    # 6. No console errors on any page.
    browser.drain_console()
    errors = severe(browser.console)
    assert not errors, "browser console errors:\n" + "\n".join(e["message"] for e in errors)


@pytest.mark.parametrize("width,phone", [(390, True), (1280, False)])
def test_a_box_paired_from_the_tv_appears_on_the_open_page(server, browser, artifacts, width, phone):
    """The admin asks for a pairing code and keeps the Devices page open; the box pairs (its
    add-on or `kodi-tickets-agent pair` calls POST /api/pair): its row appears on the page
    without a reload, first box or not."""
    driver = browser.start(width, 900, phone=phone)
    log_in_first_time(driver, server)
    open_devices(driver, server)
    fill(driver, name="Den")
    driver.find_element(By.XPATH, "//main//button[normalize-space()='Pair a box']").click()
    wait(driver).until(lambda d: d.find_elements(By.ID, "pairing-code"))
    code = driver.find_element(By.ID, "pairing-code").text.strip()
    assert re.fullmatch(r"\d{6}", code), code
    assert not driver.find_elements(By.CSS_SELECTOR, "#devices-list tr[data-row]"), "no box yet"
    # Marks this very page: a reload would lose it.
    driver.execute_script("window.notReloaded = true;")
    wait(driver).until(lambda d: d.find_element(By.TAG_NAME, "html").get_attribute("data-live-stream") == "open")

    request = urllib.request.Request(server.url + "/api/pair", method="POST",
                                     data=json.dumps({"code": code}).encode(),
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as answer:
        first_token = json.loads(answer.read())["device_token"]
    wait(driver, STREAM_WAIT).until(
        lambda d: d.find_elements(By.CSS_SELECTOR, "#devices-list tr[data-row]"))
    row = driver.find_element(By.CSS_SELECTOR, "#devices-list tr[data-row]")
    assert row.text.startswith("Den"), row.text
    assert driver.execute_script("return window.notReloaded === true;"), "the page was reloaded"
    # The used code gives way to the news.
    panel = driver.find_element(By.ID, "pairing")
    wait(driver).until(lambda d: "alert-success" in classes(panel))
    assert panel.text == "“Den” is paired: it is in the list below.", panel.text
    assert not driver.find_element(By.ID, "pairing-code").is_displayed()
    # Its form works as it came: the CSRF token was filled in.
    token = row.find_element(By.CSS_SELECTOR, "input[name='csrf_token']").get_attribute("value")
    assert token and token == driver.find_element(
        By.CSS_SELECTOR, "meta[name='csrf-token']").get_attribute("content")
    driver.save_screenshot(str(artifacts / f"devices-paired-{width}.png"))

    # Kodi's safe mode wipes the box's settings: "Pair again" makes a code for the same box.
    old_stream = AgentStream(server.url, first_token)
    try:
        row = driver.find_element(By.CSS_SELECTOR, "#devices-list tr[data-row]")
        used_panel = driver.find_element(By.ID, "pairing")
        row_button(row, "Pair again").click()
        wait(driver).until(staleness_of(used_panel))
        wait(driver).until(lambda d: d.find_elements(By.ID, "pairing-code"))
        again = driver.find_element(By.ID, "pairing-code").text.strip()
        panel = driver.find_element(By.ID, "pairing")
        assert "alert-info" in classes(panel) and again != code, panel.text
        assert "old token stops working" in driver.find_element(By.CSS_SELECTOR, ".alert-success").text
        assert driver.execute_script(
            "return document.documentElement.scrollWidth <= window.innerWidth"), "sideways scrolling"
        driver.save_screenshot(str(artifacts / f"devices-pair-again-{width}.png"))
        request = urllib.request.Request(server.url + "/api/pair", method="POST",
                                         data=json.dumps({"code": again}).encode(),
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=10) as answer:
            paired = json.loads(answer.read())
        assert paired["device"] == "Den" and paired["device_token"] != first_token, paired
        wait(driver, STREAM_WAIT).until(lambda d: "alert-success" in classes(panel))
        assert panel.text == "“Den” is paired again: it is in the list below.", panel.text
        assert len(driver.find_elements(By.CSS_SELECTOR, "#devices-list tr[data-row]")) == 1
        # The box's old token is refused, and a stream still open with it ends.
        with old_stream.changed:
            old_stream.changed.wait_for(lambda: old_stream.ended is not None, STREAM_WAIT)
        assert old_stream.ended is not None, "the old token's stream still runs"
        status, _ = server.api(first_token, "/api/agent/status",
                               {"agent_version": "1", "kodi_reachable": True})
        assert status == 401, status
    finally:
        old_stream.close()
    browser.drain_console()
    assert severe(browser.console) == [], browser.console
