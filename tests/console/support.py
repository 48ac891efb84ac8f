"""What the console's browser tests share: the platform as processes, Debian's Chromium, and
the steps every scenario takes (sign in, find a row, create a callback, take a screenshot).

``CONSOLE_SCREENSHOTS=1`` makes :func:`shot` write the main screens to ``docs/console/*.png``.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from playwright.async_api import Browser, Locator, Page, async_playwright, expect

from tests.admin_api.support import SECRET
from tests.console.openapi_doc import CONSOLE, ROOT
from tests.support import ServiceProcess, start_service

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
DIST = CONSOLE / "dist"
SHOTS = ROOT / "docs" / "console"
FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
PROFILES = {
    "fast": {
        "agents": 2,
        "handle_seconds_min": 0.2,
        "handle_seconds_max": 0.4,
        "dial_seconds": 0.1,
        "dial_failure_probability": 0.0,
        "abandon_probability": 0.0,
        "heartbeat_seconds": 1.0,
    },
    "other": {
        "agents": 1,
        "handle_seconds_min": 0.2,
        "handle_seconds_max": 0.4,
        "dial_seconds": 0.1,
        "dial_failure_probability": 0.0,
        "abandon_probability": 0.0,
        "heartbeat_seconds": 1.0,
    },
}
SETTINGS = {"guards": {"duplicate_check": "off", "max_requests_per_number_per_day": None}}
WAIT = 30_000  # ms: rows update live (Server-Sent Events); generous for a busy machine


def start_platform(
    env: dict[str, str],
    tmp_path: Path,
    profiles: dict[str, dict[str, Any]] = PROFILES,
    **admin_env: str,
) -> dict[str, ServiceProcess]:
    """admin-api serving the built console (with ``admin_env`` added to its settings), and the
    services a callback goes through, routing-sim simulating ``profiles``."""
    sim = {"ROUTING_SIM_SEED": "7", "ROUTING_SIM_SERVICES": json.dumps(profiles)}
    admin = {"JWT_SECRET": SECRET, "JWT_LEEWAY_SECONDS": "0", "ADMIN_CONSOLE_DIR": str(DIST)}
    return {
        "admin-api": start_service("admin-api", env, tmp_path, **(admin | admin_env)),
        "scheduler": start_service("scheduler", env, tmp_path),
        "routing-sim": start_service("routing-sim", env, tmp_path, **sim),
        "state-tracker": start_service("state-tracker", env, tmp_path),
        "exporter": start_service("exporter", env, tmp_path),
    }


@asynccontextmanager
async def running(processes: dict[str, ServiceProcess]) -> AsyncIterator[str]:
    """Wait until every process is ready; yield admin-api's URL; stop them all at the end."""
    try:
        for process in processes.values():
            await asyncio.to_thread(process.wait_ready)
        yield processes["admin-api"].url
    finally:
        for process in processes.values():
            process.terminate()


@asynccontextmanager
async def chromium() -> AsyncIterator[Browser]:
    """Debian's Chromium, headless, driven by Playwright."""
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=FLAGS)
        try:
            yield browser
        finally:
            await browser.close()


def bearer(header: dict[str, str]) -> str:
    """The token of an ``Authorization`` header."""
    return header["Authorization"].removeprefix("Bearer ")


async def shot(page: Page, name: str) -> None:
    if os.environ.get("CONSOLE_SCREENSHOTS") == "1":
        SHOTS.mkdir(parents=True, exist_ok=True)
        await page.screenshot(path=str(SHOTS / f"{name}.png"))


def row(page: Page, number: str) -> Locator:
    return page.locator("table.callbacks tbody tr[data-callback-id]", has_text=number)


async def sign_in(page: Page, url: str, token: str) -> None:
    await page.goto(f"{url}/console/#token={token}")
    await expect(page.get_by_role("tab", name="Callback")).to_be_visible()
    assert "token" not in page.url, "the token stays out of the address bar"
    stored = await page.evaluate("Object.values(sessionStorage).join(' ')")
    assert token in stored


async def set_range(page: Page, label: str) -> None:
    await page.get_by_label("Date range").select_option(label=label)


async def create_immediate(page: Page, service: str, number: str) -> None:
    """Create an immediate callback through the Create Callback dialog."""
    await page.get_by_role("button", name="+ Create Callback").click()
    dialog = page.get_by_role("dialog", name="Create Callback")
    await dialog.get_by_label("Service").fill(service)
    await dialog.get_by_label("Customer number").fill(number)
    await dialog.get_by_role("button", name="Create", exact=True).click()
    await expect(dialog).to_have_count(0)
