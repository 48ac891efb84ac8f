"""The simulation's queues, agents and timing, with an in-memory publish (no I/O)."""

import asyncio
from collections import Counter

import pytest
from callback_routing_sim import RoutingProfiles, ServiceProfile, plan_attempt
from callback_routing_sim.simulation import Simulation
from callback_shared.models import DialFailure

from tests.routing_sim.support import (
    Kind,
    Recorder,
    assert_follows_plan,
    by_attempt,
    due_callback,
    finished,
)

FAST = {"handle_seconds_min": 0.001, "handle_seconds_max": 0.005, "dial_seconds": 0.001}


def profiles(**profile: object) -> RoutingProfiles:
    return RoutingProfiles(default=ServiceProfile.model_validate({**FAST, **profile}))


@pytest.fixture
async def start():
    """Start simulations driven by ``run()``; cancel them (a clean stop) after the test."""
    tasks: list[asyncio.Task[None]] = []

    def start(routing: RoutingProfiles, *, seed: int = 1, publish=None, **options):
        recorder = Recorder()
        simulation = Simulation(routing, seed, publish or recorder, **options)
        tasks.append(asyncio.create_task(simulation.run()))
        return simulation, recorder

    yield start
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


async def test_every_attempt_publishes_its_plans_path_in_order(start):
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

    outcomes = Counter()
    for due in dues:
        plan = plan_attempt(3, routing.default, due.callback_id, 1)
        events = by_attempt(recorder.events)[(due.callback_id, 1)]
        assert_follows_plan(events, plan)
        assert {e.service_name for e in events} == {due.service_name}
        outcomes[events[-1].kind] += 1
    assert set(outcomes) == {Kind.COMPLETED, Kind.DIAL_FAILED, Kind.ABANDONED_IN_QUEUE}
    assert simulation.active_attempts == 0


async def test_higher_priority_is_routed_first_then_arrival_order(start):
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
        assert event.estimated_wait_seconds == round(event.position_in_queue * mean, 3)


async def test_never_more_calls_at_once_than_agents(start):
    simulation, recorder = start(
        profiles(agents=3, handle_seconds_min=0.005, handle_seconds_max=0.02)
    )
    for n in range(30):
        simulation.submit(due_callback(n))
    await recorder.wait_until(lambda events: len(finished(events)) == 30)

    reserved: set[str] = set()
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


async def test_planned_abandons_never_take_an_agent(start):
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


async def test_a_customer_out_of_patience_abandons_while_agents_are_busy(start):
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
async def test_failed_dials_free_the_agent(start, busy_share, failure):
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


async def test_duplicates_are_ignored_and_a_new_attempt_starts_over(start):
    simulation, recorder = start(profiles(dial_failure_probability=0))
    assert await simulation.accept(due_callback(1)) is True
    assert await simulation.accept(due_callback(1)) is False
    assert simulation.submit(due_callback(1)) is None
    assert await simulation.accept(due_callback(1, attempt=2)) is True
    await recorder.wait_until(lambda events: len(finished(events)) == 2)

    assert [e.kind for e in recorder.events].count(Kind.QUEUED) == 2
    first, second = recorder.of(1, attempt=1), recorder.of(1, attempt=2)
    assert [e.sequence for e in first] == list(range(len(first)))
    assert [e.sequence for e in second] == list(range(len(second)))
    assert second[-1].kind == Kind.COMPLETED


async def test_accept_returns_once_queued_is_published(start):
    gate, entered = asyncio.Event(), asyncio.Event()
    published = []

    async def slow_publish(events):
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


async def test_failed_publishes_are_retried_without_loss_or_reordering(start):
    recorder, failures = Recorder(), []

    async def flaky_publish(events):
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


async def test_stopping_cancels_waiting_acceptances_and_refuses_new_callbacks():
    never, entered = asyncio.Event(), asyncio.Event()

    async def stuck_publish(events):
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
