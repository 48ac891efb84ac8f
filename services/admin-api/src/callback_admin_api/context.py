"""The admin API's collaborators, built once per process and shared by every request."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from callback_shared.models import utcnow
from callback_shared.outbox import OutboxRelay

from callback_admin_api.auth import TokenVerifier
from callback_admin_api.repository import Repository
from callback_admin_api.settings import AdminApiSettings


def now_in_milliseconds() -> datetime:
    """Now, at the precision MongoDB stores (so what a command returns is what it stored)."""
    now = utcnow()
    return now.replace(microsecond=now.microsecond // 1000 * 1000)


_background: set[asyncio.Task[Any]] = set()


def spawn_task(coro: Awaitable[Any], name: str) -> asyncio.Task[Any]:
    """A background task kept alive until it ends (the service wires the runtime's instead)."""
    task = asyncio.ensure_future(coro)
    task.set_name(name)
    _background.add(task)
    task.add_done_callback(_background.discard)
    return task


@dataclass
class AdminApi:
    settings: AdminApiSettings
    repository: Repository
    #: the callbacks' outbox relay
    relay: OutboxRelay
    #: the bulk cancel jobs' outbox relay (:func:`callback_admin_api.bulk.job_outbox_relay`)
    job_relay: OutboxRelay
    verifier: TokenVerifier
    clock: Callable[[], datetime] = field(default=now_in_milliseconds)
    #: runs a background task (bulk cancel jobs): the runtime's, cancelled on shutdown
    spawn: Callable[[Awaitable[Any], str], object] = field(default=spawn_task)

    @property
    def lifecycle_topic(self) -> str:
        return self.settings.topic_lifecycle_events

    @property
    def routing_commands_topic(self) -> str:
        return self.settings.topic_routing_commands
