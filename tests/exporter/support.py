"""Lifecycle events for the exporter tests, and the report they must make, computed apart from
the code under test."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

from callback_admin_api.report import ReportEntry
from callback_shared.models import LifecycleEvent, LifecycleEventKind
from callback_shared.states import CallbackResult, CallbackState

K = LifecycleEventKind
#: The report's status of each kind of event it is made of.
STATUS = {
    K.CANCEL_REQUESTED: "REQUESTED",
    K.CANCELLED: "CANCELLED",
    K.CANCELLATION_REFUSED: "REFUSED",
}
#: One entry of a report, as the tests compare them: the columns in the report's order.
Row = tuple[
    uuid.UUID,
    uuid.UUID | None,
    str,
    datetime,
    str,
    str,
    CallbackState | None,
    str | None,
]


def cancellation(
    *,
    actor: str | None = "alice",
    callback_id: uuid.UUID | None = None,
    batch_id: uuid.UUID | None = None,
    at: datetime,
    kind: LifecycleEventKind = K.CANCELLED,
    service_name: str = "billing",
    customer_number: str = "+14155552671",
    previous_state: CallbackState = CallbackState.SCHEDULED,
    reason: str | None = None,
    event_id: uuid.UUID | None = None,
) -> LifecycleEvent:
    refused = kind is K.CANCELLATION_REFUSED
    settled = kind is not K.CANCEL_REQUESTED  # a request leaves the callback as it was
    extra = {"event_id": event_id} if event_id else {}
    return LifecycleEvent(
        **extra,
        callback_id=callback_id or uuid.uuid4(),
        kind=kind,
        occurred_at=at,
        service_name=service_name,
        customer_number=customer_number,
        desired_time=at + timedelta(hours=1),
        state=previous_state if refused or not settled else CallbackState.COMPLETED,
        result=None if refused or not settled else CallbackResult.CANCELLED_BY_ADMIN,
        previous_state=previous_state,
        actor=actor,
        batch_id=batch_id,
        reason=reason or (str(previous_state) if refused else None),
    )


def expected_report(events: list[LifecycleEvent]) -> dict[str, list[Row]]:
    """Per actor, what the report must say: per (actor, batch, callback) the event with the
    greatest (occurred_at, event_id), newest first; only cancellations with an actor."""
    newest: dict[tuple[str, uuid.UUID | None, uuid.UUID], LifecycleEvent] = {}
    for event in events:
        if event.kind not in STATUS or not event.actor:
            continue
        key = (event.actor, event.batch_id, event.callback_id)
        kept = newest.get(key)
        if kept is None or (event.occurred_at, event.event_id.int) > (
            kept.occurred_at,
            kept.event_id.int,
        ):
            newest[key] = event
    report: dict[str, list[Row]] = {}
    for event in newest.values():
        report.setdefault(event.actor or "", []).append(summary_of_event(event))
    for rows in report.values():
        rows.sort(key=lambda row: row[3], reverse=True)
    return report


def summary_of_event(event: LifecycleEvent) -> Row:
    status = STATUS[event.kind]
    # BSON dates keep milliseconds
    at = event.occurred_at.replace(microsecond=event.occurred_at.microsecond // 1000 * 1000)
    return (
        event.callback_id,
        event.batch_id,
        status,
        at,
        event.service_name,
        event.customer_number,
        event.previous_state,
        event.reason,
    )


def summary_of_entry(entry: ReportEntry) -> Row:
    return (
        entry.callback_id,
        entry.batch_id,
        entry.status.value,
        entry.cancelled_at,
        entry.service_name,
        entry.customer_number,
        entry.previous_state,
        entry.reason,
    )
