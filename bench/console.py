"""The admin console: time from navigation to a rendered page of 250 rows, beside the same API
call made directly, in the same run; and the JavaScript the console ships, gzipped.

admin-api runs as its own process serving the built console (``services/admin-console/dist``)
over ``RECORDS`` stored callbacks of the last 14 days (the console's default range). Debian's
Chromium, driven by Playwright, opens the console ``ROUNDS`` times in a fresh tab (the scripts
cached, as for an administrator who uses it all day). A script installed before the page's own
watches the table and puts a performance mark when its 250th row is in the document; the render
time is that mark's time from the navigation's start. Beside each page, ``httpx`` makes the API
call that the console made for that page (the same query, read from the browser's resource
timing) straight to admin-api. ``page_render_overhead_p99_ms`` = p99 of render times - p99 of
direct API calls: what the console adds (config, sign-in, JS, rendering) on top of the data.
"""

from __future__ import annotations

import asyncio
import gzip
import os
import random
import secrets
import tempfile
import time
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
from callback_admin_api.settings import AdminApiSettings
from callback_admin_api.tokens import mint_token
from callback_dev.infra import Infrastructure
from callback_shared.documents import new_callback_document, timeline_entry
from callback_shared.models import CallbackType, utcnow
from callback_shared.mongo import (
    CALLBACKS,
    SHARED_INDEXES,
    Document,
    ensure_indexes,
    make_mongo_client,
)
from callback_shared.states import CallbackResult, CallbackState
from playwright.async_api import async_playwright

from bench.harness import Metric, Result, backend, median, percentile
from tests.support import isolated_env, start_service

ROOT = Path(__file__).resolve().parents[1]
DIST = ROOT / "services" / "admin-console" / "dist"
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
RECORDS = 2_000
PAGE = 250
ROUNDS = 40
WARM_UP = 3
SECRET = secrets.token_urlsafe(48)
FLAGS = ["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking"]

#: runs before the console's own scripts: marks the moment the table holds a full page
WATCH_TABLE = f"""
new MutationObserver((_, observer) => {{
  const rows = document.querySelectorAll("table.callbacks tbody tr[data-callback-id]");
  if (rows.length >= {PAGE}) {{
    performance.mark("callbacks-page-rendered");
    observer.disconnect();
  }}
}}).observe(document, {{ childList: true, subtree: true }});
"""
READ_TIMES = """() => {
  const [mark] = performance.getEntriesByName("callbacks-page-rendered");
  const calls = performance.getEntriesByType("resource")
    .filter((e) => e.name.includes("/api/v1/callbacks?"));
  return {
    rendered: mark ? mark.startTime : null,
    url: calls.length ? calls[0].name : null,
    api_in_browser: calls.length ? calls[0].responseEnd - calls[0].startTime : null,
  };
}"""


def js_gzip_kb() -> float:
    scripts = sorted((DIST / "assets").glob("*.js"))
    if not scripts:
        raise SystemExit("build the console first: cd services/admin-console && npm run build")
    return sum(len(gzip.compress(s.read_bytes(), 9)) for s in scripts) / 1024


def _records(now: Any) -> list[Document]:
    rng = random.Random(11)
    docs = []
    for n in range(RECORDS):
        desired = now - timedelta(seconds=rng.uniform(3_600, 13 * 86_400))
        desired = desired.replace(microsecond=0)
        doc = new_callback_document(
            callback_id=uuid.UUID(int=rng.getrandbits(128), version=4),
            service_name=f"service-{n % 4}",
            customer_number=f"+1415{rng.randrange(10**7):07d}",
            type=rng.choice(list(CallbackType)),
            desired_time=desired,
            now=desired - timedelta(hours=1),
            created_by="bench",
        )
        doc.pop("dispatch_at")
        doc.update(state=CallbackState.COMPLETED.value, result=CallbackResult.AGENT.value)
        doc["timeline"].append(
            timeline_entry(desired, CallbackState.COMPLETED, "routing", result=CallbackResult.AGENT)
        )
        docs.append(doc)
    return docs


async def run(infra: Infrastructure) -> Result:
    size_kb = js_gzip_kb()
    env = isolated_env(infra)
    settings = AdminApiSettings(
        kafka_bootstrap_servers=infra.kafka_bootstrap_servers,
        mongodb_url=infra.mongodb_url,
        mongodb_database=env["MONGODB_DATABASE"],
    )
    client = make_mongo_client(settings)
    db = client[settings.mongodb_database]
    await ensure_indexes(db, SHARED_INDEXES)
    await db[CALLBACKS].insert_many(_records(utcnow()), ordered=False)
    token = mint_token(SECRET, "bench", ["callback_supervisor"])
    with tempfile.TemporaryDirectory(prefix="bench-console-") as logs:
        api = start_service(
            "admin-api", env, Path(logs), JWT_SECRET=SECRET, ADMIN_CONSOLE_DIR=str(DIST)
        )
        try:
            await asyncio.to_thread(api.wait_ready, 120)
            rendered, direct, in_browser = await _measure(api.url, token)
        finally:
            api.terminate()
            await client.drop_database(settings.mongodb_database)
            await client.close()
    overhead = percentile(rendered, 99) - percentile(direct, 99)
    result = Result(
        name="console",
        backend=f"{backend(infra)}; admin-api as a process serving the built console; "
        f"{RECORDS} callbacks; Chromium (headless) via Playwright, {ROUNDS} navigations",
    )
    result.metrics = {
        "page_render_p50_ms": Metric(median(rendered), "ms"),
        "page_render_p99_ms": Metric(percentile(rendered, 99), "ms"),
        "api_call_direct_p50_ms": Metric(median(direct), "ms"),
        "api_call_direct_p99_ms": Metric(percentile(direct, 99), "ms"),
        "api_call_in_browser_p50_ms": Metric(median(in_browser), "ms"),
        "page_render_overhead_p50_ms": Metric(median(rendered) - median(direct), "ms"),
        "page_render_overhead_p99_ms": Metric(overhead, "ms", 300),
        "js_gzip_kb": Metric(round(size_kb, 1), "kB", 250),
    }
    return result


async def _measure(url: str, token: str) -> tuple[list[float], list[float], list[float]]:
    rendered: list[float] = []
    direct: list[float] = []
    in_browser: list[float] = []
    headers = {"Authorization": f"Bearer {token}"}
    async with async_playwright() as pw, httpx.AsyncClient(timeout=30) as http:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=FLAGS)
        context = await browser.new_context(viewport={"width": 1280, "height": 800})
        await context.add_init_script(WATCH_TABLE)
        try:
            for round_ in range(WARM_UP + ROUNDS):
                page = await context.new_page()
                await page.goto(f"{url}/console/#token={token}")
                await page.wait_for_function(
                    "performance.getEntriesByName('callbacks-page-rendered').length > 0",
                    timeout=60_000,
                )
                times = await page.evaluate(READ_TIMES)
                await page.close()
                started = time.perf_counter()
                response = await http.get(times["url"], headers=headers)
                took = (time.perf_counter() - started) * 1000
                response.raise_for_status()
                assert len(response.json()["items"]) == PAGE, "the page is not full"
                if round_ >= WARM_UP:
                    rendered.append(times["rendered"])
                    in_browser.append(times["api_in_browser"])
                    direct.append(took)
        finally:
            await browser.close()
    return rendered, direct, in_browser
