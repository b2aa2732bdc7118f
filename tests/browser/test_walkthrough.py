"""A newcomer's first walk through Kodi Tickets, in a real (headless) Chromium.

First start: log in with the default password, choose a new one, create the profile "Kids",
issue a 30-minute ticket (green), see the fake Kodi script get its PIN, use the PIN as a Kodi
box would (red), log out. Screenshots go to tests/artifacts/.

Run:  python3 -m pytest -q -p no:cacheprovider tests/browser
"""

import re
import time
import urllib.parse

from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

NEW_PASSWORD = "correct-horse-42"
WAIT = 10


def wait(driver, timeout=WAIT):
    # NOTE: a page being left, or a live part being swapped, leaves stale elements behind.
    return WebDriverWait(driver, timeout, ignored_exceptions=(StaleElementReferenceException,))


def path_of(driver) -> str:
    return urllib.parse.urlsplit(driver.current_url).path


def wait_for_path(driver, pattern: str) -> re.Match:
    """Waits until the browser is at a path matching `pattern` (whole path) and returns the match."""
    regex = re.compile(pattern)
    try:
        wait(driver).until(lambda d: regex.fullmatch(path_of(d)))
    except Exception:
        raise AssertionError(f"expected a path matching {pattern!r}, browser is at {driver.current_url}")
    wait(driver).until(lambda d: d.execute_script("return document.readyState") == "complete")
    return regex.fullmatch(path_of(driver))


def flash(driver):
    """The page's flash message: (Bootstrap kind, text), or None.

    NOTE: read in one script, so that no element handle outlives a page that a form's answer
    replaces meanwhile (Chromium then fails with "Node ... does not belong to the document")."""
    found = driver.execute_script("""
        const alerts = document.querySelectorAll("main > .alert[role='alert']");
        return Array.from(alerts, a => [
            Array.from(a.classList).find(c => c.startsWith("alert-")).slice("alert-".length),
            a.innerText.trim(),
        ]);""")
    assert len(found) <= 1, "more than one flash message"
    return tuple(found[0]) if found else None


def fill(driver, **fields):
    for name, value in fields.items():
        box = driver.find_element(By.NAME, name)
        box.clear()
        box.send_keys(value)


def submit(driver, form_action: str):
    driver.find_element(By.CSS_SELECTOR, f"main form[action='{form_action}'] button[type='submit']").click()


def xpath_text(text: str) -> str:
    """`text` as an XPath string literal, whatever quotes it holds."""
    if "'" not in text:
        return f"'{text}'"
    return "concat(" + ", \"'\", ".join(f"'{part}'" for part in text.split("'")) + ")"


def classes(element) -> set:
    return set(element.get_attribute("class").split())


def severe(entries) -> list:
    return [e for e in entries if e["level"] == "SEVERE"]


# --- the steps, shared by both tests -------------------------------------------------------

def log_in_first_time(driver, server):
    """Steps 1 and 2: the default login, then the forced change of password."""
    driver.get(server.url + "/")
    wait_for_path(driver, "/login")
    assert driver.find_element(By.TAG_NAME, "h1").text == "Log in"
    assert flash(driver) is None
    fill(driver, username="admin", password="admin123")
    submit(driver, "/login")

    wait_for_path(driver, "/password")
    assert driver.find_element(By.TAG_NAME, "h1").text == "Change password"
    warning = driver.find_element(By.CSS_SELECTOR, "main .alert-warning").text
    assert "default password" in warning and "before you go on" in warning, warning
    # The other pages are closed until the password is changed.
    driver.get(server.url + "/profiles")
    wait_for_path(driver, "/password")
    kind, text = flash(driver)
    assert kind == "danger" and "new password" in text, (kind, text)

    fill(driver, current_password="not-the-password", new_password=NEW_PASSWORD, confirm_password=NEW_PASSWORD)
    submit(driver, "/password")
    # NOTE: the browser is on /password already, showing the earlier flash until the answer
    # to this form is loaded: wait for the new one.
    refused = ("danger", "The current password is wrong.")
    try:
        wait(driver).until(lambda d: flash(d) == refused)
    except Exception:
        raise AssertionError(f"flash reads {flash(driver)!r}, not {refused!r}")

    fill(driver, current_password="admin123", new_password=NEW_PASSWORD, confirm_password=NEW_PASSWORD)
    submit(driver, "/password")
    wait_for_path(driver, "/profiles")
    kind, text = flash(driver)
    assert kind == "success" and text.startswith("Password changed."), (kind, text)
    assert driver.find_element(By.TAG_NAME, "h1").text == "Profiles"


