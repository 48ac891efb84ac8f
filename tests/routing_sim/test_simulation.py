"""The simulation's queues, agents and timing, with an in-memory publish (no I/O)."""

import asyncio
import itertools
from collections import Counter
from collections.abc import AsyncIterator, Sequence
from typing import Protocol
from uuid import UUID

import pytest
from callback_routing_sim import RoutingProfiles, ServiceProfile, plan_attempt
from callback_routing_sim.simulation import Publish, Simulation
from callback_shared.models import DialFailure, RoutingCommandKind, RoutingEvent, RoutingEventKind

from tests.routing_sim.support import (
    Kind,
    Recorder,
    assert_follows_plan,
    by_attempt,
    command,
    due_callback,
    finished,
)

WITHDRAW = RoutingCommandKind.WITHDRAW
ROUTED = {Kind.ROUTING, Kind.PROCESSING, Kind.DIAL_FAILED, Kind.COMPLETED}

UUID1, UUID2 = UUID(int=1), UUID(int=2)
FAST = {"handle_seconds_min": 0.001, "handle_seconds_max": 0.005, "dial_seconds": 0.001}


def profiles(**profile: object) -> RoutingProfiles:
    return RoutingProfiles(default=ServiceProfile.model_validate({**FAST, **profile}))


class Start(Protocol):
    """The ``start`` fixture: start a simulation; its recorder keeps what it publishes."""

    def __call__(
        self,
        routing: RoutingProfiles,
        *,
        seed: int = ...,
        publish: Publish | None = ...,
        **options: float,
    ) -> tuple[Simulation, Recorder]: ...


@pytest.fixture
async def start() -> AsyncIterator[Start]:
    """Start simulations driven by ``run()``; cancel them (a clean stop) after the test."""
    tasks: list[asyncio.Task[None]] = []

    def start(
        routing: RoutingProfiles,
        *,
        seed: int = 1,
        publish: Publish | None = None,
        **options: float,
    ) -> tuple[Simulation, Recorder]:
        recorder = Recorder()
        simulation = Simulation(routing, seed, publish or recorder, **options)
        tasks.append(asyncio.create_task(simulation.run()))
        return simulation, recorder

    yield start
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


async def test_every_attempt_publishes_its_plans_path_in_order(start: Start) -> None:
    routing = profiles(
        agents=2,
        dial_failure_probability=0.3,
        abandon_probability=0.2,
        abandon_after_seconds=0.005,
    )
    simulation, recorder = start(routing, seed=3)
    dues = [due_callback(n, "sales" if n % 2 else "support") for n in range(40)]
    await asyncio.gather(*(simulation.accept(due) for due in dues))
    await recorder.wait_until(lambda events: len(finished(events)) == 40)

    outcomes: Counter[RoutingEventKind] = Counter()
    for due in dues:
        plan = plan_attempt(3, routing.default, due.callback_id, 1)
        events = by_attempt(recorder.events)[(due.callback_id, 1)]
        assert_follows_plan(events, plan)
        assert {e.service_name for e in events} == {due.service_name}
        outcomes[events[-1].kind] += 1
    assert set(outcomes) == {Kind.COMPLETED, Kind.DIAL_FAILED, Kind.ABANDONED_IN_QUEUE}
    assert simulation.active_attempts == 0


async def test_higher_priority_is_routed_first_then_arrival_order(start: Start) -> None:
    routing = profiles(agents=1, dial_failure_probability=0)
    simulation, recorder = start(routing)
    # all submitted before the loop runs again: the first takes the only agent, the rest wait
    for n, priority in [(1, 0), (2, 0), (3, 5), (4, 0), (5, 9)]:
        simulation.submit(due_callback(n, priority=priority))
    await recorder.wait_until(lambda events: len(finished(events)) == 5)

    routed = [e.callback_id.int for e in recorder.events if e.kind == Kind.ROUTING]
    assert routed == [1, 5, 3, 2, 4]

    def positions(n: int) -> list[int | None]:
        return [e.position_in_queue for e in recorder.of(n) if e.position_in_queue is not None]

    assert positions(2) == [1, 2, 3, 2, 1]  # queued; 3 and then 5 overtake; 5, 3 routed
    assert positions(4) == [3, 4, 3, 2, 1]
    assert positions(5) == [1]
    mean = routing.default.mean_agent_seconds  # EWT: position x mean agent time / 1 agent
    for event in recorder.of(4)[:-3]:
        assert event.position_in_queue is not None
        assert event.estimated_wait_seconds == round(event.position_in_queue * mean, 3)


