"""Production sign-in in a real browser: the console signs a supervisor in at a real OpenID
Connect provider (node ``oidc-provider``, Authorization Code + PKCE), admin-api verifies the
provider's tokens by its published keys, and the signed-in user works on the real system.

``CONSOLE_SCREENSHOTS=1`` also writes the provider's sign-in page and the signed-in console to
``docs/console/*.png``.
"""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import jwt
import pytest
from callback_dev.infra import free_port
from callback_shared.mongo import SERVICES, Document
from playwright.async_api import Page, async_playwright, expect
from pymongo.asynchronous.database import AsyncDatabase

from tests.admin_api.support import SUPERVISOR
from tests.console.oidc_provider import AUDIENCE, CLIENT_ID, OidcProvider
from tests.console.support import (
    CHROMIUM,
    FLAGS,
    SETTINGS,
    WAIT,
    create_immediate,
    row,
    shot,
    start_platform,
)
from tests.support import ServiceProcess

pytestmark = pytest.mark.e2e

SIGNED_IN_NUMBER, DRAFT_NUMBER = "+14155550111", "+14155550112"
LAPSE_SECONDS = 15
USERS: dict[str, dict[str, Any]] = {
    "sofia": {"roles": [SUPERVISOR], "services": ["fast"]},
    # tokens that lapse while she types: signing in again goes back to the provider
    "lara": {"roles": [SUPERVISOR], "services": ["fast"], "access_token_ttl": LAPSE_SECONDS},
}


def start_platform_with_issuer(
    env: dict[str, str], tmp_path: Path, issuer: str
) -> dict[str, ServiceProcess]:
    """The platform, admin-api with the OIDC issuer (and the development secret alongside)."""
    return start_platform(
        env,
        tmp_path,
        OIDC_ISSUER=issuer,
        OIDC_AUDIENCE=AUDIENCE,
        OIDC_CLIENT_ID=CLIENT_ID,
        OIDC_RESOURCE=AUDIENCE,
        OIDC_SCOPE="openid profile",
        OIDC_ROLES_CLAIM="realm_access.roles",
    )


async def sign_in_at_the_provider(
    page: Page, url: str, provider: OidcProvider, user: str, screenshot: str = ""
) -> None:
    """From the console's sign-in page through the provider's login form and back, checking
    the authorization request (PKCE S256, state, nonce) and the code exchange (public client)."""
    await page.goto(f"{url}/console/")
    await expect(
        page.get_by_role("heading", name="Sign in to the Callback console")
    ).to_be_visible()
    await expect(page.get_by_text("Development sign-in with a token")).to_be_visible()
    await expect(page.get_by_label("Token")).to_be_hidden()  # folded away beside OIDC
    if screenshot:
        await shot(page, "oidc-console-sign-in")
    authorization = f"{provider.issuer}/auth?"
    async with page.expect_request(lambda r: r.url.startswith(authorization)) as sent:
        await page.get_by_role("button", name="Sign in", exact=True).click()
    query = parse_qs(urlsplit((await sent.value).url).query)
    assert query["response_type"] == ["code"] and query["client_id"] == [CLIENT_ID]
    assert query["code_challenge_method"] == ["S256"] and len(query["code_challenge"][0]) == 43
    assert query["state"][0] and query["nonce"][0] and query["resource"] == [AUDIENCE]
    assert query["redirect_uri"] == [f"{url}/console/"]
    login = page.locator("input[name=login]")
    await expect(login).to_be_visible()
    await login.fill(user)
    await page.locator("input[name=password]").fill("any password")
    if screenshot:
        await shot(page, screenshot)
    token_endpoint = f"{provider.issuer}/token"
    async with page.expect_request(lambda r: r.url == token_endpoint) as exchanged:
        await page.get_by_role("button", name="Sign-in").click()
    exchange = parse_qs((await exchanged.value).post_data or "")
    assert exchange["grant_type"] == ["authorization_code"] and exchange["code_verifier"]
    assert "client_secret" not in exchange
    await expect(page.get_by_role("tab", name="Callback")).to_be_visible(timeout=WAIT)


