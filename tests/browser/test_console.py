"""An admin's way through the console, in Chromium: sign in, run a sync and follow it, find
why a member did not sync, abort a run; on a desktop and a phone-sized screen."""

from __future__ import annotations

import re
import time

import pytest
from browser_support import PHONE, TOKEN, Console, screenshot
from playwright.sync_api import Locator, Page, expect

pytestmark = pytest.mark.integration


def test_a_signed_out_admin_signs_in_with_the_keyboard_and_lands_where_they_were_going(
    console: Console, page: Page
) -> None:
    page.goto(console.url + "/cache?sync_status=fail")
    expect(page).to_have_url(re.compile(r"/signin\?next="))
    screenshot(page, "signin")

    page.keyboard.press("Tab")  # the skip link comes first
    page.get_by_label("Admin token").fill("not the token")
    page.keyboard.press("Enter")
    token = page.get_by_label("Admin token")
    expect(token).to_have_attribute("aria-invalid", "true")
    expect(page.get_by_text("That is not the admin token")).to_be_visible()
    screenshot(page, "signin-refused")

    token.fill(TOKEN)
    page.keyboard.press("Enter")
    expect(page).to_have_url(console.url + "/cache?sync_status=fail")
    expect(page.get_by_role("heading", name="Cache")).to_be_visible()


def test_a_sync_started_on_the_status_page_shows_its_progress_then_that_both_sides_agree(
    console: Console, page: Page
) -> None:
    console.simulator.simulator.switches.batch_operation_delay_seconds = 0.15
    console.sign_in(page)
    card = page.locator(".card").first
    expect(card.get_by_text("Never synced yet.")).to_be_visible()

    card.get_by_role("button", name="Sync now").click()
    expect(page.get_by_role("status").first).to_contain_text("Sync started for group")
    live = card.locator(".live")
    expect(live.locator(".bar").first).to_be_visible(timeout=20_000)
    seen = _progress_seen(live.locator(".bar span"), until=lambda: _settled(card))
    screenshot(page, "status-after-sync")

    assert len(seen) >= 3, f"the progress did not move: {seen}"
    cannot = card.locator(".count", has_text="Cannot sync")
    expect(cannot.locator("dd").first).not_to_have_text("0")
    expect(card.get_by_text("Why members cannot sync")).to_be_visible()
    for label in ("To add at Mailchimp", "To remove at Mailchimp", "Waiting to be sent"):
        expect(card.locator(".count", has_text=label).locator("dd").first).to_have_text("0")


def _settled(card: Locator) -> bool:
    """The run is over and its changes are done at Mailchimp (the page then reloads)."""
    finished = card.get_by_text(re.compile(r"Last sync finished .*, took")).count()
    return bool(finished) and not card.locator(".bar").count() and card.locator(".count").count()


def _progress_seen(bars: object, until: object, seconds: float = 60) -> list[str]:
    """Every distinct text the progress bars showed until ``until()`` held."""
    seen: list[str] = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and not until():  # type: ignore[operator]
        text = " | ".join(bars.all_inner_texts())  # type: ignore[attr-defined]
        if text and (not seen or seen[-1] != text):
            seen.append(text)
        time.sleep(0.1)
    return seen


def test_the_cache_browser_finds_a_member_says_why_it_cannot_sync_and_includes_it(
    console: Console, page: Page
) -> None:
    _synced(console, page)
    page.get_by_role("link", name="Cache").click()
    page.get_by_label("Sync status").select_option("fail")
    page.get_by_role("button", name="Search").click()
    expect(page.get_by_role("status").first).to_contain_text("row(s) match")
    screenshot(page, "cache-search")

    page.locator("table.rows tbody tr a").first.click()
    expect(page.get_by_role("heading", name="Why it is where it is")).to_be_visible()
    expect(page.locator(".why li").first).to_contain_text("Cannot sync:")
    screenshot(page, "cache-row")

    if page.get_by_role("button", name="Include in the next sync").count():
        page.get_by_role("button", name="Include in the next sync").click()
        expect(page.get_by_role("status").first).to_contain_text("will be synced by the next")
        expect(page.locator(".why li").first).to_contain_text("Waiting for the next sync")


def test_a_refused_search_is_shown_at_its_field(console: Console, page: Page) -> None:
    console.sign_in(page)
    page.goto(console.url + "/cache")
    page.get_by_label("Contact id").fill("not a number")
    page.get_by_role("button", name="Search").click()
    field = page.get_by_label("Contact id")
    expect(field).to_have_attribute("aria-invalid", "true")
    expect(page.locator("#e-civicrm_contact_id")).to_contain_text("civicrm_contact_id")