async def test_never_more_calls_at_once_than_agents(start: Start) -> None:
    simulation, recorder = start(
        profiles(agents=3, handle_seconds_min=0.005, handle_seconds_max=0.02)
    )
    for n in range(30):
        simulation.submit(due_callback(n))
    await recorder.wait_until(lambda events: len(finished(events)) == 30)

    reserved: set[str | None] = set()
    on_call, most_on_call, most_reserved = 0, 0, 0
    for event in recorder.events:  # published in the order the simulation made them
        if event.kind == Kind.ROUTING:
            assert event.agent not in reserved
            reserved.add(event.agent)
        elif event.kind == Kind.PROCESSING:
            on_call += 1
        elif event.kind in (Kind.COMPLETED, Kind.DIAL_FAILED):
            reserved.remove(event.agent)
            on_call -= event.kind == Kind.COMPLETED
        most_on_call, most_reserved = max(most_on_call, on_call), max(most_reserved, len(reserved))
    assert most_reserved == 3  # the backlog keeps every agent busy, never a fourth
    assert 1 <= most_on_call <= 3
    agents = {e.agent for e in recorder.events if e.agent}
    assert agents == {"sales-agent-1", "sales-agent-2", "sales-agent-3"}


async def test_planned_abandons_never_take_an_agent(start: Start) -> None:
    routing = profiles(
        agents=5, abandon_probability=1.0, abandon_after_seconds=30, patience_seconds=0.01
    )
    simulation, recorder = start(routing)
    for n in range(5):
        simulation.submit(due_callback(n))
    await recorder.wait_until(lambda events: len(finished(events)) == 5)

    for n in range(5):
        kinds = [e.kind for e in recorder.of(n)]
        assert kinds[0] == Kind.QUEUED and kinds[-1] == Kind.ABANDONED_IN_QUEUE
        assert Kind.ROUTING not in kinds
        # patience (0.01 s) is shorter than abandon_after_seconds (30 s): it decides when
        assert recorder.of(n)[-1].diagnostic_data["reason"] == "plan"


async def test_a_customer_out_of_patience_abandons_while_agents_are_busy(start: Start) -> None:
    routing = profiles(
        agents=1,
        dial_failure_probability=0,
        handle_seconds_min=30,
        handle_seconds_max=30,
        patience_seconds=0.02,
    )
    simulation, recorder = start(routing)
    simulation.submit(due_callback(1))  # takes the only agent for 30 s
    simulation.submit(due_callback(2))
    simulation.submit(due_callback(3))
    await recorder.wait_until(lambda events: len(finished(events)) == 2)

    assert [e.kind for e in recorder.of(1)] == [Kind.QUEUED, Kind.ROUTING, Kind.PROCESSING]
    for n in (2, 3):
        last = recorder.of(n)[-1]
        assert last.kind == Kind.ABANDONED_IN_QUEUE
        assert last.diagnostic_data["reason"] == "patience"
        assert last.diagnostic_data["waited_seconds"] >= 0.02
    assert simulation.active_attempts == 1


@pytest.mark.parametrize(
    ("busy_share", "failure"), [(0.0, DialFailure.NO_ANSWER), (1.0, DialFailure.BUSY)]
)
async def test_failed_dials_free_the_agent(
    start: Start, busy_share: float, failure: DialFailure
) -> None:
    simulation, recorder = start(
        profiles(agents=1, dial_failure_probability=1.0, busy_share=busy_share)
    )
    for n in range(5):
        simulation.submit(due_callback(n))
    await recorder.wait_until(lambda events: len(finished(events)) == 5)

    for n in range(5):
        events = recorder.of(n)
        assert events[-1].kind == Kind.DIAL_FAILED
        assert events[-1].dial_failure == failure
        assert events[-1].agent == "sales-agent-1"
        assert Kind.PROCESSING not in {e.kind for e in events}


