"""A profile with a long history, in a real (headless) Chromium: its live tickets are always
on top, its ended tickets come 50 to a page, newest first, with Newer/Older links."""

import time

import pytest

from selenium.webdriver.common.by import By

from test_walkthrough import create_profile, issue_ticket, log_in_first_time, wait_for_path

ENDED = 120


def seed_ended(server, profile_id: int, n: int) -> None:
    """`n` ended tickets with PINs 1000, 1001, … (oldest first), straight into the database."""
    now = int(time.time())
    with server._db() as db:
        with db:
            db.executemany(
                "INSERT INTO tickets (profile_id, lock_code, length, state, created_at, used_at,"
                " expires_at, logged_off_at) VALUES (?, ?, 30, 'expired', ?, ?, ?, ?)",
                [(profile_id, f"{1000 + i}", now - 7200 + i, now - 7000 + i, now - 5200 + i, now - 5195 + i)
                 for i in range(n)],
            )


def pins(driver, section: str) -> list:
    return [td.text for td in driver.find_elements(By.CSS_SELECTOR, f"#{section} td.pin")]


def click_link(driver, text: str) -> None:
    link = driver.find_element(By.LINK_TEXT, text)
    # NOTE: "instant": Bootstrap scrolls smoothly, and a click during the scroll misses.
    driver.execute_script("arguments[0].scrollIntoView({block: 'center', behavior: 'instant'})", link)
    link.click()


def test_ended_tickets_are_paged_and_live_ones_stay_on_top(server, browser, artifacts):
    driver = browser.start(1280, 900)
    log_in_first_time(driver, server)
    profile_id = create_profile(driver)
    pin = issue_ticket(driver, profile_id)
    seed_ended(server, profile_id, ENDED)
    driver.refresh()
    wait_for_path(driver, rf"/profiles/{profile_id}")

    assert pins(driver, "live-tickets") == [pin]
    assert pins(driver, "ended-tickets") == [f"{1000 + i}" for i in range(ENDED - 1, ENDED - 51, -1)]
    summary = driver.find_element(By.CSS_SELECTOR, "main p.small").text
    assert "Ended tickets 1–50 of 120, newest first." in summary, summary
    driver.save_screenshot(str(artifacts / "history-page-1.png"))

    click_link(driver, "Older")
    wait_for_path(driver, rf"/profiles/{profile_id}")
    assert driver.current_url.endswith("?page=2")
    assert pins(driver, "live-tickets") == [pin], "the live ticket is on every page"
    assert pins(driver, "ended-tickets")[0] == f"{1000 + ENDED - 51}"
    click_link(driver, "Older")
    wait_for_path(driver, rf"/profiles/{profile_id}")
    assert pins(driver, "ended-tickets") == [f"{1000 + i}" for i in range(19, -1, -1)]
    current = driver.find_element(By.CSS_SELECTOR, "nav[aria-label='Ended tickets'] .active").text
    assert current == "Page 3 of 3", current
    assert not driver.find_elements(By.LINK_TEXT, "Older"), "no page after the last"
    driver.execute_script("window.scrollTo({top: document.body.scrollHeight, behavior: 'instant'})")
    driver.save_screenshot(str(artifacts / "history-page-3.png"))
    click_link(driver, "Newer")
    wait_for_path(driver, rf"/profiles/{profile_id}")
    assert driver.current_url.endswith("?page=2")

    browser.drain_console()
    errors = [e for e in browser.console if e["level"] == "SEVERE"]
    assert not errors, "browser console errors:\n" + "\n".join(e["message"] for e in errors)


def seed_unused(server, profile_id: int, n: int) -> None:
    """`n` unused tickets with PINs 2000, 2001, … (oldest first), straight into the database:
    a café's roll of vouchers."""
    now = int(time.time())
    with server._db() as db:
        with db:
            db.executemany(
                "INSERT INTO tickets (profile_id, lock_code, length, state, created_at)"
                " VALUES (?, ?, 30, 'unused', ?)",
                [(profile_id, f"{2000 + i}", now - 600 + i) for i in range(n)],
            )


@pytest.mark.parametrize("width", [390, 1280])
def test_a_roll_of_vouchers_shows_the_newest_and_all_on_request(server, browser, artifacts, width):
    driver = browser.start(width, 900, phone=width < 500)
    log_in_first_time(driver, server)
    profile_id = create_profile(driver)
    seed_unused(server, profile_id, 120)
    driver.refresh()
    wait_for_path(driver, rf"/profiles/{profile_id}")

    assert pins(driver, "live-tickets") == [f"{2000 + i}" for i in range(119, 69, -1)]
    more = driver.find_element(By.ID, "live-more").text
    assert "Shown: 50 of this profile's 120 unused and in-use tickets" in more, more
    driver.save_screenshot(str(artifacts / f"vouchers-newest-{width}.png"))
    assert driver.execute_script("return document.documentElement.scrollWidth") <= width

    click_link(driver, "Show all 120")
    wait_for_path(driver, rf"/profiles/{profile_id}")
    assert driver.current_url.endswith("?live=all")
    assert len(pins(driver, "live-tickets")) == 120
    assert "All 120 unused and in-use tickets are shown." in driver.find_element(By.ID, "live-more").text
    click_link(driver, "Show the newest only")
    wait_for_path(driver, rf"/profiles/{profile_id}")
    assert len(pins(driver, "live-tickets")) == 50

    browser.drain_console()
    errors = [e for e in browser.console if e["level"] == "SEVERE"]
    assert not errors, "browser console errors:\n" + "\n".join(e["message"] for e in errors)
