"""The scheduler's settings (environment variables, like every service's: see
:class:`~callback_shared.settings.PlatformSettings`)."""

from __future__ import annotations

from callback_shared.settings import PlatformSettings
from pydantic import Field


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