def test_aborting_a_running_sync_says_what_it_does_then_stops_it(
    console: Console, page: Page
) -> None:
    console.simulator.simulator.switches.batch_stuck = True
    console.sign_in(page)
    card = page.locator(".card").first
    card.get_by_role("button", name="Sync now").click()
    expect(card.get_by_text("Batches at Mailchimp")).to_be_visible(timeout=30_000)
    screenshot(page, "status-running")

    card.get_by_role("link", name="Abort…").click()
    expect(page.get_by_text("deletes our unfinished batches at Mailchimp")).to_be_visible()
    screenshot(page, "abort-confirm")
    page.get_by_role("button", name="Abort the sync").click()

    expect(page.get_by_role("status").first).to_contain_text("Aborted the sync of group")
    expect(card.locator(".live").get_by_text("Idle")).to_be_visible()


def test_on_a_phone_sized_screen_no_page_scrolls_sideways(console: Console, page: Page) -> None:
    _synced(console, page)
    page.set_viewport_size(PHONE)  # type: ignore[arg-type]
    page.goto(console.url + "/cache")
    row = page.locator("table.rows tbody tr a").first.get_attribute("href") or ""
    pages = (
        ("/", "status-phone"),
        ("/cache", "cache-phone"),
        (row, "cache-row-phone"),
        ("/config", "config-phone"),
        ("/config/accounts/0", "config-account-phone"),
    )
    for path, name in pages:
        page.goto(console.url + path)
        width = page.evaluate("document.documentElement.scrollWidth")
        screenshot(page, name)
        assert width <= PHONE["width"], f"{path} is {width}px wide"


def _synced(console: Console, page: Page) -> None:
    console.sign_in(page)
    card = page.locator(".card").first
    card.get_by_role("button", name="Sync now").click()
    deadline = time.monotonic() + 60
    while not _settled(card) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _settled(card), "the sync did not end within a minute"


def test_the_config_screen_refuses_a_group_used_twice_at_its_field_then_saves(
    console: Console, page: Page
) -> None:
    console.sign_in(page)
    page.get_by_role("link", name="Config").click()
    expect(page.get_by_role("heading", name="Demo Org")).to_be_visible()
    assert console.audience.api_key not in page.content()  # keys are only ever shown masked
    screenshot(page, "config")

    page.get_by_role("link", name="Audiences and webhooks").click()
    expect(page.get_by_role("heading", name="Audiences")).to_be_visible()
    screenshot(page, "config-account")
    page.get_by_role("link", name="Edit").click()
    events = page.locator(f"#f-interest_{console.audience.interest_ids['events']}")
    events.select_option(page.locator("#f-subscription_group_id").input_value())
    page.get_by_role("button", name="Save").click()

    events = page.locator(f"#f-interest_{console.audience.interest_ids['events']}")
    expect(events).to_have_attribute("aria-invalid", "true")
    expect(page.locator(".error").first).to_contain_text("a group is used twice")
    screenshot(page, "config-connection-refused")

    events.select_option("")
    page.get_by_label("Also sync contact data").check()
    page.get_by_role("button", name="Save").click()
    expect(page.get_by_role("status").first).to_contain_text("connection was saved")
    page.get_by_role("link", name="← All accounts").click()
    expect(page.locator("table tbody tr").first).to_contain_text("yes")  # data sync now on


def test_a_key_mailchimp_refuses_is_shown_at_its_field_and_nothing_is_saved(
    console: Console, page: Page
) -> None:
    console.sign_in(page)
    page.goto(console.url + "/config")
    page.get_by_label("Name").fill("Second Org")
    page.get_by_label("API key").fill("ffffffffffffffffffffffffffffffff-us9")
    page.get_by_role("button", name="Check and add").click()
    key = page.get_by_label("API key")
    expect(key).to_have_attribute("aria-invalid", "true")
    expect(page.get_by_label("Name")).to_have_value("Second Org")
    expect(page.get_by_role("heading", name="Second Org")).to_have_count(0)


def test_disconnecting_an_audience_says_what_it_deletes_before_it_does(
    console: Console, page: Page
) -> None:
    _synced(console, page)
    page.goto(console.url + "/config/accounts/0")
    page.get_by_role("link", name="Disconnect…").click()
    expect(
        page.get_by_text(re.compile(r"forgets the audience's [\d,]+ cached member"))
    ).to_be_visible()
    screenshot(page, "config-disconnect")
    page.get_by_role("button", name="Disconnect the audience").click()

    expect(page.get_by_role("status").first).to_contain_text("was disconnected")
    page.get_by_role("link", name="Status").click()
    expect(page.get_by_text("No audience is connected yet")).to_be_visible()
