"""The outcome of one attempt, decided up front by a pure, seeded function.

Every random choice for one attempt of one callback comes from
``random.Random(f"{seed}:{callback_id}:{attempt}")`` (string seeds hash the same in every process),
so anyone holding the seed and the profile, an end-to-end test for instance, knows what the
simulation will do with each callback without running it.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from uuid import UUID

from callback_shared.models import DialFailure, RoutingEventKind

from callback_routing_sim.profiles import ServiceProfile


@dataclass(frozen=True)
class AttemptPlan:
    """What happens to one attempt: abandons in queue, or is dialled (and maybe fails)."""

    dial_failure: DialFailure | None
    abandons: bool
    handle_seconds: float

    @property
    def outcome(self) -> RoutingEventKind:
        """The last event of the attempt, unless patience (which depends on timing) cuts in."""
        if self.abandons:
            return RoutingEventKind.ABANDONED_IN_QUEUE
        if self.dial_failure is not None:
            return RoutingEventKind.DIAL_FAILED
        return RoutingEventKind.COMPLETED


def plan_attempt(
    seed: int, profile: ServiceProfile, callback_id: UUID | str, attempt: int
) -> AttemptPlan:
    """The plan of one attempt. Pure: the same arguments always give the same plan.

    The draws are always taken in the same order and all of them, so changing one probability of
    a profile does not reshuffle the other choices.
    """
    rng = random.Random(f"{seed}:{callback_id}:{attempt}")
    abandon_draw = rng.random()
    dial_draw = rng.random()
    busy_draw = rng.random()
    handle_seconds = rng.uniform(profile.handle_seconds_min, profile.handle_seconds_max)
    abandons = abandon_draw < profile.abandon_probability
    dial_failure = None
    if not abandons and dial_draw < profile.dial_failure_probability:
        dial_failure = DialFailure.BUSY if busy_draw < profile.busy_share else DialFailure.NO_ANSWER
    return AttemptPlan(dial_failure=dial_failure, abandons=abandons, handle_seconds=handle_seconds)
