"""Applies batches of routing events to the callback documents and announces each change.

For one batch: parse each message (malformed or unknown ones go to the dead-letter topic with
the reason), apply all events with one ordered ``bulk_write`` of conditional updates
(:mod:`.changes`), read the touched documents back once, publish a lifecycle event for every
state change the batch made, and only then let the consumer commit the batch's offsets.

No dual-write loss: if the process or Kafka fails after the write and before the commit, the
batch is delivered again; its events then match nothing (idempotent), but the documents still
record which of them were applied (``applied_events``) and the timeline entry each made, so the
same lifecycle events are published again, with the same ids (derived from the routing event).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from typing import Any

import structlog
from aiokafka import ConsumerRecord
from callback_shared.documents import lifecycle_event
from callback_shared.kafka import dead_letter, event_messages, park, publish_all
from callback_shared.models import (
    DeadLetter,
    DialRetryPolicy,
    Event,
    LifecycleEventKind,
    RoutingEvent,
    utcnow,
)
from callback_shared.mongo import Document
from callback_shared.settings import StateTrackerSettings
from callback_shared.states import CallbackResult, CallbackState
from faststream.kafka import KafkaBroker
from prometheus_client import Counter, Histogram
from pydantic import ValidationError
from pymongo import UpdateOne
from pymongo.asynchronous.collection import AsyncCollection

from callback_state_tracker.changes import READ_BACK, plan_change, rejection_reason, was_applied

log = structlog.get_logger("state-tracker")

APPLIED = Counter("callback_routing_events_applied_total", "Routing events applied", ["kind"])
REJECTED = Counter(
    "callback_routing_events_rejected_total", "Routing events that changed nothing", ["reason"]
)
BATCH_SECONDS = Histogram("callback_routing_batch_seconds", "Time to apply one batch")

RETRY_POLICY_TTL = 30.0
READ_BACK_CHUNK = 50


class RetryPolicies:
    """Each service's dial-retry policy, read from the ``services`` collection, cached briefly."""

    def __init__(self, services: AsyncCollection[Document]) -> None:
        self.services = services
        self._cache: dict[str, tuple[float, DialRetryPolicy]] = {}

    async def get(self, service_name: str) -> DialRetryPolicy:
        cached = self._cache.get(service_name)
        if cached and cached[0] > time.monotonic():
            return cached[1]
        doc = await self.services.find_one({"_id": service_name}, {"dial_retry": 1})
        policy = DialRetryPolicy.model_validate((doc or {}).get("dial_retry") or {})
        self._cache[service_name] = (time.monotonic() + RETRY_POLICY_TTL, policy)
        return policy


class StateTracker:
    def __init__(
        self,
        callbacks: AsyncCollection[Document],
        services: AsyncCollection[Document],
        broker: KafkaBroker,
        settings: StateTrackerSettings,
    ) -> None:
        self.callbacks = callbacks
        self.retry_policies = RetryPolicies(services)
        self.broker = broker
        self.settings = settings

    async def handle_batch(self, records: Sequence[ConsumerRecord[Any, Any]]) -> None:
        started = time.perf_counter()
        parsed: list[tuple[ConsumerRecord[Any, Any], RoutingEvent]] = []
        dead: list[DeadLetter] = []
        for record in records:
            try:
                parsed.append((record, RoutingEvent.model_validate_json(record.value or b"")))
            except ValidationError as exc:
                dead.append(dead_letter(record, f"malformed routing event: {exc}"))
        announcements = await self._apply(parsed, dead)
        await self._publish(announcements, dead)
        BATCH_SECONDS.observe(time.perf_counter() - started)

    async def _apply(
        self, parsed: list[tuple[ConsumerRecord[Any, Any], RoutingEvent]], dead: list[DeadLetter]
    ) -> list[Event]:
        if not parsed:
            return []
        now = utcnow()
        changes = [
            plan_change(event, await self.retry_policies.get(event.service_name), now)
            for _, event in parsed
        ]
        await self.callbacks.bulk_write(
            [UpdateOne(change.filter, change.update) for change in changes],
            ordered=True,
        )
        docs = await self._read_back(list({event.callback_id for _, event in parsed}))
        announcements: list[Event] = []
        for (record, event), change in zip(parsed, changes, strict=True):
            doc = docs.get(event.callback_id)
            if was_applied(event, doc):
                APPLIED.labels(event.kind.value).inc()
                if change.move is not None and doc is not None:
                    announcements.append(announcement(doc, event, change.move))
                continue
            reason = rejection_reason(event, change, doc)
            REJECTED.labels(reason.split(" ")[0]).inc()
            log.warning(
                "routing event rejected",
                reason=reason,
                callback_id=str(event.callback_id),
                kind=event.kind.value,
                event_id=str(event.event_id),
            )
            if doc is None:
                dead.append(dead_letter(record, reason))
        return announcements

    async def _read_back(self, ids: list[Any]) -> dict[Any, Document]:
        """The documents a batch touched, in small ``$in`` chunks (the test server answers a
        long ``$in`` list slowly)."""
        chunks = [ids[at : at + READ_BACK_CHUNK] for at in range(0, len(ids), READ_BACK_CHUNK)]
        found = await asyncio.gather(
            *(self.callbacks.find({"_id": {"$in": chunk}}, READ_BACK).to_list() for chunk in chunks)
        )
        return {doc["_id"]: doc for docs in found for doc in docs}

    async def _publish(self, announcements: list[Event], dead: list[DeadLetter]) -> None:
        await asyncio.gather(
            publish_all(
                self.broker, event_messages(self.settings.topic_lifecycle_events, announcements)
            ),
            park(self.broker, self.settings.topic_dead_letter, dead),
        )


def announcement(
    doc: Document,
    event: RoutingEvent,
    move: tuple[CallbackState, CallbackState, CallbackResult | None],
) -> Event:
    """The lifecycle event of the change ``event`` made: built from the event, not from the
    document's current state, so announcing it again after a redelivery gives the same event."""
    previous, state, result = move
    return lifecycle_event(
        {**doc, "state": state, "result": result},
        LifecycleEventKind.STATE_CHANGED,
        occurred_at=event.occurred_at,
        previous_state=previous,
        caused_by=event.event_id,
    )
