"""The routing simulator's settings (environment variables, like every service's: see
:class:`~callback_shared.settings.PlatformSettings`)."""

from __future__ import annotations

from callback_shared.settings import PlatformSettings
from pydantic import Field


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
