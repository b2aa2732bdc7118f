"""An open profile page follows what happens on the TV by itself, in a real (headless)
Chromium at phone and desktop width: a Kodi box (its device token, a profile on it) comes
online, gets the PIN, its viewer types it, and the time runs out. The page changes each
time without a reload (a marker set in the page survives). Screenshots go to tests/artifacts/.

Run:  python3 -m pytest -q -p no:cacheprovider tests/browser
"""

import re

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from test_devices_and_sessions import AgentStream, streams  # noqa: F401 (a fixture)
from test_walkthrough import (
    NEW_PASSWORD,
    add_device,
    create_profile,
    issue_ticket,
    kodi_login,
    log_in_first_time,
    severe,
    ticket_status,
)

# How long the test waits for the page to change: generous for a loaded machine; how fast it
# really is, the benchmark measures.
CHANGE_WITHIN = 5


def newest_row(driver) -> dict:
    """The newest ticket's row as one snapshot (the page may swap it at any moment): its
    classes, text and the labels of its visible buttons."""
    return driver.execute_script("""
        var row = document.querySelector('#tickets tbody tr');
        return {classes: row.className.split(' '), text: row.innerText,
                buttons: Array.from(row.querySelectorAll('.btn')).filter(function (b) {
                    return b.offsetParent !== null; }).map(function (b) { return b.innerText.trim(); })};""")


def lowest_button_contrast(driver) -> tuple:
    """The lowest text/background contrast ratio among the newest row's buttons, with its label
    (WCAG's formula; a transparent button is measured against the row's colour, which
    Bootstrap paints as the cells' inset box shadow)."""
    return tuple(driver.execute_script("""
        function rgb(s) { return s.match(/[\\d.]+/g).map(Number); }
        function lum(c) { var v = c.slice(0, 3).map(function (x) { x /= 255;
            return x <= 0.03928 ? x / 12.92 : Math.pow((x + 0.055) / 1.055, 2.4); });
            return 0.2126 * v[0] + 0.7152 * v[1] + 0.0722 * v[2]; }
        var cell = document.querySelector('#tickets tbody tr td');
        var rowBg = rgb(getComputedStyle(cell).boxShadow.match(/rgb[a]?\\([^)]*\\)/)[0]);
        var worst = [99, ''];
        document.querySelectorAll('#tickets tbody tr:first-child .btn').forEach(function (b) {
            var fg = rgb(getComputedStyle(b).color), back = rgb(getComputedStyle(b).backgroundColor);
            if (back.length === 4 && back[3] === 0) back = rowBg;
            var l1 = lum(fg), l2 = lum(back);
            var ratio = (Math.max(l1, l2) + 0.05) / (Math.min(l1, l2) + 0.05);
            if (ratio < worst[0]) worst = [ratio, b.innerText.trim()];
        });
        return worst;"""))


def without_reload(driver, status: str, what: str):
    """Waits until the newest ticket is in `status`, and checks the page was not reloaded."""
    try:
        WebDriverWait(driver, CHANGE_WITHIN, poll_frequency=0.05).until(
            lambda d: ticket_status(d) == status)
    except Exception:
        raise AssertionError(f"{what}: the ticket stays {ticket_status(driver)!r}, not {status!r}")
    assert driver.execute_script("return window.liveMarker") == "set", f"{what}: the page was reloaded"


@pytest.mark.parametrize("width,height,phone", [(390, 844, True), (1366, 900, False)],
                         ids=["phone", "desktop"])
