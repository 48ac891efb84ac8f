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

Signs of life: an attempt QUEUED or ROUTING that has had no event for its profile's
``heartbeat_seconds`` gets a HELD event (position and EWT while it waits; agent and queue while
it is dialled), so the platform can tell an attempt routing still holds from one it lost. One
periodic timer per simulation looks for them (a scan of the held attempts, ten times per
shortest interval: cheap for thousands of them). Never during PROCESSING: a stalled call must
look stalled to the platform.

Commands from the platform (:meth:`Simulation.handle_command`; topic ``topic_routing_commands``),
the contract a real ORS/URS adapter implements too. Due callbacks and commands travel on two
topics, not ordered together, so either may arrive first:

- CANCEL of a callback: routing never routes it again (any later due callback of it, of any
  attempt, is ignored: a cancel that reaches routing before the due callback still wins), and
  answers with exactly one event of the callback:

  - CANCELLED when it held an attempt QUEUED (taken out of the queue) or ROUTING (the dial timer
    is stopped, nothing is dialled, the reserved agent is freed for the next callback): the
    event is that attempt's next one;
  - CANCEL_REFUSED when the held attempt is PROCESSING (connected to an agent: the call goes on
    undisturbed) or an earlier attempt of the callback reached an agent;
  - CANCELLED when it holds nothing of the callback and no attempt reached an agent (never seen,
    abandoned, failed dial): the command's attempt, sequence 0 (or that attempt's next sequence
    if it ended here), nothing dialled.

  A repeated CANCEL is answered again the same way (the answer is harmless downstream).
- WITHDRAW of an attempt: the platform closed it as lost. A held attempt QUEUED or ROUTING of
  that number (or an older one) is dropped silently (agent freed, timers stopped), and a due
  callback of that attempt arriving later is ignored; one PROCESSING is left alone (a warning).
  No answer.
- A due callback of a newer attempt supersedes a held older one (dropped silently, as by
  WITHDRAW), unless that one is PROCESSING: then the newer one is ignored (a warning). A due
  callback of an older attempt than the callback's latest here is ignored. So routing never holds
  two attempts of one callback at once, and never dials one callback twice at once.

