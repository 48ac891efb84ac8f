"""Every setting of every service, read from the environment (pydantic-settings).

One class per service, all sharing :class:`PlatformSettings`. Environment variable names are
the field names in upper case (``KAFKA_BOOTSTRAP_SERVERS``, ``MONGODB_URL``, ...).
"""

from __future__ import annotations

import ipaddress
import ssl
import sys
from datetime import timedelta
from pathlib import Path
from typing import Literal, NoReturn, Self, TypeVar
from urllib.parse import urlsplit

from pydantic import Field, FilePath, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict
from pymongo.errors import ConfigurationError, InvalidURI
from pymongo.uri_parser import parse_uri

from callback_shared.models import RETENTION

CONFIG_ERROR_EXIT_CODE = 2


class PlatformSettings(BaseSettings):
    """Settings every service shares: connections, topic names, HTTP and logging."""

    model_config = SettingsConfigDict(extra="ignore", frozen=True)

    kafka_bootstrap_servers: str = Field(
        description="Comma-separated Kafka bootstrap servers, host:port each."
    )
    mongodb_url: str = Field(description="MongoDB connection string (mongodb://...).")
    mongodb_database: str = Field("callbacks", description="Database holding every collection.")
    mongodb_write_concern: str = Field(
        "majority",
        description="Write concern `w` of every write: `majority`, or how many data-bearing "
        "nodes (1 to 50) must have a write before it counts as done. Requests are answered, and "
        "Kafka offsets committed, only after that. Takes precedence over `w` in MONGODB_URL.",
    )
    mongodb_journal: bool = Field(
        True,
        description="Write concern `j`: a write counts as done only once it is in the on-disk "
        "journal, so it survives a crash of the server right after the answer. With false, an "
        "acknowledged write can be lost to a crash. Takes precedence over `journal` in "
        "MONGODB_URL.",
    )
    mongodb_write_timeout_ms: int = Field(
        10_000,
        ge=0,
        description="Write concern `wtimeout`: how long the server may wait for the nodes "
        "MONGODB_WRITE_CONCERN asks for before it reports a write concern error (the write is "
        "not undone; the request fails). 0: wait without limit.",
    )
    mongodb_read_concern: Literal["local", "majority"] = Field(
        "majority",
        description="Read concern of every read: `majority` reads only what a majority of "
        "nodes has, so a decision (duplicate check, state change, cancel) never rests on a "
        "write a failover can roll back; `local` reads the node's latest data. Takes "
        "precedence over `readConcernLevel` in MONGODB_URL.",
    )

    mongodb_tls_ca_file: FilePath | None = Field(
        None,
        description="PEM file of the CA(s) that signed the MongoDB servers' certificates; "
        "turns TLS on. Credentials (user, password, `authSource`) stay in MONGODB_URL, which a "
        "deployment takes from a Secret.",
    )
    mongodb_tls_certificate_key_file: FilePath | None = Field(
        None,
        description="PEM file holding this client's certificate and private key, for MongoDB "
        "servers that ask for one (X.509); turns TLS on.",
    )

    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_SSL", "SASL_PLAINTEXT"] = Field(
        "PLAINTEXT",
        description="How every Kafka producer, consumer and admin client connects: `PLAINTEXT`, "
        "`SSL` (TLS), `SASL_SSL` (TLS and a user name and password) or `SASL_PLAINTEXT` (SCRAM "
        "without TLS; never PLAIN, which would send the password in the clear). A wrong "
        "password or a broker certificate the CA does not vouch for stops the service at start "
        "with one line (exit code 2); an unreachable broker is retried.",
    )
    kafka_sasl_mechanism: Literal["SCRAM-SHA-512", "SCRAM-SHA-256", "PLAIN"] = Field(
        "SCRAM-SHA-512", description="SASL mechanism with `SASL_SSL`/`SASL_PLAINTEXT`."
    )
    kafka_sasl_username: str | None = Field(
        None, description="SASL user name; required with `SASL_SSL`/`SASL_PLAINTEXT`."
    )
    kafka_sasl_password: SecretStr | None = Field(
        None,
        description="SASL password (or KAFKA_SASL_PASSWORD_FILE); never logged.",
    )
    kafka_sasl_password_file: FilePath | None = Field(
        None,
        description="File holding the SASL password (a mounted Kubernetes Secret), read once at "
        "start; a trailing newline is dropped. Takes precedence over KAFKA_SASL_PASSWORD.",
    )
    kafka_ssl_cafile: FilePath | None = Field(
        None,
        description="PEM file of the CA(s) that signed the brokers' certificates (an own CA); "
        "without it the system's trusted CAs are used. The broker's host name is always checked.",
    )
    kafka_ssl_certfile: FilePath | None = Field(
        None,
        description="PEM client certificate (chain) for brokers that ask for one (mutual TLS); "
        "may also hold the private key.",
    )
    kafka_ssl_keyfile: FilePath | None = Field(
        None, description="PEM private key of KAFKA_SSL_CERTFILE, if not in that file."
    )
    kafka_ssl_key_password: SecretStr | None = Field(
        None,
        description="Password of an encrypted client private key (or KAFKA_SSL_KEY_PASSWORD_FILE);"
        " never logged.",
    )
    kafka_ssl_key_password_file: FilePath | None = Field(
        None,
        description="File holding KAFKA_SSL_KEY_PASSWORD (a mounted Secret), read once at start; "
        "takes precedence over the variable.",
    )

    topic_due_callbacks: str = Field("callbacks.due", description="Due callbacks (scheduler).")
    topic_routing_events: str = Field(
        "callbacks.routing-events", description="Routing state events (ORS/URS, routing-sim)."
    )
    topic_lifecycle_events: str = Field(
        "callbacks.lifecycle", description="Lifecycle events: state changes, cancellations."
    )
    topic_dead_letter: str = Field(
        "callbacks.dead-letter", description="Malformed or unknown events, with the reason."
    )
    topic_routing_commands: str = Field(
        "callbacks.routing-commands",
        description="Commands to routing (ORS/URS, routing-sim): cancel a callback, withdraw a "
        "lost attempt.",
    )
    topic_partitions: int = Field(6, ge=1, description="Partitions of topics created at start.")
    topic_replication_factor: int = Field(
        1, ge=1, description="Replication factor of topics created at start."
    )

    http_host: str = Field("127.0.0.1", description="Address of health/metrics (and API) server.")
    # admin-api's port; every other service's class sets its own
    http_port: int = Field(8080, ge=1, le=65535, description="Port of that server.")
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_format: Literal["auto", "json", "console"] = Field(
        "auto", description="auto: JSON unless stderr is a terminal."
    )
    shutdown_grace_seconds: float = Field(
        10.0, gt=0, description="How long in-flight work may take to finish on SIGTERM."
    )

    @field_validator("kafka_bootstrap_servers")
    @classmethod
    def _bootstrap_servers(cls, value: str) -> str:
        servers = [s.strip() for s in value.split(",") if s.strip()]
        if not servers:
            raise ValueError("at least one host:port is required")
        for server in servers:
            host, sep, port = server.rpartition(":")
            if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
                raise ValueError(f"{server!r} is not host:port")
        return ",".join(servers)

    @field_validator("mongodb_url")
    @classmethod
    def _mongodb_url(cls, value: str) -> str:
        if not value.startswith(("mongodb://", "mongodb+srv://")):
            raise ValueError("must start with mongodb:// or mongodb+srv://")
        if value.startswith("mongodb://"):
            try:
                parse_uri(value)
            except (InvalidURI, ConfigurationError, ValueError) as exc:
                raise ValueError(str(exc)) from None
        return value

    @field_validator("mongodb_write_concern")
    @classmethod
    def _write_concern(cls, value: str) -> str:
        value = value.strip()
        if value == "majority":
            return value
        if not value.isascii() or not value.isdigit():
            raise ValueError(f"{value!r} is neither 'majority' nor a number of nodes")
        nodes = int(value)
        if not 1 <= nodes <= 50:
            # w=0 would answer requests before the server has the write at all
            raise ValueError(f"{nodes} nodes: must be 1 to 50 (0 would not wait for the write)")
        return str(nodes)

    @model_validator(mode="after")
    def _kafka_security(self) -> Self:
        protocol = self.kafka_security_protocol
        for secret_field in ("kafka_sasl_password", "kafka_ssl_key_password"):
            path = getattr(self, f"{secret_field}_file")
            if path is not None:
                # frozen model: the secret read at start replaces the variable's (if any)
                secret = _read_secret(path, f"{secret_field.upper()}_FILE")
                object.__setattr__(self, secret_field, secret)
        if protocol.startswith("SASL_"):
            if not self.kafka_sasl_username:
                raise ValueError(f"KAFKA_SASL_USERNAME: required with {protocol}")
            if self.kafka_sasl_password is None or not self.kafka_sasl_password.get_secret_value():
                raise ValueError(
                    f"KAFKA_SASL_PASSWORD or KAFKA_SASL_PASSWORD_FILE: required with {protocol}"
                )
            if protocol == "SASL_PLAINTEXT" and self.kafka_sasl_mechanism == "PLAIN":
                raise ValueError(
                    "KAFKA_SASL_MECHANISM: PLAIN over SASL_PLAINTEXT would send the password in "
                    "the clear; use SASL_SSL"
                )
        tls_files = {
            "KAFKA_SSL_CAFILE": self.kafka_ssl_cafile,
            "KAFKA_SSL_CERTFILE": self.kafka_ssl_certfile,
            "KAFKA_SSL_KEYFILE": self.kafka_ssl_keyfile,
        }
        if protocol not in ("SSL", "SASL_SSL"):
            for name, path in tls_files.items():
                if path is not None:
                    raise ValueError(f"{name}: needs KAFKA_SECURITY_PROTOCOL SSL or SASL_SSL")
        if self.kafka_ssl_keyfile is not None and self.kafka_ssl_certfile is None:
            raise ValueError("KAFKA_SSL_KEYFILE: needs KAFKA_SSL_CERTFILE")
        # unusable PEM files fail here, as configuration, not later as a crash
        context = ssl.create_default_context()
        if self.kafka_ssl_cafile is not None:
            try:
                context.load_verify_locations(cafile=self.kafka_ssl_cafile)
            except (ssl.SSLError, OSError) as exc:
                raise ValueError(f"KAFKA_SSL_CAFILE: no usable PEM certificate ({exc})") from None
        if self.kafka_ssl_certfile is not None:
            key_password = self.kafka_ssl_key_password
            try:
                context.load_cert_chain(
                    self.kafka_ssl_certfile,
                    self.kafka_ssl_keyfile,
                    key_password.get_secret_value() if key_password else None,
                )
            except (ssl.SSLError, OSError) as exc:
                raise ValueError(
                    f"KAFKA_SSL_CERTFILE/KAFKA_SSL_KEYFILE: no usable PEM certificate and key, "
                    f"or a wrong KAFKA_SSL_KEY_PASSWORD ({exc})"
                ) from None
        return self