async def test_duplicates_are_ignored_and_a_new_attempt_starts_over(start: Start) -> None:
    simulation, recorder = start(profiles(dial_failure_probability=0))
    assert await simulation.accept(due_callback(1)) is True
    assert await simulation.accept(due_callback(1)) is False
    assert simulation.submit(due_callback(1)) is None
    await recorder.wait_until(lambda events: len(finished(events)) == 1)
    assert await simulation.accept(due_callback(1, attempt=2)) is True
    await recorder.wait_until(lambda events: len(finished(events)) == 2)

    assert [e.kind for e in recorder.events].count(Kind.QUEUED) == 2
    first, second = recorder.of(1, attempt=1), recorder.of(1, attempt=2)
    assert [e.sequence for e in first] == list(range(len(first)))
    assert [e.sequence for e in second] == list(range(len(second)))
    assert second[-1].kind == Kind.COMPLETED


async def test_accept_returns_once_queued_is_published(start: Start) -> None:
    gate, entered = asyncio.Event(), asyncio.Event()
    published: list[RoutingEvent] = []

    async def slow_publish(events: Sequence[RoutingEvent]) -> None:
        entered.set()
        await gate.wait()
        published.extend(events)

    simulation, _ = start(profiles(), publish=slow_publish)
    accepting = asyncio.create_task(simulation.accept(due_callback(1)))
    await entered.wait()
    assert not accepting.done()
    assert published == []
    gate.set()
    assert await accepting is True
    assert published[0].kind == Kind.QUEUED


async def test_failed_publishes_are_retried_without_loss_or_reordering(start: Start) -> None:
    recorder = Recorder()
    failures: list[int] = []

    async def flaky_publish(events: Sequence[RoutingEvent]) -> None:
        if len(failures) < 3:
            failures.append(len(events))
            raise ConnectionError("broker unavailable")
        await recorder(events)

    simulation, _ = start(
        profiles(agents=1, dial_failure_probability=0),
        publish=flaky_publish,
        retry_initial_seconds=0.001,
    )
    for n in range(3):
        simulation.submit(due_callback(n))
    await recorder.wait_until(lambda events: len(finished(events)) == 3)

    assert len(failures) == 3
    for n in range(3):
        events = recorder.of(n)
        assert [e.sequence for e in events] == list(range(len(events)))
        assert events[-1].kind == Kind.COMPLETED


async def test_stopping_cancels_waiting_acceptances_and_refuses_new_callbacks() -> None:
    never, entered = asyncio.Event(), asyncio.Event()

    async def stuck_publish(events: Sequence[RoutingEvent]) -> None:
        entered.set()
        await never.wait()

    simulation = Simulation(
        profiles(handle_seconds_min=30, handle_seconds_max=30), 1, stuck_publish
    )
    running = asyncio.create_task(simulation.run())
    accepting = asyncio.create_task(simulation.accept(due_callback(1)))
    await entered.wait()
    running.cancel()
    with pytest.raises(asyncio.CancelledError):
        await running
    with pytest.raises(asyncio.CancelledError):
        await accepting
    with pytest.raises(RuntimeError, match="stopped"):
        simulation.submit(due_callback(2))


# --- commands: CANCEL and WITHDRAW ---------------------------------------------------------------


async def test_a_cancel_takes_a_queued_callback_out_of_the_queue(start: Start) -> None:
    simulation, recorder = start(
        profiles(
            agents=1, dial_failure_probability=0, handle_seconds_min=0.05, handle_seconds_max=0.05
        )
    )
    for n in (1, 2, 3):  # 1 takes the only agent, 2 and 3 wait
        simulation.submit(due_callback(n))
    await simulation.handle_command(command(2))  # returns once the answer is published
    assert recorder.kinds(2) == [Kind.QUEUED, Kind.CANCELLED]
    await recorder.wait_until(lambda events: {1, 3} <= {c.int for c, _ in finished(events)})

    assert recorder.kinds(2) == [Kind.QUEUED, Kind.CANCELLED]  # never routed afterwards
    cancelled = recorder.of(2)[-1]
    assert (cancelled.attempt, cancelled.sequence, cancelled.queue) == (1, 1, "sales")
    assert "nothing dialled" in cancelled.diagnostic_data["reason"]
    assert [e.position_in_queue for e in recorder.of(3)[:2]] == [2, 1]  # 3 moved up
    assert recorder.kinds(3)[-1] == Kind.COMPLETED
    assert simulation.active_attempts == 0


