"""Helpers shared by the routing-sim tests: building due callbacks and commands, checking event
paths."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from uuid import UUID

from callback_routing_sim import AttemptPlan
from callback_shared.models import (
    CallbackType,
    DueCallback,
    RoutingCommand,
    RoutingCommandKind,
    RoutingEvent,
    RoutingEventKind,
)

Kind = RoutingEventKind
TERMINAL = {Kind.COMPLETED, Kind.DIAL_FAILED, Kind.ABANDONED_IN_QUEUE}
#: What follows QUEUED and the POSITION_UPDATED events, per outcome.
PATH_AFTER_QUEUE = {
    Kind.COMPLETED: [Kind.ROUTING, Kind.PROCESSING, Kind.COMPLETED],
    Kind.DIAL_FAILED: [Kind.ROUTING, Kind.DIAL_FAILED],
    Kind.ABANDONED_IN_QUEUE: [Kind.ABANDONED_IN_QUEUE],
}


def due_callback(
    n: int | UUID, service: str = "sales", *, priority: int = 0, attempt: int = 1
) -> DueCallback:
    callback_id = n if isinstance(n, UUID) else UUID(int=n)
    return DueCallback(
        callback_id=callback_id,
        service_name=service,
        customer_number=f"+44207946{callback_id.int % 10_000:04d}",
        type=CallbackType.IMMEDIATE,
        desired_time=datetime.now(UTC),
        priority=priority,
        attempt=attempt,
    )


def command(
    n: int | UUID,
    kind: RoutingCommandKind = RoutingCommandKind.CANCEL,
    service: str = "sales",
    *,
    attempt: int = 1,
) -> RoutingCommand:
    callback_id = n if isinstance(n, UUID) else UUID(int=n)
    return RoutingCommand(
        callback_id=callback_id,
        kind=kind,
        service_name=service,
        attempt=attempt,
        reason="test",
    )


def by_attempt(events: Iterable[RoutingEvent]) -> dict[tuple[UUID, int], list[RoutingEvent]]:
    """Each attempt's events in the order they were published."""
    grouped: dict[tuple[UUID, int], list[RoutingEvent]] = defaultdict(list)
    for event in events:
        grouped[(event.callback_id, event.attempt)].append(event)
    return grouped


def finished(events: Iterable[RoutingEvent]) -> set[tuple[UUID, int]]:
    return {(e.callback_id, e.attempt) for e in events if e.kind in TERMINAL}


def assert_follows_plan(events: Sequence[RoutingEvent], plan: AttemptPlan) -> None:
    """One attempt: numbered 0.. in order, QUEUED, position updates, then the plan's path."""
    kinds = [e.kind for e in events]
    path = PATH_AFTER_QUEUE[plan.outcome]
    assert [e.sequence for e in events] == list(range(len(events))), kinds
    assert kinds[0] == Kind.QUEUED, kinds
    assert kinds[-len(path) :] == path, (kinds, plan)
    assert set(kinds[1 : -len(path)]) <= {Kind.POSITION_UPDATED}, kinds
    queued = events[0]
    assert queued.position_in_queue is not None and queued.position_in_queue >= 1
    assert queued.estimated_wait_seconds is not None
    assert queued.queue == queued.service_name
    by_kind = {e.kind: e for e in events}
    if Kind.ROUTING in by_kind:
        agent = by_kind[Kind.ROUTING].agent
        assert agent is not None
        assert agent.startswith(f"{queued.service_name}-agent-")
        assert by_kind[Kind.ROUTING].route_point
    if Kind.PROCESSING in by_kind:
        processing = by_kind[Kind.PROCESSING]
        assert processing.agent == by_kind[Kind.ROUTING].agent
        assert processing.from_number == by_kind[Kind.ROUTING].route_point
        assert processing.to_number
    if Kind.DIAL_FAILED in by_kind:
        assert by_kind[Kind.DIAL_FAILED].dial_failure == plan.dial_failure


class Recorder:
    """An in-memory ``publish``: keeps every event in publish order; lets a test wait on them."""

    def __init__(self) -> None:
        self.events: list[RoutingEvent] = []
        self.batches = 0
        self._changed = asyncio.Event()

    async def __call__(self, events: Sequence[RoutingEvent]) -> None:
        self.events.extend(events)
        self.batches += 1
        self._changed.set()

    async def wait_until(
        self, done: Callable[[list[RoutingEvent]], bool], within: float = 20
    ) -> None:
        async with asyncio.timeout(within):
            while not done(self.events):
                self._changed.clear()
                await self._changed.wait()

    def of(self, callback: int, attempt: int = 1) -> list[RoutingEvent]:
        return by_attempt(self.events)[(UUID(int=callback), attempt)]

    def kinds(self, callback: int, attempt: int | None = None) -> list[RoutingEventKind]:
        """The kinds of a callback's events (of one attempt, or of all), in publish order."""
        return [
            e.kind
            for e in self.events
            if e.callback_id == UUID(int=callback) and attempt in (None, e.attempt)
        ]

    def has(self, callback: int, kind: RoutingEventKind) -> Callable[[list[RoutingEvent]], bool]:
        """A condition for :meth:`wait_until`: the callback has had an event of this kind."""
        callback_id = UUID(int=callback)
        return lambda events: any(e.callback_id == callback_id and e.kind == kind for e in events)