def _read_secret(path: Path, name: str) -> SecretStr:
    """A secret from a file (a mounted Secret): its text, without the trailing newline."""
    try:
        secret = path.read_text().rstrip("\r\n")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        raise ValueError(f"{name}: cannot be read ({reason})") from None
    if not secret:
        raise ValueError(f"{name}: the file is empty")
    return SecretStr(secret)


class SchedulerSettings(PlatformSettings):
    http_port: int = 8081
    scheduler_poll_interval_seconds: float = Field(
        0.05, gt=0, description="Longest sleep between two looks for due callbacks."
    )
    scheduler_batch: int = Field(
        1000, ge=1, description="Due callbacks read from MongoDB per round trip."
    )
    scheduler_lease_seconds: float = Field(
        5,
        gt=0,
        description="Lifetime of the leader lease: one replica emits, the others take over "
        "within this long (plus a third) after it dies; renewed every third of it.",
    )
    scheduler_redispatch_after_seconds: float = Field(
        30,
        gt=0,
        description="A callback emitted but not yet taken by routing after this long is emitted "
        "again (routing lost it, or the leader that emitted it died).",
    )
    scheduler_reclaim_interval_seconds: float = Field(
        1.0,
        gt=0,
        description="How often the leader looks for attempts routing went silent on (each "
        "service's routing_silence_seconds) and for cancels routing has not answered.",
    )
    scheduler_cancel_resend_seconds: float = Field(
        10,
        gt=0,
        description="A cancel routing has not answered after this long is sent to it again.",
    )


