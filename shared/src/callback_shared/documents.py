"""The callback document as stored in MongoDB, and the events and views derived from it.

Besides the fields of :class:`~callback_shared.models.Callback` (``_id`` = ``id``), a document
carries: ``expire_at`` (TTL: desired time + 14 days), ``attempt`` (current dial attempt, from 1),
``dispatch_at`` (when the scheduler must emit it; present until routing takes the attempt: see
the scheduler's dispatcher),
``routing_sequence`` (the last routing event applied within the attempt, -1 before the
first), ``applied_events`` (ids of the last routing events applied, for idempotency), and
``outbox`` (see :mod:`callback_shared.outbox`).

Invariant the scheduler relies on: only a SCHEDULED callback has ``dispatch_at``. Whatever moves
a callback out of SCHEDULED (a cancel; routing's first event of an attempt) unsets
:data:`DISPATCH_FIELDS` in the same update.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any
from uuid import UUID, uuid5

from callback_shared.models import (
    Callback,
    CallbackType,
    DueCallback,
    LifecycleEvent,
    LifecycleEventKind,
    TimelineEntry,
    expire_at,
)
from callback_shared.mongo import Document
from callback_shared.states import CallbackResult, CallbackState

#: Namespace of event ids derived from what they announce (the same change, the same id).
EVENT_NAMESPACE = UUID("6f1c1f4e-55a1-4a53-9c55-3a2c39f0b1d7")

OVERDUE_MESSAGE = "Still SCHEDULED after its desired callback window: it has not been dispatched."

#: The scheduler's fields: unset them when a command takes a callback out of SCHEDULED.
DISPATCH_FIELDS = ("dispatch_at",)
#: The bulk cancel batch that cancelled the callback (how the batch tells its own cancellations
#: from anyone else's when it reads the callbacks back).
CANCELLED_IN_BATCH = "cancelled_in_batch"

#: Fields of the document that the API never shows.
INTERNAL_FIELDS = (
    "_id", "expire_at", "attempt", "dispatch_at", "cancelled_in_batch",
    "routing_sequence", "applied_events", "outbox", "outbox_since", "completed_at",
)  # fmt: skip


def not_yet_due(doc: Document, now: datetime) -> bool:
    """Whether the scheduler has yet to emit the callback: only then may it be rescheduled."""
    dispatch_at = doc.get("dispatch_at")
    return doc["state"] == CallbackState.SCHEDULED and dispatch_at is not None and dispatch_at > now


def timeline_entry(
    at: datetime,
    state: CallbackState,
    source: str,
    *,
    result: CallbackResult | None = None,
    actor: str | None = None,
    note: str | None = None,
    event_id: UUID | None = None,
) -> Document:
    entry = TimelineEntry(
        at=at, state=state, result=result, actor=actor, source=source, note=note, event_id=event_id
    )
    return entry.model_dump(mode="python")


def new_callback_document(
    *,
    callback_id: UUID,
    service_name: str,
    customer_number: str,
    type: CallbackType,
    desired_time: datetime,
    now: datetime,
    priority: int = 0,
    name_recording_uri: str | None = None,
    created_by: str | None = None,
    recreated_from: UUID | None = None,
) -> Document:
    """A new SCHEDULED callback, waiting for the scheduler to emit it at its desired time."""
    return {
        "_id": callback_id,
        "service_name": service_name,
        "customer_number": customer_number,
        "type": type.value,
        "desired_time": desired_time,
        "state": CallbackState.SCHEDULED.value,
        "result": None,
        "priority": priority,
        "name_recording_uri": name_recording_uri,
        "created_at": now,
        "updated_at": now,
        "created_by": created_by,
        "recreated_from": recreated_from,
        "dial_attempts": 0,
        "diagnostic_data": {},
        "timeline": [
            timeline_entry(
                now, CallbackState.SCHEDULED, "admin-api", actor=created_by, note="created"
            )
        ],
        "expire_at": expire_at(desired_time),
        "attempt": 1,
        "routing_sequence": -1,
        "applied_events": [],
        "dispatch_at": desired_time,
    }


def callback_from_document(doc: Document) -> Callback:
    fields: dict[str, Any] = {k: v for k, v in doc.items() if k not in INTERNAL_FIELDS}
    return Callback(id=doc["_id"], **fields)


def is_overdue(doc: Document, desired_window: timedelta, now: datetime) -> bool:
    """Still SCHEDULED after its desired window (the guide's warning icon)."""
    return bool(
        doc["state"] == CallbackState.SCHEDULED and doc["desired_time"] + desired_window < now
    )


def due_callback_event(doc: Document) -> DueCallback:
    """The due-callback event of the document's current attempt: re-emitting it after a crash
    gives the same ``event_id``, so a duplicate is recognisable downstream."""
    callback_id = doc["_id"]
    return DueCallback(
        event_id=uuid5(EVENT_NAMESPACE, f"due:{callback_id}:{doc['attempt']}"),
        callback_id=callback_id,
        service_name=doc["service_name"],
        customer_number=doc["customer_number"],
        type=CallbackType(doc["type"]),
        desired_time=doc["desired_time"],
        priority=doc.get("priority", 0),
        attempt=doc["attempt"],
    )


def lifecycle_event(
    doc: Document,
    kind: LifecycleEventKind,
    *,
    occurred_at: datetime,
    previous_state: CallbackState | None = None,
    actor: str | None = None,
    batch_id: UUID | None = None,
    reason: str | None = None,
    caused_by: UUID | None = None,
) -> LifecycleEvent:
    """The lifecycle event announcing the document's current state.

    ``caused_by`` (e.g. a routing event id) derives a stable ``event_id``, so announcing the same
    change twice gives the same id.
    """
    extra: dict[str, Any] = {}
    if caused_by is not None:
        extra["event_id"] = uuid5(EVENT_NAMESPACE, f"lifecycle:{caused_by}")
    return LifecycleEvent(
        **extra,
        callback_id=doc["_id"],
        kind=kind,
        occurred_at=occurred_at,
        service_name=doc["service_name"],
        customer_number=doc["customer_number"],
        desired_time=doc["desired_time"],
        state=CallbackState(doc["state"]),
        result=CallbackResult(doc["result"]) if doc.get("result") else None,
        previous_state=previous_state,
        actor=actor,
        batch_id=batch_id,
        reason=reason,
    )
