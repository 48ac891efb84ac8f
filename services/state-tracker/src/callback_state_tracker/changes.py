"""Routing events as conditional single-document updates, through the shared state machine.

Pure functions, no I/O. Each routing event becomes one update of the callback's document (by
``_id``) that changes it only when the event may be applied: the callback is in the state the
event moves it from (a move the machine allows), the event belongs to the callback's current
dial attempt, and it is newer than the last routing event applied (``routing_sequence``). So a
redelivered, stale or forbidden event changes nothing, without a read before the write.

An answer of routing to a cancel (CANCELLED, CANCEL_REFUSED) is not part of an attempt's
sequence: it applies while the record's cancel is pending (:func:`plan_cancel_answer`).
Every applied event of an attempt routing holds stamps ``routing_seen_at`` (its sign of life,
refreshed by HELD events), which the scheduler watches to reclaim a lost attempt.

The condition is inside the update (a pipeline update, :meth:`Writes.only_if`), not in the filter:
the filter is the ``_id`` alone, a point lookup on the server (why, with the measurements:
docs/design.md).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from callback_shared.documents import DISPATCH_FIELDS, timeline_entry
from callback_shared.models import (
    CancelRequestStatus,
    DialRetryPolicy,
    RoutingEvent,
    RoutingEventKind,
)
from callback_shared.mongo import Document
from callback_shared.record import CancelRequestF, F, TimelineF, path
from callback_shared.states import (
    CANCELLABLE_STATES,
    CallbackResult,
    CallbackState,
    check_transition,
)

S, R, K = CallbackState, CallbackResult, RoutingEventKind

#: Routing's answers to a cancel (outside the attempt's sequence of events).
CANCEL_ANSWERS = frozenset({K.CANCELLED, K.CANCEL_REFUSED})
#: Events that only say routing still holds the attempt (and where it stands), in these states.
SIGNS_OF_LIFE: dict[RoutingEventKind, frozenset[CallbackState]] = {
    K.POSITION_UPDATED: frozenset({S.QUEUED}),
    K.HELD: frozenset({S.QUEUED, S.ROUTING}),
}
_CANCEL_STATUS = path(F.CANCEL_REQUEST, CancelRequestF.STATUS)
_CANCEL_REASON = path(F.CANCEL_REQUEST, CancelRequestF.REASON)
_CANCEL_ANSWERED_AT = path(F.CANCEL_REQUEST, CancelRequestF.ANSWERED_AT)
#: An aggregation expression: whether the record's cancel waits for routing's answer.
CANCEL_IS_PENDING: Document = {"$eq": [f"${_CANCEL_STATUS}", CancelRequestStatus.PENDING]}
#: The fields whether an event applies depends on, as aggregation expressions.
_STATE, _ATTEMPT, _ROUTING_SEQUENCE = (
    f"${name}" for name in (F.STATE, F.ATTEMPT, F.ROUTING_SEQUENCE)
)

#: How many applied routing event ids a document remembers (state changes only).
APPLIED_EVENTS_KEPT = 64

#: The move each kind of routing event makes: (from, to, result). QUEUED is the first event of
#: an attempt (from SCHEDULED) or, later in the attempt, a lost agent reservation (from
#: ROUTING); DIAL_FAILED depends on the retry policy (see :func:`plan_change`).
MOVES: dict[RoutingEventKind, tuple[CallbackState, CallbackState, CallbackResult | None]] = {
    K.QUEUED: (S.SCHEDULED, S.QUEUED, None),
    K.ROUTING: (S.QUEUED, S.ROUTING, None),
    K.PROCESSING: (S.ROUTING, S.PROCESSING, None),
    K.COMPLETED: (S.PROCESSING, S.COMPLETED, R.AGENT),
    K.ABANDONED_IN_QUEUE: (S.QUEUED, S.COMPLETED, R.ABANDONED_IN_QUEUE),
}

#: Routing details copied onto the record when an event carries them.
ROUTING_FIELDS = (
    F.POSITION_IN_QUEUE,
    F.ESTIMATED_WAIT_SECONDS,
    F.AGENT,
    F.ROUTE_POINT,
    F.QUEUE,
    F.FROM_NUMBER,
    F.TO_NUMBER,
)


@dataclass(frozen=True)
class Expr:
    """A value computed from the document by an aggregation expression. ``plain``: what the
    plain operators of :meth:`Writes.unconditional` write instead (the usual outcome), if any."""

    expression: Any
    plain: Any = None


def _value(value: Any) -> Any:
    return value.expression if isinstance(value, Expr) else {"$literal": value}


@dataclass(frozen=True)
class Writes:
    """What applying an event writes to a callback's document: ``$set`` ``set`` (values taken
    literally, unless an :class:`Expr`), ``$unset`` ``unset``, ``$inc`` ``inc``, and ``append``
    one item to each named array, keeping its last ``n`` items when ``n`` is given (``$push``
    with ``$slice``)."""

    set: Document
    unset: tuple[str, ...] = ()
    inc: dict[str, int] = field(default_factory=dict)
    append: dict[str, tuple[Any, int | None]] = field(default_factory=dict)

    def only_if(self, condition: Document) -> list[Document]:
        """A pipeline update making these writes where ``condition`` (an aggregation
        expression) holds, and leaving the document as it was elsewhere."""

        def changed(name: str, value: Any) -> Document:
            return {"$cond": [f"${APPLIES}", value, f"${name}"]}

        fields = {name: changed(name, _value(value)) for name, value in self.set.items()}
        fields.update({name: changed(name, "$$REMOVE") for name in self.unset})
        fields.update(
            {name: changed(name, {"$add": [f"${name}", n]}) for name, n in self.inc.items()}
        )
        for name, (item, keep) in self.append.items():
            longer: Document = {"$concatArrays": [{"$ifNull": [f"${name}", []]}, [_value(item)]]}
            fields[name] = changed(name, {"$slice": [longer, -keep]} if keep else longer)
        return [{"$set": {APPLIES: condition}}, {"$set": fields}, {"$unset": APPLIES}]

    def unconditional(self) -> Document:
        """The same writes as plain update operators, whatever the document's state: what a
        raw driver would send (the benchmark's baseline doing the same work)."""
        if any(isinstance(v, Expr) and v.plain is None for v in self.set.values()) or any(
            isinstance(item, Expr) for item, _ in self.append.values()
        ):
            raise ValueError("writes computed from the document need a pipeline update")
        plain = {k: v.plain if isinstance(v, Expr) else v for k, v in self.set.items()}
        update: Document = {"$set": plain}
        if self.unset:
            update["$unset"] = dict.fromkeys(self.unset, "")
        if self.inc:
            update["$inc"] = self.inc
        if self.append:
            update["$push"] = {
                name: {"$each": [item], **({"$slice": -keep} if keep else {})}
                for name, (item, keep) in self.append.items()
            }
        return update


#: The field a conditional update keeps its condition in while it runs (removed at the end).
APPLIES = "_applies"


@dataclass(frozen=True)
class Change:
    callback_id: Any
    #: when the event may be applied (an aggregation expression, see :func:`applicable`)
    condition: Document
    writes: Writes
    #: for a change of state: (from, to, result); None for a position update or a cancel answer
    move: tuple[CallbackState, CallbackState, CallbackResult | None] | None
    #: applied instead where ``condition`` does not hold (a cancel answer's other outcome);
    #: the conditions exclude each other
    otherwise: Change | None = None

    @property
    def filter(self) -> Document:
        return {"_id": self.callback_id}

    @property
    def update(self) -> list[Document]:
        return self.writes.only_if(self.condition)

    @property
    def updates(self) -> list[list[Document]]:
        """This change's update, then its alternative's: at most one of them applies."""
        return [self.update, *(self.otherwise.updates if self.otherwise else [])]


def move_of(
    event: RoutingEvent, retry: DialRetryPolicy
) -> tuple[CallbackState, CallbackState, CallbackResult | None] | None:
    """The change of state ``event`` makes, checked against the state machine."""
    if event.kind in SIGNS_OF_LIFE or event.kind in CANCEL_ANSWERS:
        return None
    move: tuple[CallbackState, CallbackState, CallbackResult | None]
    if event.kind is K.DIAL_FAILED:
        exhausted = event.attempt >= retry.max_attempts
        move = (S.ROUTING, S.COMPLETED, R.FAILED) if exhausted else (S.ROUTING, S.SCHEDULED, None)
    elif event.kind is K.QUEUED and event.sequence > 0:
        move = (S.ROUTING, S.QUEUED, None)
    else:
        move = MOVES[event.kind]
    check_transition(*move)
    return move


def plan_change(event: RoutingEvent, retry: DialRetryPolicy, now: datetime) -> Change:
    """The conditional update that applies ``event`` (see the module docstring)."""
    if event.kind in CANCEL_ANSWERS:
        return plan_cancel_answer(event, now)
    details = {
        name: getattr(event, name) for name in ROUTING_FIELDS if getattr(event, name) is not None
    }
    if event.diagnostic_data:
        details.update({f"{F.DIAGNOSTIC_DATA}.{k}": v for k, v in event.diagnostic_data.items()})
    set_fields: Document = {F.ROUTING_SEQUENCE: event.sequence, F.UPDATED_AT: now, **details}
    move = move_of(event, retry)
    if move is None:
        set_fields[F.ROUTING_SEEN_AT] = now
        condition = applicable(event, *SIGNS_OF_LIFE[event.kind])
        return Change(event.callback_id, condition, Writes(set_fields), None)

    source, target, result = move
    inc: dict[str, int] = {}
    # routing has the attempt: the scheduler no longer waits for it (a retry sets it again)
    unset: dict[str, str] = {} if target is S.SCHEDULED else dict.fromkeys(DISPATCH_FIELDS, "")
    if target in (S.SCHEDULED, S.COMPLETED):
        unset[F.ROUTING_SEEN_AT] = ""
    else:
        set_fields[F.ROUTING_SEEN_AT] = now
    note = None
    if event.kind is K.DIAL_FAILED:
        inc[F.DIAL_ATTEMPTS] = 1
        if target is S.COMPLETED:
            note = f"dial failed ({event.dial_failure}); attempts exhausted"
        else:
            retry_at = now + timedelta(seconds=retry.min_interval_seconds)
            note = f"dial failed ({event.dial_failure}); retry at {retry_at.isoformat()}"
            inc[F.ATTEMPT] = 1
            # no next attempt while a cancel waits for routing's answer
            next_dispatch = {"$cond": [CANCEL_IS_PENDING, "$$REMOVE", {"$literal": retry_at}]}
            set_fields.update(
                {F.ROUTING_SEQUENCE: -1, F.DISPATCH_AT: Expr(next_dispatch, retry_at)}
            )
            unset.update(
                dict.fromkeys((F.AGENT, F.POSITION_IN_QUEUE, F.ESTIMATED_WAIT_SECONDS), "")
            )
    elif event.kind is K.PROCESSING:
        inc[F.DIAL_ATTEMPTS] = 1
    set_fields[F.STATE] = target.value
    set_fields[F.RESULT] = result.value if result else None
    if target is S.COMPLETED:
        set_fields[F.COMPLETED_AT] = now
        unset.update(dict.fromkeys((F.POSITION_IN_QUEUE, F.ESTIMATED_WAIT_SECONDS), ""))
    for name in unset:
        set_fields.pop(name, None)
    entry = timeline_entry(
        event.occurred_at, target, "routing", result=result, note=note, event_id=event.event_id
    )
    writes = Writes(
        set_fields,
        unset=tuple(unset),
        inc=inc,
        append={F.TIMELINE: (entry, None), F.APPLIED_EVENTS: (event.event_id, APPLIED_EVENTS_KEPT)},
    )
    return Change(event.callback_id, applicable(event, source), writes, move)


def plan_cancel_answer(event: RoutingEvent, now: datetime) -> Change:
    """Routing's answer to the record's pending cancel. CANCELLED while the callback is still
    cancellable ends it COMPLETED(CANCELLED_BY_ADMIN) (routing dialled nothing, and will not route
    it again, whatever the attempt); otherwise (CANCEL_REFUSED, or the callback reached an agent
    or ended meanwhile) the cancel is answered REFUSED and the callback goes on as routing
    reports. No pending cancel: nothing applies (a repeated answer)."""
    resolved: Document = {_CANCEL_ANSWERED_AT: now, F.UPDATED_AT: now}
    unset = (F.CANCEL_PENDING_SINCE,)
    applied = {F.APPLIED_EVENTS: (event.event_id, APPLIED_EVENTS_KEPT)}
    refused_reason = event.diagnostic_data.get("reason") or "already connected to an agent"
    refusal = Writes(
        {
            **resolved,
            _CANCEL_STATUS: CancelRequestStatus.REFUSED.value,
            _CANCEL_REASON: Expr(
                {"$literal": f"routing: {refused_reason}"}
                if event.kind is K.CANCEL_REFUSED
                else {"$concat": ["the callback was already ", _STATE]}
            ),
        },
        unset=unset,
        append={
            **applied,
            F.TIMELINE: (
                Expr(
                    {
                        "$mergeObjects": [
                            {"$literal": _answer_entry(event, S.COMPLETED, None, "refused")},
                            {TimelineF.STATE: _STATE, TimelineF.RESULT: f"${F.RESULT}"},
                        ]
                    }
                ),
                None,
            ),
        },
    )
    refused = Change(event.callback_id, CANCEL_IS_PENDING, refusal, None)
    if event.kind is K.CANCEL_REFUSED:
        return refused
    cancelled = Writes(
        {
            **resolved,
            _CANCEL_STATUS: CancelRequestStatus.CANCELLED.value,
            _CANCEL_REASON: "routing removed it: nothing dialled",
            F.STATE: S.COMPLETED.value,
            F.RESULT: R.CANCELLED_BY_ADMIN.value,
            F.COMPLETED_AT: now,
        },
        unset=(
            *unset,
            *DISPATCH_FIELDS,
            F.ROUTING_SEEN_AT,
            F.POSITION_IN_QUEUE,
            F.ESTIMATED_WAIT_SECONDS,
        ),
        append={
            **applied,
            F.TIMELINE: (_answer_entry(event, S.COMPLETED, R.CANCELLED_BY_ADMIN, "done"), None),
        },
    )
    still_cancellable = {"$in": [_STATE, sorted(CANCELLABLE_STATES)]}
    return Change(
        event.callback_id,
        {"$and": [CANCEL_IS_PENDING, still_cancellable]},
        cancelled,
        None,
        otherwise=refused,
    )


def _answer_entry(
    event: RoutingEvent, state: CallbackState, result: CallbackResult | None, outcome: str
) -> Document:
    notes = {
        "done": "cancelled by routing: removed from the queue, nothing dialled",
        "refused": "cancel refused: the callback had reached an agent or ended first",
    }
    return timeline_entry(
        event.occurred_at, state, "routing", result=result, note=notes[outcome],
        event_id=event.event_id,
    )  # fmt: skip


def applicable(event: RoutingEvent, *sources: CallbackState) -> Document:
    """Whether ``event`` may be applied to a document (an aggregation expression): it is in
    one of ``sources``, at the event's attempt, and has not seen this event or a later one."""
    in_source = (
        {"$eq": [_STATE, sources[0].value]}
        if len(sources) == 1
        else {"$in": [_STATE, sorted(source.value for source in sources)]}
    )
    return {
        "$and": [
            in_source,
            {"$eq": [_ATTEMPT, event.attempt]},
            {"$lt": [_ROUTING_SEQUENCE, event.sequence]},
        ]
    }


#: What the state-tracker reads back after a batch: enough to tell what was applied and to
#: announce it, not the timeline.
READ_BACK: Document = {
    F.STATE: 1,
    F.ATTEMPT: 1,
    F.ROUTING_SEQUENCE: 1,
    F.APPLIED_EVENTS: 1,
    F.SERVICE_NAME: 1,
    F.CUSTOMER_NUMBER: 1,
    F.DESIRED_TIME: 1,
    F.CANCEL_REQUEST: 1,
}


def was_applied(event: RoutingEvent, doc: Document | None) -> bool:
    """Whether ``event`` is reflected in ``doc`` (read after the write)."""
    if doc is None:
        return False
    if event.kind in SIGNS_OF_LIFE:
        return bool(doc[F.ATTEMPT] == event.attempt and doc[F.ROUTING_SEQUENCE] >= event.sequence)
    return event.event_id in doc.get(F.APPLIED_EVENTS, [])


def rejection_reason(event: RoutingEvent, change: Change, doc: Document | None) -> str:
    """Why ``event`` changed nothing: for the log and the rejected-events metric."""
    if doc is None:
        return "unknown callback"
    if event.kind in CANCEL_ANSWERS:
        return "stale or duplicate cancel answer: no cancel pending"
    if event.attempt < doc[F.ATTEMPT] or (
        event.attempt == doc[F.ATTEMPT] and event.sequence <= doc[F.ROUTING_SEQUENCE]
    ):
        return "stale or duplicate"
    if event.attempt > doc[F.ATTEMPT]:
        return "attempt not dispatched yet"
    if change.move is None:
        return f"{event.kind} does not apply in {doc[F.STATE]}"
    return f"forbidden transition {doc[F.STATE]} -> {change.move[1]}"
