"""Contracts: the callback record, admin commands and every Kafka event (pydantic v2).

Every event carries ``event_id``, ``schema_version`` and ``occurred_at`` and is keyed on Kafka by
its ``callback_id`` so one callback's events stay ordered.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from enum import StrEnum
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit
from uuid import UUID, uuid4
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator, model_validator

from callback_shared.states import CallbackResult, CallbackState

#: Fixed by the guide: a record lives 14 days after its Desired Callback Time (no setting).
RETENTION = timedelta(days=14)
#: Default length of the desired window (per service).
DEFAULT_DESIRED_WINDOW = timedelta(minutes=2)
#: A name recording survives a recreate or reschedule made within this time of completion.
NAME_RECORDING_KEPT_FOR = timedelta(days=4)


def utcnow() -> datetime:
    return datetime.now(UTC)


#: The days a request may name (a desired time, a list's range, an availability date): far
#: wider than any real use, and clear of the calendar's edges (years 1 and 9999), where the
#: arithmetic on a time (a time zone, a day or a window added) would overflow.
EARLIEST_ACCEPTED = date(1970, 1, 1)
LATEST_ACCEPTED = date(2999, 12, 31)
_OUT_OF_RANGE = f"must lie between {EARLIEST_ACCEPTED} and {LATEST_ACCEPTED}"


def _aware_utc(value: datetime) -> datetime:
    if value.tzinfo is None:
        raise ValueError("must carry a time zone (e.g. Z or +00:00)")
    try:
        return value.astimezone(UTC)
    except OverflowError:
        raise ValueError(_OUT_OF_RANGE) from None


def _accepted_time(value: datetime) -> datetime:
    if not EARLIEST_ACCEPTED <= value.date() <= LATEST_ACCEPTED:
        raise ValueError(_OUT_OF_RANGE)
    return value


def _accepted_date(value: date) -> date:
    if not EARLIEST_ACCEPTED <= value <= LATEST_ACCEPTED:
        raise ValueError(_OUT_OF_RANGE)
    return value


UtcDateTime = Annotated[datetime, AfterValidator(_aware_utc)]
#: A time a request names: aware, in UTC, within the accepted days.
RequestDateTime = Annotated[UtcDateTime, AfterValidator(_accepted_time)]
#: A date a request names, within the accepted days.
RequestDate = Annotated[date, AfterValidator(_accepted_date)]


def expire_at(desired_time: datetime) -> datetime:
    """When the TTL index deletes a record: :data:`RETENTION` after its desired time."""
    return desired_time + RETENTION


class CallbackType(StrEnum):
    IMMEDIATE = "IMMEDIATE"
    SCHEDULED = "SCHEDULED"


class Contract(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TimelineEntry(Contract):
    """One change of a callback: when, into which state, by whom or what."""

    at: UtcDateTime
    state: CallbackState
    result: CallbackResult | None = None
    actor: str | None = None
    source: str = Field(description="What made the change: admin-api, routing, scheduler...")
    note: str | None = None
    event_id: UUID | None = Field(None, description="The event that made the change, if any.")


class CancelRequestStatus(StrEnum):
    #: sent to routing, which may hold the callback: waiting for its answer
    PENDING = "PENDING"
    #: routing removed it (nothing dialled, agent released) or never held it
    CANCELLED = "CANCELLED"
    #: routing had already connected it to an agent, or it ended otherwise first
    REFUSED = "REFUSED"


class CancelRequest(Contract):
    """A cancel of a callback that routing may hold: asked of routing, then answered."""

    requested_at: UtcDateTime
    actor: str | None = None
    batch_id: UUID | None = Field(None, description="The bulk cancel, or null for a single one.")
    state: CallbackState = Field(description="The callback's state when the cancel was asked.")
    status: CancelRequestStatus
    answered_at: UtcDateTime | None = None
    reason: str | None = Field(None, description="Why routing refused, or how it answered.")


class Callback(Contract):
    """The callback record as the API shows it (stored in MongoDB with ``_id`` = ``id``)."""

    id: UUID
    service_name: str
    customer_number: str = Field(description="E.164")
    type: CallbackType
    desired_time: UtcDateTime
    state: CallbackState
    result: CallbackResult | None = None
    priority: int = 0
    name_recording_uri: str | None = None
    created_at: UtcDateTime
    updated_at: UtcDateTime
    created_by: str | None = None
    recreated_from: UUID | None = None
    position_in_queue: int | None = None
    estimated_wait_seconds: float | None = None
    route_point: str | None = None
    queue: str | None = None
    agent: str | None = None
    from_number: str | None = None
    to_number: str | None = None
    dial_attempts: int = 0
    diagnostic_data: dict[str, Any] = Field(default_factory=dict)
    cancel_request: CancelRequest | None = Field(
        None,
        description="A cancel asked of routing (the callback was due, QUEUED or ROUTING): "
        "PENDING until routing answers.",
    )
    timeline: list[TimelineEntry] = Field(default_factory=list)


# --- services (virtual queues) -----------------------------------------------------------------


class DuplicateCheck(StrEnum):
    OFF = "off"
    MAX_2 = "max_2"
    STRICT_1 = "strict_1"


class DialRetryPolicy(Contract):
    max_attempts: int = Field(3, ge=1, le=20, description="Dial attempts before COMPLETED(FAILED).")
    min_interval_seconds: float = Field(
        300, ge=0, description="Wait between a failed dial and the next attempt."
    )


class Weekday(StrEnum):
    MONDAY = "monday"
    TUESDAY = "tuesday"
    WEDNESDAY = "wednesday"
    THURSDAY = "thursday"
    FRIDAY = "friday"
    SATURDAY = "saturday"
    SUNDAY = "sunday"

    @classmethod
    def of(cls, day: date) -> Weekday:
        return list(cls)[day.weekday()]


def _minutes(hh_mm: str) -> int:
    hours, minutes = hh_mm.split(":")
    return int(hours) * 60 + int(minutes)


class OfficeHours(Contract):
    """One opening of a day, in the service's local time; ``closes`` may be ``24:00``."""

    opens: str = Field("00:00", pattern=r"^([01]\d|2[0-3]):[0-5]\d$", examples=["08:00"])
    closes: str = Field("24:00", pattern=r"^(([01]\d|2[0-3]):[0-5]\d|24:00)$", examples=["18:00"])

    @model_validator(mode="after")
    def _closes_after_opening(self) -> OfficeHours:
        if self.closes_minute <= self.opens_minute:
            raise ValueError("closes must be later than opens")
        return self

    @property
    def opens_minute(self) -> int:
        """Minutes after local midnight."""
        return _minutes(self.opens)

    @property
    def closes_minute(self) -> int:
        return _minutes(self.closes)


