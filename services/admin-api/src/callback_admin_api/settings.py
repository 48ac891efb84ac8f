"""admin-api's settings (environment variables, like every service's: see
:class:`~callback_shared.settings.PlatformSettings`): token verification, OIDC, request and
live-update limits; the report's retention is
:class:`~callback_shared.settings.CancellationReportSettings`, shared with the exporter."""

from __future__ import annotations

import ipaddress
from typing import Self
from urllib.parse import urlsplit

from callback_shared.settings import CancellationReportSettings
from pydantic import Field, SecretStr, field_validator, model_validator


class AdminApiSettings(CancellationReportSettings):
    # its HTTP_PORT is PlatformSettings's default
    jwt_secret: SecretStr | None = Field(
        None,
        description="HS256 secret verifying admin API tokens (at least 32 bytes). Without it and "
        "without JWT_PUBLIC_KEY every API request is refused (401).",
    )
    jwt_public_key: str | None = Field(
        None, description="PEM public key verifying RS256 admin API tokens."
    )
    jwt_issuer: str | None = Field(None, description="Required `iss` claim, if set.")
    jwt_audience: str | None = Field(None, description="Required `aud` claim, if set.")
    jwt_leeway_seconds: float = Field(
        10, ge=0, le=300, description="Clock skew tolerated on `exp`, `nbf` and `iat`."
    )
    oidc_issuer: str | None = Field(
        None,
        description="OpenID Connect issuer (exactly its `iss`, e.g. "
        "https://sso.example.com/realms/contact-centre). Tokens it issued are verified with the "
        "keys it publishes (discovery, then its JWKS), alongside JWT_SECRET/JWT_PUBLIC_KEY "
        "tokens. https, or http on a loopback address (local testing).",
    )
    oidc_audience: str | None = Field(
        None,
        description="Required `aud` of the issuer's access tokens (required with OIDC_ISSUER): "
        "the identifier the identity provider gives this API.",
    )
    oidc_client_id: str | None = Field(
        None,
        description="The admin console's public client at the issuer (no secret; "
        "Authorization Code with PKCE, redirect URI: the console's own address, ending in "
        "/console/). With it the console signs users in at the issuer; without it, with pasted "
        "tokens.",
    )
    oidc_scope: str = Field(
        "openid", description="Scopes the console asks for (space-separated, with `openid`)."
    )
    oidc_resource: str | None = Field(
        None,
        description="Resource indicator (RFC 8707) the console asks tokens for, for identity "
        "providers that issue a JWT access token per resource; usually OIDC_AUDIENCE. Unset: "
        "none sent (Keycloak sets the audience with a mapper instead).",
    )
    oidc_username_claim: str = Field(
        "sub",
        description="Claim of the issuer's tokens naming the user (recorded as the actor), "
        "e.g. `preferred_username`.",
    )
    oidc_roles_claim: str = Field(
        "roles",
        description="Claim of the issuer's tokens listing the user's roles; a dotted path "
        "reaches a nested claim (Keycloak realm roles: `realm_access.roles`). A claim whose own "
        "name has dots (`https://example.com/roles`) is found by its whole name first.",
    )
    oidc_services_claim: str = Field(
        "services",
        description="Claim of the issuer's tokens listing the services (virtual queues) granted "
        "to the user, `*` for all; a dotted path like OIDC_ROLES_CLAIM.",
    )
    oidc_jwks_cache_seconds: float = Field(
        300,
        gt=0,
        le=86_400,
        description="How long the issuer's published keys (JWKS) are used before they are "
        "fetched again.",
    )
    oidc_jwks_refetch_cooldown_seconds: float = Field(
        30,
        ge=0,
        le=3600,
        description="A token signed with a key id not in the cached JWKS (a rotated key) makes "
        "admin-api fetch the keys again, at most once per this long (unknown key ids cannot "
        "make it flood the issuer).",
    )
    oidc_http_timeout_seconds: float = Field(
        5, gt=0, le=60, description="Timeout of each request to the issuer (discovery, JWKS)."
    )
    admin_max_body_bytes: int = Field(
        1_048_576,
        ge=1024,
        description="Largest request body accepted; a larger one is refused with 413 before it "
        "is parsed.",
    )
    admin_publish_timeout_seconds: float = Field(
        0.5,
        gt=0,
        le=30,
        description="Longest a command waits for Kafka to acknowledge its events before it "
        "answers; the change is stored with them, and the outbox relay delivers what was not "
        "acknowledged.",
    )
    admin_live_heartbeat_seconds: float = Field(
        15,
        gt=0,
        le=300,
        description="Live updates (GET /api/v1/callbacks/events): a comment line is sent after "
        "this long without an event, so proxies keep the connection open.",
    )
    admin_live_queue_size: int = Field(
        1000,
        ge=1,
        description="Live updates: events waiting for one client at most; a client that falls "
        "further behind is sent `reload` and disconnected (the others are not slowed).",
    )
    admin_live_resume_max_events: int = Field(
        10_000,
        ge=0,
        description="Live updates: most events replayed to a client resuming with "
        "Last-Event-ID; a longer gap is answered with `reload` (read the list again).",
    )

    @field_validator("jwt_secret")
    @classmethod
    def _long_enough(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value().encode()) < 32:
            raise ValueError("must be at least 32 bytes (HS256)")
        return value

    @field_validator("jwt_public_key")
    @classmethod
    def _pem(cls, value: str | None) -> str | None:
        if value is not None and "-----BEGIN PUBLIC KEY-----" not in value:
            raise ValueError("must be a PEM public key (-----BEGIN PUBLIC KEY-----)")
        return value

    @field_validator("oidc_issuer")
    @classmethod
    def _issuer_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        url = urlsplit(value.strip())
        if url.scheme not in ("https", "http") or not url.hostname or url.query or url.fragment:
            raise ValueError("must be the issuer's https:// URL (no query, no fragment)")
        if url.scheme == "http" and not _loopback(url.hostname):
            raise ValueError("must use https (http only for an issuer on a loopback address)")
        return value.strip()

    @field_validator("oidc_username_claim", "oidc_roles_claim", "oidc_services_claim")
    @classmethod
    def _claim_name(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must name a claim")
        return value.strip()

    @model_validator(mode="after")
    def _oidc(self) -> Self:
        if self.oidc_issuer is None:
            for name in ("oidc_audience", "oidc_client_id", "oidc_resource"):
                if getattr(self, name) is not None:
                    raise ValueError(f"{name.upper()}: needs OIDC_ISSUER")
            return self
        if not self.oidc_audience:
            raise ValueError("OIDC_AUDIENCE: required with OIDC_ISSUER")
        if "openid" not in self.oidc_scope.split():
            raise ValueError("OIDC_SCOPE: must include openid")
        return self


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
