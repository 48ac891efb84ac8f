"""plan_attempt: a pure, seeded function deciding each attempt's outcome."""

import os
import subprocess
import sys
import uuid
from collections import Counter

import pytest
from callback_routing_sim import ServiceProfile, plan_attempt
from callback_shared.models import DialFailure, RoutingEventKind

PROFILE = ServiceProfile(
    handle_seconds_min=2.0,
    handle_seconds_max=4.0,
    dial_failure_probability=0.3,
    busy_share=0.25,
    abandon_probability=0.2,
)
IDS = [uuid.UUID(int=n) for n in range(10_000)]


def test_same_seed_callback_and_attempt_give_the_same_plan() -> None:
    callback_id = uuid.uuid4()
    plans = {plan_attempt(7, PROFILE, callback_id, 1) for _ in range(5)}
    assert len(plans) == 1
    assert plan_attempt(7, PROFILE, callback_id, 1) == plan_attempt(7, PROFILE, str(callback_id), 1)


def test_attempts_seeds_and_callbacks_each_draw_anew() -> None:
    callback_id = uuid.UUID(int=42)
    by_attempt = {plan_attempt(7, PROFILE, callback_id, attempt) for attempt in range(1, 21)}
    by_seed = {plan_attempt(seed, PROFILE, callback_id, 1) for seed in range(20)}
    by_callback = {plan_attempt(7, PROFILE, callback, 1) for callback in IDS[:20]}
    # handle times are continuous draws: distinct plans mean distinct random streams
    assert len(by_attempt) == len(by_seed) == len(by_callback) == 20


@pytest.mark.process
def test_plan_is_the_same_in_another_process_whatever_its_hash_seed() -> None:
    callback_id = uuid.UUID(int=1234)
    code = (
        "import uuid; from callback_routing_sim import ServiceProfile, plan_attempt; "
        "p = plan_attempt(7, ServiceProfile(handle_seconds_min=2.0, handle_seconds_max=4.0, "
        "dial_failure_probability=0.3, busy_share=0.25, abandon_probability=0.2), "
        f"uuid.UUID(int={callback_id.int}), 3); print(repr(p.handle_seconds), p.outcome.value)"
    )
    run = subprocess.run(
        [sys.executable, "-c", code],
        env={**os.environ, "PYTHONHASHSEED": "12345"},
        capture_output=True,
        text=True,
        check=True,
    )
    plan = plan_attempt(7, PROFILE, callback_id, 3)
    assert run.stdout.split() == [repr(plan.handle_seconds), plan.outcome.value]


def test_probabilities_are_respected_over_many_callbacks() -> None:
    plans = [plan_attempt(1, PROFILE, callback_id, 1) for callback_id in IDS]
    outcomes = Counter(plan.outcome for plan in plans)
    dialled = [plan for plan in plans if not plan.abandons]
    failures = Counter(plan.dial_failure for plan in dialled if plan.dial_failure)

    assert outcomes[RoutingEventKind.ABANDONED_IN_QUEUE] / len(plans) == pytest.approx(
        0.2, abs=0.02
    )
    assert sum(failures.values()) / len(dialled) == pytest.approx(0.3, abs=0.02)
    assert failures[DialFailure.BUSY] / sum(failures.values()) == pytest.approx(0.25, abs=0.03)
    assert all(2.0 <= plan.handle_seconds <= 4.0 for plan in plans)
    mean_handle = sum(plan.handle_seconds for plan in plans) / len(plans)
    assert mean_handle == pytest.approx(3.0, abs=0.05)


def test_an_abandoning_customer_is_never_dialled() -> None:
    plans = [plan_attempt(1, PROFILE, callback_id, 1) for callback_id in IDS[:2000]]
    abandoning = [plan for plan in plans if plan.abandons]
    assert abandoning
    assert all(plan.dial_failure is None for plan in abandoning)


def test_certain_and_impossible_probabilities() -> None:
    always = ServiceProfile(dial_failure_probability=1.0, busy_share=1.0)
    never = ServiceProfile(dial_failure_probability=0.0, abandon_probability=0.0)
    everyone_leaves = ServiceProfile(abandon_probability=1.0)
    for callback_id in IDS[:200]:
        assert plan_attempt(1, always, callback_id, 1).dial_failure is DialFailure.BUSY
        assert plan_attempt(1, never, callback_id, 1).outcome is RoutingEventKind.COMPLETED
        assert plan_attempt(1, everyone_leaves, callback_id, 1).abandons


def test_changing_one_probability_keeps_the_other_draws() -> None:
    calmer = PROFILE.model_copy(update={"abandon_probability": 0.0})
    for callback_id in IDS[:200]:
        before = plan_attempt(1, PROFILE, callback_id, 1)
        after = plan_attempt(1, calmer, callback_id, 1)
        assert after.handle_seconds == before.handle_seconds
        if not before.abandons:
            assert after.dial_failure == before.dial_failure
