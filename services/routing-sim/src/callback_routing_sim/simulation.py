"""The routing simulation: one queue with agents per service, timed with asyncio, no I/O.

A due callback joins its service's queue (highest priority first, then by arrival) and follows
its :class:`~callback_routing_sim.plans.AttemptPlan`:

- QUEUED (position, EWT), POSITION_UPDATED while it waits and its position changes,
- ROUTING when an agent is reserved, then after ``dial_seconds`` DIAL_FAILED (the agent is freed)
  or PROCESSING, then after the planned handle time COMPLETED (the agent is freed);
- or ABANDONED_IN_QUEUE: a customer whose plan abandons is never given an agent and hangs up after
  ``min(patience_seconds, abandon_after_seconds)``. A customer whose plan does not abandon still
  hangs up if ``patience_seconds`` pass before an agent is free: that rule depends on timing (how
  busy the queue is), so only the plan's own abandons can be predicted from the seed.

State changes are synchronous (timer callbacks on the event loop), so no two of them interleave;
the events they make go, in order, into one outbox that :meth:`Simulation.run` hands to the
injected ``publish`` callable batch by batch. One callback's events therefore reach ``publish``
in the order they happened, each attempt numbering its events from 0.
"""

from __future__ import annotations

import asyncio
import bisect
import math
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

import structlog
from callback_shared.models import DueCallback, RoutingEvent, RoutingEventKind
from prometheus_client import Counter, Gauge

from callback_routing_sim.plans import AttemptPlan, plan_attempt
from callback_routing_sim.profiles import RoutingProfiles, ServiceProfile

Publish = Callable[[Sequence[RoutingEvent]], Awaitable[None]]
"""Publishes a batch of events in order; returns once all of them are accepted."""

EVENTS_PUBLISHED = Counter(
    "routing_sim_events_published", "Routing events published", ["kind", "service"]
)
QUEUE_LENGTH = Gauge("routing_sim_queue_length", "Callbacks waiting in queue", ["service"])
BUSY_AGENTS = Gauge("routing_sim_busy_agents", "Agents reserved or on a call", ["service"])

log = structlog.get_logger("callback_routing_sim.simulation")