async def test_a_cancel_while_routing_dials_nothing_and_frees_the_agent(start: Start) -> None:
    simulation, recorder = start(profiles(agents=1, dial_failure_probability=0, dial_seconds=0.2))
    simulation.submit(due_callback(1))  # reserved the only agent: ROUTING for 0.2 s
    simulation.submit(due_callback(2))
    simulation.submit_command(command(1))
    await recorder.wait_until(lambda events: (UUID2, 1) in finished(events))

    assert recorder.kinds(1) == [Kind.QUEUED, Kind.ROUTING, Kind.CANCELLED]
    cancelled = recorder.of(1)[-1]
    assert cancelled.diagnostic_data["released_agent"] == "sales-agent-1"
    assert [e.kind for e in recorder.of(2)][-3:] == [Kind.ROUTING, Kind.PROCESSING, Kind.COMPLETED]
    assert recorder.of(2)[-1].agent == "sales-agent-1"  # the agent 1 had reserved
    await asyncio.sleep(0.25)  # past 1's dial time: its dial timer was stopped
    assert recorder.kinds(1) == [Kind.QUEUED, Kind.ROUTING, Kind.CANCELLED]
    assert simulation.active_attempts == 0


async def test_a_cancel_while_processing_is_refused_and_the_call_completes(start: Start) -> None:
    simulation, recorder = start(
        profiles(dial_failure_probability=0, handle_seconds_min=0.2, handle_seconds_max=0.2)
    )
    simulation.submit(due_callback(1))
    await recorder.wait_until(recorder.has(1, Kind.PROCESSING))
    await simulation.handle_command(command(1))
    await recorder.wait_until(recorder.has(1, Kind.COMPLETED))

    events = recorder.of(1)
    assert [e.kind for e in events] == [
        Kind.QUEUED,
        Kind.ROUTING,
        Kind.PROCESSING,
        Kind.CANCEL_REFUSED,
        Kind.COMPLETED,
    ]
    assert [e.sequence for e in events] == list(range(5))
    refused = events[3]
    assert refused.diagnostic_data["reason"] == "already connected to an agent"
    assert refused.agent == events[2].agent
    assert simulation.active_attempts == 0


async def test_a_cancel_after_a_call_is_refused_every_time_and_nothing_is_routed_again(
    start: Start,
) -> None:
    simulation, recorder = start(profiles(dial_failure_probability=0))
    await simulation.accept(due_callback(1))
    await recorder.wait_until(recorder.has(1, Kind.COMPLETED))
    await simulation.handle_command(command(1))
    await simulation.handle_command(command(1))  # repeated (a new event_id): the same answer

    events = recorder.of(1)
    assert [e.kind for e in events][-3:] == [
        Kind.COMPLETED,
        Kind.CANCEL_REFUSED,
        Kind.CANCEL_REFUSED,
    ]
    assert [e.sequence for e in events] == list(range(len(events)))  # numbered after the call
    assert await simulation.accept(due_callback(1, attempt=2)) is False


async def test_a_cancel_of_an_unknown_callback_wins_over_its_later_due_callback(
    start: Start,
) -> None:
    simulation, recorder = start(profiles())
    await simulation.handle_command(command(1, attempt=2))
    await simulation.handle_command(command(1, attempt=2))

    assert [(e.kind, e.attempt, e.sequence) for e in recorder.events] == [
        (Kind.CANCELLED, 2, 0),
        (Kind.CANCELLED, 2, 0),
    ]
    assert recorder.events[0].service_name == "sales"
    assert await simulation.accept(due_callback(1, attempt=2)) is False
    assert await simulation.accept(due_callback(1, attempt=3)) is False
    await asyncio.sleep(0.05)
    assert Kind.QUEUED not in recorder.kinds(1)
    assert simulation.active_attempts == 0


@pytest.mark.parametrize(
    ("profile", "outcome"),
    [
        ({"dial_failure_probability": 1.0}, Kind.DIAL_FAILED),
        ({"abandon_probability": 1.0, "abandon_after_seconds": 0.001}, Kind.ABANDONED_IN_QUEUE),
    ],
)
async def test_a_cancel_after_an_attempt_ended_without_an_agent_is_cancelled(
    start: Start, profile: dict[str, float], outcome: RoutingEventKind
) -> None:
    simulation, recorder = start(profiles(**profile))
    simulation.submit(due_callback(1))
    await recorder.wait_until(recorder.has(1, outcome))
    await simulation.handle_command(command(1))

    events = recorder.of(1)
    assert [e.kind for e in events][-2:] == [outcome, Kind.CANCELLED]
    assert [e.sequence for e in events] == list(range(len(events)))
    assert await simulation.accept(due_callback(1, attempt=2)) is False


