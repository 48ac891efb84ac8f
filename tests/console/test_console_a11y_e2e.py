"""Every page and dialog of the console passes axe-core with no serious or critical violation,
is usable from the keyboard with a visible focus, and works on a 390 px wide screen (the
phone of a supervisor on the floor) as well as at 1280x800.

admin-api alone serves the built console over stored callbacks: accessibility is about what is
drawn, so the pipeline does not run here (the other console e2e tests run it).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from callback_shared.mongo import CALLBACKS, SERVICES, Document
from callback_shared.states import CallbackResult, CallbackState
from playwright.async_api import Page, expect
from pymongo.asynchronous.database import AsyncDatabase

from tests.admin_api.support import SECRET, Tokens, stored_callback
from tests.console.openapi_doc import CONSOLE
from tests.console.support import DIST, WAIT, bearer, chromium, row, running, shot
from tests.support import start_service

pytestmark = pytest.mark.e2e

AXE = CONSOLE / "node_modules" / "axe-core" / "axe.min.js"
SETTINGS = {"guards": {"duplicate_check": "off", "max_requests_per_number_per_day": None}}
SCHEDULED_NUMBER, DONE_NUMBER, OVERDUE_NUMBER = "+14155550201", "+14155550202", "+14155550203"


async def axe_violations(page: Page, where: str) -> list[str]:
    """Serious and critical axe-core violations of what the page shows now."""
    if not await page.evaluate("typeof window.axe !== 'undefined'"):
        await page.add_script_tag(path=str(AXE))
    found = await page.evaluate(
        """async () => (await axe.run(document, {resultTypes: ["violations"]})).violations
             .filter((v) => v.impact === "serious" || v.impact === "critical")
             .map((v) => `${v.id} (${v.impact}): ${v.help} at ${v.nodes
               .slice(0, 3).map((n) => n.target.join(" ")).join(", ")}`)"""
    )
    return [f"{where}: {violation}" for violation in found]


async def focus_is_visible(page: Page) -> bool:
    """The focused element draws an outline or a box shadow (a visible focus ring)."""
    visible: bool = await page.evaluate(
        """() => {
             const el = document.activeElement;
             if (!el || el === document.body) return false;
             const style = getComputedStyle(el);
             const outline = style.outlineStyle !== "none" && parseFloat(style.outlineWidth) > 0;
             return outline || style.boxShadow !== "none";
           }"""
    )
    return visible


async def seed(db: AsyncDatabase[Document]) -> None:
    await db[SERVICES].insert_many([{"_id": name, **SETTINGS} for name in ("fast", "other")])
    now = datetime.now(UTC).replace(microsecond=0)
    tomorrow = (now + timedelta(days=1)).replace(hour=10, minute=0, second=0)
    scheduled = stored_callback("fast", desired=tomorrow, customer_number=SCHEDULED_NUMBER)
    done = stored_callback("fast", desired=now - timedelta(hours=2), customer_number=DONE_NUMBER)
    done.pop("dispatch_at")
    done.update(state=CallbackState.COMPLETED.value, result=CallbackResult.AGENT.value)
    overdue = stored_callback(
        "other", desired=now - timedelta(hours=1), customer_number=OVERDUE_NUMBER
    )
    overdue.pop("dispatch_at")
    await db[CALLBACKS].insert_many([scheduled, done, overdue])


@pytest.mark.timeout(240)
@pytest.mark.usefixtures("browser_and_build")
async def test_every_screen_is_accessible_and_fits(
    env: dict[str, str], db: AsyncDatabase[Document], bootstrapped: None, tmp_path: Path
) -> None:
    assert AXE.is_file(), "axe-core is a devDependency of the console: npm ci"
    await seed(db)
    administrator = bearer(Tokens().administrator(sub="ada"))
    admin_api = start_service(
        "admin-api", env, tmp_path, JWT_SECRET=SECRET, ADMIN_CONSOLE_DIR=str(DIST)
    )
    violations: list[str] = []
    async with running({"admin-api": admin_api}) as url, chromium() as browser:
        for width, height in ((1280, 800), (390, 844)):
            context = await browser.new_context(viewport={"width": width, "height": height})
            page = await context.new_page()
            violations += await walk_every_screen(page, url, administrator, width)
            await context.close()
    assert not violations, "\n".join(violations)


async def walk_every_screen(page: Page, url: str, token: str, width: int) -> list[str]:
    found: list[str] = []
    at = f"{width}px"

    await page.goto(f"{url}/console/")
    await expect(
        page.get_by_role("heading", name="Sign in to the Callback console")
    ).to_be_visible()
    found += await axe_violations(page, f"{at} sign-in")

    await page.goto(f"{url}/console/#token={token}")
    await expect(row(page, DONE_NUMBER)).to_be_visible(timeout=WAIT)
    await fits(page, at)
    found += await axe_violations(page, f"{at} callback tab")

    # keyboard: Tab reaches the main controls, each with a visible focus
    await page.locator("body").click(position={"x": 1, "y": 1})
    reached = set()
    for _ in range(12):
        await page.keyboard.press("Tab")
        assert await focus_is_visible(page), f"{at}: no visible focus on {await focused(page)}"
        reached.add(await focused(page))
    assert any("Create Callback" in name for name in reached), reached

    done = row(page, DONE_NUMBER)
    await done.get_by_role("button", name=re.compile("^Details")).click()
    await page.get_by_label("Advanced Callback Metrics").check()
    await expect(page.get_by_role("table", name="Timeline")).to_be_visible()
    found += await axe_violations(page, f"{at} row details and metrics")
    await done.get_by_role("button", name=re.compile("^Details")).click()

    await page.get_by_role("button", name="+ Create Callback").click()
    dialog = page.get_by_role("dialog", name="Create Callback")
    await dialog.get_by_label("Service").fill("fast")
    await dialog.get_by_label("Scheduled").check()
    await expect(dialog.get_by_label("Available time slot").locator("option")).not_to_have_count(
        1, timeout=10_000
    )
    found += await axe_violations(page, f"{at} create dialog")
    await page.keyboard.press("Escape")
    await expect(dialog).to_have_count(0)

    await done.get_by_role("button", name=re.compile("^Recreate ")).click()
    dialog = page.get_by_role("dialog", name="Recreate Callback")
    await expect(dialog).to_be_visible()
    found += await axe_violations(page, f"{at} recreate dialog")
    await page.keyboard.press("Escape")

    await page.get_by_label("Date range").select_option(label="Next 2 weeks")
    booked = row(page, SCHEDULED_NUMBER)
    await expect(booked).to_be_visible(timeout=WAIT)
    await booked.get_by_role("button", name=re.compile("^Edit ")).click()
    dialog = page.get_by_role("dialog", name="Edit Callback")
    await expect(dialog).to_be_visible()
    found += await axe_violations(page, f"{at} edit dialog")
    await page.keyboard.press("Escape")

    await page.get_by_role("button", name="Cancel All Callbacks In Current Time Range").click()
    dialog = page.get_by_role("dialog", name="Cancel Callbacks Confirmation")
    await expect(dialog.get_by_role("button", name="Confirm")).to_be_visible(timeout=10_000)
    found += await axe_violations(page, f"{at} cancel callbacks confirmation")
    await page.keyboard.press("Escape")
    await expect(dialog).to_have_count(0)

    await page.get_by_role("button", name="Export Cancelled Reports").click()
    dialog = page.get_by_role("dialog", name="Export Cancelled Reports")
    await expect(dialog.get_by_label("Cancellation Summary Report")).to_be_checked()
    found += await axe_violations(page, f"{at} export cancelled reports")
    await page.keyboard.press("Escape")
    await expect(dialog).to_have_count(0)

    await page.get_by_role("button", name="Advanced Options").click()
    options = page.get_by_role("dialog", name="Advanced Options")
    await expect(options).to_be_visible()
    found += await axe_violations(page, f"{at} advanced options")
    await options.get_by_role("button", name="Done").click()

    await page.get_by_role("tab", name="Tools").click()
    await page.get_by_label("Callback ID or phone number").fill(OVERDUE_NUMBER)
    await page.get_by_role("button", name="Search", exact=True).click()
    await expect(page.get_by_role("table", name="Search results")).to_contain_text(OVERDUE_NUMBER)
    await fits(page, at)
    found += await axe_violations(page, f"{at} tools and callback search")

    await page.get_by_role("button", name="Edit settings of fast").click()
    form = page.get_by_role("form", name="Settings of fast")
    await expect(form.get_by_label("Slot capacity")).to_be_visible()
    await fits(page, at)
    found += await axe_violations(page, f"{at} services page")

    await page.get_by_role("tab", name="Callback").click()
    await expect(row(page, DONE_NUMBER)).to_be_visible(timeout=WAIT)
    if width < 500:
        await shot(page, "narrow-callback-tab")
    return found


async def focused(page: Page) -> str:
    label: str = await page.evaluate(
        """() => { const el = document.activeElement;
             return (el.getAttribute("aria-label") || el.textContent || el.tagName).trim(); }"""
    )
    return label


async def fits(page: Page, at: str) -> None:
    """No sideways scrolling of the page itself (wide tables scroll inside their own box)."""
    overflow = await page.evaluate(
        "document.documentElement.scrollWidth - document.documentElement.clientWidth"
    )
    if overflow > 1:
        wide = await page.evaluate(
            """() => [...document.querySelectorAll("body *")]
                 .filter((e) => e.getBoundingClientRect().right > innerWidth + 1)
                 .filter((e) => {
                   if (getComputedStyle(e).position !== "static") return true;
                   for (let up = e.parentElement; up && up !== document.body; up = up.parentElement)
                     if (getComputedStyle(up).overflowX !== "visible") return false;
                   return true;
                 })
                 .slice(0, 5).map((e) => `${e.tagName}.${e.className}`)"""
        )
        raise AssertionError(f"{at}: the page scrolls sideways by {overflow}px: {wide}")
