"""The start page at a glance, the devices page and the big PIN view, in a real (headless)
Chromium at phone and desktop width: a small hotel's rooms in natural order, each with its
state, live PIN and quick actions, all without sideways scrolling. Screenshots go to
tests/artifacts/.

Run:  python3 -m pytest -q -p no:cacheprovider tests/browser
"""

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from test_walkthrough import (
    NEW_PASSWORD,
    add_device,
    horizontal_overflow,
    kodi_login,
    log_in_first_time,
    severe,
    wait_for_path,
)

CHANGE_WITHIN = 10


def card_status(driver, profile_id: int) -> str:
    return driver.execute_script(
        "var c = document.getElementById(arguments[0]); return c ? c.dataset.status : ''",
        f"profile-{profile_id}")


@pytest.mark.parametrize("width,height,phone", [(390, 844, True), (1366, 900, False)],
                         ids=["phone", "desktop"])
def test_every_profile_at_a_glance(server, browser, artifacts, width, height, phone):
    driver = browser.start(width, height, phone=phone)
    tag = "phone" if phone else "desktop"
    log_in_first_time(driver, server)
    server.admin.post("/login", username="admin", password=NEW_PASSWORD)
    token = add_device(server)
    rooms = {}
    for name in ("Room 10", "Room 2", "Room 1"):
        rooms[name] = int(server.admin.post("/profiles", name=name, device="").rsplit("/", 1)[1])
        server.put_on_local_box(name, "Test box")  # the box whose token reports the login
    busy_pin = server.issue_ticket(rooms["Room 10"], 90)
    status, body = kodi_login(server, token, busy_pin)
    assert status == 200, (status, body)
    ready_pin = server.issue_ticket(rooms["Room 2"], 30)

    driver.get(server.url + "/")
    wait_for_path(driver, "/profiles")
    names = [h.text for h in driver.find_elements(By.CSS_SELECTOR, "#profiles h2")]
    assert names == ["Room 1", "Room 2", "Room 10"], names
    # Room 2's PIN reaches the (fake) Kodi; its card turns ready by itself.
    WebDriverWait(driver, CHANGE_WITHIN, poll_frequency=0.1).until(
        lambda d: card_status(d, rooms["Room 2"]) == "ready")
    busy = driver.find_element(By.ID, f"profile-{rooms['Room 10']}").text
    assert busy_pin in busy and "In use until" in busy and "1 h 30 min left" in busy, busy
    assert "+15 min" in busy and "End now" in busy, busy
    ready = driver.find_element(By.ID, f"profile-{rooms['Room 2']}").text
    assert ready_pin in ready and "Ready on TV" in ready and "Show PIN" in ready, ready
    free = driver.find_element(By.ID, f"profile-{rooms['Room 1']}").text
    assert "Free" in free and "New ticket" in free and "End now" not in free, free
    # Each button says what it acts on.
    labels = [b.get_attribute("aria-label") for b in driver.find_elements(By.CSS_SELECTOR, "#profiles .btn")]
    assert len(labels) == len(set(labels)), labels
    scroll_width, inner_width = horizontal_overflow(driver)
    assert scroll_width <= inner_width, (scroll_width, inner_width)
    driver.save_screenshot(str(artifacts / f"glance-{tag}.png"))

    # The big PIN for handing the phone over.
    driver.find_element(By.ID, f"profile-{rooms['Room 2']}").find_element(By.LINK_TEXT, "Show PIN").click()
    wait_for_path(driver, r"/tickets/\d+/pin")
    big = driver.find_element(By.CSS_SELECTOR, ".big-pin")
    assert big.text == ready_pin
    assert big.size["width"] <= inner_width and big.size["height"] >= 60, big.size
    assert "Ready on TV" in driver.find_element(By.ID, "big-pin-status").text
    driver.save_screenshot(str(artifacts / f"big-pin-{tag}.png"))

    # The devices page: a card per box on phones, nothing off screen.
    driver.get(server.url + "/devices")
    wait_for_path(driver, "/devices")
    scroll_width, inner_width = horizontal_overflow(driver)
    assert scroll_width <= inner_width, (scroll_width, inner_width)
    revoke = driver.find_element(By.CSS_SELECTOR, "#devices a[aria-label='Revoke Test box']")
    assert revoke.is_displayed()
    right = driver.execute_script("return arguments[0].getBoundingClientRect().right", revoke)
    assert right <= inner_width, (right, inner_width)
    assert driver.find_element(By.CSS_SELECTOR, "#devices thead").is_displayed() != phone
    driver.save_screenshot(str(artifacts / f"devices-{tag}.png"))

    # Pairing a box: a code to type on it, and the command that does, in view; the box
    # exchanges it once for its token and shows up in the list by itself.
    driver.find_element(By.NAME, "name").send_keys("Bedroom")
    driver.find_element(By.XPATH, "//main//button[normalize-space()='Pair a box']").click()
    WebDriverWait(driver, CHANGE_WITHIN).until(lambda d: d.find_elements(By.ID, "pairing-code"))
    code = driver.find_element(By.ID, "pairing-code").text
    assert len(code) == 6 and code.isdigit(), code
    command = driver.find_element(By.ID, "pairing-command").text
    assert command == f"kodi-tickets-agent pair {server.url} {code}", command
    scroll_width, inner_width = horizontal_overflow(driver)
    assert scroll_width <= inner_width, (scroll_width, inner_width)
    driver.save_screenshot(str(artifacts / f"devices-pairing-{tag}.png"))
    status, body = server.api("", "/api/pair", {"code": code})
    assert status == 200 and body["device"] == "Bedroom" and body["device_token"].startswith("kt_"), body
    status, _ = server.api("", "/api/pair", {"code": code})
    assert status == 404, "a code pairs once"
    driver.get(server.url + "/devices")
    assert driver.find_elements(By.CSS_SELECTOR, "#devices a[aria-label='Revoke Bedroom']")
    assert not driver.find_elements(By.ID, "pairing-code"), "the code is shown once"

    browser.drain_console()
    errors = severe(browser.console)
    assert not errors, "browser console errors:\n" + "\n".join(e["message"] for e in errors)
