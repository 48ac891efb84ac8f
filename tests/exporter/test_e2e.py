"""The exporter as a separate process: killed with SIGKILL mid-stream and restarted, then the
whole topic replayed by new consumer groups (into a fresh database and over the existing
report): the report is identical every time, and is what the events say it must be."""

from __future__ import annotations

import asyncio
import json
import random
import uuid
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from callback_admin_api.report import ALL_SERVICES, recent_cancellations
from callback_shared.models import LifecycleEvent, utcnow
from callback_shared.mongo import CANCELLATION_REPORT, Document, make_mongo_client
from callback_shared.settings import PlatformSettings
from callback_shared.states import CallbackState
from prometheus_client.parser import text_string_to_metric_families
from pymongo.asynchronous.database import AsyncDatabase

from tests.exporter.support import K, Row, cancellation, expected_report, summary_of_entry
from tests.pipeline.helpers import TopicReader, eventually, produce
from tests.support import ServiceProcess, start_service

pytestmark = pytest.mark.e2e

ACTORS = ["alice", "bob", "carol"]
SERVICES = ["billing", "sales", "support"]
CONSUMED = (
    "callback_exporter_events_applied",
    "callback_exporter_events_ignored",
    "callback_dead_letters",
)
MALFORMED = [
    (b"k1", b"{not json"),
    (b"k2", b'{"callback_id": "x", "kind": "TELEPORTED"}'),
    (b"k3", json.dumps({"kind": "CANCELLED", "callback_id": str(uuid.uuid4())}).encode()),
]


def scenario(seed: int = 11) -> list[LifecycleEvent]:
    """A few hundred events in the order they are produced: bulk cancels and single cancels
    by several users over several services, refusals, out-of-order pairs for one callback,
    duplicates, and events that make no entry."""
    rng = random.Random(seed)
    now = utcnow()
    at = now - timedelta(hours=1)
    events: list[LifecycleEvent] = []

    def tick() -> timedelta:
        return timedelta(milliseconds=rng.randint(1, 5000))

    for actor in ACTORS:
        for _ in range(2):
            batch = uuid.uuid4()
            at += tick()
            for _ in range(30):
                callback = uuid.uuid4()
                service = rng.choice(SERVICES)
                number = f"+1415555{rng.randint(0, 9999):04d}"
                refused = rng.random() < 0.2
                event = cancellation(
                    actor=actor,
                    batch_id=batch,
                    callback_id=callback,
                    at=at + timedelta(microseconds=rng.randint(0, 999_999)),
                    kind=K.CANCELLATION_REFUSED if refused else K.CANCELLED,
                    previous_state=CallbackState.PROCESSING if refused else CallbackState.QUEUED,
                    service_name=service,
                    customer_number=number,
                )
                if rng.random() < 0.15:
                    # the later outcome of the same callback in the same batch is produced
                    # first: the report must keep it anyway
                    later = cancellation(
                        actor=actor,
                        batch_id=batch,
                        callback_id=callback,
                        at=event.occurred_at + timedelta(seconds=3),
                        kind=K.CANCELLATION_REFUSED,
                        previous_state=CallbackState.PROCESSING,
                        service_name=service,
                        customer_number=number,
                        reason='PROCESSING, "busy"\n=cmd',
                    )
                    events += [later, event]
                else:
                    events.append(event)
        for _ in range(10):
            at += tick()
            callback = uuid.uuid4()
            first = cancellation(
                actor=actor,
                callback_id=callback,
                at=at,
                kind=K.CANCELLATION_REFUSED,
                previous_state=CallbackState.PROCESSING,
                service_name=rng.choice(SERVICES),
            )
            events.append(first)
            if rng.random() < 0.5:
                # refused, then cancelled once it could be (single cancels: no batch)
                events.append(
                    cancellation(actor=actor, callback_id=callback, at=at + timedelta(seconds=1))
                )
    for _ in range(20):
        events.append(cancellation(at=now, kind=K.STATE_CHANGED, actor=None))
    for _ in range(5):
        events.append(cancellation(at=now, actor=None))  # not made through the admin API
    events += rng.sample(events, 40)  # redelivered duplicates, same event ids
    return events


def encoded(events: list[LifecycleEvent]) -> list[tuple[bytes, bytes]]:
    return [(event.key, event.model_dump_json().encode()) for event in events]