@dataclass(eq=False)
class _Attempt:
    """One attempt of one callback while the simulation holds it."""

    due: DueCallback
    plan: AttemptPlan
    arrival: int
    queued_at: float
    log: Any
    sequence: int = 0
    agent: str | None = None
    reported_position: int | None = None
    reported_at: float = -math.inf
    timer: asyncio.TimerHandle | None = None

    @property
    def order(self) -> tuple[int, int]:
        return (-self.due.priority, self.arrival)

    def cancel_timer(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None


@dataclass(eq=False)
class _ServiceQueue:
    """The waiting callbacks and the free agents of one service (virtual queue)."""

    name: str
    profile: ServiceProfile
    waiting: list[_Attempt] = field(default_factory=list)
    free_agents: deque[str] = field(default_factory=deque)

    def __post_init__(self) -> None:
        self.free_agents.extend(f"{self.name}-agent-{n}" for n in range(1, self.profile.agents + 1))

    @property
    def busy_agents(self) -> int:
        return self.profile.agents - len(self.free_agents)

    def join(self, attempt: _Attempt) -> int:
        """Insert by priority then arrival; the 1-based position."""
        index = bisect.bisect_right(self.waiting, attempt.order, key=lambda a: a.order)
        self.waiting.insert(index, attempt)
        return index + 1

    def next_to_route(self) -> _Attempt | None:
        """The first waiting callback that will take an agent (planned abandons never do)."""
        return next((a for a in self.waiting if not a.plan.abandons), None)

    def estimated_wait(self, position: int) -> float:
        """EWT at a position: agents must come free for everyone not served by a free agent."""
        needs_release = position - len(self.free_agents)
        if needs_release <= 0:
            return 0.0
        return round(needs_release * self.profile.mean_agent_seconds / self.profile.agents, 3)


class Simulation:
    """Every service's queue and agents; feed it with :meth:`accept`, drive it with :meth:`run`.

    Duplicates (same callback and attempt) are recognised by an in-memory set of every attempt
    seen since the process started: enough for a simulator (a restart forgets them, and the set
    grows by one small tuple per attempt).
    """

    def __init__(
        self,
        profiles: RoutingProfiles,
        seed: int,
        publish: Publish,
        *,
        retry_initial_seconds: float = 0.2,
        retry_max_seconds: float = 5.0,
    ) -> None:
        self._profiles = profiles
        self._seed = seed
        self._publish = publish
        self._retry_initial_seconds = retry_initial_seconds
        self._retry_max_seconds = retry_max_seconds
        self._queues: dict[str, _ServiceQueue] = {}
        self._seen: set[tuple[UUID, int]] = set()
        self._active: set[_Attempt] = set()
        self._outbox: deque[tuple[RoutingEvent, asyncio.Future[None] | None]] = deque()
        self._outbox_ready = asyncio.Event()
        self._arrivals = 0
        self._stopped = False

    @property
    def active_attempts(self) -> int:
        """Attempts queued, dialling or on a call."""
        return len(self._active)

    async def accept(self, due: DueCallback) -> bool:
        """Queue a due callback; returns once its QUEUED event is published (False: duplicate)."""
        queued = self.submit(due)
        if queued is None:
            return False
        await queued
        return True

    def submit(self, due: DueCallback) -> asyncio.Future[None] | None:
        """Queue a due callback at once; the future resolves when QUEUED is published.

        ``None`` when this attempt of this callback was seen before (it is ignored).
        """
        if self._stopped:
            raise RuntimeError("the simulation is stopped")
        attempt_log = log.bind(
            callback_id=str(due.callback_id), attempt=due.attempt, service_name=due.service_name
        )
        key = (due.callback_id, due.attempt)
        if key in self._seen:
            attempt_log.info("duplicate due callback ignored")
            return None
        self._seen.add(key)
        queue = self._queue(due.service_name)
        plan = plan_attempt(self._seed, queue.profile, due.callback_id, due.attempt)
        loop = asyncio.get_running_loop()
        self._arrivals += 1
        attempt = _Attempt(due, plan, self._arrivals, loop.time(), attempt_log)
        self._active.add(attempt)
        position = queue.join(attempt)
        queued = loop.create_future()
        self._emit(
            attempt,
            RoutingEventKind.QUEUED,
            confirm=queued,
            position_in_queue=position,
            estimated_wait_seconds=queue.estimated_wait(position),
            queue=queue.name,
            diagnostic_data={"priority": due.priority},
        )
        attempt.reported_position, attempt.reported_at = position, loop.time()
        attempt_log.info("callback queued", position=position, planned_outcome=plan.outcome)
        patience = queue.profile.patience_seconds
        if plan.abandons:
            wait = queue.profile.abandon_after_seconds
            wait = wait if patience is None else min(patience, wait)
            attempt.timer = loop.call_later(wait, self._abandon, queue, attempt, "plan")
        elif patience is not None:
            attempt.timer = loop.call_later(patience, self._abandon, queue, attempt, "patience")
        self._dispatch(queue)
        return queued

    async def run(self) -> None:
        """Publish the outbox until cancelled; then stop every timer (clean shutdown).

        A failed publish is retried with backoff, the same batch in the same order, so nothing is
        lost or reordered (a retried batch may repeat events already written: consumers dedupe
        on ``event_id``).
        """
        batch: list[tuple[RoutingEvent, asyncio.Future[None] | None]] = []
        try:
            while True:
                await self._outbox_ready.wait()
                batch = list(self._outbox)
                self._outbox.clear()
                self._outbox_ready.clear()
                await self._publish_with_retry([event for event, _ in batch])
                for event, confirm in batch:
                    EVENTS_PUBLISHED.labels(event.kind.value, event.service_name).inc()
                    if confirm is not None and not confirm.done():
                        confirm.set_result(None)
                batch = []
        finally:
            self._stop([*batch, *self._outbox])

    def _stop(self, unpublished: list[tuple[RoutingEvent, asyncio.Future[None] | None]]) -> None:
        self._stopped = True
        for attempt in self._active:
            attempt.cancel_timer()
        for _, confirm in unpublished:
            if confirm is not None:
                confirm.cancel()
        self._outbox.clear()
        if self._active or unpublished:
            log.info(
                "simulation stopped",
                attempts_dropped=len(self._active),
                events_unpublished=len(unpublished),
            )

    async def _publish_with_retry(self, events: list[RoutingEvent]) -> None:
        delay = self._retry_initial_seconds
        while True:
            try:
                await self._publish(events)
                return
            except Exception as exc:
                log.warning(
                    "publishing routing events failed, retrying",
                    error=repr(exc),
                    events=len(events),
                    retry_in_seconds=delay,
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, self._retry_max_seconds)

    def _queue(self, service_name: str) -> _ServiceQueue:
        queue = self._queues.get(service_name)
        if queue is None:
            queue = _ServiceQueue(service_name, self._profiles.for_service(service_name))
            self._queues[service_name] = queue
        return queue

    def _emit(
        self,
        attempt: _Attempt,
        kind: RoutingEventKind,
        *,
        confirm: asyncio.Future[None] | None = None,
        **fields: Any,
    ) -> None:
        event = RoutingEvent(
            callback_id=attempt.due.callback_id,
            service_name=attempt.due.service_name,
            attempt=attempt.due.attempt,
            sequence=attempt.sequence,
            kind=kind,
            **fields,
        )
        attempt.sequence += 1
        self._outbox.append((event, confirm))
        self._outbox_ready.set()
        attempt.log.debug("routing event", kind=kind.value, sequence=event.sequence)

    def _dispatch(self, queue: _ServiceQueue) -> None:
        """Give free agents to the first routable callbacks, then report moved positions."""
        profile = queue.profile
        while queue.free_agents and (attempt := queue.next_to_route()) is not None:
            queue.waiting.remove(attempt)
            attempt.cancel_timer()
            attempt.agent = queue.free_agents.popleft()
            self._emit(
                attempt,
                RoutingEventKind.ROUTING,
                agent=attempt.agent,
                route_point=profile.route_point_of(queue.name),
                queue=queue.name,
            )
            attempt.timer = asyncio.get_running_loop().call_later(
                profile.dial_seconds, self._dialled, queue, attempt
            )
        self._report_positions(queue)

    def _report_positions(self, queue: _ServiceQueue) -> None:
        """Update the gauges; POSITION_UPDATED for each waiting callback whose position moved.

        EWT is derived from the position, so it is reported with it, not on its own.
        """
        QUEUE_LENGTH.labels(queue.name).set(len(queue.waiting))
        BUSY_AGENTS.labels(queue.name).set(queue.busy_agents)
        profile = queue.profile
        if not profile.position_updates:
            return
        now = asyncio.get_running_loop().time()
        for position, attempt in enumerate(queue.waiting, start=1):
            if attempt.reported_position == position:
                continue
            if now - attempt.reported_at < profile.position_update_min_interval_seconds:
                continue
            self._emit(
                attempt,
                RoutingEventKind.POSITION_UPDATED,
                position_in_queue=position,
                estimated_wait_seconds=queue.estimated_wait(position),
                queue=queue.name,
            )
            attempt.reported_position, attempt.reported_at = position, now

    def _dialled(self, queue: _ServiceQueue, attempt: _Attempt) -> None:
        route_point = queue.profile.route_point_of(queue.name)
        failure = attempt.plan.dial_failure
        if failure is not None:
            self._emit(
                attempt,
                RoutingEventKind.DIAL_FAILED,
                agent=attempt.agent,
                route_point=route_point,
                queue=queue.name,
                dial_failure=failure,
                from_number=route_point,
                to_number=attempt.due.customer_number,
            )
            self._free_agent(queue, attempt, outcome=RoutingEventKind.DIAL_FAILED)
            return
        self._emit(
            attempt,
            RoutingEventKind.PROCESSING,
            agent=attempt.agent,
            route_point=route_point,
            queue=queue.name,
            from_number=route_point,
            to_number=attempt.due.customer_number,
        )
        attempt.timer = asyncio.get_running_loop().call_later(
            attempt.plan.handle_seconds, self._completed, queue, attempt
        )

    def _completed(self, queue: _ServiceQueue, attempt: _Attempt) -> None:
        self._emit(
            attempt,
            RoutingEventKind.COMPLETED,
            agent=attempt.agent,
            route_point=queue.profile.route_point_of(queue.name),
            queue=queue.name,
            diagnostic_data={"handle_seconds": round(attempt.plan.handle_seconds, 3)},
        )
        self._free_agent(queue, attempt, outcome=RoutingEventKind.COMPLETED)

    def _free_agent(
        self, queue: _ServiceQueue, attempt: _Attempt, *, outcome: RoutingEventKind
    ) -> None:
        assert attempt.agent is not None
        queue.free_agents.append(attempt.agent)
        self._finish(attempt, outcome)
        self._dispatch(queue)

    def _abandon(self, queue: _ServiceQueue, attempt: _Attempt, reason: str) -> None:
        queue.waiting.remove(attempt)
        waited = asyncio.get_running_loop().time() - attempt.queued_at
        self._emit(
            attempt,
            RoutingEventKind.ABANDONED_IN_QUEUE,
            queue=queue.name,
            diagnostic_data={"reason": reason, "waited_seconds": round(waited, 3)},
        )
        self._finish(attempt, RoutingEventKind.ABANDONED_IN_QUEUE)
        self._report_positions(queue)

    def _finish(self, attempt: _Attempt, outcome: RoutingEventKind) -> None:
        attempt.timer = None
        self._active.discard(attempt)
        attempt.log.info("attempt finished", outcome=outcome.value, agent=attempt.agent)
