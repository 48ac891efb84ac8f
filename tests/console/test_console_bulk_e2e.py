"""The console's bulk cancel, Export Cancelled Reports and Services page in a real browser on the
real system (the same platform and helpers as ``test_console_e2e``).

``CONSOLE_SCREENSHOTS=1`` also writes these screens to ``docs/console/*.png``.
"""

from __future__ import annotations

import asyncio
import csv
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from callback_shared.mongo import CALLBACKS, SERVICES, Document
from callback_shared.states import CallbackState
from playwright.async_api import Page, async_playwright, expect
from pymongo.asynchronous.database import AsyncDatabase

from tests.admin_api.support import Tokens, stored_callback
from tests.console.support import (
    CHROMIUM,
    FLAGS,
    SETTINGS,
    WAIT,
    row,
    set_range,
    shot,
    sign_in,
    start_platform,
)

pytestmark = pytest.mark.e2e

SERVICE = "bulk"
SCHEDULED_NUMBERS = ("+14155550201", "+14155550202", "+14155550203")
PROCESSING_NUMBER = "+14155550204"
LATER_NUMBER = "+14155550205"  # scheduled beyond the range: not touched


def token(header: dict[str, str]) -> str:
    return header["Authorization"].removeprefix("Bearer ")


def later_id(stored: dict[Any, dict[str, Any]]) -> Any:
    (found,) = [key for key, doc in stored.items() if doc["customer_number"] == LATER_NUMBER]
    return found


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as file:
        return list(csv.DictReader(file))


@pytest.mark.usefixtures("browser_and_build")
@pytest.mark.timeout(420)
async def test_bulk_cancel_export_and_services(
    env: dict[str, str], db: AsyncDatabase[Document], bootstrapped: None, tmp_path: Path
) -> None:
    await db[SERVICES].insert_one({"_id": SERVICE, **SETTINGS})
    start = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) + timedelta(days=2)
    scheduled = [
        stored_callback(SERVICE, desired=start + timedelta(minutes=15 * i), customer_number=n)
        for i, n in enumerate(SCHEDULED_NUMBERS)
    ]
    processing = stored_callback(
        SERVICE, state=CallbackState.PROCESSING, desired=start, customer_number=PROCESSING_NUMBER
    )
    later = stored_callback(
        SERVICE, desired=start + timedelta(days=20), customer_number=LATER_NUMBER
    )
    await db[CALLBACKS].insert_many([*scheduled, processing, later])

    tokens = Tokens()
    supervisor = token(tokens.supervisor(sub="sam"))
    administrator = token(tokens.administrator(sub="ada"))
    monitor = token(tokens.monitor(sub="mona"))

    processes = start_platform(env, tmp_path)
    try:
        for process in processes.values():
            await asyncio.to_thread(process.wait_ready)
        url = processes["admin-api"].url
        async with async_playwright() as pw:
            browser = await pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=FLAGS)
            try:
                context = await browser.new_context(
                    viewport={"width": 1280, "height": 800}, accept_downloads=True
                )
                page = await context.new_page()
                await bulk_cancel(page, url, supervisor, db, scheduled, processing, tmp_path)
                await context.close()

                context = await browser.new_context(viewport={"width": 1280, "height": 1100})
                page = await context.new_page()
                await edit_service(page, url, administrator, db)
                await context.close()

                context = await browser.new_context(viewport={"width": 1280, "height": 800})
                page = await context.new_page()
                await monitor_sees_no_bulk_or_edit(page, url, monitor)
                await context.close()
            finally:
                await browser.close()
    finally:
        for process in processes.values():
            process.terminate()


