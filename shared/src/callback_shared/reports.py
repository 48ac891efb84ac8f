"""The Cancellation Summary Report: what the exporter stores, and how the admin API reads it.

Every cancellation, every refused cancellation and every cancel asked of routing (still waiting
for its answer) is a lifecycle event
(:attr:`~callback_shared.models.LifecycleEventKind.CANCELLED`,
:attr:`~callback_shared.models.LifecycleEventKind.CANCELLATION_REFUSED`,
:attr:`~callback_shared.models.LifecycleEventKind.CANCEL_REQUESTED`) carrying the actor, the
batch (``None`` for a single cancel), the previous state and the reason. The exporter keeps one
**entry** per (actor, batch, callback) in the :data:`~callback_shared.mongo.CANCELLATION_REPORT`
collection::

    _id              entry_id(actor, batch_id, callback_id): a UUIDv5, the same on every replay
    actor            the user who cancelled (or was refused)
    batch_id         UUID of the bulk cancel, or null for a single cancel
    callback_id      UUID
    status           REQUESTED (asked of routing, no answer yet) | CANCELLED | REFUSED
    occurred_at      when it happened (the event's occurred_at, BSON date: milliseconds)
    service_name, customer_number, desired_time, previous_state, reason: as in the event
    event_id         the event the entry now shows (string)
    version          event_version(event): "<occurred_at, microseconds, UTC>Z|<event_id>"
    expire_at        occurred_at + retention (TTL index, expireAfterSeconds=0)

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
expiry is not written, so a replay never brings back what the TTL index deleted, and
:func:`recent_cancellations` leaves out entries past expiry that the TTL monitor (about once a
minute) has not removed yet.

**Reads.** :func:`recent_cancellations` is the admin API's query: one bounded range on the index
``report_by_actor_occurred_at`` (equality on ``actor``, range on ``occurred_at``); the services
the caller may see are filtered after the range scan (the range holds only the caller's own
entries), which keeps the query on that index on every MongoDB-protocol server and avoids long
``$in`` lists. :func:`report_csv` renders entries as the downloadable CSV file.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Sequence, Set
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any, Literal
from uuid import UUID, uuid5

from pydantic import Field
from pymongo import UpdateOne
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import BulkWriteError

from callback_shared.models import Contract, LifecycleEvent, LifecycleEventKind, UtcDateTime
from callback_shared.mongo import CANCELLATION_REPORT, Document
from callback_shared.states import CallbackState

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
#: ``services`` argument of :func:`recent_cancellations` for a user granted every service.
ALL_SERVICES: Literal["all"] = "all"
#: Media type of :func:`report_csv`'s output.
CSV_MEDIA_TYPE = "text/csv; charset=utf-8"
DUPLICATE_KEY = 11000


class ReportStatus(StrEnum):
    #: asked of routing, which may hold the callback: its answer settles it
    REQUESTED = "REQUESTED"
    CANCELLED = "CANCELLED"
    REFUSED = "REFUSED"


class IgnoreReason(StrEnum):
    """Why a lifecycle event does not make a report entry."""

    OTHER_KIND = "other_kind"  # not a cancellation nor a refused one
    NO_ACTOR = "no_actor"  # a cancellation nobody made through the admin API: no user's report
    EXPIRED = "expired"  # past its retention: the TTL index would delete it at once


class ReportEntry(Contract):
    """One line of a user's Cancellation Summary Report: a callback's cancellation status."""

    callback_id: UUID
    batch_id: UUID | None = Field(description="The bulk cancel, or null for a single cancel.")
    actor: str
    status: ReportStatus
    cancelled_at: UtcDateTime = Field(description="When it was cancelled, or refused.")
    service_name: str
    customer_number: str
    desired_time: UtcDateTime
    previous_state: CallbackState | None = Field(
        description="The callback's state when the cancellation was asked for."
    )
    reason: str | None = Field(description="Why a cancellation was refused, if given.")


# --- writing -----------------------------------------------------------------------------------


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


# --- reading -----------------------------------------------------------------------------------

_PROJECTION = {
    "_id": 0,
    "callback_id": 1,
    "batch_id": 1,
    "actor": 1,
    "status": 1,
    "occurred_at": 1,
    "service_name": 1,
    "customer_number": 1,
    "desired_time": 1,
    "previous_state": 1,
    "reason": 1,
    "expire_at": 1,
}


def entry_from_document(doc: Document) -> ReportEntry:
    return ReportEntry(
        callback_id=doc["callback_id"],
        batch_id=doc.get("batch_id"),
        actor=doc["actor"],
        status=ReportStatus(doc["status"]),
        cancelled_at=doc["occurred_at"],
        service_name=doc["service_name"],
        customer_number=doc["customer_number"],
        desired_time=doc["desired_time"],
        previous_state=doc.get("previous_state"),
        reason=doc.get("reason"),
    )


async def recent_cancellations(
    db: AsyncDatabase[Document],
    actor: str,
    services: Set[str] | Literal["all"],
    since: datetime,
    until: datetime | None = None,
    *,
    now: datetime | None = None,
) -> list[ReportEntry]:
    """The user's report: entries made by ``actor`` with ``since <= cancelled_at < until``
    (``until`` open when ``None``), newest first (ties by entry id, so the order is stable), only
    of the ``services`` the user may see (:data:`ALL_SERVICES` for every one). Entries past their
    expiry (``now``, default the current time) are left out. An empty list is the API's 404."""
    if services != ALL_SERVICES and not services:
        return []
    occurred: Document = {"$gte": since}
    if until is not None:
        occurred["$lt"] = until
    cursor = (
        db[CANCELLATION_REPORT]
        .find({"actor": actor, "occurred_at": occurred}, _PROJECTION)
        .sort([("occurred_at", -1), ("_id", -1)])
    )
    now = now or datetime.now(UTC)
    return [
        entry_from_document(doc)
        async for doc in cursor
        if doc["expire_at"] > now and (services == ALL_SERVICES or doc["service_name"] in services)
    ]


