"""Who is calling: bearer JWTs, roles and the services (virtual queues) granted to a user.

A token carries ``sub`` (the username), ``roles`` and ``services`` (granted service names, ``*``
for all), fixed when it was issued, as the guide's permissions are fixed at login. Tokens are
verified with the HS256 secret or the RS256 public key from the settings; any other algorithm,
``none`` included, is refused.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import jwt
from callback_shared.settings import AdminApiSettings

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


class InvalidToken(Exception):
    """The bearer token is missing, malformed, badly signed, expired or lacks a claim."""


class TokenVerifier:
    """Verifies bearer tokens with the keys configured in :class:`AdminApiSettings`."""

    def __init__(self, settings: AdminApiSettings) -> None:
        self._keys: dict[str, str] = {}
        if settings.jwt_secret is not None:
            self._keys["HS256"] = settings.jwt_secret.get_secret_value()
        if settings.jwt_public_key is not None:
            self._keys["RS256"] = settings.jwt_public_key
        self._issuer = settings.jwt_issuer
        self._audience = settings.jwt_audience
        self._leeway = settings.jwt_leeway_seconds

    @property
    def configured(self) -> bool:
        return bool(self._keys)

    def verify(self, token: str) -> Principal:
        if not self._keys:
            raise InvalidToken("no token verification key is configured")
        try:
            algorithm = jwt.get_unverified_header(token).get("alg")
            if algorithm not in self._keys:
                raise InvalidToken(f"token algorithm {algorithm!r} is not accepted")
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
        return principal_from_claims(claims)


def principal_from_claims(claims: dict[str, Any]) -> Principal:
    """Roles a token names that this API does not know are ignored."""
    sub, roles, services = claims.get("sub"), claims.get("roles", []), claims.get("services", [])
    if not isinstance(sub, str) or not sub.strip():
        raise InvalidToken("claim 'sub' must be a non-empty string")
    if isinstance(services, str):
        services = [services]
    if not _strings(roles):
        raise InvalidToken("claim 'roles' must be a list of strings")
    if not _strings(services):
        raise InvalidToken("claim 'services' must be a list of strings")
    known = {role.value for role in Role}
    return Principal(
        username=sub,
        roles=frozenset(Role(role) for role in roles if role in known),
        services=frozenset(services),
    )


def _strings(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(item, str) for item in value)
