"""The Callback tab's list: time range, state and service filters, the search box, pages.

:func:`list_filter` turns :class:`ListCriteria` into one MongoDB filter (bulk cancel reuses it).
:func:`query_plan` splits the same criteria into index-friendly queries for a page: one query
per (service, state) pair when there are few (each walks a compound index on
``service_name, state, desired_time, _id``), the search box's clause added as a residual, and
whether the page is read in growing windows of desired time (see the repository).

A phone prefix of exactly :data:`~callback_shared.record.NUMBER_PREFIX_DIGITS` digits is the
stored ``customer_number_prefix`` (equality): its pages are read like the list's, led by that
field, so a page reads about a page of entries however many callbacks share the prefix.

User input only ever becomes a *value* in these filters: prefixes are range bounds
(``{$gte: q, $lt: q + '\\uffff'}``) or the stored prefix, never a regular expression or an
operator.
"""

from __future__ import annotations

import base64
import binascii
import itertools
import json
import math
import re
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any
from uuid import UUID
from zoneinfo import ZoneInfo

from callback_shared.mongo import Document
from callback_shared.record import NUMBER_PREFIX_DIGITS, F
from callback_shared.states import CallbackState

#: Above this many (service, state) pairs, a page is one query with ``$in`` clauses.
MAX_STREAMS = 8
#: A phone-number prefix of more digits than the stored ``customer_number_prefix`` drives one
#: query by the number index (it reads every callback with that prefix: few, from 7 digits).
SELECTIVE_NUMBER_DIGITS = NUMBER_PREFIX_DIGITS + 1
#: A callback-id prefix with at least this many hexadecimal digits drives the query by ``_id``:
#: ids are random, so it matches about one callback in 16^digits (1 in 4,096 from 3).
SELECTIVE_ID_DIGITS = 3
PREFIX_END = "\uffff"


class RangePreset(StrEnum):
    TODAY = "today"
    LAST_14_DAYS = "last_14_days"
    LAST_30_DAYS = "last_30_days"
    NEXT_7_DAYS = "next_7_days"
    NEXT_2_WEEKS = "next_2_weeks"


class SearchField(StrEnum):
    """The column the search box matches a prefix of."""

    PHONE_NUMBER = "phone_number"
    SERVICE_NAME = "service_name"
    ID = "id"
    STATE = "state"


class InvalidCriteria(ValueError):
    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field, self.message = field, message


def resolve_range(
    preset: RangePreset | None,
    start: datetime | None,
    end: datetime | None,
    *,
    now: datetime,
    zone: ZoneInfo,
) -> tuple[datetime, datetime]:
    """``[start, end)`` on desired time: a preset (days in ``zone``) or a custom from/to."""
    if start is not None or end is not None:
        if preset is not None:
            raise InvalidCriteria("range", "give either range or from/to, not both")
        if start is None or end is None:
            raise InvalidCriteria("from" if start is None else "to", "from and to go together")
        if end <= start:
            raise InvalidCriteria("to", "must be later than from")
        return start, end
    preset = preset or RangePreset.LAST_14_DAYS
    if preset is RangePreset.TODAY:
        local = now.astimezone(zone).replace(hour=0, minute=0, second=0, microsecond=0)
        tomorrow = (local + timedelta(days=1)).replace(hour=0)
        return local.astimezone(UTC), tomorrow.astimezone(UTC)
    days = {
        RangePreset.LAST_14_DAYS: -14,
        RangePreset.LAST_30_DAYS: -30,
        RangePreset.NEXT_7_DAYS: 7,
        RangePreset.NEXT_2_WEEKS: 14,
    }[preset]
    other = now + timedelta(days=days)
    return (other, now) if days < 0 else (now, other)


