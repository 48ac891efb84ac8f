"""The callback record's shape in MongoDB: its fields declared once.

:class:`CallbackDocument` (and the nested :class:`TimelineEntryDocument`,
:class:`CancelRequestDocument`, :class:`OutboxEntryDocument`) declare the stored document; what
each field means is told in :mod:`callback_shared.documents` and :mod:`callback_shared.models`.
Code names a field through the constants of :class:`F` (and :class:`TimelineF`,
:class:`CancelRequestF`, :class:`OutboxF`), never a string literal: reads (``doc[F.STATE]``),
filters, updates, projections, index keys and dotted paths (:func:`path`). A misspelt constant is
a type error, and each constant is a ``Literal`` type, so mypy checks ``doc[F.STATE]`` against a
value typed :class:`CallbackDocument`. ``tests/foundation/test_one_home.py`` checks that the
constants are exactly the declared keys and that no service spells a field as a literal.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Final, Required, TypedDict
from uuid import UUID


class TimelineEntryDocument(TypedDict):
    """One entry of ``timeline`` (a :class:`~callback_shared.models.TimelineEntry`)."""

    at: datetime
    state: str
    result: str | None
    actor: str | None
    source: str
    note: str | None
    event_id: UUID | None


class CancelRequestDocument(TypedDict):
    """``cancel_request`` (a :class:`~callback_shared.models.CancelRequest`)."""

    requested_at: datetime
    actor: str | None
    batch_id: UUID | None
    state: str
    status: str
    answered_at: datetime | None
    reason: str | None


class OutboxEntryDocument(TypedDict):
    """One entry of ``outbox`` (:func:`callback_shared.outbox.outbox_entry`)."""

    event_id: UUID
    topic: str
    key: str
    payload: str


class CallbackDocument(TypedDict, total=False):
    """A document of the ``callbacks`` collection. Required: what every record has from its
    insert on; the others come and go with the record's state."""

    _id: Required[UUID]
    service_name: Required[str]
    customer_number: Required[str]
    customer_number_prefix: str
    type: Required[str]
    desired_time: Required[datetime]
    state: Required[str]
    result: str | None
    priority: int
    name_recording_uri: str | None
    created_at: Required[datetime]
    updated_at: Required[datetime]
    created_by: str | None
    recreated_from: UUID | None
    position_in_queue: int | None
    estimated_wait_seconds: float | None
    route_point: str | None
    queue: str | None
    agent: str | None
    from_number: str | None
    to_number: str | None
    dial_attempts: int
    diagnostic_data: dict[str, Any]
    cancel_request: CancelRequestDocument
    timeline: list[TimelineEntryDocument]
    completed_at: datetime
    expire_at: Required[datetime]
    attempt: Required[int]
    dispatch_at: datetime
    routing_sequence: int
    applied_events: list[UUID]
    routing_seen_at: datetime
    cancel_pending_since: datetime
    cancelled_in_batch: UUID
    outbox: list[OutboxEntryDocument]
    outbox_since: datetime


class F:
    """The fields of :class:`CallbackDocument`, one constant each."""

    ID: Final = "_id"
    SERVICE_NAME: Final = "service_name"
    CUSTOMER_NUMBER: Final = "customer_number"
    #: The customer number's "+" and first :data:`NUMBER_PREFIX_DIGITS` digits (country and
    #: area code, mostly): the search box's index for a phone prefix of exactly that many
    #: digits, read a page at a time like the list. Set at insert; ``ensure_indexes`` (every
    #: service's start, ``callback-bootstrap``) sets it on records stored before it existed.
    CUSTOMER_NUMBER_PREFIX: Final = "customer_number_prefix"
    TYPE: Final = "type"
    DESIRED_TIME: Final = "desired_time"
    STATE: Final = "state"
    RESULT: Final = "result"
    PRIORITY: Final = "priority"
    NAME_RECORDING_URI: Final = "name_recording_uri"
    CREATED_AT: Final = "created_at"
    UPDATED_AT: Final = "updated_at"
    CREATED_BY: Final = "created_by"
    RECREATED_FROM: Final = "recreated_from"
    POSITION_IN_QUEUE: Final = "position_in_queue"
    ESTIMATED_WAIT_SECONDS: Final = "estimated_wait_seconds"
    ROUTE_POINT: Final = "route_point"
    QUEUE: Final = "queue"
    AGENT: Final = "agent"
    FROM_NUMBER: Final = "from_number"
    TO_NUMBER: Final = "to_number"
    DIAL_ATTEMPTS: Final = "dial_attempts"
    DIAGNOSTIC_DATA: Final = "diagnostic_data"
    #: The record's account of a cancel asked of routing (:class:`CancelRequestF`).
    CANCEL_REQUEST: Final = "cancel_request"
    TIMELINE: Final = "timeline"
    COMPLETED_AT: Final = "completed_at"
    EXPIRE_AT: Final = "expire_at"
    ATTEMPT: Final = "attempt"
    DISPATCH_AT: Final = "dispatch_at"
    ROUTING_SEQUENCE: Final = "routing_sequence"
    APPLIED_EVENTS: Final = "applied_events"
    #: While routing holds an attempt (QUEUED, ROUTING, PROCESSING): when the platform last
    #: heard of it (any routing event of the attempt applied); the scheduler reclaims a silent
    #: one.
    ROUTING_SEEN_AT: Final = "routing_seen_at"
    #: While a cancel waits for routing's answer: when it was (last) sent to routing.
    CANCEL_PENDING_SINCE: Final = "cancel_pending_since"
    #: The bulk cancel batch that cancelled the callback (how the batch tells its own
    #: cancellations from anyone else's when it reads the callbacks back).
    CANCELLED_IN_BATCH: Final = "cancelled_in_batch"
    OUTBOX: Final = "outbox"
    #: Set while the outbox holds events: the relay's (sparse) index key.
    OUTBOX_SINCE: Final = "outbox_since"


class TimelineF:
    """The fields of :class:`TimelineEntryDocument`."""

    AT: Final = "at"
    STATE: Final = "state"
    RESULT: Final = "result"
    ACTOR: Final = "actor"
    SOURCE: Final = "source"
    NOTE: Final = "note"
    EVENT_ID: Final = "event_id"


class CancelRequestF:
    """The fields of :class:`CancelRequestDocument`."""

    REQUESTED_AT: Final = "requested_at"
    ACTOR: Final = "actor"
    BATCH_ID: Final = "batch_id"
    STATE: Final = "state"
    STATUS: Final = "status"
    ANSWERED_AT: Final = "answered_at"
    REASON: Final = "reason"


class OutboxF:
    """The fields of :class:`OutboxEntryDocument`."""

    EVENT_ID: Final = "event_id"
    TOPIC: Final = "topic"
    KEY: Final = "key"
    PAYLOAD: Final = "payload"


def path(*fields: str) -> str:
    """A dotted path into a nested field, for filters and updates:
    ``path(F.CANCEL_REQUEST, CancelRequestF.STATUS)``."""
    return ".".join(fields)


#: Digits of a customer number (after its "+") kept in ``customer_number_prefix``.
NUMBER_PREFIX_DIGITS = 6


def number_prefix(customer_number: str) -> str:
    """The ``customer_number_prefix`` of an E.164 number: "+" and its first digits."""
    return customer_number[: NUMBER_PREFIX_DIGITS + 1]


#: :func:`number_prefix` as a MongoDB expression (to set it on stored records).
NUMBER_PREFIX_EXPRESSION = {"$substrCP": [f"${F.CUSTOMER_NUMBER}", 0, NUMBER_PREFIX_DIGITS + 1]}
