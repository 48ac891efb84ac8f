"""End to end: the routing-sim process against real Kafka, checked against plan_attempt."""

import asyncio
import itertools
import json
import random
import uuid
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import httpx
import pytest
from aiokafka import AIOKafkaConsumer
from callback_routing_sim import parse_profiles, plan_attempt
from callback_shared.kafka import make_broker
from callback_shared.models import DeadLetter, DueCallback, RoutingCommand, RoutingEvent
from callback_shared.settings import PlatformSettings

from tests.routing_sim.support import (
    Kind,
    assert_follows_plan,
    by_attempt,
    command,
    due_callback,
    finished,
)
from tests.support import start_service

SEED = 11
DEFAULT_PROFILE = json.dumps(
    {
        "agents": 3,
        "handle_seconds_min": 0.01,
        "handle_seconds_max": 0.1,
        "dial_seconds": 0.01,
        "dial_failure_probability": 0.2,
        "abandon_probability": 0.15,
        "abandon_after_seconds": 0.05,
    }
)
SERVICES = json.dumps({"sales": {"agents": 1}})
JSON = {"content-type": "application/json"}


@pytest.mark.e2e
async def test_routing_sim_routes_due_callbacks_as_planned(
    env: dict[str, str], settings: PlatformSettings, tmp_path: Path
) -> None:
    process = start_service(
        "routing-sim",
        env,
        tmp_path,
        ROUTING_SIM_SEED=str(SEED),
        ROUTING_SIM_DEFAULT_PROFILE=DEFAULT_PROFILE,
        ROUTING_SIM_SERVICES=SERVICES,
    )
    profiles = parse_profiles(SERVICES, DEFAULT_PROFILE)
    rng = random.Random(SEED)  # fixed callbacks, so a fixed mix of planned outcomes
    dues = [
        due_callback(
            uuid.UUID(int=rng.getrandbits(128), version=4),
            rng.choice(["sales", "support"]),
            priority=rng.randint(0, 3),
        )
        for _ in range(30)
    ]
    repeated = dues[0]
    retry = repeated.model_copy(update={"attempt": 2, "event_id": uuid.uuid4()})
    expected = {(due.callback_id, due.attempt) for due in [*dues, retry]}
    consumer = AIOKafkaConsumer(
        settings.topic_routing_events,
        settings.topic_dead_letter,
        bootstrap_servers=settings.kafka_bootstrap_servers,
        auto_offset_reset="earliest",
    )
    events: list[RoutingEvent] = []
    dead_letters: list[DeadLetter] = []
    try:
        await asyncio.to_thread(process.wait_ready)
        await consumer.start()
        async with make_broker(settings, client_id="routing-sim-e2e") as broker:
            await broker.connect()
            for due in dues:
                await broker.publish(
                    due.model_dump_json().encode(),
                    settings.topic_due_callbacks,
                    key=due.key,
                    headers=JSON,
                )
            # same key, so the same partition, in this order: a duplicate of the first attempt,
            # a message that is not a due callback, then (once the first attempt ended: a newer
            # attempt would supersede a held one) the second attempt
            for body in (repeated.model_dump_json(), "{not json"):
                await broker.publish(
                    body.encode(),
                    settings.topic_due_callbacks,
                    key=repeated.key,
                    headers=JSON,
                )
            retried = False
            async with asyncio.timeout(90):
                while finished(events) != expected or not dead_letters:
                    batches = await consumer.getmany(timeout_ms=500)
                    for record in (r for records in batches.values() for r in records):
                        if record.topic == settings.topic_dead_letter:
                            dead_letters.append(DeadLetter.model_validate_json(record.value))
                        else:
                            events.append(RoutingEvent.model_validate_json(record.value))
                    if not retried and (repeated.callback_id, 1) in finished(events):
                        await broker.publish(
                            retry.model_dump_json().encode(),
                            settings.topic_due_callbacks,
                            key=repeated.key,
                            headers=JSON,
                        )
                        retried = True
        metrics = (await asyncio.to_thread(httpx.get, f"{process.url}/metrics")).text
    finally:
        await consumer.stop()
        code = await asyncio.to_thread(process.terminate)
    assert code == 0, process.output()
    assert '"event": "service stopped"' in process.output()

    attempts = by_attempt(events)
    assert set(attempts) == expected  # every attempt, nothing else
    outcomes = set()
    for (callback_id, attempt), attempt_events in attempts.items():
        service = attempt_events[0].service_name
        plan = plan_attempt(SEED, profiles.for_service(service), callback_id, attempt)
        assert_follows_plan(attempt_events, plan)  # ends in the outcome the plan implies
        outcomes.add(plan.outcome)
    assert outcomes == {Kind.COMPLETED, Kind.DIAL_FAILED, Kind.ABANDONED_IN_QUEUE}
    # the duplicate, read before the second attempt on the same partition, made no events
    assert [e.kind for e in attempts[(repeated.callback_id, 1)]].count(Kind.QUEUED) == 1

    for service, agents in (("sales", 1), ("support", 3)):
        assert_agents_never_double_booked(events, service, agents)

    assert len(dead_letters) == 1
    assert dead_letters[0].payload == "{not json"
    assert dead_letters[0].source_topic == settings.topic_due_callbacks
    assert dead_letters[0].reason.startswith("not a DueCallback")
    assert 'routing_sim_events_published_total{kind="COMPLETED",service="support"}' in metrics
    # structured logs: each attempt's outcome is logged with its callback id bound
    lines = [json.loads(line) for line in process.log.read_text().splitlines() if line[:1] == "{"]
    logged_outcomes = {
        (uuid.UUID(line["callback_id"]), line["attempt"]): line["outcome"]
        for line in lines
        if line["event"] == "attempt finished" and line["service"] == "routing-sim"
    }
    assert logged_outcomes == {key: events[-1].kind.value for key, events in attempts.items()}


