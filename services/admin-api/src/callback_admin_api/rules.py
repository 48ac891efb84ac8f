"""Rules of the guide and of the request guards, as plain functions (no I/O)."""

from __future__ import annotations

from datetime import datetime

from callback_shared.models import NAME_RECORDING_KEPT_FOR, DuplicateCheck
from callback_shared.mongo import Document
from callback_shared.states import CallbackState

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
        for entry in doc.get("timeline", [])
        if entry["state"] == CallbackState.COMPLETED
    ]
    if completed:
        return max(completed)
    at: datetime = doc.get("completed_at") or doc["updated_at"]
    return at


def keeps_name_recording(original: Document, now: datetime) -> bool:
    """A recreate keeps the name recording only within 4 days of the original's completion."""
    return now - completion_time(original) <= NAME_RECORDING_KEPT_FOR