async def test_a_withdrawn_attempt_is_dropped_silently_and_never_taken_again(start: Start) -> None:
    simulation, recorder = start(
        profiles(
            agents=1, dial_failure_probability=0, handle_seconds_min=0.05, handle_seconds_max=0.05
        )
    )
    for n in (1, 2, 3):
        simulation.submit(due_callback(n))
    assert simulation.submit_command(command(2, WITHDRAW)) is None  # no answer
    simulation.submit_command(command(4, WITHDRAW, attempt=2))  # before its due callback
    await recorder.wait_until(lambda events: {1, 3} <= {c.int for c, _ in finished(events)})

    assert recorder.kinds(2) == [Kind.QUEUED]  # dropped: nothing more, not even an answer
    assert await simulation.accept(due_callback(2)) is False
    assert await simulation.accept(due_callback(4, attempt=2)) is False
    assert recorder.kinds(4) == []
    assert [e.position_in_queue for e in recorder.of(3)[:2]] == [2, 1]
    # a withdrawn attempt is not a cancelled callback: the next attempt is routed
    assert await simulation.accept(due_callback(2, attempt=2)) is True
    await recorder.wait_until(lambda events: (UUID2, 2) in finished(events))
    assert simulation.active_attempts == 0


async def test_a_withdraw_leaves_a_call_alone(start: Start) -> None:
    simulation, recorder = start(
        profiles(dial_failure_probability=0, handle_seconds_min=0.1, handle_seconds_max=0.1)
    )
    simulation.submit(due_callback(1))
    await recorder.wait_until(recorder.has(1, Kind.PROCESSING))
    simulation.submit_command(command(1, WITHDRAW))
    await recorder.wait_until(recorder.has(1, Kind.COMPLETED))
    assert recorder.kinds(1)[-2:] == [Kind.PROCESSING, Kind.COMPLETED]


async def test_a_newer_attempt_supersedes_a_held_older_one(start: Start) -> None:
    simulation, recorder = start(
        profiles(
            agents=1, dial_failure_probability=0, handle_seconds_min=0.05, handle_seconds_max=0.05
        )
    )
    simulation.submit(due_callback(1))  # on the only agent
    simulation.submit(due_callback(2))  # waits
    assert simulation.submit(due_callback(2, attempt=2)) is not None
    await recorder.wait_until(lambda events: (UUID2, 2) in finished(events))

    assert recorder.kinds(2, attempt=1) == [Kind.QUEUED]  # dropped silently
    assert recorder.kinds(2, attempt=2)[0] == Kind.QUEUED
    assert recorder.kinds(2, attempt=2)[-1] == Kind.COMPLETED
    assert await simulation.accept(due_callback(2)) is False  # the older attempt: seen
    assert simulation.active_attempts == 0


async def test_a_newer_attempt_while_routing_frees_the_agent_first(start: Start) -> None:
    simulation, recorder = start(profiles(agents=1, dial_failure_probability=0, dial_seconds=0.1))
    simulation.submit(due_callback(1))  # ROUTING
    simulation.submit(due_callback(1, attempt=2))
    await recorder.wait_until(lambda events: (UUID1, 2) in finished(events))

    assert recorder.kinds(1, attempt=1) == [Kind.QUEUED, Kind.ROUTING]
    attempt_2 = recorder.of(1, attempt=2)
    assert attempt_2[0].position_in_queue == 1
    assert [e.kind for e in attempt_2][-3:] == [Kind.ROUTING, Kind.PROCESSING, Kind.COMPLETED]
    # never two attempts of the callback at once: 2 was routed only once 1 was dropped
    assert [e.kind for e in recorder.events].count(Kind.ROUTING) == 2
    assert [e.kind for e in recorder.events].count(Kind.PROCESSING) == 1


