"""The exporter's part of the Cancellation Summary Report: folding lifecycle events into report
entries and writing them (the entry's shape: :mod:`callback_shared.reports`).

**Convergence.** An entry shows the newest event of its key: newest by ``occurred_at``, ties broken
by ``event_id``, compared as the fixed-width string ``version`` (which keeps the microseconds BSON
dates lose). A batch's entries are first inserted (unordered): an entry no document holds yet simply
is the event's. Those whose ``_id`` is taken get an upsert on ``{_id}`` alone whose update (a
pipeline) replaces the document with the event's entry only if the stored ``version`` is not newer
(``$cond``), else keeps it as it is. So whatever the order and however often events are applied, the
document ends as the newest event made it: a replay of the topic from its start (a new consumer
group), a batch redelivered after a crash, or an older event arriving after a newer one all
converge, and re-applying the same event rewrites identical values. The filter is an ``_id`` point
lookup on every MongoDB-protocol server (a filter on ``_id`` plus ``version`` is explained as a
collection scan by SecantusDB 0.7, though run on _id). Two upserts racing to create the same entry
(two replicas during a rebalance) can make the loser fail with a duplicate key (E11000); it is
retried once without upsert, against the document the winner created, and applies if it is the newer
one.

**Retention.** ``expire_at = occurred_at + retention`` (``EXPORTER_REPORT_RETENTION_DAYS``,
default 14 days, like the callback records the entries describe). An event already past its
expiry is not written, so a replay never brings back what the TTL index deleted (admin-api's
read leaves out entries past expiry that the TTL monitor has not removed yet).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any
from uuid import UUID, uuid5

from callback_shared.models import LifecycleEvent, LifecycleEventKind
from callback_shared.mongo import Document
from callback_shared.reports import ReportStatus
from pymongo import UpdateOne
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import BulkWriteError

#: Namespace of report entry ids (:func:`entry_id`).
REPORT_NAMESPACE = UUID("0b7d3c52-9a3e-4f0e-8f4c-2f1d6a8e5c31")
#: Lifecycle events the report is made of; every other kind is ignored.
REPORTED_KINDS = frozenset(
    {
        LifecycleEventKind.CANCEL_REQUESTED,
        LifecycleEventKind.CANCELLED,
        LifecycleEventKind.CANCELLATION_REFUSED,
    }
)
DUPLICATE_KEY = 11000


class IgnoreReason(StrEnum):
    """Why a lifecycle event does not make a report entry."""

    OTHER_KIND = "other_kind"  # not a cancellation nor a refused one
    NO_ACTOR = "no_actor"  # a cancellation nobody made through the admin API: no user's report
    EXPIRED = "expired"  # past its retention: the TTL index would delete it at once


def entry_id(actor: str, batch_id: UUID | None, callback_id: UUID) -> UUID:
    """The entry's ``_id``: derived from (actor, batch, callback) only, so every event of that
    key, on every replay, addresses the same document. The JSON array keeps the parts apart
    whatever characters a username holds."""
    key = json.dumps([actor, str(batch_id) if batch_id else None, str(callback_id)])
    return uuid5(REPORT_NAMESPACE, key)


def event_version(event: LifecycleEvent) -> str:
    """A string whose order is the order of (occurred_at, event_id): the newest event wins."""
    at = event.occurred_at.astimezone(UTC).replace(tzinfo=None)
    return f"{at.isoformat(timespec='microseconds')}Z|{event.event_id}"


def ignore_reason(
    event: LifecycleEvent, retention: timedelta, now: datetime
) -> IgnoreReason | None:
    """``None`` when the event makes a report entry, else why not."""
    if event.kind not in REPORTED_KINDS:
        return IgnoreReason.OTHER_KIND
    if not event.actor:
        return IgnoreReason.NO_ACTOR
    if event.occurred_at + retention <= now:
        return IgnoreReason.EXPIRED
    return None


def report_status(event: LifecycleEvent) -> ReportStatus:
    if event.kind is LifecycleEventKind.CANCELLED:
        return ReportStatus.CANCELLED
    if event.kind is LifecycleEventKind.CANCELLATION_REFUSED:
        return ReportStatus.REFUSED
    if event.kind is LifecycleEventKind.CANCEL_REQUESTED:
        return ReportStatus.REQUESTED
    raise ValueError(f"a {event.kind} lifecycle event is not part of the report")


def report_document(event: LifecycleEvent, retention: timedelta) -> Document:
    """The entry the event makes (its ``_id`` is :func:`entry_id`)."""
    if not event.actor:
        raise ValueError("an event without actor belongs to no user's report")
    return {
        "_id": entry_id(event.actor, event.batch_id, event.callback_id),
        "actor": event.actor,
        "batch_id": event.batch_id,
        "callback_id": event.callback_id,
        "status": report_status(event).value,
        "occurred_at": event.occurred_at,
        "service_name": event.service_name,
        "customer_number": event.customer_number,
        "desired_time": event.desired_time,
        "previous_state": event.previous_state.value if event.previous_state else None,
        "reason": event.reason,
        "event_id": str(event.event_id),
        "version": event_version(event),
        "expire_at": event.occurred_at + retention,
    }


def newest_per_entry(events: Iterable[LifecycleEvent]) -> list[LifecycleEvent]:
    """The newest event of each entry key (what the entry converges to), in first-seen order."""
    newest: dict[UUID, LifecycleEvent] = {}
    for event in events:
        key = entry_id(event.actor or "", event.batch_id, event.callback_id)
        kept = newest.get(key)
        if kept is None or event_version(event) > event_version(kept):
            newest[key] = event
    return list(newest.values())


def _write(document: Document, *, upsert: bool) -> UpdateOne:
    """Replace the entry with ``document`` unless the stored one is newer (see module doc).
    ``$literal``: no value of the event (a reason starting with ``$``...) is read as an
    expression."""
    not_newer = {"$lte": [{"$ifNull": ["$version", ""]}, document["version"]]}
    return UpdateOne(
        {"_id": document["_id"]},
        [{"$replaceWith": {"$cond": [not_newer, {"$literal": document}, "$$ROOT"]}}],
        upsert=upsert,
    )


async def record_cancellations(
    collection: AsyncCollection[Document],
    events: Iterable[LifecycleEvent],
    retention: timedelta,
    *,
    now: datetime | None = None,
) -> int:
    """Apply the events to the report, skipping those that make no entry (:func:`ignore_reason`
    at ``now``, default the current time); returns how many entries they address. Idempotent
    and order-insensitive (module docstring). Raises on any MongoDB error other than the
    duplicate keys it settles itself: the caller retries the whole batch, which is harmless."""
    now = now or datetime.now(UTC)
    reportable = (event for event in events if ignore_reason(event, retention, now) is None)
    documents = [report_document(event, retention) for event in newest_per_entry(reportable)]
    if not documents:
        return 0
    existing = await _insert_new(collection, documents)
    if existing:
        await _replace_unless_newer(collection, existing)
    return len(documents)


async def _insert_new(
    collection: AsyncCollection[Document], documents: list[Document]
) -> list[Document]:
    """Insert the entries no document holds yet; returns those whose ``_id`` (or another unique
    key) was taken. A first event of an entry, by far the common case, is a plain insert: about
    thirty times cheaper than the conditional upsert on the test server."""
    try:
        await collection.insert_many(documents, ordered=False)
    except BulkWriteError as exc:
        return [documents[error["index"]] for error in _duplicate_keys_only(exc)]
    return []


async def _replace_unless_newer(
    collection: AsyncCollection[Document], documents: list[Document]
) -> None:
    """The conditional upsert of each entry (module docstring); a duplicate key on upsert (two
    writers creating the same entry) is retried once as a plain conditional update."""
    try:
        await collection.bulk_write([_write(d, upsert=True) for d in documents], ordered=False)
    except BulkWriteError as exc:
        retry = [
            _write(documents[error["index"]], upsert=False) for error in _duplicate_keys_only(exc)
        ]
        await collection.bulk_write(retry, ordered=False)


def _duplicate_keys_only(exc: BulkWriteError) -> list[dict[str, Any]]:
    """The write errors of ``exc`` if all are duplicate keys; else re-raises it."""
    errors: list[dict[str, Any]] = exc.details.get("writeErrors", [])
    if exc.details.get("writeConcernErrors") or any(
        error.get("code") != DUPLICATE_KEY for error in errors
    ):
        raise exc
    return errors
