"""Routing profiles: how each service (virtual queue) behaves in the simulation.

Profiles come from two settings, both JSON objects: ``ROUTING_SIM_DEFAULT_PROFILE`` (services not
listed; keys left out take the defaults below) and ``ROUTING_SIM_SERVICES`` (service name ->
profile; keys a service leaves out come from the default profile).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Self, TypeVar

from callback_shared.settings import fail
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, model_validator

from callback_routing_sim.settings import RoutingSimSettings

T = TypeVar("T")

_JSON_OBJECT = TypeAdapter(dict[str, Any])
_JSON_OBJECT_OF_OBJECTS = TypeAdapter(dict[str, dict[str, Any]])


class ServiceProfile(BaseModel):
    """Agents and customer behaviour of one virtual queue."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    agents: int = Field(2, ge=1, le=10_000, description="Agents serving the queue.")
    handle_seconds_min: float = Field(1.0, ge=0, description="Shortest call (uniform draw).")
    handle_seconds_max: float = Field(3.0, ge=0, description="Longest call (uniform draw).")
    dial_seconds: float = Field(
        0.5, ge=0, description="From ROUTING (agent reserved) to PROCESSING or DIAL_FAILED."
    )
    dial_failure_probability: float = Field(
        0.1, ge=0, le=1, description="Chance that the dial of a routed callback fails."
    )
    busy_share: float = Field(
        0.5, ge=0, le=1, description="Share of failed dials that are BUSY; the rest NO_ANSWER."
    )
    abandon_probability: float = Field(
        0.0, ge=0, le=1, description="Chance that a customer abandons in queue (never routed)."
    )
    abandon_after_seconds: float = Field(
        1.0, ge=0, description="How long an abandoning customer waits (capped by patience)."
    )
    patience_seconds: float | None = Field(
        None,
        gt=0,
        description="A customer still waiting after this long abandons (depends on timing).",
    )
    position_updates: bool = Field(
        True, description="Publish POSITION_UPDATED when a waiting callback's position changes."
    )
    position_update_min_interval_seconds: float = Field(
        0.0, ge=0, description="Least time between two position updates of one callback."
    )
    route_point: str | None = Field(None, description="Route point; default RP-<service>.")
    heartbeat_seconds: float = Field(
        10.0,
        gt=0,
        description="A QUEUED or ROUTING callback that has had no event for this long gets a "
        "HELD event (its sign of life); none is sent during PROCESSING.",
    )

    @model_validator(mode="after")
    def _handle_time_range(self) -> Self:
        if self.handle_seconds_max < self.handle_seconds_min:
            raise ValueError("handle_seconds_max must not be below handle_seconds_min")
        return self

    @property
    def mean_agent_seconds(self) -> float:
        """Expected time one routed callback keeps its agent (dial, then the call if answered)."""
        mean_handle = (self.handle_seconds_min + self.handle_seconds_max) / 2
        return self.dial_seconds + (1 - self.dial_failure_probability) * mean_handle

    def route_point_of(self, service_name: str) -> str:
        return self.route_point or f"RP-{service_name}"


@dataclass(frozen=True)
class RoutingProfiles:
    """The profile of every service: the listed ones, and a default for all others."""

    default: ServiceProfile = field(default_factory=ServiceProfile)
    services: dict[str, ServiceProfile] = field(default_factory=dict)

    def for_service(self, service_name: str) -> ServiceProfile:
        return self.services.get(service_name, self.default)


class ProfileError(ValueError):
    """A routing profile setting is not valid; the message is one line naming the setting."""


def parse_profiles(services_json: str, default_json: str = "{}") -> RoutingProfiles:
    """Validate both settings; raise :class:`ProfileError` naming the first bad one."""
    default_raw = _validate("ROUTING_SIM_DEFAULT_PROFILE", _JSON_OBJECT, default_json)
    default = _validate_profile("ROUTING_SIM_DEFAULT_PROFILE", default_raw)
    services_raw = _validate("ROUTING_SIM_SERVICES", _JSON_OBJECT_OF_OBJECTS, services_json)
    services = {
        name: _validate_profile("ROUTING_SIM_SERVICES", {**default_raw, **raw}, prefix=name)
        for name, raw in services_raw.items()
    }
    return RoutingProfiles(default=default, services=services)


def load_profiles(settings: RoutingSimSettings) -> RoutingProfiles:
    """The profiles of the settings, or exit 2 with the usual one-line configuration error."""
    try:
        return parse_profiles(settings.routing_sim_services, settings.routing_sim_default_profile)
    except ProfileError as exc:
        fail(str(exc))


def _validate(setting: str, adapter: TypeAdapter[T], raw: str) -> T:
    try:
        return adapter.validate_json(raw)
    except ValidationError as exc:
        raise ProfileError(_describe(setting, exc)) from None


def _validate_profile(setting: str, raw: dict[str, Any], prefix: str = "") -> ServiceProfile:
    try:
        return ServiceProfile.model_validate(raw)
    except ValidationError as exc:
        raise ProfileError(_describe(setting, exc, prefix)) from None


def _describe(setting: str, exc: ValidationError, prefix: str = "") -> str:
    parts = []
    for error in exc.errors():
        path = ".".join(str(p) for p in (prefix, *error["loc"]) if p != "")
        message = error["msg"].removeprefix("Value error, ")
        parts.append(f"{path}: {message}" if path else message)
    return f"invalid configuration: {setting}: " + "; ".join(parts)
