"""The scheduler as separate processes against real Kafka and MongoDB."""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from callback_scheduler.dispatcher import SCHEDULER_LEASES
from callback_shared.models import utcnow
from callback_shared.mongo import CALLBACKS, Document
from callback_shared.states import CallbackResult, CallbackState
from pymongo.asynchronous.database import AsyncDatabase

from tests.pipeline.helpers import TopicReader, eventually, seed_callbacks
from tests.support import ServiceProcess, start_service

pytestmark = pytest.mark.e2e


def at(message: dict[str, Any], field: str) -> datetime:
    return datetime.fromisoformat(message[field])


def emitted_ids(reader: TopicReader) -> set[str]:
    return {m["callback_id"] for m in reader.messages}


async def test_emits_immediate_and_scheduled_callbacks_on_time_once(
    env: dict[str, str], db: AsyncDatabase[Document], tmp_path: Path
) -> None:
    now = utcnow()
    immediate = await seed_callbacks(db, [now] * 20)
    scheduled = await seed_callbacks(db, [now + timedelta(seconds=3 + n * 0.05) for n in range(40)])
    scheduler = start_service("scheduler", env, tmp_path)
    async with TopicReader(env["KAFKA_BOOTSTRAP_SERVERS"], env["TOPIC_DUE_CALLBACKS"]) as due:
        try:
            await asyncio.to_thread(scheduler.wait_ready)

            async def all_emitted() -> bool:
                return len(emitted_ids(due)) == 60

            await eventually(all_emitted, 30, "all 60 callbacks emitted")
            await asyncio.sleep(1)
        finally:
            assert scheduler.terminate() == 0, scheduler.output()
    counts = Counter(m["callback_id"] for m in due.messages)
    assert set(counts) == {str(i) for i in immediate + scheduled}
    assert max(counts.values()) == 1
    for message in due.messages:
        assert message["attempt"] == 1
        # never before its desired time (occurred_at: when the event was built)
        assert at(message, "occurred_at") >= at(message, "desired_time")
    # no write per callback: the documents wait for routing, the lease holds the watermark
    docs = await db[CALLBACKS].find().to_list()
    assert all(doc["dispatch_at"] == doc["desired_time"] for doc in docs)
    lease = await db[SCHEDULER_LEASES].find_one()
    assert lease is not None
    assert lease["emitted_through"] >= max(doc["dispatch_at"] for doc in docs)
    assert lease["expires_at"] <= utcnow()  # handed over when it stopped
    assert '"event": "callbacks dispatched"' in scheduler.output()


async def test_cancel_and_reschedule_before_dispatch_take_effect(
    env: dict[str, str], db: AsyncDatabase[Document], tmp_path: Path
) -> None:
    now = utcnow()
    cancelled, rescheduled, kept = await seed_callbacks(db, [now + timedelta(seconds=6)] * 3)
    scheduler = start_service("scheduler", env, tmp_path)
    async with TopicReader(env["KAFKA_BOOTSTRAP_SERVERS"], env["TOPIC_DUE_CALLBACKS"]) as due:
        try:
            await asyncio.to_thread(scheduler.wait_ready)
            # what admin-api's cancel and reschedule do to a document
            await db[CALLBACKS].update_one(
                {"_id": cancelled, "state": "SCHEDULED"},
                {
                    "$set": {"state": "COMPLETED", "result": "CANCELLED_BY_ADMIN"},
                    "$unset": {"dispatch_at": ""},
                },
            )
            later = now + timedelta(seconds=10)
            await db[CALLBACKS].update_one(
                {"_id": rescheduled, "dispatch_at": {"$gt": utcnow()}},
                {"$set": {"dispatch_at": later, "desired_time": later}},
            )

            async def both_emitted() -> bool:
                return emitted_ids(due) >= {str(kept), str(rescheduled)}

            await eventually(both_emitted, 30, "kept and rescheduled callbacks emitted")
            await asyncio.sleep(1)
        finally:
            assert scheduler.terminate() == 0, scheduler.output()
    emitted = {m["callback_id"]: m for m in due.messages}
    assert str(cancelled) not in emitted
    assert at(emitted[str(rescheduled)], "occurred_at") >= later
    assert at(emitted[str(kept)], "occurred_at") < later
    doc = await db[CALLBACKS].find_one({"_id": cancelled})
    assert doc is not None
    assert (doc["state"], doc["result"]) == (
        CallbackState.COMPLETED,
        CallbackResult.CANCELLED_BY_ADMIN,
    )


def leads(scheduler: ServiceProcess) -> bool:
    metrics = httpx.get(f"{scheduler.url}/metrics", timeout=5).text
    return "callback_scheduler_leader 1.0" in metrics


