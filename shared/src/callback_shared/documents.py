"""The callback document as stored in MongoDB, and the events and views derived from it.

Besides the fields of :class:`~callback_shared.models.Callback` (``_id`` = ``id``), a document
carries: ``expire_at`` (TTL: desired time + 14 days), ``attempt`` (current dial attempt, from 1),
``dispatch_at`` (when the scheduler must emit it; present until routing takes the attempt: see
the scheduler's dispatcher),
``routing_sequence`` (the last routing event applied within the attempt, -1 before the
first), ``applied_events`` (ids of the last routing events applied, for idempotency),
``routing_seen_at`` (while routing holds the attempt: when the platform last heard of it),
``cancel_pending_since`` (while a cancel waits for routing's answer;
the record's ``cancel_request`` says who asked and how routing answered) and ``outbox`` (see
:mod:`callback_shared.outbox`). The fields are declared in :mod:`callback_shared.record`, and
named through its constants (:class:`~callback_shared.record.F`).

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
    CancelRequestStatus,
    DueCallback,
    LifecycleEvent,
    LifecycleEventKind,
    RoutingCommand,
    RoutingCommandKind,
    ServiceConfig,
    TimelineEntry,
    expire_at,
)
from callback_shared.mongo import Document
from callback_shared.record import CancelRequestF, F, number_prefix
from callback_shared.states import CallbackResult, CallbackState

#: Namespace of event ids derived from what they announce (the same change, the same id).
EVENT_NAMESPACE = UUID("6f1c1f4e-55a1-4a53-9c55-3a2c39f0b1d7")

OVERDUE_MESSAGE = "Still SCHEDULED after its desired callback window: it has not been dispatched."

#: A callback due within this margin may already have been read by the scheduler (clock skew
#: between processes, and the time a command's write takes): only one due later than that is
#: "not yet due" and may be rescheduled, or cancelled without asking routing.
DISPATCH_MARGIN = timedelta(seconds=2)
#: The scheduler's fields: unset them when a command takes a callback out of SCHEDULED.
DISPATCH_FIELDS = (F.DISPATCH_AT,)

#: Fields of the document that the API never shows.
INTERNAL_FIELDS = (
    F.ID, F.CUSTOMER_NUMBER_PREFIX, F.EXPIRE_AT, F.ATTEMPT, F.DISPATCH_AT, F.CANCELLED_IN_BATCH,
    F.ROUTING_SEQUENCE, F.APPLIED_EVENTS, F.OUTBOX, F.OUTBOX_SINCE, F.COMPLETED_AT,
    F.ROUTING_SEEN_AT, F.CANCEL_PENDING_SINCE,
)  # fmt: skip


def not_yet_due(doc: Document, now: datetime) -> bool:
    """Whether the scheduler has certainly not emitted the callback yet (due later than
    :data:`DISPATCH_MARGIN` from now): only then may it be rescheduled, or cancelled without
    asking routing."""
    dispatch_at = doc.get(F.DISPATCH_AT)
    return (
        doc[F.STATE] == CallbackState.SCHEDULED
        and dispatch_at is not None
        and dispatch_at > now + DISPATCH_MARGIN
    )


def cancel_pending(doc: Document) -> bool:
    """Whether a cancel of the callback waits for routing's answer."""
    request = doc.get(F.CANCEL_REQUEST)
    return bool(request and request.get(CancelRequestF.STATUS) == CancelRequestStatus.PENDING)


