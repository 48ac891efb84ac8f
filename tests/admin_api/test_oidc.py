"""Tokens of an OpenID Connect issuer, verified with the keys it publishes: a real provider
(node ``oidc-provider``, tests/console/oidc_provider.mjs) as a process, tokens got from it by the
Authorization Code + PKCE flow, admin-api in process on the real Kafka and MongoDB.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

import httpx
import jwt
import pytest
from asgi_lifespan import LifespanManager
from callback_admin_api.auth import (
    InvalidToken,
    IssuerUnavailable,
    Principal,
    Role,
    TokenVerifier,
    claim,
)
from callback_admin_api.main import build
from callback_admin_api.settings import AdminApiSettings
from callback_dev.infra import Infrastructure, free_port
from callback_shared.mongo import make_mongo_client
from callback_shared.runtime import ServiceRuntime
from callback_shared.settings import describe_error
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt import PyJWK
from pydantic import ValidationError

from tests.admin_api.support import SECRET, SUPERVISOR, Tokens, immediate, problem
from tests.console.oidc_provider import AUDIENCE, OidcProvider
from tests.support import isolated_env

#: every test here runs a real OIDC provider (node) or a service process
pytestmark = pytest.mark.process

BASE = {"kafka_bootstrap_servers": "127.0.0.1:9092", "mongodb_url": "mongodb://127.0.0.1:27017"}
REDIRECT = "http://127.0.0.1:9/console/"
USERS = {
    "sam": {"roles": [SUPERVISOR, "offline_access"], "services": ["oidc-fast", "oidc-other"]},
    "mona": {"roles": ["callback_monitor"], "services": ["*"]},
}
DISCOVERY, JWKS = "/.well-known/openid-configuration", "/jwks"
URL = "/api/v1/callbacks"


def oidc_settings(provider: OidcProvider, **extra: Any) -> AdminApiSettings:
    values: dict[str, Any] = {
        **BASE,
        "jwt_secret": SECRET,
        "oidc_issuer": provider.issuer,
        "oidc_audience": AUDIENCE,
        "oidc_client_id": provider.client_id,
        "oidc_roles_claim": "realm_access.roles",
        "oidc_jwks_refetch_cooldown_seconds": 1,
        **extra,
    }
    return AdminApiSettings(**values)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture(scope="module")
def provider(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OidcProvider]:
    started = OidcProvider(tmp_path_factory.mktemp("oidc"), USERS, [REDIRECT])
    started.start()
    yield started
    started.stop()


@pytest.fixture
def own_provider(tmp_path: Path) -> Iterator[OidcProvider]:
    """A provider of this test's own (its keys are rotated)."""
    started = OidcProvider(tmp_path, USERS, [REDIRECT])
    started.start()
    yield started
    started.stop()