async def report_of(db: AsyncDatabase[Document]) -> dict[str, list[Row]]:
    since = utcnow() - timedelta(days=1)
    return {
        actor: [
            summary_of_entry(e) for e in await recent_cancellations(db, actor, ALL_SERVICES, since)
        ]
        for actor in ACTORS
    }


async def documents_of(db: AsyncDatabase[Document]) -> list[Document]:
    return await db[CANCELLATION_REPORT].find().sort("_id", 1).to_list()


def consumed(service: ServiceProcess) -> int:
    """Messages the process has handled so far, from its /metrics."""
    text = httpx.get(f"{service.url}/metrics", timeout=5).text
    return int(
        sum(
            sample.value
            for family in text_string_to_metric_families(text)
            if family.name in CONSUMED
            for sample in family.samples
            if sample.name.endswith("_total")
        )
    )


def same_report(actual: dict[str, list[Row]], expected: dict[str, list[Row]]) -> bool:
    return all(sorted(actual[a], key=str) == sorted(expected.get(a, []), key=str) for a in ACTORS)


async def replayed(env: dict[str, str], tmp_path: Path, total: int, **extra: str) -> None:
    """Run an exporter in a new consumer group until it has handled every message."""
    replay = start_service("exporter", env, tmp_path, **extra)
    try:
        await asyncio.to_thread(replay.wait_ready)

        async def done() -> bool:
            return await asyncio.to_thread(consumed, replay) >= total

        await eventually(done, 120, "the whole topic replayed")
    finally:
        assert replay.terminate() == 0, replay.output()


async def test_killed_restarted_and_replayed_exporter_builds_the_same_report(
    env: dict[str, str], db: AsyncDatabase[Document], settings: PlatformSettings, tmp_path: Path
) -> None:
    events = scenario()
    expected = expected_report(events)
    entries = sum(len(rows) for rows in expected.values())
    assert len(events) >= 300 and entries > 150
    messages = encoded(events)
    half = len(messages) // 2
    first, second = messages[:half], messages[half:] + MALFORMED
    bootstrap = env["KAFKA_BOOTSTRAP_SERVERS"]
    topic = env["TOPIC_LIFECYCLE_EVENTS"]

    async with TopicReader(bootstrap, env["TOPIC_DEAD_LETTER"]) as dead:
        await produce(bootstrap, topic, first)
        # small batches, so the kill lands while the stream is being applied
        exporter = start_service("exporter", env, tmp_path, EXPORTER_BATCH_SIZE="5")
        try:
            await asyncio.to_thread(exporter.wait_ready)

            async def started() -> bool:
                return await db[CANCELLATION_REPORT].count_documents({}) > 0

            await eventually(started, 60, "the first entries written")
        finally:
            exporter.kill()
        at_kill = await db[CANCELLATION_REPORT].count_documents({})
        assert 0 < at_kill < entries

        await produce(bootstrap, topic, second)
        restarted = start_service("exporter", env, tmp_path)
        try:
            await asyncio.to_thread(restarted.wait_ready)

            async def settled() -> bool:
                return same_report(await report_of(db), expected) and len(dead.messages) >= 3

            await eventually(settled, 120, "the report complete after the restart")
        finally:
            assert restarted.terminate() == 0, restarted.output()

    report = await report_of(db)
    documents = await documents_of(db)
    assert len(documents) == entries
    for actor in ACTORS:
        times = [row[3] for row in report[actor]]
        assert times == sorted(times, reverse=True), actor
    reasons = {letter["reason"].split(":")[0] for letter in dead.messages}
    assert reasons == {"malformed lifecycle event"}
    assert {payload for _, payload in MALFORMED} <= {
        letter["payload"].encode() for letter in dead.messages
    }

    total = len(messages) + len(MALFORMED)
    # a new consumer group replays the topic from its start into an empty database
    fresh = f"{env['MONGODB_DATABASE']}_replay"
    await replayed(env, tmp_path, total, EXPORTER_GROUP_ID="replay-1", MONGODB_DATABASE=fresh)
    client = make_mongo_client(settings)
    try:
        assert await report_of(client[fresh]) == report
        assert await documents_of(client[fresh]) == documents
    finally:
        await client.drop_database(fresh)
        await client.close()

    # and over the existing report: nothing changes
    await replayed(env, tmp_path, total, EXPORTER_GROUP_ID="replay-2")
    assert await report_of(db) == report
    assert await documents_of(db) == documents