async def bulk_cancel(
    page: Page,
    url: str,
    token_: str,
    db: Any,
    scheduled: list[dict[str, Any]],
    processing: dict[str, Any],
    tmp_path: Path,
) -> None:
    await sign_in(page, url, token_)
    await set_range(page, "Next 7 days")
    for number in (*SCHEDULED_NUMBERS, PROCESSING_NUMBER):
        await expect(row(page, number)).to_be_visible(timeout=WAIT)
    await expect(row(page, LATER_NUMBER)).to_have_count(0)

    # only cancellable rows can be selected; Cancel Selected counts the selection
    select_all = page.get_by_label("Select all cancellable callbacks on this page")
    await expect(select_all).to_be_visible()
    await expect(row(page, PROCESSING_NUMBER).get_by_role("checkbox")).to_have_count(0)
    cancel_selected = page.get_by_role("button", name=re.compile(r"^Cancel Selected"))
    await expect(cancel_selected).to_be_disabled()
    await row(page, SCHEDULED_NUMBERS[0]).get_by_role("checkbox").check()
    await expect(cancel_selected).to_have_text("Cancel Selected (1)")
    await cancel_selected.click()

    dialog = page.get_by_role("dialog", name="Cancel Callbacks Confirmation")
    headline = dialog.get_by_test_id("preview-headline")
    await expect(headline).to_have_text("1 callback will be cancelled.")
    chosen = dialog.get_by_role("table", name="Callbacks to cancel")
    await expect(chosen).to_contain_text(SCHEDULED_NUMBERS[0])
    await expect(chosen).not_to_contain_text(SCHEDULED_NUMBERS[1])

    # the whole range instead: the list goes, the excluded one is named with its reason
    await dialog.get_by_label("Cancel All Callbacks In Current Time Range").check()
    await expect(headline).to_have_text("3 callbacks will be cancelled; 1 excluded.")
    await expect(dialog.get_by_role("table", name="Callbacks to cancel")).to_have_count(0)
    excluded = dialog.get_by_role("table", name="Excluded callbacks")
    await expect(excluded).to_contain_text(PROCESSING_NUMBER)
    await expect(excluded).to_contain_text("In progress with an agent (PROCESSING)")
    for number in SCHEDULED_NUMBERS:
        await expect(excluded).not_to_contain_text(number)
    await shot(page, "bulk-cancel-confirmation")

    await dialog.get_by_role("button", name="Confirm").click()
    await expect(dialog.get_by_role("status")).to_have_text(
        "Done: 3 callbacks cancelled.", timeout=WAIT
    )
    await expect(dialog.get_by_test_id("count-cancelled")).to_have_text("3")
    await expect(dialog.get_by_test_id("count-requested")).to_have_text("0")
    await expect(dialog.get_by_test_id("count-refused")).to_have_text("1")
    # the exporter records the cancel's events in the report: 3 cancelled, 1 refused
    await expect(dialog.get_by_test_id("report-readiness")).to_have_text(
        "The report holds all 4 entries of this cancel.", timeout=WAIT
    )
    await shot(page, "bulk-cancel-done")

    async with page.expect_download() as downloading:
        await dialog.get_by_role("button", name="Export Cancelled Reports").click()
    download = await downloading.value
    assert re.fullmatch(r"cancellation-summary-\d{8}T\d{6}Z\.csv", download.suggested_filename)
    saved = tmp_path / "after-bulk.csv"
    await download.save_as(saved)
    rows = read_csv(saved)
    by_id = {r["Callback ID"]: r for r in rows}
    ids = [str(doc["_id"]) for doc in scheduled]
    assert set(by_id) == {*ids, str(processing["_id"])}, rows
    batches = {r["Batch ID"] for r in rows}
    assert len(batches) == 1 and batches != {""}
    for doc in scheduled:
        entry = by_id[str(doc["_id"])]
        assert entry["Cancellation Status"] == "CANCELLED"
        assert entry["Previous State"] == "SCHEDULED"
        assert entry["Phone Number"] == "'" + doc["customer_number"]  # kept as text
        assert entry["Cancelled By"] == "sam"
    refused = by_id[str(processing["_id"])]
    assert refused["Cancellation Status"] == "REFUSED"
    assert refused["Previous State"] == "PROCESSING"

    await dialog.get_by_role("button", name="Close", exact=True).first.click()
    await expect(dialog).to_have_count(0)
    await expect(page.get_by_role("status")).to_contain_text("Bulk cancel done: 3 cancelled")
    for number in SCHEDULED_NUMBERS:
        await expect(row(page, number)).to_contain_text("(CANCELLED_BY_ADMIN)", timeout=WAIT)
    await expect(row(page, PROCESSING_NUMBER)).to_contain_text("PROCESSING")
    stored = {doc["_id"]: doc async for doc in db[CALLBACKS].find({})}
    for doc in scheduled:
        assert stored[doc["_id"]]["result"] == "CANCELLED_BY_ADMIN"
    assert stored[processing["_id"]]["state"] == "PROCESSING"
    assert stored[later_id(stored)]["state"] == "SCHEDULED"

    # Export Cancelled Reports on its own: the same report
    await page.get_by_role("button", name="Export Cancelled Reports").click()
    export = page.get_by_role("dialog", name="Export Cancelled Reports")
    await expect(export.get_by_label("Cancellation Summary Report")).to_be_checked()
    async with page.expect_download() as downloading:
        await export.get_by_role("button", name="Export", exact=True).click()
    saved = tmp_path / "export.csv"
    await (await downloading.value).save_as(saved)
    assert {r["Callback ID"] for r in read_csv(saved)} == set(by_id)
    await expect(export.get_by_role("status")).to_contain_text("Downloaded cancellation-summary-")
    await export.get_by_role("button", name="Close", exact=True).first.click()

    # a supervisor sees the queues, without editing
    await page.get_by_role("tab", name="Tools").click()
    await expect(page.get_by_role("table", name="Your queues")).to_contain_text(SERVICE)
    await expect(page.get_by_role("button", name=re.compile("^Edit settings of"))).to_have_count(0)
    await expect(page.get_by_role("button", name="Services page")).to_have_count(0)