def _open_every_day() -> dict[Weekday, list[OfficeHours]]:
    return {day: [OfficeHours()] for day in Weekday}


class ImmediateOutsideOfficeHours(StrEnum):
    REFUSE = "refuse"
    ACCEPT = "accept"


class RequestGuards(Contract):
    """What a create request must pass, per service (PRODUCT.md, request guards)."""

    duplicate_check: DuplicateCheck = Field(
        DuplicateCheck.STRICT_1,
        description="Open callbacks allowed per customer number: off, at most 2, strictly 1.",
    )
    max_requests_per_number_per_day: int | None = Field(
        10,
        ge=1,
        le=100_000,
        description="Accepted requests per customer number per local day; null: no cap.",
    )
    max_open_callbacks: int | None = Field(
        None, ge=1, le=10_000_000, description="Open callbacks of the service; null: no cap."
    )
    immediate_outside_office_hours: ImmediateOutsideOfficeHours = Field(
        ImmediateOutsideOfficeHours.REFUSE,
        description="What happens to an immediate request outside office hours.",
    )
    refuse_premium_rate: bool = Field(True, description="Refuse premium-rate customer numbers.")


class ServiceConfig(Contract):
    """Settings of one service (virtual queue); stored in ``services`` with ``_id`` = name.

    A service with no stored settings uses these defaults.
    """

    name: str = Field(min_length=1, max_length=200)
    time_zone: str = Field(
        "UTC", max_length=64, description="IANA time zone of office hours and closed dates."
    )
    desired_window_seconds: int = Field(
        int(DEFAULT_DESIRED_WINDOW.total_seconds()), ge=1, le=86_400
    )
    dial_retry: DialRetryPolicy = Field(default_factory=DialRetryPolicy)
    default_country: str = Field(
        "US",
        pattern=r"^[A-Z]{2}$",
        description="ISO 3166 region completing national customer numbers.",
    )
    office_hours: dict[Weekday, list[OfficeHours]] = Field(
        default_factory=_open_every_day,
        description="Openings per weekday in local time; a weekday left out is closed.",
    )
    closed_dates: list[date] = Field(
        default_factory=list, max_length=1000, description="Local dates the service is closed."
    )
    slot_length_minutes: int = Field(
        15, ge=1, le=1440, description="Length of a scheduling slot; slots start at opening."
    )
    slot_capacity: int = Field(10, ge=1, le=100_000, description="Callbacks one slot may hold.")
    schedule_horizon_days: int = Field(
        30, ge=1, le=366, description="How far ahead a callback may be scheduled."
    )
    routing_silence_seconds: float = Field(
        120,
        ge=5,
        le=86_400,
        description="A QUEUED or ROUTING callback with no sign of life from routing for this "
        "long is reclaimed: its attempt is closed as lost and the next one starts (or FAILED).",
    )
    processing_stall_seconds: float = Field(
        3600,
        ge=5,
        le=7 * 86_400,
        description="A PROCESSING callback without completion from routing for this long is "
        "flagged as stalled (shown overdue, logged, counted).",
    )
    guards: RequestGuards = Field(default_factory=RequestGuards)

    @field_validator("time_zone")
    @classmethod
    def _known_time_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError, OSError):
            raise ValueError(f"unknown time zone {value!r}") from None
        return value

    @classmethod
    def from_document(cls, doc: dict[str, Any]) -> ServiceConfig:
        """The settings stored in ``services`` (``_id`` = name)."""
        return cls.model_validate(
            {k: v for k, v in doc.items() if k != "_id"} | {"name": doc["_id"]}
        )

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.time_zone)

    @property
    def desired_window(self) -> timedelta:
        return timedelta(seconds=self.desired_window_seconds)