async def two_replicas_losing_the_leader(
    env: dict[str, str], db: AsyncDatabase[Document], tmp_path: Path, *, kill: bool
) -> list[dict[str, Any]]:
    """300 callbacks due over ~9 s, two replicas; once 50 are emitted the leader is stopped
    (SIGTERM) or killed (SIGKILL): the other takes over and emits the rest."""
    now = utcnow()
    ids = await seed_callbacks(db, [now + timedelta(seconds=2 + n * 0.03) for n in range(300)])
    quick = {"SCHEDULER_LEASE_SECONDS": "2"}  # no routing here: no redispatch within 30 s
    replicas = [start_service("scheduler", env, tmp_path, **quick) for _ in range(2)]
    async with TopicReader(env["KAFKA_BOOTSTRAP_SERVERS"], env["TOPIC_DUE_CALLBACKS"]) as due:
        try:
            for replica in replicas:
                await asyncio.to_thread(replica.wait_ready)

            async def some_emitted() -> bool:
                return len(due.messages) >= 50

            await eventually(some_emitted, 30, "dispatching under way")
            leaders = [replica for replica in replicas if leads(replica)]
            assert len(leaders) == 1, "exactly one replica leads"
            leader = leaders[0]
            if kill:
                leader.kill()
            else:
                assert leader.terminate() == 0, leader.output()
            (standby,) = (replica for replica in replicas if replica is not leader)

            async def all_emitted() -> bool:
                return len(emitted_ids(due)) == 300

            await eventually(all_emitted, 30, "every callback emitted after the leader went")
            assert leads(standby)
            await asyncio.sleep(1)
        finally:
            assert standby.terminate() == 0, standby.output()
    assert emitted_ids(due) == {str(i) for i in ids}
    return due.messages


async def test_a_stopped_leader_hands_over_nothing_missed_nothing_doubled(
    env: dict[str, str], db: AsyncDatabase[Document], tmp_path: Path
) -> None:
    messages = await two_replicas_losing_the_leader(env, db, tmp_path, kill=False)
    counts = Counter(m["callback_id"] for m in messages)
    assert max(counts.values()) == 1


async def test_a_killed_leader_is_replaced_nothing_missed_duplicates_harmless(
    env: dict[str, str], db: AsyncDatabase[Document], tmp_path: Path
) -> None:
    messages = await two_replicas_losing_the_leader(env, db, tmp_path, kill=True)
    # what the killed leader emitted after its last stored watermark is emitted again by the
    # new one; any such duplicate is the very same event (same id, same attempt): harmless
    first_seen: dict[str, tuple[str, int, str]] = {}
    for message in messages:
        identity = (message["event_id"], message["attempt"], message["desired_time"])
        assert first_seen.setdefault(message["callback_id"], identity) == identity


async def test_what_a_dead_leader_emitted_is_emitted_again_only_if_routing_never_took_it(
    env: dict[str, str], db: AsyncDatabase[Document], tmp_path: Path
) -> None:
    """A leader died: its lease has expired and says it emitted everything due up to a minute
    ago. What became due after that is emitted at once; what it emitted and routing never
    took is emitted again once the new leader has led for the redispatch time."""
    now = utcnow()
    behind = await seed_callbacks(db, [now - timedelta(minutes=2)] * 5)
    after = await seed_callbacks(db, [now - timedelta(seconds=30)] * 5)
    await db[SCHEDULER_LEASES].insert_one(
        {
            "_id": "scheduler",
            "holder": "dead-replica",
            "expires_at": now - timedelta(seconds=10),
            "emitted_through": now - timedelta(minutes=1),
        }
    )
    scheduler = start_service("scheduler", env, tmp_path, SCHEDULER_REDISPATCH_AFTER_SECONDS="3")
    async with TopicReader(env["KAFKA_BOOTSTRAP_SERVERS"], env["TOPIC_DUE_CALLBACKS"]) as due:
        try:
            await asyncio.to_thread(scheduler.wait_ready)

            async def all_emitted() -> bool:
                return len(emitted_ids(due)) == 10

            await eventually(all_emitted, 20, "every callback emitted")
            await asyncio.sleep(1)
        finally:
            assert scheduler.terminate() == 0, scheduler.output()
    first: dict[str, datetime] = {}
    for message in due.messages:
        first.setdefault(message["callback_id"], at(message, "occurred_at"))
    assert set(first) == {str(i) for i in behind + after}
    # the dead leader's are emitted again only after the redispatch time (with no routing
    # here, the others are emitted again after it too: same event each time)
    gap = min(first[str(i)] for i in behind) - max(first[str(i)] for i in after)
    assert gap >= timedelta(seconds=2.5)
    identities = {(m["callback_id"], m["event_id"], m["attempt"]) for m in due.messages}
    assert len(identities) == 10
    assert '"redispatch": true' in scheduler.output()