def assert_agents_never_double_booked(
    events: list[RoutingEvent], service: str, agents: int
) -> None:
    """Each agent's reservations (ROUTING to its end) do not overlap in time."""
    holds: dict[str | None, list[tuple[datetime, datetime]]] = {}
    for attempt_events in by_attempt(e for e in events if e.service_name == service).values():
        by_kind = {e.kind: e for e in attempt_events}
        end = by_kind.get(Kind.COMPLETED) or by_kind.get(Kind.DIAL_FAILED)
        if Kind.ROUTING in by_kind and end is not None:
            routing = by_kind[Kind.ROUTING]
            holds.setdefault(routing.agent, []).append((routing.occurred_at, end.occurred_at))
    assert set(holds) <= {f"{service}-agent-{n}" for n in range(1, agents + 1)}
    for spans in holds.values():
        spans.sort()
        for (_, first_end), (next_start, _) in itertools.pairwise(spans):
            assert next_start >= first_end


#: sales: one agent and a 30 s dial, so a cancelled callback is QUEUED or ROUTING, never reaches
#: an agent, however late its cancel is read; support: fast calls that complete
CANCEL_SERVICES = json.dumps(
    {
        "sales": {"agents": 1, "dial_seconds": 30},
        "support": {"agents": 2, "dial_seconds": 0.01},
    }
)
CANCEL_DEFAULT_PROFILE = json.dumps(
    {
        "handle_seconds_min": 0.01,
        "handle_seconds_max": 0.05,
        "dial_failure_probability": 0,
        "abandon_probability": 0,
    }
)