def test_the_page_follows_the_tv_without_a_reload(server, browser, artifacts, streams, width, height, phone):  # noqa: F811
    driver = browser.start(width, height, phone=phone)
    log_in_first_time(driver, server)
    token = add_device(server)
    profile_id = create_profile(driver, "Kids", box="Test box")
    pin = issue_ticket(driver, profile_id)
    assert ticket_status(driver) == "waiting_offline", ticket_status(driver)
    assert "is offline" in driver.find_element(By.ID, "reach-warning").text
    WebDriverWait(driver, CHANGE_WITHIN).until(
        lambda d: d.execute_script("return document.documentElement.dataset.liveStream") == "open")
    driver.execute_script("window.liveMarker = 'set'")
    tag = f"live-{'phone' if phone else 'desktop'}"
    driver.save_screenshot(str(artifacts / f"{tag}-1-offline.png"))

    # The box's agent connects: the PIN is being set, the warning goes.
    agent = AgentStream(server.url, token)
    streams.append(agent)
    without_reload(driver, "setting", "box online")
    assert not driver.find_elements(By.ID, "reach-warning")
    _, arm = agent.next_event("arm", 0, lambda d: d.get("lock_code") == pin)

    # The agent set it: green, ready on the TV.
    status, body = server.api(token, f"/api/agent/deliveries/{arm['delivery_id']}", {
        "outcome": "applied", "exit_code": 0, "message": "applied to Kodi"})
    assert status == 200, (status, body)
    without_reload(driver, "ready", "PIN set on the TV")
    row = newest_row(driver)
    assert "table-success" in row["classes"] and "Ready on TV" in row["text"], row
    ratio, label = lowest_button_contrast(driver)
    assert ratio >= 4.5, f"the {label!r} button on the green row has contrast {ratio:.2f}:1"
    driver.save_screenshot(str(artifacts / f"{tag}-2-ready.png"))

    # The viewer types the PIN: red, with +15 and End now, until a time in the browser's zone.
    status, body = kodi_login(server, token, pin)
    assert status == 200, (status, body)
    without_reload(driver, "in_use", "PIN used")
    row = newest_row(driver)
    assert "table-danger" in row["classes"], row
    assert re.search(r"In use until \d\d:\d\d", row["text"]), row
    assert re.search(r"(29|30) min left", row["text"]), row
    assert {"+15 min", "End now"} <= set(row["buttons"]), row
    ratio, label = lowest_button_contrast(driver)
    assert ratio >= 4.5, f"the {label!r} button on the red row has contrast {ratio:.2f}:1"
    # Everything on a card fits the phone's width.
    assert driver.execute_script(
        "return document.documentElement.scrollWidth <= window.innerWidth"), "sideways scrolling"
    driver.save_screenshot(str(artifacts / f"{tag}-3-in-use.png"))

    # The time runs out (moved to two seconds from now, noticed by the server at its next
    # change: another profile's ticket): grey, and +15 / End now are gone.
    with server._db() as db:
        with db:
            db.execute("UPDATE tickets SET expires_at = strftime('%s', 'now') + 2,"
                       " used_at = strftime('%s', 'now') + 2 - length * 60 WHERE lock_code = ?", (pin,))
    server.admin.post("/login", username="admin", password=NEW_PASSWORD)
    other = int(server.admin.post("/profiles", name="Room 2", device="").rsplit("/", 1)[1])
    server.issue_ticket(other, 30)
    without_reload(driver, "ended", "time up")
    row = newest_row(driver)
    assert "table-secondary" in row["classes"], row
    assert re.search(r"Ended \d\d:\d\d \(time up\)", row["text"]), row
    assert not {"+15 min", "End now"} & set(row["buttons"]), row
    driver.save_screenshot(str(artifacts / f"{tag}-4-ended.png"))

    browser.drain_console()
    errors = severe(browser.console)
    assert not errors, "browser console errors:\n" + "\n".join(e["message"] for e in errors)


def test_a_page_reconnects_after_a_server_restart_and_catches_up(server, browser, artifacts):
    driver = browser.start(1366, 900)
    log_in_first_time(driver, server)
    token = add_device(server)
    profile_id = create_profile(driver, "Kids", box="Test box")
    pin = issue_ticket(driver, profile_id)

    def stream_is(state):
        WebDriverWait(driver, 20, poll_frequency=0.05).until(
            lambda d: d.execute_script("return document.documentElement.dataset.liveStream") == state,
            f"the page's stream never became {state!r}")

    stream_is("open")
    driver.execute_script("window.liveMarker = 'set'")
    server.stop()
    stream_is("reconnecting")
    server.start()
    # Used right away: before or after the page's stream is back, the page must show it.
    status, body = kodi_login(server, token, pin)
    assert status == 200, (status, body)
    stream_is("open")
    without_reload(driver, "in_use", "PIN used around a server restart")
    driver.save_screenshot(str(artifacts / "live-after-restart.png"))
