"""The state machine: every allowed and every forbidden transition, written out independently."""

import itertools

import pytest
from callback_shared.states import (
    CANCELLABLE_STATES,
    OPEN_STATES,
    CallbackResult,
    CallbackState,
    ForbiddenTransition,
    check_transition,
    is_allowed,
)

S, R = CallbackState, CallbackResult

ALLOWED = {
    (S.SCHEDULED, S.QUEUED, None),
    (S.SCHEDULED, S.COMPLETED, R.CANCELLED),
    (S.SCHEDULED, S.COMPLETED, R.CANCELLED_BY_ADMIN),
    (S.SCHEDULED, S.COMPLETED, R.RESCHEDULED),
    (S.QUEUED, S.ROUTING, None),
    (S.QUEUED, S.COMPLETED, R.CANCELLED),
    (S.QUEUED, S.COMPLETED, R.CANCELLED_BY_ADMIN),
    (S.QUEUED, S.COMPLETED, R.ABANDONED_IN_QUEUE),
    # routing lost the attempt (no sign of life): the next attempt, or FAILED when exhausted
    (S.QUEUED, S.SCHEDULED, None),
    (S.QUEUED, S.COMPLETED, R.FAILED),
    (S.ROUTING, S.QUEUED, None),
    (S.ROUTING, S.PROCESSING, None),
    (S.ROUTING, S.SCHEDULED, None),
    (S.ROUTING, S.COMPLETED, R.CANCELLED),
    (S.ROUTING, S.COMPLETED, R.CANCELLED_BY_ADMIN),
    (S.ROUTING, S.COMPLETED, R.FAILED),
    (S.PROCESSING, S.COMPLETED, R.AGENT),
}

EVERY = list(itertools.product(S, S, [None, *R]))


@pytest.mark.parametrize(("current", "target", "result"), sorted(ALLOWED, key=str))
def test_allowed_transition(
    current: CallbackState, target: CallbackState, result: CallbackResult | None
) -> None:
    assert is_allowed(current, target, result)
    check_transition(current, target, result)


@pytest.mark.parametrize(
    ("current", "target", "result"), [t for t in EVERY if t not in ALLOWED], ids=str
)
def test_forbidden_transition(
    current: CallbackState, target: CallbackState, result: CallbackResult | None
) -> None:
    assert not is_allowed(current, target, result)
    with pytest.raises(ForbiddenTransition) as raised:
        check_transition(current, target, result)
    assert str(current) in str(raised.value) and str(target) in str(raised.value)


def test_every_combination_is_covered() -> None:
    assert len(EVERY) == len(S) * len(S) * (len(R) + 1)
    assert ALLOWED < set(EVERY)


def test_processing_and_completed_cannot_be_cancelled() -> None:
    assert CANCELLABLE_STATES == {S.SCHEDULED, S.QUEUED, S.ROUTING}


def test_completed_is_final_and_the_only_closed_state() -> None:
    assert not any(is_allowed(S.COMPLETED, target, r) for target in S for r in [None, *R])
    assert OPEN_STATES == set(S) - {S.COMPLETED}
