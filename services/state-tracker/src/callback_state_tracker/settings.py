"""The state-tracker's settings (environment variables, like every service's: see
:class:`~callback_shared.settings.PlatformSettings`)."""

from __future__ import annotations

from callback_shared.settings import PlatformSettings
from pydantic import Field


class StateTrackerSettings(PlatformSettings):
    http_port: int = 8082
    state_tracker_group_id: str = Field(
        "state-tracker", description="Kafka consumer group of the state-tracker replicas."
    )
    state_tracker_batch_size: int = Field(
        500, ge=1, description="Most routing events applied in one MongoDB bulk write."
    )
