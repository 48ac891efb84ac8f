"""What routing lost: the scheduler's reclaim of silent attempts, resent cancels, stalled calls
(the Reclaimer against real MongoDB and Kafka, its clock moved forward)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any
from uuid import UUID

from callback_scheduler.reclaim import Reclaimer
from callback_scheduler.settings import SchedulerSettings
from callback_shared.kafka import make_broker
from callback_shared.models import utcnow
from callback_shared.mongo import CALLBACKS, SERVICES, Document
from pymongo.asynchronous.database import AsyncDatabase

from tests.pipeline.helpers import TopicReader, eventually, seed_callbacks

SILENCE, STALL = 30, 600


async def test_silent_attempts_are_reclaimed_cancels_resent_stalls_flagged(
    env: dict[str, str], db: AsyncDatabase[Document]
) -> None:
    now = utcnow()
    lost, exhausted, cancelled, alive, stalled, busy, unanswered = ids = await seed_callbacks(
        db, [now] * 7
    )
    await db[SERVICES].insert_one(
        {
            "_id": "billing",
            "routing_silence_seconds": SILENCE,
            "processing_stall_seconds": STALL,
            "dial_retry": {"max_attempts": 2, "min_interval_seconds": 60},
        }
    )
    long_ago = now - timedelta(seconds=SILENCE + 5)
    held = {"routing_sequence": 3, "agent": "a1", "routing_seen_at": long_ago}

    async def put(callback_id: UUID, **fields: Any) -> None:
        await db[CALLBACKS].update_one(
            {"_id": callback_id}, {"$set": fields, "$unset": {"dispatch_at": ""}}
        )

    await put(lost, state="QUEUED", **held)
    await put(exhausted, state="ROUTING", attempt=2, **held)
    request = {"requested_at": now, "actor": "ada", "batch_id": None, "state": "QUEUED"}
    await put(
        cancelled,
        state="QUEUED",
        cancel_request={**request, "status": "PENDING"},
        cancel_pending_since=now,
        **held,
    )
    await put(alive, state="ROUTING", **{**held, "routing_seen_at": now})
    await put(stalled, state="PROCESSING", **{**held, "routing_seen_at": now - timedelta(hours=1)})
    await put(busy, state="PROCESSING", **{**held, "routing_seen_at": long_ago})
    await put(
        unanswered,
        cancel_request={**request, "state": "SCHEDULED", "status": "PENDING"},
        cancel_pending_since=now - timedelta(seconds=30),
    )
    values: dict[str, Any] = {k.lower(): v for k, v in env.items()}
    settings = SchedulerSettings(**values)
    broker = make_broker(settings, "test-reclaim")
    await broker.start()
    bootstrap = env["KAFKA_BOOTSTRAP_SERVERS"]
    try:
        async with (
            TopicReader(bootstrap, env["TOPIC_ROUTING_COMMANDS"]) as commands,
            TopicReader(bootstrap, env["TOPIC_LIFECYCLE_EVENTS"]) as lifecycle,
        ):
            reclaimer = Reclaimer(db, broker, settings)
            assert await reclaimer.look() == {"reclaimed": 3, "cancels_resent": 1, "stalled": 1}
            # a second look finds nothing more to do (the stalled call is still counted)
            assert await reclaimer.look() == {"reclaimed": 0, "cancels_resent": 0, "stalled": 1}

            async def published() -> bool:
                return len(commands.messages) >= 4 and len(lifecycle.messages) >= 3

            await eventually(published, 30, "withdrawals, the resent cancel and announcements")
    finally:
        await broker.stop()

    docs = {doc["_id"]: doc for doc in await db[CALLBACKS].find({"_id": {"$in": ids}}).to_list()}
    nxt = docs[lost]
    assert (nxt["state"], nxt["attempt"], nxt["routing_sequence"]) == ("SCHEDULED", 2, -1)
    assert nxt["dispatch_at"] <= utcnow() and "routing_seen_at" not in nxt
    assert "agent" not in nxt
    assert nxt["timeline"][-1]["note"].startswith("attempt 1 lost: no sign of life from routing")
    assert (docs[exhausted]["state"], docs[exhausted]["result"]) == ("COMPLETED", "FAILED")
    c = docs[cancelled]
    assert (c["state"], c["result"]) == ("COMPLETED", "CANCELLED_BY_ADMIN")
    assert c["cancel_request"]["status"] == "CANCELLED" and "cancel_pending_since" not in c
    for untouched, state in ((alive, "ROUTING"), (stalled, "PROCESSING"), (busy, "PROCESSING")):
        assert docs[untouched]["state"] == state and docs[untouched]["attempt"] == 1
    assert docs[unanswered]["cancel_pending_since"] > now
    assert all(not doc.get("outbox") for doc in docs.values())  # published, outboxes emptied

    sent = sorted((m["callback_id"], m["kind"], m["attempt"]) for m in commands.messages)
    assert sent == sorted(
        [
            (str(lost), "WITHDRAW", 1),
            (str(exhausted), "WITHDRAW", 2),
            (str(cancelled), "WITHDRAW", 1),
            (str(unanswered), "CANCEL", 1),
        ]
    )
    announced = {m["callback_id"]: m for m in lifecycle.messages}
    assert (announced[str(lost)]["kind"], announced[str(lost)]["state"]) == (
        "STATE_CHANGED",
        "SCHEDULED",
    )
    assert announced[str(exhausted)]["result"] == "FAILED"
    gone = announced[str(cancelled)]
    assert (gone["kind"], gone["actor"], gone["previous_state"]) == ("CANCELLED", "ada", "QUEUED")
