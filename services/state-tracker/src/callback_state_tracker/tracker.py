"""Applies batches of routing events to the callback documents and announces each change.

For one batch: parse each message (malformed or unknown ones go to the dead-letter topic with
the reason), apply all events with one ordered ``bulk_write`` of conditional updates
(:mod:`.changes`), read the touched documents back once, publish a lifecycle event for every
state change the batch made, and only then let the consumer commit the batch's offsets.

No dual-write loss: if the process or Kafka fails after the write and before the commit, the
batch is delivered again; its events then match nothing (idempotent), but the documents still
record which of them were applied (``applied_events``) and the timeline entry each made, so the
same lifecycle events are published again, with the same ids (derived from the routing event).

Routing's answer to a cancel is announced as the cancellation it settles: CANCELLED (the record
is COMPLETED(CANCELLED_BY_ADMIN)) or CANCELLATION_REFUSED, with the actor and batch of the
request, for the Cancellation Summary Report. And when routing takes (QUEUED) an attempt the
platform has closed (a cancelled callback, a reclaimed attempt), it is told to withdraw it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

import structlog
from aiokafka import ConsumerRecord
from callback_shared.documents import lifecycle_event, routing_command
from callback_shared.kafka import dead_letter, event_messages, park, publish_all
from callback_shared.models import (
    CancelRequestStatus,
    DeadLetter,
    DialRetryPolicy,
    Event,
    LifecycleEventKind,
    RoutingCommandKind,
    RoutingEvent,
    RoutingEventKind,
    utcnow,
)
from callback_shared.mongo import Document
from callback_shared.record import CancelRequestF, F
from callback_shared.states import CallbackResult, CallbackState
from faststream.kafka import KafkaBroker
from prometheus_client import Counter, Histogram
from pydantic import ValidationError
from pymongo import UpdateOne
from pymongo.asynchronous.collection import AsyncCollection

from callback_state_tracker.changes import (
    CANCEL_ANSWERS,
    READ_BACK,
    Change,
    plan_change,
    rejection_reason,
    was_applied,
)
from callback_state_tracker.settings import StateTrackerSettings

log = structlog.get_logger("state-tracker")

APPLIED = Counter("callback_routing_events_applied_total", "Routing events applied", ["kind"])
REJECTED = Counter(
    "callback_routing_events_rejected_total", "Routing events that changed nothing", ["reason"]
)
BATCH_SECONDS = Histogram("callback_routing_batch_seconds", "Time to apply one batch")
WITHDRAWN = Counter(
    "callback_routing_withdrawals_total",
    "Attempts routing took that the platform had closed (cancelled, reclaimed): told to withdraw",
)

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
        withdrawals: list[Event] = []
        announcements = await self._apply(parsed, dead, withdrawals)
        await self._publish(announcements, dead, withdrawals)
        BATCH_SECONDS.observe(time.perf_counter() - started)

    async def _apply(
        self,
        parsed: list[tuple[ConsumerRecord[Any, Any], RoutingEvent]],
        dead: list[DeadLetter],
        withdrawals: list[Event],
    ) -> list[Event]:
        if not parsed:
            return []
        now = utcnow()
        changes = [
            plan_change(event, await self.retry_policies.get(event.service_name), now)
            for _, event in parsed
        ]
        await self.callbacks.bulk_write(
            [UpdateOne(change.filter, update) for change in changes for update in change.updates],
            ordered=True,
        )
        docs = await self._read_back(list({event.callback_id for _, event in parsed}))
        announcements: list[Event] = []
        for (record, event), change in zip(parsed, changes, strict=True):
            doc = docs.get(event.callback_id)
            if was_applied(event, doc):
                APPLIED.labels(event.kind.value).inc()
                if doc is not None and (announced := announcement(doc, event, change)):
                    announcements.append(announced)
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
            elif taken_after_close(event, doc):
                WITHDRAWN.inc()
                withdrawals.append(
                    routing_command(
                        {**doc, F.ATTEMPT: event.attempt},
                        RoutingCommandKind.WITHDRAW,
                        reason=f"the platform closed this attempt ({doc[F.STATE]})",
                    )
                )
        return announcements

    async def _read_back(self, ids: list[Any]) -> dict[Any, Document]:
        """The documents a batch touched, in small ``$in`` chunks (the test server answers a
        long ``$in`` list slowly)."""
        chunks = [ids[at : at + READ_BACK_CHUNK] for at in range(0, len(ids), READ_BACK_CHUNK)]
        found = await asyncio.gather(
            *(self.callbacks.find({"_id": {"$in": chunk}}, READ_BACK).to_list() for chunk in chunks)
        )
        return {doc["_id"]: doc for docs in found for doc in docs}

    async def _publish(
        self, announcements: list[Event], dead: list[DeadLetter], withdrawals: list[Event]
    ) -> None:
        await asyncio.gather(
            publish_all(
                self.broker,
                [
                    *event_messages(self.settings.topic_lifecycle_events, announcements),
                    *event_messages(self.settings.topic_routing_commands, withdrawals),
                ],
            ),
            park(self.broker, self.settings.topic_dead_letter, dead),
        )


def taken_after_close(event: RoutingEvent, doc: Document) -> bool:
    """Routing took (QUEUED) an attempt the platform has closed: the callback is COMPLETED, or
    that attempt was reclaimed as lost. Routing must drop it."""
    return event.kind is RoutingEventKind.QUEUED and (
        doc[F.STATE] == CallbackState.COMPLETED or event.attempt < doc[F.ATTEMPT]
    )


def announcement(doc: Document, event: RoutingEvent, change: Change) -> Event | None:
    """The lifecycle event of the change ``event`` made (None: no change of state nor a
    cancellation settled): built from the event and what it settled, not from the document's
    current state, so announcing it again after a redelivery gives the same event."""
    if event.kind in CANCEL_ANSWERS:
        return settled_cancellation(doc, event)
    if change.move is None:
        return None
    previous, state, result = change.move
    return lifecycle_event(
        {**doc, F.STATE: state, F.RESULT: result},
        LifecycleEventKind.STATE_CHANGED,
        occurred_at=event.occurred_at,
        previous_state=previous,
        caused_by=event.event_id,
    )


def settled_cancellation(doc: Document, event: RoutingEvent) -> Event:
    """CANCELLED or CANCELLATION_REFUSED, as routing's answer settled the record's cancel: with
    the actor and batch of the request and the state it was asked in (the report's columns).
    Not before the request (clocks of other machines may lag)."""
    request = doc[F.CANCEL_REQUEST]
    occurred_at = max(
        event.occurred_at, request[CancelRequestF.REQUESTED_AT] + timedelta(milliseconds=1)
    )
    if request[CancelRequestF.STATUS] == CancelRequestStatus.CANCELLED:
        settled = {
            **doc,
            F.STATE: CallbackState.COMPLETED,
            F.RESULT: CallbackResult.CANCELLED_BY_ADMIN,
        }
        kind = LifecycleEventKind.CANCELLED
    else:
        settled, kind = doc, LifecycleEventKind.CANCELLATION_REFUSED
    return lifecycle_event(
        settled,
        kind,
        occurred_at=occurred_at,
        previous_state=CallbackState(request[CancelRequestF.STATE]),
        actor=request.get(CancelRequestF.ACTOR),
        batch_id=request.get(CancelRequestF.BATCH_ID),
        reason=request.get(CancelRequestF.REASON),
        caused_by=event.event_id,
    )
