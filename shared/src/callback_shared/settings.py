"""The settings every service shares, read from the environment (pydantic-settings).

:class:`PlatformSettings` (connections, topic names, HTTP, logging) is the base of each service's
own class, which lives in that service (``callback_scheduler.settings.SchedulerSettings``, ...);
:class:`CancellationReportSettings` is the report's retention, a contract between the exporter and
admin-api. Environment variable names are the field names in upper case
(``KAFKA_BOOTSTRAP_SERVERS``, ``MONGODB_URL``, ...). :func:`load_settings` reads a class or exits
with one line naming the bad setting (exit code :data:`CONFIG_ERROR_EXIT_CODE`).
"""

from __future__ import annotations

import ssl
import sys
from datetime import timedelta
from pathlib import Path
from typing import Literal, NoReturn, Self, TypeVar

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
