"""The admin console in a real browser (Debian's Chromium, driven by Playwright) on the real
system: admin-api serving the built console, scheduler, routing-sim, state-tracker, exporter.

``CONSOLE_SCREENSHOTS=1`` also writes the main screens to ``docs/console/*.png``.
"""

from __future__ import annotations

import asyncio
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from callback_admin_api.tokens import mint_token
from callback_shared.mongo import CALLBACKS, SERVICES, Document
from playwright.async_api import Page, Route, expect
from pymongo.asynchronous.database import AsyncDatabase

from tests.admin_api.support import SECRET, SUPERVISOR, Tokens, stored_callback
from tests.console.support import (
    SETTINGS,
    WAIT,
    bearer,
    chromium,
    create_immediate,
    row,
    running,
    set_range,
    shot,
    sign_in,
    start_platform,
)

pytestmark = pytest.mark.e2e

IMMEDIATE_NUMBER, SCHEDULED_NUMBER = "+14155550101", "+14155550102"
OTHER_NUMBER, OVERDUE_NUMBER = "+14155550103", "+14155550104"
DRAFT_NUMBER = "+14155550105"


@pytest.mark.timeout(300)
async def test_the_console_on_the_real_system(
    env: dict[str, str],
    db: AsyncDatabase[Document],
    bootstrapped: None,
    browser_and_build: None,
    tmp_path: Path,
) -> None:
    await db[SERVICES].insert_many(
        [{"_id": name, **SETTINGS} for name in ("fast", "other", "quiet")]
    )
    hour_ago = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)
    overdue = stored_callback("quiet", desired=hour_ago, customer_number=OVERDUE_NUMBER)
    overdue.pop("dispatch_at")  # never emitted: still SCHEDULED an hour after its time
    other = stored_callback("other", desired=hour_ago, customer_number=OTHER_NUMBER)
    other.pop("dispatch_at")
    await db[CALLBACKS].insert_many([overdue, other])

    tokens = Tokens()
    supervisor = bearer(tokens.supervisor(sub="sam"))
    monitor = bearer(tokens.monitor(sub="mona"))
    fast_only = bearer(tokens.supervisor("fast", sub="fiona"))

    async with running(start_platform(env, tmp_path)) as url, chromium() as browser:
        context = await browser.new_context(
            viewport={"width": 1280, "height": 800}, timezone_id="Europe/Berlin"
        )
        page = await context.new_page()
        await supervise(page, url, supervisor)
        await context.close()

        context = await browser.new_context(viewport={"width": 1280, "height": 800})
        page = await context.new_page()
        await sign_in(page, url, monitor)
        await expect(row(page, OVERDUE_NUMBER)).to_be_visible(timeout=WAIT)
        await expect(page.get_by_role("button", name="+ Create Callback")).to_have_count(0)
        for action in ("^Edit ", "^Recreate "):
            buttons = page.get_by_role("button", name=re.compile(action))
            await expect(buttons).to_have_count(0)
        await a_late_answer_is_not_shown(page)
        await context.close()

        context = await browser.new_context(viewport={"width": 1280, "height": 800})
        page = await context.new_page()
        await sign_in(page, url, fast_only)
        await expect(row(page, IMMEDIATE_NUMBER)).to_be_visible(timeout=WAIT)
        table = await page.locator("table.callbacks").inner_text()
        assert "other" not in table and "quiet" not in table
        assert OTHER_NUMBER not in table and OVERDUE_NUMBER not in table
        # the search box by a 6-digit phone prefix (read through the stored prefix), as typed
        search = page.get_by_role("searchbox", name="Search")
        await search.fill("+1 (415) 56")
        await expect(row(page, IMMEDIATE_NUMBER)).to_have_count(0, timeout=WAIT)
        await search.fill("+1 (415) 55")
        await expect(row(page, IMMEDIATE_NUMBER)).to_be_visible(timeout=WAIT)
        await search.fill("")
        await page.get_by_role("tab", name="Tools").click()
        await page.get_by_label("Callback ID or phone number").fill(OTHER_NUMBER)
        await page.get_by_role("button", name="Search", exact=True).click()
        await expect(page.get_by_text("No callback found.")).to_be_visible()
        await context.close()

        context = await browser.new_context(viewport={"width": 1280, "height": 800})
        page = await context.new_page()
        await lapsed_sign_in_keeps_the_draft(page, url, supervisor)
        await context.close()


