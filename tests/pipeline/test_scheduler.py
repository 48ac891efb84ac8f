"""The scheduler as separate processes against real Kafka and MongoDB."""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import timedelta

import pytest
from callback_shared.models import utcnow
from callback_shared.mongo import CALLBACKS
from callback_shared.states import CallbackResult, CallbackState

from tests.pipeline.helpers import TopicReader, eventually, seed_callbacks
from tests.support import start_service

pytestmark = pytest.mark.e2e


def emitted_ids(reader: TopicReader) -> set[str]:
    return {m["callback_id"] for m in reader.messages}


async def test_emits_immediate_and_scheduled_callbacks_on_time_once(env, db, tmp_path):
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
        assert message["occurred_at"] >= message["desired_time"]
    docs = await db[CALLBACKS].find().to_list()
    assert all(doc["dispatch_pending"] and "dispatch_at" not in doc for doc in docs)
    metrics = scheduler.output()
    assert '"event": "callback dispatched"' in metrics


async def test_cancel_and_reschedule_before_dispatch_take_effect(env, db, tmp_path):
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
                {"_id": rescheduled, "dispatch_pending": {"$ne": True}},
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
    assert emitted[str(rescheduled)]["occurred_at"] >= later.isoformat()
    assert emitted[str(kept)]["occurred_at"] < later.isoformat()
    doc = await db[CALLBACKS].find_one({"_id": cancelled})
    assert (doc["state"], doc["result"]) == (
        CallbackState.COMPLETED,
        CallbackResult.CANCELLED_BY_ADMIN,
    )


async def test_two_replicas_one_killed_nothing_missed_nothing_doubled(env, db, tmp_path):
    now = utcnow()
    ids = await seed_callbacks(db, [now + timedelta(seconds=2 + n * 0.03) for n in range(300)])
    quick = {"SCHEDULER_REDISPATCH_AFTER_SECONDS": "5"}
    first = start_service("scheduler", env, tmp_path, **quick)
    second = start_service("scheduler", env, tmp_path, **quick)
    async with TopicReader(env["KAFKA_BOOTSTRAP_SERVERS"], env["TOPIC_DUE_CALLBACKS"]) as due:
        try:
            await asyncio.to_thread(first.wait_ready)
            await asyncio.to_thread(second.wait_ready)

            async def some_emitted() -> bool:
                return len(due.messages) >= 50

            await eventually(some_emitted, 30, "dispatching under way")
            first.kill()  # SIGKILL mid-run

            async def all_emitted() -> bool:
                return len(emitted_ids(due)) == 300

            await eventually(all_emitted, 30, "every callback emitted despite the kill")
            await asyncio.sleep(1)
        finally:
            assert second.terminate() == 0, second.output()
    assert emitted_ids(due) == {str(i) for i in ids}
    # a callback the killed replica had taken but not published is emitted again by the other
    # one; any such duplicate is the very same event (same id, same attempt): harmless
    first_seen: dict[str, tuple] = {}
    for message in due.messages:
        identity = (message["event_id"], message["attempt"], message["desired_time"])
        assert first_seen.setdefault(message["callback_id"], identity) == identity


async def test_callbacks_taken_by_a_dead_replica_are_emitted_again(env, db, tmp_path):
    """A replica took these (the write), then died before publishing: another emits them once
    the redispatch time has passed, with the same event ids as any earlier emission."""
    ids = await seed_callbacks(db, [utcnow() - timedelta(minutes=1)] * 5)
    await db[CALLBACKS].update_many(
        {},
        [
            {
                "$set": {
                    "dispatch_pending": True,
                    "dispatched_at": utcnow(),
                    "dispatch_token": "dead-replica",
                }
            },
            {"$unset": "dispatch_at"},
        ],
    )
    scheduler = start_service("scheduler", env, tmp_path, SCHEDULER_REDISPATCH_AFTER_SECONDS="2")
    async with TopicReader(env["KAFKA_BOOTSTRAP_SERVERS"], env["TOPIC_DUE_CALLBACKS"]) as due:
        try:
            await asyncio.to_thread(scheduler.wait_ready)

            async def all_emitted() -> bool:
                return len(emitted_ids(due)) == 5

            await eventually(all_emitted, 20, "stalled callbacks emitted again")
        finally:
            assert scheduler.terminate() == 0, scheduler.output()
    assert emitted_ids(due) == {str(i) for i in ids}
    assert '"redispatch": true' in scheduler.output()