def create_profile(driver, name="Kids", box=None) -> int:
    """Step 3: on the box named `box`, or on the server's own machine; the form makes the
    admin choose."""
    driver.find_element(By.LINK_TEXT, "New profile").click()
    wait_for_path(driver, "/profiles/new")
    choices = driver.find_elements(By.CSS_SELECTOR, "#device-choice input[type='radio']")
    assert choices and not any(c.is_selected() for c in choices), "a way is chosen for the admin"
    fill(driver, name=name)
    label = xpath_text(f"The box “{box}”" if box else "This server's own machine")
    driver.find_element(By.XPATH, f"//main//label[normalize-space()={label}]").click()
    driver.find_element(By.XPATH, "//main//form//button[normalize-space()='Save']").click()
    profile_id = int(wait_for_path(driver, r"/profiles/(\d+)").group(1))
    assert driver.find_element(By.TAG_NAME, "h1").text == name
    kind, text = flash(driver)
    assert kind == "success" and f"“{name}” created" in text, (kind, text)
    return profile_id


def issue_ticket(driver, profile_id: int) -> str:
    """Step 4: a 30-minute ticket by quick choice; returns its PIN."""
    driver.find_element(By.LINK_TEXT, "New ticket").click()
    wait_for_path(driver, rf"/profiles/{profile_id}/tickets/new")
    driver.find_element(By.XPATH, "//main//button[normalize-space()='30 min']").click()
    wait_for_path(driver, rf"/profiles/{profile_id}")
    # NOTE: read in one script: the live page may swap the row as the PIN reaches Kodi.
    count, state, pin, row_text = driver.execute_script("""
        var rows = document.querySelectorAll('#tickets tbody tr'), row = rows[0];
        return [rows.length, row.dataset.state, row.querySelector('.pin').innerText, row.innerText];""")
    assert count == 1, f"{count} ticket rows"
    assert state == "unused", state
    assert re.fullmatch(r"\d{4}", pin), repr(pin)
    # Every width shows the length (phones as a card).
    assert "30 min" in row_text, row_text
    kind, text = flash(driver)
    assert kind == "success" and f"PIN {pin} (30 min) is being set on the TV" in text, (kind, text)
    return pin


def wait_applied(server, pin: str, profile="Kids"):
    """Step 5, the Kodi side: the fake script was run with "Profile:PIN"."""
    want = f"{profile}:{pin}"
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if server.applied_path.exists() and want in server.applied_path.read_text().splitlines():
            return
        time.sleep(0.1)  # polling a file another process writes
    got = server.applied_path.read_text() if server.applied_path.exists() else "(never run)"
    raise AssertionError(f"the Kodi script was not run with {want!r}; it got: {got!r}")


def ticket_status(driver) -> str:
    """Whether the newest ticket's PIN works on the TV: `ready`, `setting`, `in_use`, ..."""
    # NOTE: read in one script: the live page may swap the row between two WebDriver calls.
    return driver.execute_script(
        "var row = document.querySelector('#tickets tbody tr'); return row ? row.dataset.status : ''")


def add_device(server) -> str:
    done = server.cli("device", "add", "Test box")
    assert done.returncode == 0, f"device add failed ({done.returncode}): {done.stderr}"
    token = done.stdout.strip()
    assert token and "\n" not in token and " " not in token, repr(done.stdout)
    return token


def kodi_login(server, token: str, pin: str) -> tuple:
    """What the Kodi add-on sends when someone types the PIN; returns (status, JSON body)."""
    return server.api(token, "/api/login", {"lock_code": pin})


def use_ticket(server, pin: str) -> str:
    """Step 7, the Kodi side: a new device for this server's machine, with Kids on it, reports
    the PIN; returns the device's token."""
    token = add_device(server)
    server.put_on_local_box("Kids", "Test box")
    status, body = kodi_login(server, token, pin)
    assert status == 200, (status, body)
    assert body["success"] is True and body["profile"] == "Kids", body
    return token


def horizontal_overflow(driver) -> tuple:
    return tuple(driver.execute_script(
        "return [document.documentElement.scrollWidth, window.innerWidth]"))


# --- the tests -----------------------------------------------------------------------------