async def test_a_newer_attempt_is_ignored_while_the_older_is_on_a_call(start: Start) -> None:
    simulation, recorder = start(
        profiles(dial_failure_probability=0, handle_seconds_min=0.1, handle_seconds_max=0.1)
    )
    simulation.submit(due_callback(1))
    await recorder.wait_until(recorder.has(1, Kind.PROCESSING))
    assert await simulation.accept(due_callback(1, attempt=2)) is False
    await recorder.wait_until(recorder.has(1, Kind.COMPLETED))
    assert recorder.kinds(1, attempt=2) == []


async def test_commands_after_the_stop_are_refused() -> None:
    simulation = Simulation(profiles(), 1, Recorder())
    running = asyncio.create_task(simulation.run())
    await asyncio.sleep(0)
    running.cancel()
    with pytest.raises(asyncio.CancelledError):
        await running
    with pytest.raises(RuntimeError, match="stopped"):
        simulation.submit_command(command(1))


# --- heartbeats (HELD) ---------------------------------------------------------------------------

HEARTBEAT = 0.2


def gaps(events: Sequence[RoutingEvent]) -> list[float]:
    return [(b.occurred_at - a.occurred_at).total_seconds() for a, b in itertools.pairwise(events)]


async def test_a_waiting_callback_is_held_every_heartbeat_but_a_call_is_not(start: Start) -> None:
    simulation, recorder = start(
        profiles(
            agents=1,
            dial_failure_probability=0,
            handle_seconds_min=1.0,
            handle_seconds_max=1.0,
            heartbeat_seconds=HEARTBEAT,
        )
    )
    simulation.submit(due_callback(1))  # on a call for 1 s
    simulation.submit(due_callback(2))  # waits at position 1 meanwhile
    await recorder.wait_until(recorder.has(1, Kind.COMPLETED))

    waiting = [e for e in recorder.of(2) if e.kind in (Kind.QUEUED, Kind.HELD)]
    assert [e.kind for e in waiting[1:]] == [Kind.HELD] * (len(waiting) - 1)
    assert 3 <= len(waiting) - 1 <= 5  # about one per heartbeat during 1 s
    for gap in gaps(waiting):
        assert HEARTBEAT * 0.95 <= gap <= HEARTBEAT * 2, gaps(waiting)
    held = waiting[-1]
    assert (held.position_in_queue, held.queue) == (1, "sales")
    assert held.estimated_wait_seconds is not None
    assert [e.sequence for e in recorder.of(2)] == list(range(len(recorder.of(2))))
    # the call: nothing between PROCESSING and COMPLETED, however long it lasts
    assert recorder.kinds(1) == [Kind.QUEUED, Kind.ROUTING, Kind.PROCESSING, Kind.COMPLETED]


async def test_a_callback_being_dialled_is_held_with_its_agent(start: Start) -> None:
    simulation, recorder = start(
        profiles(dial_failure_probability=0, dial_seconds=0.7, heartbeat_seconds=HEARTBEAT)
    )
    simulation.submit(due_callback(1))
    await recorder.wait_until(recorder.has(1, Kind.PROCESSING))

    kinds = recorder.kinds(1)
    assert kinds[:2] == [Kind.QUEUED, Kind.ROUTING]
    assert kinds[-1] == Kind.PROCESSING
    assert set(kinds[2:-1]) == {Kind.HELD} and 2 <= len(kinds[2:-1]) <= 4
    held = recorder.of(1)[2]
    assert (held.agent, held.queue, held.route_point) == ("sales-agent-1", "sales", "RP-sales")
    assert held.position_in_queue is None
    for gap in gaps(recorder.of(1)[1:-1]):
        assert HEARTBEAT * 0.95 <= gap <= HEARTBEAT * 2


async def test_a_cancelled_or_withdrawn_callback_is_no_longer_held(start: Start) -> None:
    simulation, recorder = start(
        profiles(
            agents=1,
            dial_failure_probability=0,
            handle_seconds_min=30,
            handle_seconds_max=30,
            heartbeat_seconds=HEARTBEAT,
        )
    )
    for n in (1, 2, 3):
        simulation.submit(due_callback(n))
    simulation.submit_command(command(2))
    simulation.submit_command(command(3, WITHDRAW))
    await asyncio.sleep(HEARTBEAT * 3)
    assert recorder.kinds(2) == [Kind.QUEUED, Kind.CANCELLED]
    assert recorder.kinds(3) == [Kind.QUEUED, Kind.POSITION_UPDATED]  # moved up, then dropped
    assert Kind.HELD not in recorder.kinds(1)  # on a call