async def supervise(page: Page, url: str, token: str) -> None:
    await sign_in(page, url, token)
    await expect(page.get_by_text("sam · supervisor")).to_be_visible()

    # the overdue callback: warning icon, its message on focus
    overdue = row(page, OVERDUE_NUMBER)
    await expect(overdue).to_be_visible(timeout=WAIT)
    icon = overdue.get_by_test_id("overdue")
    await icon.focus()
    tooltip = overdue.get_by_role("tooltip")
    await expect(tooltip).to_be_visible()
    await shot(page, "overdue-warning")
    assert (await tooltip.inner_text()).strip()

    # create an immediate callback; the table follows it to COMPLETED (AGENT)
    await create_immediate(page, "fast", IMMEDIATE_NUMBER)
    done = row(page, IMMEDIATE_NUMBER)
    await expect(done).to_contain_text("COMPLETED", timeout=WAIT)
    await expect(done).to_contain_text("(AGENT)")
    await shot(page, "callback-table")

    # the advanced metrics: the timeline with its actors
    await done.get_by_role("button", name=re.compile("^Details")).click()
    await page.get_by_label("Advanced Callback Metrics").check()
    timeline = page.get_by_role("table", name="Timeline")
    await expect(timeline).to_contain_text("sam")
    await expect(timeline).to_contain_text("COMPLETED (AGENT)")
    await shot(page, "advanced-metrics")
    immediate_id = await done.get_attribute("data-callback-id")
    await done.get_by_role("button", name=re.compile("^Details")).click()

    # a refusal shows at its field, what was typed stays
    await page.get_by_role("button", name="+ Create Callback").click()
    dialog = page.get_by_role("dialog", name="Create Callback")
    await dialog.get_by_label("Service").fill("fast")
    await dialog.get_by_label("Customer number").fill("12")
    await dialog.get_by_role("button", name="Create", exact=True).click()
    await expect(dialog.locator("#number-error")).to_be_visible()
    await expect(dialog.get_by_label("Customer number")).to_have_value("12")

    # schedule one tomorrow in an offered slot
    await dialog.get_by_label("Customer number").fill(SCHEDULED_NUMBER)
    await dialog.get_by_label("Scheduled").check()
    slot = dialog.get_by_label("Available time slot")
    await expect(slot.locator("option")).not_to_have_count(1, timeout=10_000)
    first = await slot.locator("option").nth(40).get_attribute("value")
    await slot.select_option(first)
    await shot(page, "create-dialog-slots")
    await dialog.get_by_role("button", name="Schedule").click()
    await expect(dialog).to_have_count(0)
    await set_range(page, "Next 2 weeks")
    booked = row(page, SCHEDULED_NUMBER)
    await expect(booked).to_contain_text("SCHEDULED", timeout=WAIT)
    await expect(booked.get_by_role("img", name="Scheduled callback")).to_be_visible()
    before = await booked.locator(".time").inner_text()

    # reschedule it to another open slot
    await booked.get_by_role("button", name=re.compile("^Edit ")).click()
    dialog = page.get_by_role("dialog", name="Edit Callback")
    slot = dialog.get_by_label("Available time slot")
    await expect(slot.locator("option")).not_to_have_count(1, timeout=10_000)
    await slot.select_option(index=44)
    await dialog.get_by_role("button", name="Reschedule").click()
    await expect(page.get_by_role("status")).to_contain_text("Rescheduled to")
    await expect(booked.locator(".time")).not_to_have_text(before, timeout=WAIT)

    # the 24-hour clock and UTC change what is shown
    shown = await booked.locator(".time").inner_text()
    await page.get_by_role("button", name="Advanced Options").click()
    options = page.get_by_role("dialog", name="Advanced Options")
    await options.get_by_label("Show Time in 24 Hour").uncheck()
    await options.get_by_label("Show Times in UTC").check()
    await shot(page, "advanced-options")
    await options.get_by_role("button", name="Done").click()
    changed = await booked.locator(".time").inner_text()
    assert changed != shown and changed.endswith("UTC") and re.search(r"[AP]M UTC$", changed)
    await page.get_by_role("button", name="Advanced Options").click()
    await options.get_by_label("Show Time in 24 Hour").check()
    await options.get_by_role("button", name="Done").click()
    assert re.search(r" \d\d:\d\d UTC$", await booked.locator(".time").inner_text())

    # cancel it: COMPLETED (CANCELLED_BY_ADMIN)
    await booked.get_by_role("button", name=re.compile("^Edit ")).click()
    dialog = page.get_by_role("dialog", name="Edit Callback")
    await dialog.get_by_role("button", name="Cancel Callback").click()
    await dialog.get_by_role("button", name="Yes, cancel it").click()
    await expect(page.get_by_role("status")).to_contain_text("CANCELLED_BY_ADMIN")
    await expect(booked).to_contain_text("COMPLETED", timeout=WAIT)
    await expect(booked).to_contain_text("(CANCELLED_BY_ADMIN)")
    await expect(booked.get_by_role("button", name=re.compile("^Recreate "))).to_be_visible()
    scheduled_id = await booked.get_attribute("data-callback-id")

    # recreate the cancelled one (the guide's name-recording rule is stated)
    cancelled = page.locator(f'tr[data-callback-id="{scheduled_id}"]')
    await cancelled.get_by_role("button", name=re.compile("^Recreate ")).click()
    dialog = page.get_by_role("dialog", name="Recreate Callback")
    await expect(dialog).to_contain_text("within 4 days")
    await dialog.get_by_role("button", name="Recreate", exact=True).click()
    await expect(page.get_by_role("status")).to_contain_text("Callback recreated")

    # Tools > Callback Search, by id and by phone number
    await page.get_by_role("tab", name="Tools").click()
    await page.get_by_label("Callback ID or phone number").fill(str(immediate_id))
    await page.get_by_role("button", name="Search", exact=True).click()
    results = page.get_by_role("table", name="Search results")
    await expect(results).to_contain_text(str(immediate_id))
    await expect(results).to_contain_text("(AGENT)")
    await page.get_by_label("Callback ID or phone number").fill(SCHEDULED_NUMBER)
    await page.get_by_role("button", name="Search", exact=True).click()
    await expect(results).to_contain_text(str(scheduled_id))
    await shot(page, "callback-search")