def test_newcomer_walkthrough(server, browser, artifacts):
    driver = browser.start(1280, 900)

    log_in_first_time(driver, server)
    profile_id = create_profile(driver)
    pin = issue_ticket(driver, profile_id)

    # 5. The PIN reaches Kodi and the row says so.
    wait_applied(server, pin)

    def reloaded_ready(d):
        d.refresh()
        return ticket_status(d) == "ready"
    try:
        wait(driver).until(reloaded_ready)
    except Exception:
        raise AssertionError(f"the ticket is {ticket_status(driver)!r}, not 'ready'")
    row = driver.find_element(By.CSS_SELECTOR, "#tickets tr[data-state='unused']")
    assert "table-success" in classes(row), row.get_attribute("class")
    assert "Ready on TV" in row.text, row.text

    # 6.
    driver.save_screenshot(str(artifacts / "walkthrough-green.png"))

    # 7. A Kodi box uses the PIN: the ticket turns red and its minutes run.
    token = use_ticket(server, pin)
    driver.refresh()
    wait_for_path(driver, rf"/profiles/{profile_id}")
    assert not driver.find_elements(By.CSS_SELECTOR, "#tickets tr[data-state='unused']")
    row = driver.find_element(By.CSS_SELECTOR, "#tickets tr[data-state='in_use']")
    assert "table-danger" in classes(row), row.get_attribute("class")
    assert row.find_element(By.CSS_SELECTOR, ".pin").text == pin
    cells = [td.text for td in row.find_elements(By.TAG_NAME, "td")]
    headings = [th.text for th in driver.find_elements(By.CSS_SELECTOR, "#tickets thead th")]
    by_heading = dict(zip(headings, cells))
    assert re.fullmatch(r"(29|30) min left", by_heading["Time left"]), by_heading
    # Times in the browser's own zone, written by the page script (UTC is the fallback).
    assert re.fullmatch(r"\d\d:\d\d", by_heading["Used"]), by_heading
    assert re.fullmatch(r"In use until \d\d:\d\d", by_heading["State"]), by_heading
    driver.save_screenshot(str(artifacts / "walkthrough-red.png"))

    # The same PIN is not accepted twice.
    status, body = kodi_login(server, token, pin)
    assert status == 404, (status, body)

    # 9. Log out.
    driver.find_element(By.XPATH, "//nav//button[normalize-space()='Log out']").click()
    wait_for_path(driver, "/login")
    kind, text = flash(driver)
    assert kind == "success" and "logged out" in text, (kind, text)
    driver.get(server.url + "/profiles")
    wait_for_path(driver, "/login")
    assert not driver.find_elements(By.XPATH, "//button[normalize-space()='Log out']")

    # 8. Nothing went wrong in the browser on any page of the walk (CSP, scripts, resources).
    # Checked last so that a console error does not hide whether the rest of the walk works.
    browser.drain_console()
    errors = severe(browser.console)
    assert not errors, "browser console errors:\n" + "\n".join(e["message"] for e in errors)


def test_phone_sized_window_has_no_horizontal_scrolling(server, browser, artifacts):
    driver = browser.start(390, 844, phone=True)

    overflowing = {}

    def check_width(page):
        scroll_width, inner_width = horizontal_overflow(driver)
        if scroll_width > inner_width:
            overflowing[page] = (scroll_width, inner_width)

    driver.get(server.url + "/")
    wait_for_path(driver, "/login")
    # The page's viewport meta makes the layout as wide as the phone's screen.
    assert driver.execute_script("return window.innerWidth") == 390
    check_width("login")
    log_in_first_time(driver, server)
    check_width("profiles (empty)")
    profile_id = create_profile(driver)
    check_width("profile without tickets")
    pin = issue_ticket(driver, profile_id)
    wait_applied(server, pin)
    use_ticket(server, pin)
    driver.refresh()
    wait_for_path(driver, rf"/profiles/{profile_id}")
    driver.find_element(By.CSS_SELECTOR, "#tickets tr[data-state='in_use']")
    driver.save_screenshot(str(artifacts / "walkthrough-mobile.png"))
    check_width("profile with a running ticket")
    # The tickets table may scroll inside its own box, never the page.
    assert driver.find_element(By.CSS_SELECTOR, "#tickets").find_element(
        By.XPATH, "./ancestor::div[contains(@class,'table-responsive')]")
    driver.get(server.url + "/profiles")
    wait_for_path(driver, "/profiles")
    check_width("profiles")

    assert not overflowing, f"pages wider than the window (scrollWidth, innerWidth): {overflowing}"

    browser.drain_console()
    errors = severe(browser.console)
    assert not errors, "browser console errors:\n" + "\n".join(e["message"] for e in errors)
