"""Who is calling: bearer JWTs, roles and the services (virtual queues) granted to a user.

A token carries ``sub`` (the username), ``roles`` and ``services`` (granted service names, ``*``
for all), fixed when it was issued, as the guide's permissions are fixed at login. Tokens are
verified with the HS256 secret or the RS256 public key from the settings; any other algorithm,
``none`` included, is refused.

Access checks live here too: a service acted on must be granted (:func:`require_service`), and
a callback outside the caller's services is answered as missing (:func:`load_callback`).

Tokens whose ``iss`` is the configured OpenID Connect issuer (``OIDC_ISSUER``) are verified with
the keys that issuer publishes instead (:class:`IssuerKeys`), and their user, roles and services
are read from the claims the settings name (dotted paths reach nested claims).
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any
from urllib.error import URLError
from uuid import UUID

import jwt
from callback_shared.mongo import Document
from callback_shared.record import F
from jwt import PyJWK, PyJWKClient, PyJWKClientConnectionError, PyJWKClientError, PyJWKSetError

from callback_admin_api.problems import Forbidden, NotFound
from callback_admin_api.repository import Repository
from callback_admin_api.settings import AdminApiSettings

ALL_SERVICES = "*"


class Role(StrEnum):
    MONITOR = "callback_monitor"
    SUPERVISOR = "callback_supervisor"
    ADMINISTRATOR = "callback_administrator"


class Permission(StrEnum):
    """What a role allows."""

    READ = "read"  # list, search, metrics, availability, services
    OPERATE = "operate"  # create, schedule, reschedule, cancel, recreate (bulk cancel, export)
    CONFIGURE = "configure"  # edit service settings
    EXPORT = "export"  # the Cancellation Summary Report


ROLE_PERMISSIONS: dict[Role, frozenset[Permission]] = {
    Role.MONITOR: frozenset({Permission.READ}),
    Role.SUPERVISOR: frozenset({Permission.READ, Permission.OPERATE, Permission.EXPORT}),
    Role.ADMINISTRATOR: frozenset(
        {Permission.READ, Permission.OPERATE, Permission.CONFIGURE, Permission.EXPORT}
    ),
}


@dataclass(frozen=True)
class Principal:
    username: str
    roles: frozenset[Role]
    services: frozenset[str]

    def can(self, permission: Permission) -> bool:
        return any(permission in ROLE_PERMISSIONS[role] for role in self.roles)

    @property
    def all_services(self) -> bool:
        return ALL_SERVICES in self.services

    def grants(self, service_name: str) -> bool:
        return self.all_services or service_name in self.services


def require_service(principal: Principal, service_name: str) -> None:
    """The caller acts on ``service_name`` only if it is granted to them (403)."""
    if not principal.grants(service_name):
        raise Forbidden(f"service {service_name!r} is not granted to you")


async def load_callback(
    repository: Repository, principal: Principal, callback_id: UUID
) -> Document:
    """The callback, if it exists in a service granted to the caller: otherwise the same 404,
    so nobody learns whether a record exists in a service they do not see."""
    doc = await repository.get(callback_id)
    if doc is None or not principal.grants(doc[F.SERVICE_NAME]):
        raise NotFound("no such callback among your services")
    return doc


class InvalidToken(Exception):
    """The bearer token is missing, malformed, badly signed, expired or lacks a claim."""


class IssuerUnavailable(Exception):
    """The OIDC issuer's discovery document or keys cannot be had: an outage or a configuration
    error on the server's side, not a fault of the token."""


#: what an OIDC issuer may sign tokens with: public-key algorithms only (never HMAC, never none)
ISSUER_ALGORITHMS = (
    "RS256",
    "RS384",
    "RS512",
    "PS256",
    "PS384",
    "PS512",
    "ES256",
    "ES384",
    "ES512",
    "EdDSA",
)
DISCOVERY_PATH = "/.well-known/openid-configuration"
USER_AGENT = "callback-admin-api"


@dataclass(frozen=True)
class ClaimNames:
    """Which claims carry the user, the roles and the granted services (dotted paths allowed)."""

    username: str = "sub"
    roles: str = "roles"
    services: str = "services"


