"""What the API shows: callback records with their warning and markers, and the other bodies."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date, datetime
from enum import StrEnum
from types import MappingProxyType
from typing import Annotated, Any
from uuid import UUID

from callback_shared.documents import cancel_pending, not_yet_due, overdue_message
from callback_shared.models import (
    Callback,
    CallbackType,
    RequestDateTime,
    ServiceConfig,
    TimelineEntry,
    UtcDateTime,
)
from callback_shared.mongo import Document
from callback_shared.record import F
from callback_shared.states import CANCELLABLE_STATES, CallbackResult, CallbackState
from pydantic import BaseModel, ConfigDict, Field, model_validator

from callback_admin_api.listing import RangePreset, SearchField
from callback_admin_api.rules import MAX_BULK_ITEMS, MAX_PAGE_SIZE


class Derived(BaseModel):
    """What every view of a callback shows beside its record (list, detail, search, commands),
    derived in one place (:func:`derived`)."""

    overdue: bool = Field(
        description="Late (warning icon): still SCHEDULED after its desired window, routing "
        "silent past the service's bound, or a call not reported ended past the stall bound."
    )
    overdue_message: str | None = Field(description="What is late and why, when overdue.")
    cancel_pending: bool = Field(
        description="A cancel was asked of routing and waits for its answer (cancel_request)."
    )
    originated_as_scheduled: bool = Field(description="Created as SCHEDULED (calendar icon).")
    can_cancel: bool
    can_reschedule: bool
    can_recreate: bool


def derived(doc: Document, config: ServiceConfig, now: datetime) -> dict[str, Any]:
    """The :class:`Derived` fields of a callback document."""
    late = overdue_message(doc, config, now)
    pending = cancel_pending(doc)
    state = doc[F.STATE]
    return {
        "overdue": late is not None,
        "overdue_message": late,
        "cancel_pending": pending,
        "originated_as_scheduled": doc[F.TYPE] == CallbackType.SCHEDULED,
        "can_cancel": state in CANCELLABLE_STATES and not pending,
        "can_reschedule": not_yet_due(doc, now),
        "can_recreate": state == CallbackState.COMPLETED,
    }


class CallbackView(Callback, Derived):
    """A callback record as the Callback tab shows it."""

    timeline: list[TimelineEntry] | None = Field(  # type: ignore[assignment]
        None, description="Every state change with its time and actor (advanced=true only)."
    )


#: What a callback document holds that the API shows (``_id`` becomes ``id``).
RECORD_FIELDS = frozenset(Callback.model_fields) - {"id"}


def callback_view(
    doc: Document, config: ServiceConfig, now: datetime, *, advanced: bool = False
) -> CallbackView:
    """The record as :func:`~callback_shared.documents.callback_from_document` reads it, plus
    the derived fields; validated once (a list page makes up to ``MAX_PAGE_SIZE`` of these)."""
    # internal fields, and any another service may add, are not shown
    record = {key: value for key, value in doc.items() if key in RECORD_FIELDS}
    if not advanced:
        record.pop(F.TIMELINE, None)
    return CallbackView.model_validate({**record, "id": doc["_id"], **derived(doc, config, now)})


class CallbackPage(BaseModel):
    items: list[CallbackView]
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page; null: last.")
    page_size: int
    range_from: UtcDateTime = Field(description="Start of the desired-time range shown.")
    range_to: UtcDateTime = Field(description="End (excluded) of the desired-time range shown.")
    range: RangePreset | None = None


class SearchRow(Derived):
    """One row of Callback Search (the guide's columns)."""

    from_number: str | None = Field(description='"From" Number')
    state: CallbackState
    result: CallbackResult | None
    route_point: str | None
    last_updated_time: UtcDateTime
    queue: str | None
    to_number: str | None
    callback_id: UUID
    scheduled_time: UtcDateTime = Field(description="The Desired Callback Time.")
    diagnostic_data: dict[str, Any]
    service_name: str
    customer_number: str


class SearchResults(BaseModel):
    items: list[SearchRow]


def search_row(doc: Document, config: ServiceConfig, now: datetime) -> SearchRow:
    return SearchRow(
        **derived(doc, config, now),
        from_number=doc.get(F.FROM_NUMBER),
        state=doc[F.STATE],
        result=doc.get(F.RESULT),
        route_point=doc.get(F.ROUTE_POINT),
        last_updated_time=doc[F.UPDATED_AT],
        queue=doc.get(F.QUEUE),
        to_number=doc.get(F.TO_NUMBER),
        callback_id=doc["_id"],
        scheduled_time=doc[F.DESIRED_TIME],
        diagnostic_data=doc.get(F.DIAGNOSTIC_DATA) or {},
        service_name=doc[F.SERVICE_NAME],
        customer_number=doc[F.CUSTOMER_NUMBER],
    )


class Slot(BaseModel):
    start: UtcDateTime = Field(description="Use as desired_time to schedule in this slot.")
    local_start: datetime = Field(description="The same moment in the service's time zone.")
    capacity: int
    taken: int
    remaining: int


class Availability(BaseModel):
    service_name: str
    date: date
    time_zone: str
    slot_length_minutes: int
    closed: bool = Field(description="A closed date, or a weekday without office hours.")
    slots: list[Slot] = Field(description="Open slots with remaining capacity, in order.")


class ServiceView(BaseModel):
    settings: ServiceConfig
    stored: bool = Field(description="False: no settings stored, the defaults apply.")


class ServiceList(BaseModel):
    items: list[ServiceView]


class RecreateCallback(BaseModel):
    """A new callback for the same customer and service, linked to the completed original."""

    model_config = ConfigDict(extra="forbid")

    type: CallbackType = CallbackType.IMMEDIATE
    desired_time: RequestDateTime | None = None
    priority: int | None = Field(None, ge=0, le=100, description="Default: the original's.")


# --- bulk cancel ----------------------------------------------------------------------------------

#: Most ids one bulk cancel names.
MAX_BULK_IDS = 1000


class ListFilters(BaseModel):
    """The list's filters, one model for the query parameters of ``GET /callbacks``
    (:class:`ListQuery`) and a bulk cancel's ``all_in_range`` (:class:`RangeFilters`): a range
    preset or from/to, states, services, the search box."""

    range: RangePreset | None = Field(None, description="Preset range (default last_14_days).")
    from_: RequestDateTime | None = Field(
        None, alias="from", description="Custom range start (with to)."
    )
    to: RequestDateTime | None = Field(None, description="Custom range end, excluded.")
    tz: str = Field("UTC", max_length=64, description="Time zone of the presets' days (IANA).")
    state: list[CallbackState] | None = Field(
        None, description="Repeatable; absent = ALL states (a bulk cancel: every open state)."
    )
    service: list[Annotated[str, Field(min_length=1, max_length=200)]] | None = Field(
        None, description="Repeatable; absent = ALL granted services."
    )
    field: SearchField | None = Field(None, description="Search box column.")
    q: str | None = Field(None, max_length=100, description="Search box prefix.")


class ListQuery(ListFilters):
    """The query parameters of ``GET /callbacks``: the filters, and which page."""

    page_size: int = Field(MAX_PAGE_SIZE, ge=1, le=MAX_PAGE_SIZE)
    cursor: str | None = Field(None, max_length=500, description="From next_cursor.")


class RangeFilters(ListFilters):
    """The filters of ``GET /callbacks``: a range preset or from/to, states, services, search."""

    # a bulk cancel's all_in_range: a member it does not know is refused
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class BulkCancelRequest(BaseModel):
    """Either ``ids`` or ``all_in_range`` (the open callbacks the list's filters select)."""

    model_config = ConfigDict(extra="forbid")

    ids: list[UUID] | None = Field(None, min_length=1, max_length=MAX_BULK_IDS)
    all_in_range: RangeFilters | None = None

    @model_validator(mode="after")
    def one_selection(self) -> BulkCancelRequest:
        if (self.ids is None) == (self.all_in_range is None):
            raise ValueError("give either ids or all_in_range")
        return self


class BulkReason(StrEnum):
    """Why a record is not (or was not) cancelled."""

    # the states a cancel is refused in (REFUSAL_REASONS, below, checks them against the state
    # machine)
    PROCESSING = "PROCESSING"
    COMPLETED = "COMPLETED"
    #: missing, or in a service not granted to the caller: the same answer, nothing revealed
    NOT_FOUND = "NOT_FOUND"
    #: its state kept changing while it was being cancelled; left as it is
    CHANGING = "CHANGING"


#: The reason a cancel is refused, for every state the state machine allows no cancel from (no
#: transition to COMPLETED(CANCELLED_BY_ADMIN)): the state's own name. A state that becomes
#: uncancellable without a reason of that name stops the import here.
REFUSAL_REASONS: Mapping[CallbackState, BulkReason] = MappingProxyType(
    {state: BulkReason(state.value) for state in CallbackState if state not in CANCELLABLE_STATES}
)


class BulkOutcome(StrEnum):
    WOULD_CANCEL = "WOULD_CANCEL"  # preview
    EXCLUDED = "EXCLUDED"  # preview
    CANCELLED = "CANCELLED"
    #: routing may hold it: the cancel was asked of routing and is pending until it answers
    REQUESTED = "REQUESTED"
    REFUSED = "REFUSED"  # not cancellable at that moment: announced as a refused cancellation
    SKIPPED = "SKIPPED"  # not found / not permitted, or kept changing: nothing announced


class BulkItem(BaseModel):
    """One record of a bulk cancel; a NOT_FOUND one shows its id only."""

    id: UUID
    outcome: BulkOutcome
    reason: BulkReason | None = None
    state: CallbackState | None = Field(None, description="The state it was seen in.")
    service_name: str | None = None
    customer_number: str | None = None
    desired_time: UtcDateTime | None = None
    derived: Derived | None = Field(
        None,
        description="Every view's derived fields, of the record as this answer leaves it (null "
        "when it was not found).",
    )


class BulkCancelPreview(BaseModel):
    total: int = Field(description="Records considered.")
    would_cancel: int
    excluded: int
    excluded_by_reason: dict[BulkReason, int]
    items: list[BulkItem] = Field(description=f"The first {MAX_BULK_ITEMS} would-cancel records.")
    excluded_items: list[BulkItem] = Field(description=f"The first {MAX_BULK_ITEMS} excluded.")
    truncated: bool = Field(description="More records than listed.")


class JobState(StrEnum):
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"


class BulkCancelResult(BaseModel):
    """A bulk cancel's outcome (``items`` only in the answer of a synchronous one)."""

    batch_id: UUID
    actor: str
    state: JobState
    total_seen: int
    cancelled: int
    requested: int = Field(
        0, description="Asked of routing (it may hold them): pending until routing answers."
    )
    refused: int
    skipped: int
    refused_by_reason: dict[BulkReason, int] = Field(default_factory=dict)
    started_at: UtcDateTime
    finished_at: UtcDateTime | None = None
    updated_at: UtcDateTime | None = Field(None, description="Last progress of a job.")
    error: str | None = None
    items: list[BulkItem] = Field(
        default_factory=list, description=f"The first {MAX_BULK_ITEMS} records and outcomes."
    )
    truncated: bool = False
