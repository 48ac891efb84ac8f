"""The callback state machine, as data.

States and results are PRODUCT.md's. :data:`TRANSITIONS` lists every allowed change of state and
the results a change into COMPLETED may carry; anything not listed is forbidden and is never
applied.
"""

from __future__ import annotations

from enum import StrEnum


class CallbackState(StrEnum):
    SCHEDULED = "SCHEDULED"
    QUEUED = "QUEUED"
    ROUTING = "ROUTING"
    PROCESSING = "PROCESSING"
    COMPLETED = "COMPLETED"


class CallbackResult(StrEnum):
    AGENT = "AGENT"
    CANCELLED = "CANCELLED"
    CANCELLED_BY_ADMIN = "CANCELLED_BY_ADMIN"
    ABANDONED_IN_QUEUE = "ABANDONED_IN_QUEUE"
    RESCHEDULED = "RESCHEDULED"
    FAILED = "FAILED"


S = CallbackState
R = CallbackResult

#: ``{from_state: {to_state: results}}``; results are empty for a move into a non-final state.
TRANSITIONS: dict[CallbackState, dict[CallbackState, frozenset[CallbackResult]]] = {
    S.SCHEDULED: {
        # routing accepted the due callback
        S.QUEUED: frozenset(),
        S.COMPLETED: frozenset({R.CANCELLED, R.CANCELLED_BY_ADMIN, R.RESCHEDULED}),
    },
    S.QUEUED: {
        S.ROUTING: frozenset(),
        # routing lost the attempt (no sign of life): the next attempt, or FAILED when exhausted
        S.SCHEDULED: frozenset(),
        S.COMPLETED: frozenset({R.CANCELLED, R.CANCELLED_BY_ADMIN, R.ABANDONED_IN_QUEUE, R.FAILED}),
    },
    S.ROUTING: {
        # the agent reservation was lost: wait in queue again
        S.QUEUED: frozenset(),
        S.PROCESSING: frozenset(),
        # the dial failed (no answer, busy) or routing lost the attempt: retry later, per the
        # service's policy
        S.SCHEDULED: frozenset(),
        S.COMPLETED: frozenset({R.CANCELLED, R.CANCELLED_BY_ADMIN, R.FAILED}),
    },
    S.PROCESSING: {
        S.COMPLETED: frozenset({R.AGENT}),
    },
    S.COMPLETED: {},
}

#: Position of each state on the way to completion (a dial retry starts a new attempt).
PROGRESS: dict[CallbackState, int] = {state: rank for rank, state in enumerate(CallbackState)}


class ForbiddenTransition(ValueError):
    def __init__(
        self, current: CallbackState, target: CallbackState, result: CallbackResult | None
    ) -> None:
        shown = f"{target}({result})" if result else str(target)
        super().__init__(f"transition {current} -> {shown} is not allowed")
        self.current, self.target, self.result = current, target, result


def is_allowed(
    current: CallbackState, target: CallbackState, result: CallbackResult | None = None
) -> bool:
    """True when ``current -> target`` is allowed with ``result`` (required for COMPLETED)."""
    results = TRANSITIONS[current].get(target)
    if results is None:
        return False
    if target is CallbackState.COMPLETED:
        return result in results
    return result is None


def check_transition(
    current: CallbackState, target: CallbackState, result: CallbackResult | None = None
) -> None:
    if not is_allowed(current, target, result):
        raise ForbiddenTransition(current, target, result)


def can_complete_with(state: CallbackState, result: CallbackResult) -> bool:
    return is_allowed(state, CallbackState.COMPLETED, result)


#: States an administrator may cancel from (not PROCESSING, not COMPLETED).
CANCELLABLE_STATES: frozenset[CallbackState] = frozenset(
    state for state in CallbackState if can_complete_with(state, R.CANCELLED_BY_ADMIN)
)
#: States in which routing may hold the callback: a cancel must be asked of routing (with
#: SCHEDULED once it is due, see :func:`callback_shared.documents.not_yet_due`).
HELD_BY_ROUTING: frozenset[CallbackState] = frozenset({CallbackState.QUEUED, CallbackState.ROUTING})
#: States in which a callback is still open (counts for duplicate checks and throttling).
OPEN_STATES: frozenset[CallbackState] = frozenset(CallbackState) - {CallbackState.COMPLETED}
