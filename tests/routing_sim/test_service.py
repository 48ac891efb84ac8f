"""End to end: the routing-sim process against real Kafka, checked against plan_attempt."""

import asyncio
import itertools
import json
import random
import uuid
from datetime import datetime

import httpx
import pytest
from aiokafka import AIOKafkaConsumer
from callback_routing_sim import parse_profiles, plan_attempt
from callback_shared.kafka import make_broker
from callback_shared.models import DeadLetter, RoutingEvent

from tests.routing_sim.support import Kind, assert_follows_plan, by_attempt, due_callback, finished
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
async def test_routing_sim_routes_due_callbacks_as_planned(env, settings, tmp_path):
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
            # a message that is not a due callback, then the second attempt
            for body in (repeated.model_dump_json(), "{not json", retry.model_dump_json()):
                await broker.publish(
                    body.encode(),
                    settings.topic_due_callbacks,
                    key=repeated.key,
                    headers=JSON,
                )
        async with asyncio.timeout(90):
            while finished(events) != expected or not dead_letters:
                batches = await consumer.getmany(timeout_ms=500)
                for record in (r for records in batches.values() for r in records):
                    if record.topic == settings.topic_dead_letter:
                        dead_letters.append(DeadLetter.model_validate_json(record.value))
                    else:
                        events.append(RoutingEvent.model_validate_json(record.value))
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


def assert_agents_never_double_booked(events: list[RoutingEvent], service: str, agents: int):
    """Each agent's reservations (ROUTING to its end) do not overlap in time."""
    holds: dict[str, list[tuple[datetime, datetime]]] = {}
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