@pytest.fixture(scope="module")
async def oidc_client(
    infra: Infrastructure, provider: OidcProvider
) -> AsyncIterator[httpx.AsyncClient]:
    """admin-api configured with the provider as its OIDC issuer and JWT_SECRET alongside."""
    env = {k.lower(): v for k, v in isolated_env(infra).items()}
    settings = oidc_settings(provider, **env)
    runtime = ServiceRuntime("admin-api", settings)
    build(runtime)
    async with LifespanManager(runtime.app, startup_timeout=60, shutdown_timeout=60):
        await asyncio.wait_for(runtime.connected.wait(), 90)
        transport = httpx.ASGITransport(app=runtime.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://admin-api") as client:
            yield client
    mongo = make_mongo_client(settings)
    await mongo.drop_database(settings.mongodb_database)
    await mongo.close()


def test_discovery_and_keys_are_fetched_once_then_cached(provider: OidcProvider) -> None:
    tokens = [provider.sign_in("sam") for _ in range(3)]
    discovered, fetched = provider.requests(DISCOVERY), provider.requests(JWKS)
    verifier = TokenVerifier(oidc_settings(provider))
    kid = jwt.get_unverified_header(tokens[0])["kid"]
    assert verifier.issuer_keys is not None and verifier.issuer_keys.cached(kid) is None
    for token in tokens:
        assert verifier.verify(token).username == "sam"
    assert provider.requests(DISCOVERY) == discovered + 1
    assert provider.requests(JWKS) == fetched + 1
    assert verifier.issuer_keys.cached(kid) is not None


def test_roles_and_services_come_from_the_configured_claims(provider: OidcProvider) -> None:
    token = provider.sign_in("sam")
    assert "roles" not in jwt.decode(token, options={"verify_signature": False})
    principal = TokenVerifier(oidc_settings(provider)).verify(token)
    services = cast(frozenset[str], {"oidc-fast", "oidc-other"})
    assert principal == Principal("sam", frozenset({Role.SUPERVISOR}), services)
    # with the default claim names the nested roles are not found: no role at all
    plain = TokenVerifier(oidc_settings(provider, oidc_roles_claim="roles")).verify(token)
    assert plain.roles == frozenset()


async def test_a_provider_token_is_accepted_as_its_user(
    oidc_client: httpx.AsyncClient, provider: OidcProvider
) -> None:
    token = provider.sign_in("sam")
    created = await oidc_client.post(URL, json=immediate("oidc-fast"), headers=bearer(token))
    assert created.status_code == 201, created.text
    assert created.json()["created_by"] == "sam"
    # a service the token does not grant
    refused = await oidc_client.post(URL, json=immediate("not-granted"), headers=bearer(token))
    problem(refused, 403)
    # a monitor (by realm_access.roles) reads but does not create
    monitor = provider.sign_in("mona")
    assert (await oidc_client.get(URL, headers=bearer(monitor))).status_code == 200
    problem(await oidc_client.post(URL, json=immediate("x"), headers=bearer(monitor)), 403)


async def test_development_tokens_still_work_alongside(oidc_client: httpx.AsyncClient) -> None:
    answer = await oidc_client.get(URL, headers=Tokens().supervisor(sub="dev"))
    assert answer.status_code == 200, answer.text


async def test_wrong_audience_issuer_or_expiry_is_401(
    oidc_client: httpx.AsyncClient, provider: OidcProvider
) -> None:
    now = datetime.now(UTC)
    good = {
        "sub": "sam",
        "realm_access": {"roles": [SUPERVISOR]},
        "iss": provider.issuer,
        "aud": AUDIENCE,
        "iat": now,
        "exp": now + timedelta(minutes=5),
    }
    # the control: signed with the provider's own key, right claims
    assert (await oidc_client.get(URL, headers=bearer(provider.sign(**good)))).status_code == 200
    other_audience = provider.sign_in("sam", resource="urn:callback:another-api")
    assert jwt.decode(other_audience, options={"verify_signature": False})["aud"] != AUDIENCE
    other_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    refused = {
        "audience": other_audience,
        "issuer": provider.sign(**{**good, "iss": "https://sso.example.com/realms/other"}),
        "expired": provider.sign(**{**good, "exp": now - timedelta(minutes=1)}),
        "no audience": provider.sign(**{k: v for k, v in good.items() if k != "aud"}),
        "key": jwt.encode(good, other_key, algorithm="RS256", headers={"kid": provider.kid}),
        "HS256": jwt.encode(good, SECRET, algorithm="HS256", headers={"kid": provider.kid}),
    }
    details = {}
    for name, token in refused.items():
        answer = await oidc_client.get(URL, headers=bearer(token))
        details[name] = problem(answer, 401)["detail"]
    assert "audience" in details["audience"].lower()
    assert "neither from the OIDC issuer" in details["issuer"]
    assert "expired" in details["expired"]
    assert '"aud"' in details["no audience"]
    assert "Signature verification failed" in details["key"]
    assert "alg value is not allowed" in details["HS256"]


def test_keys_are_fetched_again_for_a_rotated_key_at_most_once_per_cooldown(
    own_provider: OidcProvider,
) -> None:
    old = own_provider.sign_in("sam")
    patient = TokenVerifier(oidc_settings(own_provider, oidc_jwks_refetch_cooldown_seconds=3))
    strict = TokenVerifier(oidc_settings(own_provider, oidc_jwks_refetch_cooldown_seconds=3600))
    assert patient.verify(old).username == strict.verify(old).username == "sam"

    own_provider.restart(rotate=True)  # a new signing key, the old one withdrawn
    new = own_provider.sign_in("sam")
    assert jwt.get_unverified_header(new)["kid"] != jwt.get_unverified_header(old)["kid"]
    time.sleep(3.1)  # past the short cooldown, which the first fetch started
    assert patient.verify(new).username == "sam"
    assert own_provider.requests(JWKS) == 1
    with pytest.raises(InvalidToken, match="does not publish"):
        patient.verify(old)  # within the cooldown again: refused without a fetch
    assert own_provider.requests(JWKS) == 1

    with pytest.raises(InvalidToken, match="does not publish"):
        strict.verify(new)  # the same unseen key, but the cooldown has not passed
    assert own_provider.requests(JWKS) == 1


async def test_verifying_in_a_request_never_waits_on_the_issuer_in_the_event_loop(
    provider: OidcProvider,
) -> None:
    verifier = TokenVerifier(oidc_settings(provider))
    token = provider.sign_in("sam")
    in_event_loop: list[bool] = []
    assert verifier.issuer_keys is not None
    keys, key = verifier.issuer_keys, verifier.issuer_keys.key

    def watched(kid: str) -> PyJWK:
        try:
            asyncio.get_running_loop()
            in_event_loop.append(True)
        except RuntimeError:
            in_event_loop.append(False)
        return key(kid)

    keys.key = watched  # type: ignore[method-assign]
    assert (await verifier.verify_async(token)).username == "sam"
    another = provider.sign_in("sam")  # the same token again is not verified again (below)
    assert (await verifier.verify_async(another)).username == "sam"
    # the first verification fetched the keys in a worker thread; the second had them cached
    assert in_event_loop == [False, True]
    assert (await verifier.verify_async(token)).username == "sam"
    assert in_event_loop == [False, True]


def test_a_token_verified_before_is_refused_once_expired(
    own_provider: OidcProvider,
) -> None:
    verifier = TokenVerifier(oidc_settings(own_provider, jwt_leeway_seconds=0))
    now = datetime.now(UTC)
    soon = own_provider.sign(
        sub="sam", iss=own_provider.issuer, aud=AUDIENCE, exp=now + timedelta(seconds=2), iat=now
    )
    assert verifier.verify(soon).username == "sam"
    time.sleep(2.1)
    with pytest.raises(InvalidToken, match="expired"):
        verifier.verify(soon)  # not served from what was verified


def test_a_discovery_document_of_another_issuer_is_not_trusted(provider: OidcProvider) -> None:
    # the same provider reached as "localhost": its discovery document names 127.0.0.1
    localhost = provider.issuer.replace("127.0.0.1", "localhost")
    verifier = TokenVerifier(oidc_settings(provider, oidc_issuer=localhost))
    now = datetime.now(UTC)
    token = provider.sign(
        sub="sam", iss=localhost, aud=AUDIENCE, exp=now + timedelta(minutes=5), iat=now
    )
    fetched = provider.requests(JWKS)
    with pytest.raises(IssuerUnavailable, match="names the issuer"):
        verifier.verify(token)
    assert provider.requests(JWKS) == fetched


async def test_an_unreachable_issuer_is_503_not_a_bad_token() -> None:
    issuer = f"http://127.0.0.1:{free_port()}"
    verifier = TokenVerifier(
        AdminApiSettings(**BASE, oidc_issuer=issuer, oidc_audience=AUDIENCE)  # type: ignore[arg-type]
    )
    now = datetime.now(UTC)
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    token = jwt.encode(
        {"sub": "sam", "iss": issuer, "aud": AUDIENCE, "exp": now + timedelta(minutes=5)},
        key,
        algorithm="RS256",
        headers={"kid": "k1"},
    )
    with pytest.raises(IssuerUnavailable, match="discovery document"):
        await verifier.verify_async(token)


async def test_the_console_learns_the_issuer_and_client_from_its_public_config(
    oidc_client: httpx.AsyncClient, provider: OidcProvider
) -> None:
    config = (await oidc_client.get("/console/config.json")).json()
    assert config == {
        "sign_in": "oidc",
        "api_base": "/api/v1",
        "issuer": provider.issuer,
        "client_id": provider.client_id,
        "scope": "openid",
        "claims": {"username": "sub", "roles": "realm_access.roles", "services": "services"},
    }
    paths = (await oidc_client.get("/openapi.json")).json()["paths"]
    assert not any(path.startswith("/console") for path in paths)


def test_claim_names_are_dotted_paths_or_whole_names() -> None:
    claims = {
        "realm_access": {"roles": ["a"]},
        "https://example.com/roles": ["b"],
        "services": "billing",
    }
    assert claim(claims, "realm_access.roles") == ["a"]
    assert claim(claims, "https://example.com/roles") == ["b"]
    assert claim(claims, "realm_access.groups") is None
    assert claim(claims, "services.name") is None


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"oidc_issuer": "https://sso.example.com/realms/cc"}, "OIDC_AUDIENCE: required"),
        ({"oidc_issuer": "http://sso.example.com", "oidc_audience": "a"}, "OIDC_ISSUER: must use"),
        ({"oidc_client_id": "console"}, "OIDC_CLIENT_ID: needs OIDC_ISSUER"),
        (
            {"oidc_issuer": "https://sso.example.com", "oidc_audience": "a", "oidc_scope": "x"},
            "OIDC_SCOPE: must include openid",
        ),
        ({"oidc_roles_claim": " "}, "OIDC_ROLES_CLAIM: must name a claim"),
    ],
)
def test_incomplete_oidc_settings_stop_the_service_naming_the_setting(
    values: dict[str, str], message: str
) -> None:
    with pytest.raises(ValidationError) as raised:
        AdminApiSettings(**BASE, **values)  # type: ignore[arg-type]
    assert message in describe_error(raised.value)