# --- commands (admin API request bodies) -------------------------------------------------------


#: Schemes of a name-recording reference: what routing can fetch a recording from.
RECORDING_SCHEMES = frozenset({"https", "http"})


def _recording_uri(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme.lower() not in RECORDING_SCHEMES or not parts.netloc:
        raise ValueError(
            f"must be an absolute {' or '.join(sorted(RECORDING_SCHEMES))} URL (e.g. "
            "https://recordings.example.com/name.wav)"
        )
    return value


RecordingUri = Annotated[str, Field(max_length=2000), AfterValidator(_recording_uri)]


class CreateCallback(Contract):
    type: CallbackType
    service_name: str = Field(min_length=1, max_length=200)
    customer_number: str = Field(min_length=1, max_length=40)
    desired_time: RequestDateTime | None = None
    name_recording_uri: RecordingUri | None = None
    priority: int = Field(0, ge=0, le=100)


class RescheduleCallback(Contract):
    desired_time: RequestDateTime


# --- events ------------------------------------------------------------------------------------


class Event(Contract):
    event_id: UUID = Field(default_factory=uuid4)
    schema_version: Literal[1] = 1
    occurred_at: UtcDateTime = Field(default_factory=utcnow)
    callback_id: UUID

    @property
    def key(self) -> bytes:
        """The Kafka message key: the callback id keeps one callback's events in order."""
        return str(self.callback_id).encode()


class DueCallback(Event):
    """scheduler -> routing: this callback is due now; ``attempt`` counts dial attempts from 1."""

    service_name: str
    customer_number: str
    type: CallbackType
    desired_time: UtcDateTime
    priority: int = 0
    attempt: int = Field(ge=1)


class RoutingEventKind(StrEnum):
    QUEUED = "QUEUED"
    POSITION_UPDATED = "POSITION_UPDATED"
    #: routing still holds the attempt (QUEUED or ROUTING): sent at least every few seconds
    HELD = "HELD"
    ROUTING = "ROUTING"
    PROCESSING = "PROCESSING"
    COMPLETED = "COMPLETED"
    ABANDONED_IN_QUEUE = "ABANDONED_IN_QUEUE"
    DIAL_FAILED = "DIAL_FAILED"
    #: answer to a CANCEL command: routing removed the callback from its queue, released the
    #: reserved agent and dialled nothing (or never held it), and will never route it again
    CANCELLED = "CANCELLED"
    #: answer to a CANCEL command: routing had already connected the callback to an agent
    CANCEL_REFUSED = "CANCEL_REFUSED"


class DialFailure(StrEnum):
    NO_ANSWER = "NO_ANSWER"
    BUSY = "BUSY"


class RoutingEvent(Event):
    """routing (ORS/URS) -> state-tracker. ``sequence`` orders the events of one attempt."""

    kind: RoutingEventKind
    service_name: str
    attempt: int = Field(ge=1)
    sequence: int = Field(ge=0)
    position_in_queue: int | None = Field(None, ge=0)
    estimated_wait_seconds: float | None = Field(None, ge=0)
    agent: str | None = None
    route_point: str | None = None
    queue: str | None = None
    from_number: str | None = None
    to_number: str | None = None
    dial_failure: DialFailure | None = None
    diagnostic_data: dict[str, Any] = Field(default_factory=dict)


class RoutingCommandKind(StrEnum):
    #: an administrator cancelled the callback: take it out of routing (queue, reserved agent,
    #: any later due callback of it) and answer CANCELLED, or CANCEL_REFUSED once an agent was
    #: reached
    CANCEL = "CANCEL"
    #: the platform closed this attempt as lost: drop it if still held, dial nothing, no answer
    WITHDRAW = "WITHDRAW"


class RoutingCommand(Event):
    """platform -> routing (ORS/URS). ``attempt`` is the callback's attempt when it was given."""

    kind: RoutingCommandKind
    service_name: str
    attempt: int = Field(ge=1)
    reason: str | None = None


class LifecycleEventKind(StrEnum):
    CREATED = "CREATED"
    RESCHEDULED = "RESCHEDULED"
    STATE_CHANGED = "STATE_CHANGED"
    #: a cancel was asked of routing (the callback may be held there): CANCELLED or
    #: CANCELLATION_REFUSED follows once routing answers
    CANCEL_REQUESTED = "CANCEL_REQUESTED"
    CANCELLED = "CANCELLED"
    CANCELLATION_REFUSED = "CANCELLATION_REFUSED"
    RECREATED = "RECREATED"


class LifecycleEvent(Event):
    """A change of a callback announced to the rest of the platform (exporter, audit)."""

    kind: LifecycleEventKind
    service_name: str
    customer_number: str
    desired_time: UtcDateTime
    state: CallbackState
    result: CallbackResult | None = None
    previous_state: CallbackState | None = None
    actor: str | None = None
    batch_id: UUID | None = None
    reason: str | None = None


class DeadLetter(BaseModel):
    """A message a consumer could not use, parked with the reason."""

    model_config = ConfigDict(frozen=True)

    event_id: UUID = Field(default_factory=uuid4)
    schema_version: Literal[1] = 1
    occurred_at: UtcDateTime = Field(default_factory=utcnow)
    source_topic: str
    partition: int
    offset: int
    key: str | None
    payload: str
    reason: str
