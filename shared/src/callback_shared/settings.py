"""Every setting of every service, read from the environment (pydantic-settings).

One class per service, all sharing :class:`PlatformSettings`. Environment variable names are
the field names in upper case (``KAFKA_BOOTSTRAP_SERVERS``, ``MONGODB_URL``, ...).
"""

from __future__ import annotations

import sys
from typing import Literal, NoReturn, TypeVar

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict
from pymongo.errors import ConfigurationError, InvalidURI
from pymongo.uri_parser import parse_uri

CONFIG_ERROR_EXIT_CODE = 2


class PlatformSettings(BaseSettings):
    """Settings every service shares: connections, topic names, HTTP and logging."""

    model_config = SettingsConfigDict(extra="ignore", frozen=True)

    kafka_bootstrap_servers: str = Field(
        description="Comma-separated Kafka bootstrap servers, host:port each."
    )
    mongodb_url: str = Field(description="MongoDB connection string (mongodb://...).")
    mongodb_database: str = Field("callbacks", description="Database holding every collection.")

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
    topic_partitions: int = Field(6, ge=1, description="Partitions of topics created at start.")
    topic_replication_factor: int = Field(
        1, ge=1, description="Replication factor of topics created at start."
    )

    http_host: str = Field("127.0.0.1", description="Address of health/metrics (and API) server.")
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


class SchedulerSettings(PlatformSettings):
    http_port: int = 8081
    scheduler_poll_interval_seconds: float = Field(
        0.05, gt=0, description="Longest sleep between two looks for due callbacks."
    )


class StateTrackerSettings(PlatformSettings):
    http_port: int = 8082


class AdminApiSettings(PlatformSettings):
    http_port: int = 8080


class ExporterSettings(PlatformSettings):
    http_port: int = 8083


class RoutingSimSettings(PlatformSettings):
    http_port: int = 8084
    routing_sim_seed: int = Field(1, description="Seed of the simulation's random choices.")


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
