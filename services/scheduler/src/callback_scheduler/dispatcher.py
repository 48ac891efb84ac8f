"""Emits each callback to the due-callbacks topic when it is due, safely from N replicas.

Design: **a due callback is taken by one conditional write**. A callback waiting to be emitted
has ``dispatch_at``. When it is due, a replica takes it with one ``update_many`` that
``$unset``s ``dispatch_at`` and stamps ``dispatch_pending``, ``dispatched_at`` and its own
``dispatch_token``, only where the callback is still SCHEDULED and ``dispatch_at`` still present:
MongoDB applies each document's update atomically, so exactly one replica takes each callback,
and a cancel or reschedule made before that instant wins (the callback is not emitted, or is
emitted at its new time). The replica reads back what its token took and publishes it (keyed
by callback id, acks=all).

``dispatch_pending`` stays until the state-tracker applies routing's first event for that
attempt (it unsets the mark in the same update), so there is no second write here. A callback
still pending ``redispatch_after`` seconds after it was taken, because the replica died before
publishing or routing never received it, is taken again by any replica and emitted again. Such
a duplicate carries the same ``event_id`` (:func:`~callback_shared.documents.due_callback_event`)
and the same attempt, which routing and the state-tracker recognise: it is harmless.

Batches are bounded by a range on ``dispatch_at`` (never by a long ``$in`` list, which the test
server serves slowly), so a backlog after downtime is emitted oldest first, in slices.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta

import structlog
from callback_shared.documents import due_callback_event
from callback_shared.kafka import publish_event
from callback_shared.models import utcnow
from callback_shared.mongo import Document
from callback_shared.settings import SchedulerSettings
from faststream.kafka import KafkaBroker
from prometheus_client import Counter, Histogram
from pymongo import ASCENDING
from pymongo.asynchronous.collection import AsyncCollection

log = structlog.get_logger("scheduler")

LATENESS = Histogram(
    "callback_dispatch_lateness_seconds",
    "Emit time minus the time the callback was due (desired time, or retry time)",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300),
)
DISPATCHED = Counter("callback_dispatched_total", "Due callbacks emitted", ["redispatch"])


def replica_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


class Dispatcher:
    def __init__(
        self,
        collection: AsyncCollection[Document],
        broker: KafkaBroker,
        settings: SchedulerSettings,
        replica: str | None = None,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.collection = collection
        self.broker = broker
        self.settings = settings
        self.replica = replica or replica_id()
        self.clock = clock
        self.redispatch_after = timedelta(seconds=settings.scheduler_redispatch_after_seconds)
        self._stopping = asyncio.Event()

    async def _take(self, query: Document, field: str, upto: datetime) -> list[Document]:
        """Take the oldest ``scheduler_batch`` callbacks matching ``query`` with ``field`` up to
        ``upto``: stamp them as emitted by this replica (one write), then read them back.

        Filters use only indexed fields, as bounded ranges, and no hints: the test server's
        planner scans the whole collection for a filter on a field outside the chosen index,
        and a whole index for a hinted or unbounded one.
        """
        nth = await self.collection.find_one(
            {**query, field: {"$lte": upto}},
            {field: 1},
            sort=[(field, ASCENDING)],
            skip=self.settings.scheduler_batch - 1,
        )
        bounded = {**query, field: {"$lte": min(upto, nth[field]) if nth else upto}}
        token = uuid.uuid4().hex
        stamp = {"dispatch_pending": True, "dispatched_at": self.clock(), "dispatch_token": token}
        if field == "dispatch_at":
            stamp["due_at"] = "$dispatch_at"  # kept to measure lateness
        taken = await self.collection.update_many(
            bounded, [{"$set": stamp}, {"$unset": "dispatch_at"}]
        )
        if not taken.modified_count:
            return []
        return await self.collection.find({"dispatch_token": token}).to_list()

    async def dispatch_due(self) -> int:
        """Take and emit the callbacks due now; returns how many. (Only a SCHEDULED callback
        has ``dispatch_at``: whatever moves a callback out of SCHEDULED unsets it.)"""
        taken = await self._take({}, "dispatch_at", self.clock())
        await self._publish(taken, redispatch=False)
        return len(taken)

    async def redispatch_stalled(self) -> int:
        """Emit again what was taken but never reached routing (see the module docstring)."""
        taken = await self._take(
            {"dispatch_pending": True}, "dispatched_at", self.clock() - self.redispatch_after
        )
        if taken:
            log.warning("emitting again callbacks that never reached routing", count=len(taken))
            await self._publish(taken, redispatch=True)
        return len(taken)

    async def _publish(self, docs: list[Document], *, redispatch: bool) -> None:
        if not docs:
            return
        events = [due_callback_event(doc) for doc in docs]
        topic = self.settings.topic_due_callbacks
        await asyncio.gather(
            *(publish_event(self.broker, topic, event, event.key) for event in events)
        )
        emitted = self.clock()
        DISPATCHED.labels(str(redispatch).lower()).inc(len(docs))
        for doc in docs:
            if not redispatch:
                due_at = doc.get("due_at") or doc["desired_time"]
                LATENESS.observe(max(0.0, (emitted - due_at).total_seconds()))
            log.info(
                "callback dispatched",
                callback_id=str(doc["_id"]),
                attempt=doc["attempt"],
                redispatch=redispatch,
            )

    async def next_due(self, within: timedelta) -> datetime | None:
        """The earliest dispatch time within ``within`` from now, if any."""
        doc = await self.collection.find_one(
            {"dispatch_at": {"$lte": self.clock() + within}},
            {"dispatch_at": 1},
            sort=[("dispatch_at", ASCENDING)],
        )
        return doc["dispatch_at"] if doc else None

    async def run(self) -> None:
        """Dispatch until stopped; sleeps until the next due time, at most one poll interval.
        Errors (MongoDB or Kafka down) are logged and retried; nothing taken is lost."""
        poll = self.settings.scheduler_poll_interval_seconds
        loop = asyncio.get_running_loop()
        next_redispatch = loop.time()
        while not self._stopping.is_set():
            wake = poll
            try:
                while await self.dispatch_due() >= self.settings.scheduler_batch:
                    pass
                if loop.time() >= next_redispatch:
                    await self.redispatch_stalled()
                    next_redispatch = loop.time() + self.redispatch_after.total_seconds() / 3
                due = await self.next_due(timedelta(seconds=poll))
                if due is not None:
                    wake = min(poll, (due - self.clock()).total_seconds())
            except Exception:
                log.exception("dispatch round failed; will retry")
                wake = min(1.0, poll * 20)
            if wake > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), wake)

    def stop(self) -> None:
        """Let the round in progress finish (the caller awaits :meth:`run`'s task)."""
        self._stopping.set()