def routing_command(
    doc: Document, kind: RoutingCommandKind, *, reason: str | None = None
) -> RoutingCommand:
    """A command to routing about the callback's current attempt. Its id is derived from the
    callback (a cancel: one per callback) or the attempt (a withdraw), so sending it again is
    recognisable."""
    callback_id = doc[F.ID]
    if kind is RoutingCommandKind.CANCEL:
        key = f"cancel:{callback_id}"
    else:
        key = f"{kind.value.lower()}:{callback_id}:{doc[F.ATTEMPT]}"
    return RoutingCommand(
        event_id=uuid5(EVENT_NAMESPACE, key),
        callback_id=callback_id,
        kind=kind,
        service_name=doc[F.SERVICE_NAME],
        attempt=doc[F.ATTEMPT],
        reason=reason,
    )


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
        F.ID: callback_id,
        F.SERVICE_NAME: service_name,
        F.CUSTOMER_NUMBER: customer_number,
        F.CUSTOMER_NUMBER_PREFIX: number_prefix(customer_number),
        F.TYPE: type.value,
        F.DESIRED_TIME: desired_time,
        F.STATE: CallbackState.SCHEDULED.value,
        F.RESULT: None,
        F.PRIORITY: priority,
        F.NAME_RECORDING_URI: name_recording_uri,
        F.CREATED_AT: now,
        F.UPDATED_AT: now,
        F.CREATED_BY: created_by,
        F.RECREATED_FROM: recreated_from,
        F.DIAL_ATTEMPTS: 0,
        F.DIAGNOSTIC_DATA: {},
        F.TIMELINE: [
            timeline_entry(
                now, CallbackState.SCHEDULED, "admin-api", actor=created_by, note="created"
            )
        ],
        F.EXPIRE_AT: expire_at(desired_time),
        F.ATTEMPT: 1,
        F.ROUTING_SEQUENCE: -1,
        F.APPLIED_EVENTS: [],
        F.DISPATCH_AT: desired_time,
    }


def callback_from_document(doc: Document) -> Callback:
    fields: dict[str, Any] = {k: v for k, v in doc.items() if k not in INTERNAL_FIELDS}
    return Callback(id=doc[F.ID], **fields)


def overdue_message(doc: Document, config: ServiceConfig, now: datetime) -> str | None:
    """Why the callback is late, when it is (the guide's warning icon), saying what is true:
    SCHEDULED after its desired window (waiting for its retry, or not dispatched), QUEUED or
    ROUTING with routing silent past the service's bound (to be reclaimed), PROCESSING without
    completion past the stall bound. ``None`` when it is not late."""
    state = doc[F.STATE]
    if state == CallbackState.SCHEDULED:
        if doc[F.DESIRED_TIME] + config.desired_window >= now:
            return None
        retry_at = doc.get(F.DISPATCH_AT)
        if doc.get(F.ATTEMPT, 1) > 1 and retry_at is not None and retry_at > now:
            return (
                f"Waiting for dial attempt {doc[F.ATTEMPT]} at {retry_at.isoformat()} after a "
                "failed or lost attempt."
            )
        return OVERDUE_MESSAGE
    seen = doc.get(F.ROUTING_SEEN_AT)
    if seen is None:
        return None
    silent = now - seen
    if state in (CallbackState.QUEUED, CallbackState.ROUTING):
        if silent.total_seconds() > config.routing_silence_seconds:
            return (
                f"No sign of life from routing since {seen.isoformat()}: the attempt is being "
                "reclaimed as lost."
            )
    elif state == CallbackState.PROCESSING and silent.total_seconds() > (
        config.processing_stall_seconds
    ):
        return (
            f"Stalled: connected to an agent since {seen.isoformat()} and routing has not "
            "reported the call's end."
        )
    return None


def due_callback_event(doc: Document) -> DueCallback:
    """The due-callback event of the document's current attempt: re-emitting it after a crash
    gives the same ``event_id``, so a duplicate is recognisable downstream."""
    callback_id = doc[F.ID]
    return DueCallback(
        event_id=uuid5(EVENT_NAMESPACE, f"due:{callback_id}:{doc[F.ATTEMPT]}"),
        callback_id=callback_id,
        service_name=doc[F.SERVICE_NAME],
        customer_number=doc[F.CUSTOMER_NUMBER],
        type=CallbackType(doc[F.TYPE]),
        desired_time=doc[F.DESIRED_TIME],
        priority=doc.get(F.PRIORITY, 0),
        attempt=doc[F.ATTEMPT],
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
        callback_id=doc[F.ID],
        kind=kind,
        occurred_at=occurred_at,
        service_name=doc[F.SERVICE_NAME],
        customer_number=doc[F.CUSTOMER_NUMBER],
        desired_time=doc[F.DESIRED_TIME],
        state=CallbackState(doc[F.STATE]),
        result=CallbackResult(doc[F.RESULT]) if doc.get(F.RESULT) else None,
        previous_state=previous_state,
        actor=actor,
        batch_id=batch_id,
        reason=reason,
    )
