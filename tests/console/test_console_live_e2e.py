"""Live updates in the browser: the Callback tab's rows follow a callback through routing by the
Server-Sent Events of admin-api, with no Refresh and the fallback poll set to an hour."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from callback_shared.mongo import SERVICES, Document
from playwright.async_api import Request, async_playwright, expect
from pymongo.asynchronous.database import AsyncDatabase

from tests.admin_api.support import Tokens
from tests.console.support import (
    CHROMIUM,
    FLAGS,
    PROFILES,
    SETTINGS,
    row,
    shot,
    sign_in,
    start_platform,
)

pytestmark = pytest.mark.e2e

NUMBER = "+14155550111"
#: routing takes seconds, so the row's way through PROCESSING can be seen
PROFILE = {**PROFILES["fast"], "agents": 1, "handle_seconds_min": 3.0, "handle_seconds_max": 4.0}
WAIT = 30_000  # ms: generous for a busy machine; the poll, set to an hour, cannot be the cause
HOUR_MS = 3_600_000


@pytest.mark.timeout(300)
@pytest.mark.usefixtures("browser_and_build")
async def test_rows_follow_a_callback_live_without_refresh(
    env: dict[str, str], db: AsyncDatabase[Document], bootstrapped: None, tmp_path: Path
) -> None:
    await db[SERVICES].insert_one({"_id": "live", **SETTINGS})
    supervisor = Tokens().supervisor(sub="sam")["Authorization"].removeprefix("Bearer ")
    processes = start_platform(env, tmp_path, {"live": PROFILE})
    try:
        for process in processes.values():
            await asyncio.to_thread(process.wait_ready)
        url = processes["admin-api"].url
        async with async_playwright() as pw:
            browser = await pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=FLAGS)
            try:
                context = await browser.new_context(viewport={"width": 1280, "height": 800})
                # the fallback poll: once an hour
                await context.add_init_script(
                    f"localStorage.setItem('callback-console.poll-ms', '{HOUR_MS}')"
                )
                page = await context.new_page()
                lists: list[str] = []

                def count_list_reads(request: Request) -> None:
                    path = request.url.split("?")[0]
                    if request.method == "GET" and path.endswith("/api/v1/callbacks"):
                        lists.append(request.url)

                page.on("request", count_list_reads)
                await sign_in(page, url, supervisor)
                indicator = page.get_by_test_id("live-status")
                await expect(indicator).to_have_text("Live", timeout=WAIT)

                await page.get_by_role("button", name="+ Create Callback").click()
                dialog = page.get_by_role("dialog", name="Create Callback")
                await dialog.get_by_label("Service").fill("live")
                await dialog.get_by_label("Customer number").fill(NUMBER)
                await dialog.get_by_role("button", name="Create", exact=True).click()
                await expect(dialog).to_have_count(0)
                created = row(page, NUMBER)
                await expect(created).to_be_visible(timeout=WAIT)

                # routing connects it to an agent for 3-4 s, then it ends: the row shows both
                await expect(created).to_contain_text("PROCESSING", timeout=WAIT)
                await shot(page, "live-processing")
                await page.wait_for_timeout(1000)  # a list read the creation asked for is done
                reads = len(lists)
                await expect(created).to_contain_text("COMPLETED", timeout=WAIT)
                await expect(created).to_contain_text("(AGENT)")
                await expect(indicator).to_have_text("Live")
                # the row changed in place by its event: the list was not read again
                assert len(lists) == reads, lists[reads:]
                await context.close()
            finally:
                await browser.close()
    finally:
        for process in processes.values():
            process.terminate()