@dataclass(frozen=True)
class ListCriteria:
    """What a list shows: desired time in ``[start, end)``; ``None`` services/states = ALL."""

    start: datetime
    end: datetime
    services: frozenset[str] | None = None
    states: frozenset[CallbackState] | None = None
    #: the search box's clause on one field (already a safe MongoDB clause), if any
    search: Document = field(default_factory=dict)
    #: the search box's field, when it has a clause
    search_field: SearchField | None = None

    @property
    def matches_nothing(self) -> bool:
        return self.services == frozenset() or self.states == frozenset()


def build_criteria(
    start: datetime,
    end: datetime,
    *,
    services: frozenset[str] | None,
    states: frozenset[CallbackState] | None,
    search_field: SearchField | None,
    q: str | None,
) -> ListCriteria:
    """Criteria with the search box folded in (a state or service prefix narrows the sets)."""
    criteria = ListCriteria(start, end, services, states)
    if q is None or q == "":
        return criteria
    if search_field is None:
        raise InvalidCriteria("field", "required with q")
    if search_field is SearchField.STATE:
        prefix = q.strip().upper()
        matching = frozenset(state for state in CallbackState if state.value.startswith(prefix))
        return replace(criteria, states=matching if states is None else states & matching)
    if search_field is SearchField.SERVICE_NAME and services is not None:
        return replace(criteria, services=frozenset(s for s in services if s.startswith(q)))
    clause = search_clause(search_field, q)
    return replace(criteria, search=clause, search_field=search_field)


def search_clause(search_field: SearchField, q: str) -> Document:
    """The MongoDB clause matching a prefix of ``search_field``."""
    if search_field is SearchField.PHONE_NUMBER:
        digits = re.sub(r"[\s().-]", "", q).removeprefix("+")
        if not digits.isdigit() or not digits.isascii():
            raise InvalidCriteria("q", "a phone number prefix holds digits only")
        prefix = "+" + digits
        if len(digits) == NUMBER_PREFIX_DIGITS:
            # the stored prefix: equality, so a page is read like the list's, by desired time
            return {F.CUSTOMER_NUMBER_PREFIX: prefix}
        return {F.CUSTOMER_NUMBER: {"$gte": prefix, "$lt": prefix + PREFIX_END}}
    if search_field is SearchField.SERVICE_NAME:
        return {F.SERVICE_NAME: {"$gte": q, "$lt": q + PREFIX_END}}
    if search_field is SearchField.ID:
        hex_digits = q.strip().lower().replace("-", "")
        if not re.fullmatch(r"[0-9a-f]{1,32}", hex_digits):
            raise InvalidCriteria("q", "a callback id prefix holds hexadecimal digits only")
        if len(hex_digits) == 32:
            return {"_id": UUID(hex_digits)}
        # A UUID is stored as 16 bytes (BSON binary): those of every id with this prefix lie
        # between the prefix padded with 0s and the prefix padded with fs.
        lowest, highest = hex_digits.ljust(32, "0"), hex_digits.ljust(32, "f")
        return {"_id": {"$gte": UUID(lowest), "$lte": UUID(highest)}}
    raise InvalidCriteria("field", f"cannot search {search_field}")


def _one_or_in(values: frozenset[str] | frozenset[CallbackState]) -> Any:
    ordered = sorted(str(value) for value in values)
    return ordered[0] if len(ordered) == 1 else {"$in": ordered}


def _filter_clauses(criteria: ListCriteria) -> Document:
    """The service and state filters' clauses (one value, or ``$in``)."""
    clauses: Document = {}
    if criteria.services is not None:
        clauses[F.SERVICE_NAME] = _one_or_in(criteria.services)
    if criteria.states is not None:
        clauses[F.STATE] = _one_or_in(criteria.states)
    return clauses


def list_filter(criteria: ListCriteria) -> Document:
    """The one MongoDB filter selecting every callback the criteria show."""
    return {
        F.DESIRED_TIME: {"$gte": criteria.start, "$lt": criteria.end},
        **_filter_clauses(criteria),
        **criteria.search,
    }