class IssuerKeys:
    """An OpenID Connect issuer's signing keys.

    Its discovery document (``<issuer>/.well-known/openid-configuration``, whose ``issuer`` must
    be this issuer) names the JWKS; PyJWT's :class:`PyJWKClient` caches it ``cache_seconds`` and,
    for a key id it does not hold (a rotated key), fetches it again at most once per
    ``cooldown_seconds``. A failed discovery is retried no more often either. Fetches block: call
    :meth:`key` off the event loop unless :meth:`cached` has the key.
    """

    def __init__(
        self,
        issuer: str,
        *,
        cache_seconds: float,
        cooldown_seconds: float,
        timeout_seconds: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.issuer = issuer
        self._cache_seconds = cache_seconds
        self._cooldown_seconds = cooldown_seconds
        self._timeout = timeout_seconds
        self._clock = clock
        self._client: PyJWKClient | None = None
        self._discovery_error: tuple[float, str] | None = None
        self._lock = threading.Lock()

    def cached(self, kid: str) -> PyJWK | None:
        """The signing key ``kid`` if the cached, unexpired JWKS has it (no I/O)."""
        client = self._client
        jwk_set = client.jwk_set_cache.get() if client and client.jwk_set_cache else None
        if jwk_set is None:
            return None
        return next((key for key in _signing_keys(jwk_set.keys) if key.key_id == kid), None)

    def key(self, kid: str) -> PyJWK:
        """The signing key ``kid``, fetching the JWKS when the cache lapsed or lacks it."""
        client = self._jwks_client()
        try:
            return client.get_signing_key(kid)
        except PyJWKClientConnectionError as exc:
            raise IssuerUnavailable(f"the issuer's keys cannot be fetched: {exc}") from None
        except (PyJWKClientError, PyJWKSetError) as exc:
            if client.jwk_set_cache is not None and client.jwk_set_cache.get() is not None:
                raise InvalidToken(
                    f"token signed with a key the issuer does not publish (kid {kid!r})"
                ) from None
            raise IssuerUnavailable(f"the issuer's JWKS is not usable: {exc}") from None

    def _jwks_client(self) -> PyJWKClient:
        with self._lock:
            if self._client is not None:
                return self._client
            now = self._clock()
            if self._discovery_error and now - self._discovery_error[0] < self._cooldown_seconds:
                raise IssuerUnavailable(self._discovery_error[1])
            try:
                jwks_uri = self._discover()
            except IssuerUnavailable as exc:
                self._discovery_error = (now, str(exc))
                raise
            self._client = PyJWKClient(
                jwks_uri,
                cache_jwk_set=True,
                lifespan=self._cache_seconds,
                cooldown_duration=self._cooldown_seconds,
                timeout=self._timeout,
                headers={"User-Agent": USER_AGENT},
            )
            return self._client

    def _discover(self) -> str:
        url = self.issuer.rstrip("/") + DISCOVERY_PATH
        # the issuer's scheme is https (or http on a loopback address): settings check it
        request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT})  # noqa: S310
        try:
            with urllib.request.urlopen(request, timeout=self._timeout) as response:  # noqa: S310
                document = json.load(response)
        except (URLError, TimeoutError, OSError, ValueError) as exc:
            raise IssuerUnavailable(f"the issuer's discovery document {url}: {exc}") from None
        if not isinstance(document, dict) or document.get("issuer") != self.issuer:
            found = document.get("issuer") if isinstance(document, dict) else None
            raise IssuerUnavailable(
                f"the discovery document at {url} names the issuer {found!r}, not OIDC_ISSUER"
            )
        jwks_uri = document.get("jwks_uri")
        if not isinstance(jwks_uri, str) or not jwks_uri.startswith(("https://", "http://")):
            raise IssuerUnavailable(f"the discovery document at {url} has no usable jwks_uri")
        return jwks_uri


def _signing_keys(keys: list[PyJWK]) -> list[PyJWK]:
    return [key for key in keys if key.public_key_use in ("sig", None) and key.key_id]


#: Tokens verified lately, kept (a client sends the same token with each request) while they
#: are unexpired, for at most ``VERIFIED_FOR_SECONDS``, and, for the issuer's tokens, while the
#: issuer still publishes the key that signed them.
VERIFIED_TOKENS_KEPT = 1024
VERIFIED_FOR_SECONDS = 300.0


@dataclass(frozen=True)
class _Verified:
    principal: Principal
    until: float  # time.time()
    kid: str | None  # the issuer's signing key, for its tokens