async def a_late_answer_is_not_shown(page: Page) -> None:
    """The list of the last 14 days read again, its answer held back 2 s by the browser, and the
    range changed meanwhile: the next 2 weeks are shown, and stay shown once that answer comes
    (it once replaced them: the rows the filters no longer select, under the new range)."""
    fortnight = re.compile(r"/api/v1/callbacks\?.*range=last_14_days")

    async def held_back(route: Route) -> None:
        await asyncio.sleep(2)
        await route.continue_()

    await page.route(fortnight, held_back)
    async with page.expect_response(fortnight, timeout=WAIT) as late:
        await page.get_by_role("button", name="Refresh the callback list").click()
        await set_range(page, "Next 2 weeks")
        await expect(row(page, OVERDUE_NUMBER)).to_have_count(0, timeout=WAIT)
    await late.value
    await page.evaluate("() => new Promise((done) => setTimeout(done, 300))")  # it is handled
    await expect(row(page, OVERDUE_NUMBER)).to_have_count(0)
    await expect(page.get_by_label("Date range")).to_have_value("next_2_weeks")
    await page.unroute(fortnight)


async def lapsed_sign_in_keeps_the_draft(page: Page, url: str, fresh: str) -> None:
    """A 401 sends the user to sign-in; signing in again brings back what was typed."""
    short = mint_token(SECRET, "sam", [SUPERVISOR], ["*"], ttl=timedelta(seconds=3))
    await sign_in(page, url, short)
    await page.get_by_role("button", name="+ Create Callback").click()
    dialog = page.get_by_role("dialog", name="Create Callback")
    await dialog.get_by_label("Service").fill("fast")
    await dialog.get_by_label("Customer number").fill(DRAFT_NUMBER)
    # the token lapses: the live stream ends, and its reconnect and the list are refused (401)
    heading = page.get_by_role("heading", name="Sign in to the Callback console")
    await expect(heading).to_be_visible(timeout=WAIT)
    await expect(page.get_by_role("alert")).to_contain_text("what you were typing is kept")
    await sign_in(page, url, fresh)
    dialog = page.get_by_role("dialog", name="Create Callback")
    await expect(dialog.get_by_label("Customer number")).to_have_value(DRAFT_NUMBER)
    await expect(dialog.get_by_label("Service")).to_have_value("fast")