async def assert_clean_address(page: Page, url: str) -> None:
    assert page.url.startswith(f"{url}/console/")
    for leftover in ("code=", "state=", "iss=", "token="):
        assert leftover not in page.url, f"{leftover} stays in the address: {page.url}"
    pending = await page.evaluate("sessionStorage.getItem('callback-console.oidc-pending')")
    assert pending is None, "the PKCE verifier, state and nonce are dropped once used"


@pytest.mark.timeout(300)
@pytest.mark.usefixtures("browser_and_build")
async def test_a_supervisor_signs_in_at_the_identity_provider(
    env: dict[str, str], db: AsyncDatabase[Document], bootstrapped: None, tmp_path: Path
) -> None:
    await db[SERVICES].insert_one({"_id": "fast", **SETTINGS})
    provider_port = free_port()
    processes = start_platform_with_issuer(env, tmp_path, f"http://127.0.0.1:{provider_port}")
    url = processes["admin-api"].url
    provider = OidcProvider(tmp_path, USERS, [f"{url}/console/"], port=provider_port)
    provider.start()
    try:
        for process in processes.values():
            await asyncio.to_thread(process.wait_ready)
        async with async_playwright() as pw:
            browser = await pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=FLAGS)
            try:
                context = await browser.new_context(viewport={"width": 1280, "height": 800})
                await signed_in_supervisor(await context.new_page(), url, provider)
                await context.close()

                context = await browser.new_context(viewport={"width": 1280, "height": 800})
                await lapsed_sign_in_keeps_the_draft(await context.new_page(), url, provider)
                await context.close()
            finally:
                await browser.close()
    finally:
        provider.stop()
        for process in processes.values():
            process.terminate()


async def signed_in_supervisor(page: Page, url: str, provider: OidcProvider) -> None:
    await sign_in_at_the_provider(page, url, provider, "sofia", screenshot="oidc-provider-sign-in")
    await expect(page.get_by_test_id("user")).to_have_text("sofia · supervisor")
    await assert_clean_address(page, url)
    token = await page.evaluate("sessionStorage.getItem('callback-console.token')")
    claims = jwt.decode(token, options={"verify_signature": False})
    assert claims["iss"] == provider.issuer and claims["aud"] == AUDIENCE
    assert claims["realm_access"]["roles"] == [SUPERVISOR] and claims["services"] == ["fast"]

    # an immediate callback, created with the provider's token, followed to COMPLETED (AGENT)
    await create_immediate(page, "fast", SIGNED_IN_NUMBER)
    done = row(page, SIGNED_IN_NUMBER)
    await expect(done).to_contain_text("COMPLETED", timeout=WAIT)
    await expect(done).to_contain_text("(AGENT)")
    await shot(page, "oidc-signed-in")
    await done.get_by_role("button", name=re.compile("^Details")).click()
    await page.get_by_label("Advanced Callback Metrics").check()
    await expect(page.get_by_role("table", name="Timeline")).to_contain_text("sofia")
    # admin-api fetched the provider's keys once for all these requests
    assert provider.requests("/jwks") == 1


async def lapsed_sign_in_keeps_the_draft(page: Page, url: str, provider: OidcProvider) -> None:
    """The provider's token lapses while a dialog is open: the console asks to sign in again,
    the provider (still signed in) sends the browser straight back, and the draft is there."""
    await sign_in_at_the_provider(page, url, provider, "lara")
    await page.get_by_role("button", name="+ Create Callback").click()
    dialog = page.get_by_role("dialog", name="Create Callback")
    await dialog.get_by_label("Service").fill("fast")
    await dialog.get_by_label("Customer number").fill(DRAFT_NUMBER)
    heading = page.get_by_role("heading", name="Sign in to the Callback console")
    await expect(heading).to_be_visible(timeout=(LAPSE_SECONDS + 75) * 1000)
    await expect(page.get_by_role("alert")).to_contain_text("what you were typing is kept")
    await page.get_by_role("button", name="Sign in", exact=True).click()
    dialog = page.get_by_role("dialog", name="Create Callback")
    await expect(dialog.get_by_label("Customer number")).to_have_value(DRAFT_NUMBER, timeout=WAIT)
    await expect(dialog.get_by_label("Service")).to_have_value("fast")
    await assert_clean_address(page, url)
