"""The admin API's collaborators, built once per process and shared by every request."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from callback_shared.models import utcnow
from callback_shared.outbox import OutboxRelay
from callback_shared.settings import AdminApiSettings

from callback_admin_api.auth import TokenVerifier
from callback_admin_api.repository import Repository


def now_in_milliseconds() -> datetime:
    """Now, at the precision MongoDB stores (so what a command returns is what it stored)."""
    now = utcnow()
    return now.replace(microsecond=now.microsecond // 1000 * 1000)


@dataclass
class AdminApi:
    settings: AdminApiSettings
    repository: Repository
    relay: OutboxRelay
    verifier: TokenVerifier
    clock: Callable[[], datetime] = field(default=now_in_milliseconds)

    @property
    def lifecycle_topic(self) -> str:
        return self.settings.topic_lifecycle_events
