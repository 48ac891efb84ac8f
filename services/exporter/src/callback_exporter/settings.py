"""The exporter's settings (environment variables, like every service's: see
:class:`~callback_shared.settings.PlatformSettings`); the report's retention is
:class:`~callback_shared.settings.CancellationReportSettings`, shared with admin-api."""

from __future__ import annotations

from callback_shared.settings import CancellationReportSettings
from pydantic import Field


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