class StateTrackerSettings(PlatformSettings):
    http_port: int = 8082
    state_tracker_group_id: str = Field(
        "state-tracker", description="Kafka consumer group of the state-tracker replicas."
    )
    state_tracker_batch_size: int = Field(
        500, ge=1, description="Most routing events applied in one MongoDB bulk write."
    )


class CancellationReportSettings(PlatformSettings):
    """The Cancellation Summary Report's retention: the exporter keeps its entries that long,
    and admin-api's report reaches that far back."""

    exporter_report_retention_days: float = Field(
        RETENTION.days,
        gt=0,
        le=3650,
        description="How long a Cancellation Summary Report entry is kept after its cancellation "
        "(or refused cancellation), by a TTL index, and how far back admin-api's report "
        "(GET /api/v1/reports/cancellations) reaches: set the same value for both. Default: "
        "like the callback records.",
    )

    @property
    def report_retention(self) -> timedelta:
        return timedelta(days=self.exporter_report_retention_days)


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


class ExporterSettings(CancellationReportSettings):
    http_port: int = 8083
    exporter_group_id: str = Field(
        "exporter",
        description="Kafka consumer group of the exporter replicas. A new group re-reads the "
        "lifecycle topic from its start and rebuilds the same report.",
    )
    exporter_batch_size: int = Field(
        500, ge=1, description="Most lifecycle events applied in one MongoDB bulk write."
    )