async def edit_service(page: Page, url: str, token_: str, db: Any) -> None:
    await sign_in(page, url, token_)
    await page.get_by_role("tab", name="Tools").click()
    queues = page.get_by_role("table", name="Your queues")
    await expect(queues).to_contain_text("15 min \N{MULTIPLICATION SIGN} 10")
    await shot(page, "tools-queues")
    await page.get_by_role("button", name=f"Edit settings of {SERVICE}").click()
    form = page.get_by_role("form", name=f"Settings of {SERVICE}")
    capacity = form.get_by_label("Slot capacity")
    await expect(capacity).to_have_value("10")
    await expect(form.get_by_label("Duplicate check")).to_have_value("off")

    # a valid change is stored (and the rest of the settings kept)
    await capacity.fill("7")
    await form.get_by_label("Monday opening 1 opens").fill("08:00")
    await form.get_by_label("Monday opening 1 closes").fill("18:00")
    await form.get_by_role("button", name="Save settings").click()
    await expect(page.get_by_role("status")).to_have_text(f"Settings of {SERVICE} stored.")
    stored = await db[SERVICES].find_one({"_id": SERVICE})
    assert stored["slot_capacity"] == 7
    assert stored["office_hours"]["monday"] == [{"opens": "08:00", "closes": "18:00"}]
    assert stored["guards"]["duplicate_check"] == "off"
    await shot(page, "services-page")

    # refusals show at their fields, what was typed stays, nothing is stored
    await capacity.fill("0")
    await form.get_by_label("Monday opening 1 closes").fill("07:00")
    await form.get_by_role("button", name="Save settings").click()
    await expect(page.get_by_role("alert")).to_have_text("Please correct the marked fields.")
    error = form.locator("#svc-slot-capacity-error")
    await expect(error).to_contain_text("greater than or equal to 1")
    await expect(capacity).to_have_attribute("aria-invalid", "true")
    await expect(capacity).to_be_focused()  # the first refused field
    await expect(capacity).to_have_value("0")
    await expect(form.locator("#svc-office-hours-monday-error")).to_contain_text(
        "Closes must be later than opens"
    )
    await expect(form.get_by_label("Monday opening 1 closes")).to_have_value("07:00")
    await shot(page, "services-refusal")
    assert (await db[SERVICES].find_one({"_id": SERVICE}))["slot_capacity"] == 7

    # correcting a field clears its refusal
    await capacity.fill("8")
    await expect(error).to_have_count(0)


async def monitor_sees_no_bulk_or_edit(page: Page, url: str, token_: str) -> None:
    await sign_in(page, url, token_)
    await set_range(page, "Next 7 days")
    await expect(row(page, PROCESSING_NUMBER)).to_be_visible(timeout=WAIT)
    for name in (
        re.compile("^Cancel Selected"),
        "Cancel All Callbacks In Current Time Range",
        "Export Cancelled Reports",
    ):
        await expect(page.get_by_role("button", name=name)).to_have_count(0)
    await expect(page.get_by_role("checkbox")).to_have_count(0)
    await page.get_by_role("tab", name="Tools").click()
    await expect(page.get_by_role("table", name="Your queues")).to_contain_text(SERVICE)
    await expect(page.get_by_role("button", name=re.compile("^Edit settings of"))).to_have_count(0)
    await expect(page.get_by_role("button", name="Services page")).to_have_count(0)