class TokenVerifier:
    """Verifies bearer tokens with the keys configured in :class:`AdminApiSettings`: the HS256
    secret, the RS256 public key, and the OIDC issuer's published keys for tokens it issued."""

    def __init__(self, settings: AdminApiSettings) -> None:
        self._verified: dict[str, _Verified] = {}
        self._verified_lock = threading.Lock()
        self._keys: dict[str, str] = {}
        if settings.jwt_secret is not None:
            self._keys["HS256"] = settings.jwt_secret.get_secret_value()
        if settings.jwt_public_key is not None:
            self._keys["RS256"] = settings.jwt_public_key
        self._issuer = settings.jwt_issuer
        self._audience = settings.jwt_audience
        self._leeway = settings.jwt_leeway_seconds
        self.issuer_keys: IssuerKeys | None = None
        if settings.oidc_issuer is not None:
            self.issuer_keys = IssuerKeys(
                settings.oidc_issuer,
                cache_seconds=settings.oidc_jwks_cache_seconds,
                cooldown_seconds=settings.oidc_jwks_refetch_cooldown_seconds,
                timeout_seconds=settings.oidc_http_timeout_seconds,
            )
        self._oidc_audience = settings.oidc_audience
        self._oidc_claims = ClaimNames(
            username=settings.oidc_username_claim,
            roles=settings.oidc_roles_claim,
            services=settings.oidc_services_claim,
        )

    @property
    def configured(self) -> bool:
        return bool(self._keys) or self.issuer_keys is not None

    def verify(self, token: str) -> Principal:
        """The caller a token names; may fetch the issuer's keys (blocking): in a request, use
        :meth:`verify_async`."""
        known = self._known(token)
        if known is not None:
            return known
        header, issuer = _unverified(token)
        if self.issuer_keys is not None and issuer == self.issuer_keys.issuer:
            kid = _kid(header)
            claims = self._verify_issued(token, self.issuer_keys.key(kid))
            return self._remember(token, claims, kid, self._oidc_claims)
        algorithm = header.get("alg")
        if algorithm not in self._keys:
            if self.issuer_keys is not None:
                raise InvalidToken(
                    f"token neither from the OIDC issuer (its iss: {issuer!r}) nor signed with "
                    f"a configured key (its alg: {algorithm!r})"
                )
            if not self._keys:
                raise InvalidToken("no token verification key is configured")
            raise InvalidToken(f"token algorithm {algorithm!r} is not accepted")
        try:
            claims = jwt.decode(
                token,
                self._keys[algorithm],
                algorithms=[algorithm],
                options={"require": ["exp", "sub"]},
                issuer=self._issuer,
                audience=self._audience,
                leeway=self._leeway,
            )
        except jwt.ExpiredSignatureError:
            raise InvalidToken("token expired") from None
        except jwt.PyJWTError as exc:
            raise InvalidToken(f"invalid token: {exc}") from None
        return self._remember(token, claims, None, ClaimNames())

    def _known(self, token: str) -> Principal | None:
        """The principal of a token verified lately, if it still holds."""
        verified = self._verified.get(token)
        if verified is None or time.time() >= verified.until:
            return None
        if verified.kid is not None and (
            self.issuer_keys is None or self.issuer_keys.cached(verified.kid) is None
        ):
            return None  # the key may be withdrawn: verify again
        return verified.principal

    def _remember(
        self, token: str, claims: dict[str, Any], kid: str | None, names: ClaimNames
    ) -> Principal:
        principal = principal_from_claims(claims, names)
        until = min(float(claims["exp"]) + self._leeway, time.time() + VERIFIED_FOR_SECONDS)
        with self._verified_lock:
            while len(self._verified) >= VERIFIED_TOKENS_KEPT:
                self._verified.pop(next(iter(self._verified)))
            self._verified[token] = _Verified(principal, until, kid)
        return principal

    async def verify_async(self, token: str) -> Principal:
        """:meth:`verify`, with any fetch of the issuer's keys done in a worker thread."""
        known = self._known(token)
        if known is not None:
            return known
        keys = self.issuer_keys
        if keys is not None:
            header, issuer = _unverified(token)
            if issuer == keys.issuer and keys.cached(_kid(header)) is None:
                return await asyncio.to_thread(self.verify, token)
        return self.verify(token)

    def _verify_issued(self, token: str, key: PyJWK) -> dict[str, Any]:
        assert self.issuer_keys is not None
        try:
            claims = jwt.decode(
                token,
                key,
                algorithms=list(ISSUER_ALGORITHMS),
                options={"require": ["exp", "iss", "aud"]},
                issuer=self.issuer_keys.issuer,
                audience=self._oidc_audience,
                leeway=self._leeway,
            )
        except jwt.ExpiredSignatureError:
            raise InvalidToken("token expired") from None
        except jwt.PyJWTError as exc:
            raise InvalidToken(f"invalid token: {exc}") from None
        return claims


def _unverified(token: str) -> tuple[dict[str, Any], Any]:
    """The header and the ``iss`` of a token not yet verified (to pick the key that will)."""
    try:
        header = jwt.get_unverified_header(token)
        claims = jwt.decode(token, options={"verify_signature": False})
    except jwt.PyJWTError as exc:
        raise InvalidToken(f"invalid token: {exc}") from None
    return header, claims.get("iss")


def _kid(header: dict[str, Any]) -> str:
    kid = header.get("kid")
    if not isinstance(kid, str) or not kid:
        raise InvalidToken("token names no signing key (kid)")
    return kid


def claim(claims: dict[str, Any], name: str) -> Any:
    """The claim ``name``: a claim of that whole name, else the dotted path into nested claims
    (``realm_access.roles``); ``None`` when there is none."""
    if name in claims:
        return claims[name]
    value: Any = claims
    for part in name.split("."):
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    return value


def principal_from_claims(claims: dict[str, Any], names: ClaimNames = ClaimNames()) -> Principal:
    """Roles a token names that this API does not know are ignored."""
    sub = claim(claims, names.username)
    roles, services = claim(claims, names.roles), claim(claims, names.services)
    if not isinstance(sub, str) or not sub.strip():
        raise InvalidToken(f"claim {names.username!r} must be a non-empty string")
    roles = [] if roles is None else roles
    services = [] if services is None else [services] if isinstance(services, str) else services
    if not _strings(roles):
        raise InvalidToken(f"claim {names.roles!r} must be a list of strings")
    if not _strings(services):
        raise InvalidToken(f"claim {names.services!r} must be a list of strings")
    known = {role.value for role in Role}
    return Principal(
        username=sub,
        roles=frozenset(Role(role) for role in roles if role in known),
        services=frozenset(services),
    )


def _strings(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(item, str) for item in value)