@pytest.mark.e2e
async def test_routing_sim_obeys_cancel_commands(
    env: dict[str, str], settings: PlatformSettings, tmp_path: Path
) -> None:
    process = start_service(
        "routing-sim",
        env,
        tmp_path,
        ROUTING_SIM_SEED=str(SEED),
        ROUTING_SIM_DEFAULT_PROFILE=CANCEL_DEFAULT_PROFILE,
        ROUTING_SIM_SERVICES=CANCEL_SERVICES,
    )
    early, *held = [due_callback(uuid.uuid4(), "sales") for _ in range(4)]
    late = due_callback(uuid.uuid4(), "sales")  # routed once every cancelled one left the agent
    completed = [due_callback(uuid.uuid4(), "support") for _ in range(3)]
    cancelled = [early, *held]
    consumer = AIOKafkaConsumer(
        settings.topic_routing_events,
        settings.topic_dead_letter,
        bootstrap_servers=settings.kafka_bootstrap_servers,
        auto_offset_reset="earliest",
    )
    events: list[RoutingEvent] = []
    dead_letters: list[DeadLetter] = []

    async def until(done: Callable[[], object]) -> None:
        async with asyncio.timeout(60):
            while not done():
                batches = await consumer.getmany(timeout_ms=200)
                for record in (r for records in batches.values() for r in records):
                    if record.topic == settings.topic_dead_letter:
                        dead_letters.append(DeadLetter.model_validate_json(record.value))
                    else:
                        events.append(RoutingEvent.model_validate_json(record.value))

    def kinds(due: DueCallback) -> list[Kind]:
        return [e.kind for e in events if e.callback_id == due.callback_id]

    def have(kind: Kind, *dues: DueCallback) -> bool:
        return all(kind in kinds(due) for due in dues)

    try:
        await asyncio.to_thread(process.wait_ready)
        await consumer.start()
        async with make_broker(settings, client_id="routing-sim-e2e") as broker:
            await broker.connect()

            async def send(
                topic: str, message: DueCallback | RoutingCommand, partition: int | None = None
            ) -> None:
                await broker.publish(
                    message.model_dump_json().encode(),
                    topic,
                    key=message.key,
                    partition=partition,
                    headers=JSON,
                )

            # the cancel of `early` is read (and answered) before its due callback is sent
            await send(settings.topic_routing_commands, command(early.callback_id))
            await until(lambda: have(Kind.CANCELLED, early))
            # `early` and (later) `late` on one partition: `late` is read after `early`
            await send(settings.topic_due_callbacks, early, partition=0)
            for due in [*held, *completed]:
                await send(settings.topic_due_callbacks, due)
            await broker.publish(
                b"{not json", settings.topic_routing_commands, key=b"x", headers=JSON
            )
            await until(lambda: have(Kind.QUEUED, *held) and have(Kind.COMPLETED, *completed))
            for due in held:  # one ROUTING (the agent reserved for 30 s), the others QUEUED
                await send(settings.topic_routing_commands, command(due.callback_id))
            # a callback that reached an agent: the cancel is refused
            await send(
                settings.topic_routing_commands,
                command(completed[0].callback_id, service="support"),
            )
            await until(
                lambda: (
                    have(Kind.CANCELLED, *held)
                    and have(Kind.CANCEL_REFUSED, completed[0])
                    and dead_letters
                )
            )
            await send(settings.topic_due_callbacks, late, partition=0)
            await until(lambda: have(Kind.ROUTING, late))
        metrics = (await asyncio.to_thread(httpx.get, f"{process.url}/metrics")).text
    finally:
        await consumer.stop()
        code = await asyncio.to_thread(process.terminate)
    assert code == 0, process.output()

    assert kinds(early) == [Kind.CANCELLED]  # never queued: its due callback was ignored
    answer = next(e for e in events if e.callback_id == early.callback_id)
    assert (answer.attempt, answer.sequence, answer.service_name) == (1, 0, "sales")
    for due in cancelled:
        after = kinds(due)[kinds(due).index(Kind.CANCELLED) :]
        assert after == [Kind.CANCELLED], kinds(due)  # nothing after the answer
        assert Kind.PROCESSING not in kinds(due)
    # the one that had the agent released it: `late` took the same agent
    routed = [due for due in held if Kind.ROUTING in kinds(due)]
    assert routed, [kinds(due) for due in held]
    agents = {e.agent for e in events if e.kind == Kind.ROUTING and e.service_name == "sales"}
    assert agents == {"sales-agent-1"}
    assert kinds(late) == [Kind.QUEUED, Kind.ROUTING]
    assert kinds(completed[0])[-2:] == [Kind.COMPLETED, Kind.CANCEL_REFUSED]
    refused = next(e for e in events if e.kind == Kind.CANCEL_REFUSED)
    assert refused.diagnostic_data["reason"] == "already connected to an agent"
    for due in completed[1:]:
        assert kinds(due)[-1] == Kind.COMPLETED

    assert len(dead_letters) == 1
    assert dead_letters[0].source_topic == settings.topic_routing_commands
    assert dead_letters[0].reason.startswith("not a RoutingCommand")
    for outcome in ("removed", "not_held", "refused"):
        assert f'routing_sim_commands_total{{kind="CANCEL",outcome="{outcome}"}}' in metrics
    lines = [json.loads(line) for line in process.log.read_text().splitlines() if line[:1] == "{"]
    ignored = [
        line["callback_id"]
        for line in lines
        if line["event"] == "due callback of a cancelled callback ignored"
    ]
    assert ignored == [str(early.callback_id)]