# --- CSV ---------------------------------------------------------------------------------------

#: First characters that make a spreadsheet read a cell as a formula (OWASP "CSV Injection":
#: =, +, -, @, tab, carriage return; line feed too, for the same reason as carriage return).
FORMULA_TRIGGERS = ("=", "+", "-", "@", "\t", "\r", "\n")

CSV_HEADER = (
    "Callback ID",
    "Batch ID",
    "Cancellation Status",
    "Cancelled At (UTC)",
    "Service Name",
    "Phone Number",
    "Desired Callback Time (UTC)",
    "Previous State",
    "Reason",
    "Cancelled By",
)


def safe_cell(value: str) -> str:
    """A cell a spreadsheet shows as text: one starting with a :data:`FORMULA_TRIGGERS`
    character gets a leading single quote, as OWASP recommends.

    Phone numbers are E.164 and start with ``+``: they get the quote too (``'+14155552671``).
    A number is text from the caller's input, like any other cell, and one rule for every cell
    is the one that cannot be talked round (``+1+cmd|...``); a spreadsheet would otherwise turn
    a valid ``+14155552671`` into the number 14155552671 anyway, losing the ``+``.
    """
    return "'" + value if value.startswith(FORMULA_TRIGGERS) else value


def _time(value: datetime) -> str:
    return value.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _row(entry: ReportEntry) -> Sequence[str]:
    return (
        str(entry.callback_id),
        str(entry.batch_id) if entry.batch_id else "",
        entry.status.value,
        _time(entry.cancelled_at),
        entry.service_name,
        entry.customer_number,
        _time(entry.desired_time),
        entry.previous_state.value if entry.previous_state else "",
        entry.reason or "",
        entry.actor,
    )


def report_csv(entries: Iterable[ReportEntry]) -> str:
    """The Cancellation Summary Report file: RFC 4180 CSV (CRLF line ends, every cell quoted,
    quotes doubled), a header row, one row per entry in the given order, times in ISO 8601
    UTC, and every cell protected against formula injection (:func:`safe_cell`)."""
    out = io.StringIO()
    writer = csv.writer(out, quoting=csv.QUOTE_ALL, lineterminator="\r\n")
    writer.writerow(CSV_HEADER)
    writer.writerows([safe_cell(cell) for cell in _row(entry)] for entry in entries)
    return out.getvalue()