class RoutingSimSettings(PlatformSettings):
    http_port: int = 8084
    routing_sim_group_id: str = Field(
        "routing-sim", description="Kafka consumer group of the routing-sim replicas."
    )
    routing_sim_seed: int = Field(1, description="Seed of the simulation's random choices.")
    routing_sim_services: str = Field(
        "{}",
        description="JSON object: service name -> routing profile (agents, handle_seconds_min/max, "
        "dial_failure_probability, abandon_probability, patience_seconds, ...); validated by "
        "routing-sim at start. Services not listed use ROUTING_SIM_DEFAULT_PROFILE.",
    )
    routing_sim_default_profile: str = Field(
        "{}",
        description="JSON object: the routing profile of services not in ROUTING_SIM_SERVICES; "
        "keys left out take the built-in defaults (2 agents, 1-3 s handle time, 10% failed "
        "dials, no abandons).",
    )


SettingsT = TypeVar("SettingsT", bound=PlatformSettings)


def describe_error(exc: ValidationError) -> str:
    """One line naming every bad or missing setting by its environment variable."""
    parts = []
    for error in exc.errors():
        name = "_".join(str(p) for p in error["loc"]).upper() or "settings"
        message = error["msg"].removeprefix("Value error, ")
        parts.append(f"{name}: {message}")
    return "invalid configuration: " + "; ".join(parts)


def load_settings(cls: type[SettingsT]) -> SettingsT:
    """Read settings from the environment or exit with a one-line error naming the setting."""
    try:
        return cls()
    except ValidationError as exc:
        fail(describe_error(exc))


def fail(message: str) -> NoReturn:
    print(message, file=sys.stderr)
    raise SystemExit(CONFIG_ERROR_EXIT_CODE)