@dataclass(frozen=True)
class QueryPlan:
    """How a page is read: each stream is a filter without the desired-time clause; the
    repository adds the time clause of each window first (or last, see ``driver``)."""

    streams: list[Document]
    #: "time": windows of desired time lead (its index); otherwise the named field leads
    driver: str
    windowed: bool


def query_plan(criteria: ListCriteria) -> QueryPlan:
    """Which index drives a page: a whole id or a selective number prefix drive one query over
    the range; the stored number prefix, windows of desired time per (service, state) pair
    after it; otherwise windows of desired time, one query per (service, state) pair."""
    search = criteria.search
    if search:
        stream: Document = {**_filter_clauses(criteria), **search}
        field_ = criteria.search_field
        if field_ is SearchField.ID and _id_digits(search["_id"]) >= SELECTIVE_ID_DIGITS:
            return QueryPlan([_lead("_id", stream)], driver="_id", windowed=False)
        if F.CUSTOMER_NUMBER_PREFIX in search:
            streams = [{**search, **pair} for pair in _pair_streams(criteria)]
            return QueryPlan(streams, driver=F.CUSTOMER_NUMBER_PREFIX, windowed=True)
        if field_ is SearchField.PHONE_NUMBER:
            digits = len(search[F.CUSTOMER_NUMBER]["$gte"]) - 1
            if digits >= SELECTIVE_NUMBER_DIGITS:
                lead = _lead(F.CUSTOMER_NUMBER, stream)
                return QueryPlan([lead], driver=F.CUSTOMER_NUMBER, windowed=False)
        return QueryPlan([stream], driver="time", windowed=True)
    return QueryPlan(_pair_streams(criteria), driver="time", windowed=True)


def _pair_streams(criteria: ListCriteria) -> list[Document]:
    """The service and state clauses of a page's queries: one query per (service, state) pair
    (each walks an index by equality), or one with ``$in`` clauses above :data:`MAX_STREAMS`."""
    services = sorted(criteria.services) if criteria.services is not None else [None]
    states = sorted(criteria.states) if criteria.states is not None else [None]
    if len(services) * len(states) > MAX_STREAMS:
        return [_filter_clauses(criteria)]
    streams: list[Document] = []
    for service, state in itertools.product(services, states):
        stream = {}
        if service is not None:
            stream[F.SERVICE_NAME] = service
        if state is not None:
            stream[F.STATE] = str(state)
        streams.append(stream)
    return streams


def _id_digits(clause: Any) -> int:
    """How many leading hexadecimal digits an id clause fixes (32 for a whole id)."""
    if not isinstance(clause, dict):
        return 32
    lowest, highest = clause["$gte"].hex, clause["$lte"].hex
    return next((at for at, (a, b) in enumerate(zip(lowest, highest, strict=True)) if a != b), 32)


def _lead(key: str, stream: Document) -> Document:
    return {key: stream[key], **{k: v for k, v in stream.items() if k != key}}


# --- cursors ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PageCursor:
    """Where the next page starts: after (desired_time, id); ``window`` tunes the next read."""

    desired_time: datetime
    callback_id: UUID
    window_seconds: float

    def encode(self) -> str:
        raw = json.dumps(
            {
                "t": self.desired_time.isoformat(),
                "id": str(self.callback_id),
                "w": round(self.window_seconds, 3),
            },
            separators=(",", ":"),
        )
        return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")

    @classmethod
    def decode(cls, token: str) -> PageCursor:
        try:
            raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
            data = json.loads(raw)
            desired_time = datetime.fromisoformat(data["t"])
            if desired_time.tzinfo is None:
                raise ValueError("naive time")
            window = float(data["w"])
            if not math.isfinite(window) or window <= 0:
                raise ValueError("bad window")
            return cls(desired_time.astimezone(UTC), UUID(data["id"]), window)
        except (binascii.Error, ValueError, KeyError, TypeError, UnicodeDecodeError):
            raise InvalidCriteria("cursor", "not a cursor this API returned") from None
