"""admin-api's part of the Cancellation Summary Report: reading a user's entries (the entry's
shape: :mod:`callback_shared.reports`; the exporter writes them) and the downloadable CSV file.

**Reads.** :func:`recent_cancellations` is the report's query: one bounded range on the index
``report_by_actor_occurred_at`` (equality on ``actor``, range on ``occurred_at``); the services
the caller may see are filtered after the range scan (the range holds only the caller's own
entries), which keeps the query on that index on every MongoDB-protocol server and avoids long
``$in`` lists. Entries past their expiry that the TTL monitor (about once a minute) has not
removed yet are left out. :func:`report_csv` renders entries as the downloadable CSV file.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Sequence, Set
from datetime import UTC, datetime
from typing import Literal
from uuid import UUID

from callback_shared.models import Contract, UtcDateTime
from callback_shared.mongo import CANCELLATION_REPORT, Document
from callback_shared.reports import ReportStatus
from callback_shared.states import CallbackState
from pydantic import Field
from pymongo.asynchronous.database import AsyncDatabase

#: ``services`` argument of :func:`recent_cancellations` for a user granted every service.
ALL_SERVICES: Literal["all"] = "all"
#: Media type of :func:`report_csv`'s output.
CSV_MEDIA_TYPE = "text/csv; charset=utf-8"


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