State changes are synchronous (timer callbacks on the event loop, commands and due callbacks
applied at once), so no two of them interleave; the events they make go, in order, into one
outbox that :meth:`Simulation.run` hands to the injected ``publish`` callable batch by batch. One
callback's events therefore reach ``publish`` in the order they happened, each attempt numbering
its events from 0 (an answer to a cancel of an attempt routing no longer holds may repeat a
number: consumers take the answers apart from an attempt's sequence).
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
from callback_shared.models import (
    DueCallback,
    RoutingCommand,
    RoutingCommandKind,
    RoutingEvent,
    RoutingEventKind,
)
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
#: outcome: removed (a held attempt), not_held, refused (a CANCEL once an agent was reached),
#: connected (a WITHDRAW of an attempt on a call, left alone)
COMMANDS = Counter(
    "routing_sim_commands", "Routing commands handled, by outcome", ["kind", "outcome"]
)

#: Why a cancel is refused (``diagnostic_data.reason`` of CANCEL_REFUSED).
REFUSED_REASON = "already connected to an agent"

log = structlog.get_logger("callback_routing_sim.simulation")


@dataclass(eq=False)
class _Attempt:
    """One attempt of one callback while the simulation holds it.

    QUEUED while it has no agent, ROUTING while its agent is reserved and the dial not finished,
    PROCESSING once ``connected``.
    """

    due: DueCallback
    plan: AttemptPlan
    queue: _ServiceQueue
    arrival: int
    queued_at: float
    log: Any
    sequence: int = 0
    agent: str | None = None
    connected: bool = False
    reported_position: int | None = None
    reported_at: float = -math.inf
    #: loop time of its last event (the heartbeat's clock)
    emitted_at: float = -math.inf
    timer: asyncio.TimerHandle | None = None

    @property
    def order(self) -> tuple[int, int]:
        return (-self.due.priority, self.arrival)

    @property
    def routing(self) -> bool:
        """An agent is reserved and the dial has not finished."""
        return self.agent is not None and not self.connected

    def cancel_timer(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None


@dataclass(slots=True)
class _Ended:
    """What the simulation keeps of a callback whose last attempt ended: enough to answer a
    cancel of it (refused once an agent was reached; numbered after the attempt's events)."""

    attempt: int
    next_sequence: int
    reached_agent: bool


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
    """Every service's queue and agents; feed it with :meth:`accept` and
    :meth:`handle_command`, drive it with :meth:`run`.

    What it remembers lives in memory since the process started, enough for a simulator (a
    restart forgets it all): every attempt seen (duplicates: same callback and attempt), every
    callback cancelled, every attempt withdrawn before it was seen, and the last ended attempt
    of each callback (its number, next sequence and whether an agent was reached). Each grows by
    one small item per callback or attempt and is never pruned.
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
        self._cancelled: set[UUID] = set()
        self._withdrawn: set[tuple[UUID, int]] = set()
        self._ended: dict[UUID, _Ended] = {}
        #: the attempt routing holds of each callback (QUEUED, ROUTING or PROCESSING): at most one
        self._held: dict[UUID, _Attempt] = {}
        every = [profiles.default, *profiles.services.values()]
        self._beat_seconds = min(p.heartbeat_seconds for p in every) / 10
        self._heartbeat: asyncio.TimerHandle | None = None
        self._outbox: deque[tuple[RoutingEvent, asyncio.Future[None] | None]] = deque()
        self._outbox_ready = asyncio.Event()
        self._arrivals = 0
        self._stopped = False

    @property
    def active_attempts(self) -> int:
        """Attempts queued, dialling or on a call."""
        return len(self._held)

    async def accept(self, due: DueCallback) -> bool:
        """Queue a due callback; returns once its QUEUED event is published (False: ignored)."""
        queued = self.submit(due)
        if queued is None:
            return False
        await queued
        return True

    def submit(self, due: DueCallback) -> asyncio.Future[None] | None:
        """Queue a due callback at once; the future resolves when QUEUED is published.

        ``None`` when it is ignored: this attempt of this callback was seen before, the callback
        was cancelled, the attempt withdrawn, a newer attempt of it is held or ended, or the
        attempt held is on a call. A newer attempt drops a held older one not yet on a call.
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
        if due.callback_id in self._cancelled:
            attempt_log.info("due callback of a cancelled callback ignored")
            return None
        if key in self._withdrawn:
            attempt_log.info("due callback of a withdrawn attempt ignored")
            return None
        self._seen.add(key)
        held = self._held.get(due.callback_id)
        ended = self._ended.get(due.callback_id)
        latest = held.due.attempt if held else ended.attempt if ended else 0
        if due.attempt < latest:
            attempt_log.info("due callback of an older attempt ignored", latest_attempt=latest)
            return None
        if held is not None and held.connected:
            attempt_log.warning(
                "due callback ignored: an older attempt is on a call", held_attempt=latest
            )
            return None
        superseded = None
        if held is not None:
            superseded = held.queue
            self._drop(held, "SUPERSEDED")
        queue = self._queue(due.service_name)
        plan = plan_attempt(self._seed, queue.profile, due.callback_id, due.attempt)
        loop = asyncio.get_running_loop()
        self._arrivals += 1
        attempt = _Attempt(due, plan, queue, self._arrivals, loop.time(), attempt_log)
        self._held[due.callback_id] = attempt
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
        if superseded is not None and superseded is not queue:
            self._dispatch(superseded)
        return queued

    async def handle_command(self, command: RoutingCommand) -> None:
        """Apply a command from the platform; returns once its answer, if any, is published."""
        answered = self.submit_command(command)
        if answered is not None:
            await answered

    def submit_command(self, command: RoutingCommand) -> asyncio.Future[None] | None:
        """Apply a command at once; the future resolves when its answer is published.

        ``None`` for a command that has no answer (WITHDRAW).
        """
        if self._stopped:
            raise RuntimeError("the simulation is stopped")
        command_log = log.bind(
            callback_id=str(command.callback_id),
            attempt=command.attempt,
            service_name=command.service_name,
            command=command.kind.value,
            command_id=str(command.event_id),
        )
        if command.kind is RoutingCommandKind.CANCEL:
            return self._cancel(command, command_log)
        self._withdraw(command, command_log)
        return None

    async def run(self) -> None:
        """Publish the outbox until cancelled; then stop every timer (clean shutdown).

        A failed publish is retried with backoff, the same batch in the same order, so nothing is
        lost or reordered (a retried batch may repeat events already written: consumers dedupe
        on ``event_id``).
        """
        batch: list[tuple[RoutingEvent, asyncio.Future[None] | None]] = []
        try:
            self._heartbeat = asyncio.get_running_loop().call_later(self._beat_seconds, self._beat)
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
        if self._heartbeat is not None:
            self._heartbeat.cancel()
            self._heartbeat = None
        for attempt in self._held.values():
            attempt.cancel_timer()
        for _, confirm in unpublished:
            if confirm is not None:
                confirm.cancel()
        self._outbox.clear()
        if self._held or unpublished:
            log.info(
                "simulation stopped",
                attempts_dropped=len(self._held),
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
        event = self._send(
            RoutingEvent(
                callback_id=attempt.due.callback_id,
                service_name=attempt.due.service_name,
                attempt=attempt.due.attempt,
                sequence=attempt.sequence,
                kind=kind,
                **fields,
            ),
            confirm,
        )
        attempt.sequence += 1
        attempt.emitted_at = asyncio.get_running_loop().time()
        attempt.log.debug("routing event", kind=kind.value, sequence=event.sequence)

    def _send(
        self, event: RoutingEvent, confirm: asyncio.Future[None] | None = None
    ) -> RoutingEvent:
        self._outbox.append((event, confirm))
        self._outbox_ready.set()
        return event

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
        attempt.connected = True
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

    def _finish(self, attempt: _Attempt, outcome: str) -> None:
        """The attempt is no longer held: remember how it ended (for a cancel's answer)."""
        attempt.timer = None
        callback_id = attempt.due.callback_id
        if self._held.get(callback_id) is attempt:
            del self._held[callback_id]
        before = self._ended.get(callback_id)
        reached_agent = attempt.connected or (before is not None and before.reached_agent)
        self._ended[callback_id] = _Ended(attempt.due.attempt, attempt.sequence, reached_agent)
        attempt.log.info("attempt finished", outcome=str(outcome), agent=attempt.agent)

    def _drop(self, attempt: _Attempt, outcome: str) -> None:
        """Take a QUEUED or ROUTING attempt out of routing: nothing is dialled, a reserved agent
        is freed. The caller dispatches its queue afterwards."""
        assert not attempt.connected
        attempt.cancel_timer()
        queue = attempt.queue
        if attempt.agent is None:
            queue.waiting.remove(attempt)
        else:
            queue.free_agents.append(attempt.agent)
        self._finish(attempt, outcome)

    def _cancel(self, command: RoutingCommand, command_log: Any) -> asyncio.Future[None]:
        """Never route the callback again; answer CANCELLED or CANCEL_REFUSED (module doc)."""
        callback_id = command.callback_id
        self._cancelled.add(callback_id)
        answered: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        diagnostic: dict[str, Any] = {"command_id": str(command.event_id)}
        held = self._held.get(callback_id)
        if held is not None and not held.connected:
            queue = held.queue
            if held.agent is not None:
                diagnostic.update(
                    reason="agent released before dialling: nothing dialled",
                    released_agent=held.agent,
                )
            else:
                diagnostic.update(reason="removed from the queue: nothing dialled")
            kind, outcome = RoutingEventKind.CANCELLED, "removed"
            self._emit(held, kind, confirm=answered, queue=queue.name, diagnostic_data=diagnostic)
            self._drop(held, kind)
            self._dispatch(queue)
        elif held is not None:
            kind, outcome = RoutingEventKind.CANCEL_REFUSED, "refused"
            self._emit(
                held,
                kind,
                confirm=answered,
                agent=held.agent,
                route_point=held.queue.profile.route_point_of(held.queue.name),
                queue=held.queue.name,
                diagnostic_data={**diagnostic, "reason": REFUSED_REASON},
            )
        else:
            ended = self._ended.get(callback_id)
            attempt, sequence = command.attempt, 0
            if ended is not None and ended.reached_agent:
                kind, outcome = RoutingEventKind.CANCEL_REFUSED, "refused"
                diagnostic["reason"] = REFUSED_REASON
                attempt = ended.attempt
            else:
                kind, outcome = RoutingEventKind.CANCELLED, "not_held"
                diagnostic["reason"] = "not held by routing: nothing dialled"
            if ended is not None and ended.attempt == attempt:
                sequence = ended.next_sequence
                ended.next_sequence += 1
            self._send(
                RoutingEvent(
                    callback_id=callback_id,
                    service_name=command.service_name,
                    attempt=attempt,
                    sequence=sequence,
                    kind=kind,
                    diagnostic_data=diagnostic,
                ),
                answered,
            )
        COMMANDS.labels(command.kind.value, outcome).inc()
        command_log.info("cancel answered", answer=kind.value, outcome=outcome)
        return answered

    def _withdraw(self, command: RoutingCommand, command_log: Any) -> None:
        """Drop the attempt (or an older one) if held and not on a call; never take it later."""
        key = (command.callback_id, command.attempt)
        held = self._held.get(command.callback_id)
        outcome = "not_held"
        if held is not None and held.due.attempt <= command.attempt:
            if held.connected:
                outcome = "connected"
                command_log.warning(
                    "withdrawn attempt is on a call: left alone", held_attempt=held.due.attempt
                )
            else:
                outcome = "removed"
                self._drop(held, "WITHDRAWN")
                self._dispatch(held.queue)
        if key not in self._seen:
            self._withdrawn.add(key)
        COMMANDS.labels(command.kind.value, outcome).inc()
        command_log.info("withdraw handled", outcome=outcome)

    def _beat(self) -> None:
        """HELD for each QUEUED or ROUTING attempt silent for its heartbeat; then again later."""
        loop = asyncio.get_running_loop()
        self._heartbeat = loop.call_later(self._beat_seconds, self._beat)  # even if this fails
        now = loop.time()
        for queue in self._queues.values():
            every = queue.profile.heartbeat_seconds
            for position, attempt in enumerate(queue.waiting, start=1):
                if now - attempt.emitted_at < every:
                    continue
                self._emit(
                    attempt,
                    RoutingEventKind.HELD,
                    position_in_queue=position,
                    estimated_wait_seconds=queue.estimated_wait(position),
                    queue=queue.name,
                )
                attempt.reported_position, attempt.reported_at = position, now
        for attempt in self._held.values():
            queue = attempt.queue
            if attempt.routing and now - attempt.emitted_at >= queue.profile.heartbeat_seconds:
                self._emit(
                    attempt,
                    RoutingEventKind.HELD,
                    agent=attempt.agent,
                    route_point=queue.profile.route_point_of(queue.name),
                    queue=queue.name,
                )
