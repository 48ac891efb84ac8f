"""Bearer tokens: who may call at all (401), and the development token CLI."""

import base64
import hashlib
import hmac
import json
import os
import subprocess
from datetime import timedelta
from typing import Any

import httpx
import jwt
import pytest
from callback_admin_api.auth import InvalidToken, Role, TokenVerifier
from callback_admin_api.settings import AdminApiSettings
from callback_admin_api.tokens import mint_token
from callback_shared.settings import describe_error
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from pydantic import ValidationError

from tests.admin_api.support import SECRET, Tokens, problem
from tests.support import BIN

URL = "/api/v1/callbacks"
BASE: dict[str, Any] = {
    "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:9092",
    "MONGODB_URL": "mongodb://127.0.0.1:27017",
}


def _part(data: bytes | dict[str, Any]) -> str:
    raw = data if isinstance(data, bytes) else json.dumps(data).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _unsigned(claims: dict[str, Any]) -> str:
    return f"{_part({'alg': 'none', 'typ': 'JWT'})}.{_part(claims)}."


def _hs256_signed_with(key: bytes, claims: dict[str, Any]) -> str:
    signing_input = f"{_part({'alg': 'HS256', 'typ': 'JWT'})}.{_part(claims)}"
    signature = hmac.new(key, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{_part(signature)}"


def _claims(**extra: Any) -> dict[str, Any]:
    token = mint_token(SECRET, "eve", [Role.ADMINISTRATOR])
    return {**jwt.decode(token, options={"verify_signature": False}), **extra}


BAD_TOKENS = {
    "garbage": "not.a.jwt",
    "wrong secret": mint_token(
        "another-secret-that-is-long-enough-for-hs256", "eve", ["callback_administrator"]
    ),
    "expired": mint_token(SECRET, "eve", ["callback_administrator"], ttl=timedelta(minutes=-5)),
    "alg none": _unsigned(_claims()),
    "HS512": jwt.encode(_claims(), SECRET, algorithm="HS512"),
    "no sub": jwt.encode({k: v for k, v in _claims().items() if k != "sub"}, SECRET),
    "no exp": jwt.encode({k: v for k, v in _claims().items() if k != "exp"}, SECRET),
    "roles not a list": jwt.encode(_claims(roles="callback_administrator"), SECRET),
}


@pytest.mark.parametrize("name", sorted(BAD_TOKENS))
async def test_bad_tokens_are_401(client: httpx.AsyncClient, name: str) -> None:
    response = await client.get(URL, headers={"Authorization": f"Bearer {BAD_TOKENS[name]}"})
    body = problem(response, 401)
    assert response.headers["www-authenticate"].startswith("Bearer")
    if name == "expired":
        assert "expired" in body["detail"]


@pytest.mark.parametrize("header", [None, "Basic YWxpY2U6c2VjcmV0", "Bearer"])
async def test_a_missing_bearer_token_is_401(client: httpx.AsyncClient, header: str | None) -> None:
    headers = {} if header is None else {"Authorization": header}
    problem(await client.get(URL, headers=headers), 401)
    problem(await client.post(URL, json={}, headers=headers), 401)


async def test_a_token_without_a_known_role_is_403(
    client: httpx.AsyncClient, tokens: Tokens
) -> None:
    problem(await client.get(URL, headers=tokens.header("callback_janitor")), 403)


def _rsa_keys() -> tuple[str, str]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    public = (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    return private, public


def test_rs256_tokens_verify_with_the_public_key_and_confusion_is_refused() -> None:
    private, public = _rsa_keys()
    verifier = TokenVerifier(
        AdminApiSettings(**{k.lower(): v for k, v in BASE.items()}, jwt_public_key=public)
    )
    token = mint_token(private, "rsa-user", ["callback_monitor"], ["billing"], algorithm="RS256")
    principal = verifier.verify(token)
    assert principal.username == "rsa-user"
    assert principal.roles == {Role.MONITOR} and principal.services == {"billing"}
    with pytest.raises(InvalidToken, match="HS256"):
        # the public key used as an HMAC secret: the classic algorithm confusion
        verifier.verify(_hs256_signed_with(public.encode(), _claims()))


def test_without_a_key_every_token_is_refused() -> None:
    verifier = TokenVerifier(AdminApiSettings(**{k.lower(): v for k, v in BASE.items()}))
    assert not verifier.configured
    with pytest.raises(InvalidToken, match="no token verification key"):
        verifier.verify(mint_token(SECRET, "eve", ["callback_monitor"]))


@pytest.mark.parametrize(
    ("setting", "value"),
    [("jwt_secret", "short"), ("jwt_public_key", "not a key")],
)
def test_weak_or_malformed_keys_stop_the_service_naming_the_setting(
    setting: str, value: str
) -> None:
    values: dict[str, Any] = {setting: value}
    with pytest.raises(ValidationError) as raised:
        AdminApiSettings(**{k.lower(): v for k, v in BASE.items()}, **values)
    assert describe_error(raised.value).startswith(f"invalid configuration: {setting.upper()}:")


@pytest.mark.process
def test_the_cli_mints_a_token_the_api_accepts() -> None:
    env = {**os.environ, "JWT_SECRET": SECRET}
    run = subprocess.run(
        [
            str(BIN / "callback-admin-token"),
            "--sub",
            "dev",
            "--role",
            "callback_supervisor",
            "--service",
            "billing",
            "--service",
            "sales",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    verifier = TokenVerifier(
        AdminApiSettings(**{k.lower(): v for k, v in BASE.items()}, jwt_secret=SECRET)
    )
    principal = verifier.verify(run.stdout.strip())
    assert principal.username == "dev"
    assert principal.roles == {Role.SUPERVISOR}
    assert principal.services == {"billing", "sales"}


@pytest.mark.process
def test_the_cli_needs_a_key() -> None:
    env = {k: v for k, v in os.environ.items() if k != "JWT_SECRET"}
    run = subprocess.run(
        [str(BIN / "callback-admin-token"), "--sub", "dev", "--role", "callback_monitor"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 2 and "JWT_SECRET" in run.stderr
