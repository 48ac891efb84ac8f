"""Rules of the guide and of the request guards: the API's limits, and plain functions (no I/O)."""

from __future__ import annotations

from datetime import datetime

from callback_shared.models import NAME_RECORDING_KEPT_FOR, DuplicateCheck
from callback_shared.mongo import Document
from callback_shared.record import F, TimelineF
from callback_shared.states import CallbackState

#: The Callback tab's page size, and the most a list page may hold (``page_size``).
MAX_PAGE_SIZE = 250
#: The most rows Callback Search answers.
SEARCH_LIMIT = 250
#: The most records a bulk cancel answer lists (its counts cover every one).
MAX_BULK_ITEMS = 250

#: Open callbacks one customer number may have in a service, per duplicate-check setting.
OPEN_CALLBACKS_ALLOWED: dict[DuplicateCheck, int | None] = {
    DuplicateCheck.OFF: None,
    DuplicateCheck.MAX_2: 2,
    DuplicateCheck.STRICT_1: 1,
}


def completion_time(doc: Document) -> datetime:
    """When the callback was completed: its COMPLETED timeline entry, else its last update."""
    completed: list[datetime] = [
        entry["at"]
        for entry in doc.get(F.TIMELINE, [])
        if entry[TimelineF.STATE] == CallbackState.COMPLETED
    ]
    if completed:
        return max(completed)
    at: datetime = doc.get(F.COMPLETED_AT) or doc[F.UPDATED_AT]
    return at


def keeps_name_recording(original: Document, now: datetime) -> bool:
    """A recreate keeps the name recording only within 4 days of the original's completion."""
    return now - completion_time(original) <= NAME_RECORDING_KEPT_FOR
