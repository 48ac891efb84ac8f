"""The state-tracker as a separate process: idempotent, out-of-order safe, DLQ for bad input."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from callback_shared.models import (
    DialFailure,
    DialRetryPolicy,
    RoutingEvent,
    RoutingEventKind,
    utcnow,
)
from callback_shared.mongo import CALLBACKS, SERVICES, Document
from callback_shared.states import CallbackResult, CallbackState
from callback_state_tracker.changes import APPLIES, plan_change
from pymongo.asynchronous.database import AsyncDatabase

from tests.pipeline.helpers import TopicReader, eventually, produce, seed_callbacks
from tests.support import start_service

pytestmark = pytest.mark.e2e
K = RoutingEventKind


def routing(
    callback_id: uuid.UUID,
    kind: RoutingEventKind,
    sequence: int,
    attempt: int = 1,
    **fields: Any,
) -> RoutingEvent:
    return RoutingEvent(
        callback_id=callback_id,
        kind=kind,
        service_name="billing",
        attempt=attempt,
        sequence=sequence,
        **fields,
    )


def happy_path(callback_id: uuid.UUID, attempt: int = 1) -> list[RoutingEvent]:
    return [
        routing(callback_id, K.QUEUED, 0, attempt, position_in_queue=3, estimated_wait_seconds=30),
        routing(callback_id, K.POSITION_UPDATED, 1, attempt, position_in_queue=1),
        routing(callback_id, K.ROUTING, 2, attempt, agent="agent-7", route_point="RP1"),
        routing(callback_id, K.PROCESSING, 3, attempt, from_number="+1800", to_number="+1415"),
        routing(callback_id, K.COMPLETED, 4, attempt, diagnostic_data={"ors_session": "S1"}),
    ]


def encoded(events: list[RoutingEvent]) -> list[tuple[bytes, bytes]]:
    return [(event.key, event.model_dump_json().encode()) for event in events]


async def test_applies_events_idempotently_and_parks_bad_ones(
    env: dict[str, str], db: AsyncDatabase[Document], tmp_path: Path
) -> None:
    now = utcnow()
    done, abandoned, retried, exhausted, stale_target = await seed_callbacks(db, [now] * 5)
    await db[SERVICES].insert_one(
        {"_id": "billing", "dial_retry": {"max_attempts": 2, "min_interval_seconds": 60}}
    )
    first = happy_path(done)
    events = [
        *first,
        *first[1:3],  # duplicates, redelivered after later events
        routing(abandoned, K.QUEUED, 0),
        routing(abandoned, K.ABANDONED_IN_QUEUE, 1),
        routing(abandoned, K.ROUTING, 2, agent="late"),  # forbidden: COMPLETED -> ROUTING
        routing(retried, K.QUEUED, 0),
        routing(retried, K.ROUTING, 1, agent="a1"),
        routing(retried, K.DIAL_FAILED, 2, dial_failure=DialFailure.NO_ANSWER),
        routing(exhausted, K.QUEUED, 0, attempt=2),  # attempt not dispatched yet
        routing(stale_target, K.QUEUED, 0),
        routing(stale_target, K.ROUTING, 5, agent="a2"),
        routing(stale_target, K.QUEUED, 3),  # older than what was applied: stale
        routing(uuid.uuid4(), K.QUEUED, 0),  # unknown callback
    ]
    malformed = [
        (b"k1", b"{not json"),
        (b"k2", b'{"callback_id": "x", "kind": "TELEPORTED"}'),
    ]
    tracker = start_service("state-tracker", env, tmp_path)
    bootstrap = env["KAFKA_BOOTSTRAP_SERVERS"]
    async with (
        TopicReader(bootstrap, env["TOPIC_LIFECYCLE_EVENTS"]) as lifecycle,
        TopicReader(bootstrap, env["TOPIC_DEAD_LETTER"]) as dead,
    ):
        try:
            await asyncio.to_thread(tracker.wait_ready)
            await produce(bootstrap, env["TOPIC_ROUTING_EVENTS"], encoded(events) + malformed)

            async def settled() -> bool:
                doc = await db[CALLBACKS].find_one({"_id": done})
                assert doc is not None
                return doc["state"] == "COMPLETED" and len(dead.messages) >= 3

            await eventually(settled, 30, "events applied and bad ones parked")
            await asyncio.sleep(1)
        finally:
            assert tracker.terminate() == 0, tracker.output()

    docs = {doc["_id"]: doc for doc in await db[CALLBACKS].find().to_list()}
    d = docs[done]
    assert (d["state"], d["result"]) == (CallbackState.COMPLETED, CallbackResult.AGENT)
    assert (d["agent"], d["route_point"], d["to_number"]) == ("agent-7", "RP1", "+1415")
    assert d["dial_attempts"] == 1
    assert d["diagnostic_data"]["ors_session"] == "S1"
    assert "dispatch_at" not in d  # routing took it: the scheduler no longer waits for it
    states = [entry["state"] for entry in d["timeline"]]
    assert states == ["SCHEDULED", "QUEUED", "ROUTING", "PROCESSING", "COMPLETED"]
    times = [entry["at"] for entry in d["timeline"][1:]]
    assert times == sorted(times)

    a = docs[abandoned]
    assert (a["state"], a["result"]) == ("COMPLETED", "ABANDONED_IN_QUEUE")
    assert a.get("agent") is None
    assert [entry["state"] for entry in a["timeline"]] == ["SCHEDULED", "QUEUED", "COMPLETED"]
    assert not [doc for doc in docs.values() if APPLIES in doc]  # the update's own field

    r = docs[retried]
    assert (r["state"], r["attempt"], r["dial_attempts"]) == ("SCHEDULED", 2, 1)
    assert r["dispatch_at"] > utcnow()
    assert r["routing_sequence"] == -1

    assert docs[exhausted]["state"] == "SCHEDULED" and docs[exhausted]["attempt"] == 1
    s = docs[stale_target]
    assert (s["state"], s["agent"], s["routing_sequence"]) == ("ROUTING", "a2", 5)

    # one lifecycle event per state change, none for stale or forbidden events; a redelivered
    # event announces its change again with the same event id (consumers de-duplicate)
    unique: dict[str, dict[str, Any]] = {}
    for message in lifecycle.messages:
        assert unique.setdefault(message["event_id"], message) == message
    changes = [(m["callback_id"], m["state"], m.get("result")) for m in unique.values()]
    assert [c[1:] for c in changes if c[0] == str(done)] == [
        ("QUEUED", None),
        ("ROUTING", None),
        ("PROCESSING", None),
        ("COMPLETED", "AGENT"),
    ]
    assert [c[1:] for c in changes if c[0] == str(abandoned)] == [
        ("QUEUED", None),
        ("COMPLETED", "ABANDONED_IN_QUEUE"),
    ]
    assert [c[1] for c in changes if c[0] == str(retried)] == ["QUEUED", "ROUTING", "SCHEDULED"]
    previous = [m["previous_state"] for m in unique.values() if m["callback_id"] == str(done)]
    assert previous == ["SCHEDULED", "QUEUED", "ROUTING", "PROCESSING"]

    reasons = sorted(letter["reason"].split(":")[0] for letter in dead.messages)
    assert reasons == ["malformed routing event", "malformed routing event", "unknown callback"]
    assert {letter["payload"] for letter in dead.messages} >= {"{not json"}


async def test_redelivered_batch_republishes_the_same_lifecycle_events(
    env: dict[str, str], db: AsyncDatabase[Document], tmp_path: Path
) -> None:
    """A state-tracker killed after writing but before committing: the batch comes again and
    the announcements are published again with the same ids, never lost."""
    (callback_id,) = await seed_callbacks(db, [utcnow()])
    events = happy_path(callback_id)
    bootstrap = env["KAFKA_BOOTSTRAP_SERVERS"]
    async with TopicReader(bootstrap, env["TOPIC_LIFECYCLE_EVENTS"]) as lifecycle:
        # first consumer group applies everything and announces it
        tracker = start_service("state-tracker", env, tmp_path)
        await asyncio.to_thread(tracker.wait_ready)
        await produce(bootstrap, env["TOPIC_ROUTING_EVENTS"], encoded(events))

        async def announced(count: int) -> Callable[[], Awaitable[bool]]:
            async def check() -> bool:
                return len(lifecycle.messages) >= count

            return check

        await eventually(await announced(4), 30, "four announcements")
        assert tracker.terminate() == 0
        first_ids = [m["event_id"] for m in lifecycle.messages]
        # a new group re-reads the topic from the start: the documents already hold the changes
        again = start_service(
            "state-tracker", env, tmp_path, STATE_TRACKER_GROUP_ID="state-tracker-replay"
        )
        await asyncio.to_thread(again.wait_ready)
        await eventually(await announced(8), 30, "announcements published again")
        assert again.terminate() == 0
    assert [m["event_id"] for m in lifecycle.messages[4:]] == first_ids
    doc = await db[CALLBACKS].find_one({"_id": callback_id})
    assert doc is not None
    assert len(doc["timeline"]) == 5


async def test_conditional_writes_are_the_plain_writes_when_they_apply(
    db: AsyncDatabase[Document],
) -> None:
    """A routing event's pipeline update writes exactly what the same writes as plain update
    operators write (the state-tracker benchmark's raw side relies on it), and nothing when
    its condition does not hold."""
    now = utcnow()
    ours, plain, refused = ids = await seed_callbacks(db, [now] * 3)
    before = await db[CALLBACKS].find_one({"_id": refused})
    retry = DialRetryPolicy(max_attempts=3, min_interval_seconds=60)
    events = [
        routing(ours, K.QUEUED, 0, position_in_queue=2, diagnostic_data={"ors": "S1"}),
        routing(ours, K.ROUTING, 1, agent="agent-7"),
        routing(ours, K.DIAL_FAILED, 2, dial_failure=DialFailure.BUSY),
    ]
    for event in events:
        change = plan_change(event, retry, now)
        await db[CALLBACKS].update_one({"_id": ours}, change.update)
        await db[CALLBACKS].update_one({"_id": plain}, change.writes.unconditional())
        # a stale event for the third callback: its condition fails (it was never queued)
        stale = plan_change(routing(refused, event.kind, event.sequence, attempt=5), retry, now)
        await db[CALLBACKS].update_one({"_id": refused}, stale.update)
    docs = {doc["_id"]: doc for doc in await db[CALLBACKS].find({"_id": {"$in": ids}}).to_list()}
    assert docs[refused] == before
    # the same record but for the id and the customer number (seeded differently)
    assert {k: v for k, v in docs[ours].items() if k not in ("_id", "customer_number")} == {
        k: v for k, v in docs[plain].items() if k not in ("_id", "customer_number")
    }
    assert (docs[ours]["state"], docs[ours]["attempt"], docs[ours]["dial_attempts"]) == (
        "SCHEDULED",
        2,
        1,
    )
    assert docs[ours]["diagnostic_data"] == {"ors": "S1"}


async def pending_cancel(
    db: AsyncDatabase[Document],
    callback_id: uuid.UUID,
    state: CallbackState,
    actor: str = "ada",
    batch_id: uuid.UUID | None = None,
) -> None:
    """The callback as admin-api leaves it after asking routing to cancel it in ``state``."""
    now = utcnow()
    await db[CALLBACKS].update_one(
        {"_id": callback_id},
        {
            "$set": {
                "state": state.value,
                "cancel_request": {
                    "requested_at": now,
                    "actor": actor,
                    "batch_id": batch_id,
                    "state": state.value,
                    "status": "PENDING",
                    "answered_at": None,
                    "reason": None,
                },
                "cancel_pending_since": now,
            },
            "$unset": {"dispatch_at": ""},
        },
    )


async def test_routing_answers_settle_pending_cancels(
    env: dict[str, str], db: AsyncDatabase[Document], tmp_path: Path
) -> None:
    """CANCELLED ends a pending cancel COMPLETED(CANCELLED_BY_ADMIN) only while nothing reached
    an agent; CANCEL_REFUSED, or a callback that ended otherwise first, settle it REFUSED. Each
    is announced for the report with the request's actor and batch. HELD refreshes the sign of
    life; routing taking a closed callback is told to withdraw it."""
    now = utcnow()
    queued, connected, abandoned, redialled, closed, held = await seed_callbacks(db, [now] * 6)
    batch = uuid.uuid4()
    await db[SERVICES].insert_one(
        {"_id": "billing", "dial_retry": {"max_attempts": 3, "min_interval_seconds": 0}}
    )
    events = [
        routing(queued, K.QUEUED, 0),
        routing(connected, K.QUEUED, 0),
        routing(connected, K.ROUTING, 1, agent="a1"),
        routing(abandoned, K.QUEUED, 0),
        routing(redialled, K.QUEUED, 0),
        routing(redialled, K.ROUTING, 1, agent="a2"),
        routing(held, K.QUEUED, 0),
    ]
    tracker = start_service("state-tracker", env, tmp_path)
    bootstrap = env["KAFKA_BOOTSTRAP_SERVERS"]
    async with (
        TopicReader(bootstrap, env["TOPIC_LIFECYCLE_EVENTS"]) as lifecycle,
        TopicReader(bootstrap, env["TOPIC_ROUTING_COMMANDS"]) as commands,
    ):
        try:
            await asyncio.to_thread(tracker.wait_ready)
            await produce(bootstrap, env["TOPIC_ROUTING_EVENTS"], encoded(events))

            async def moved() -> bool:
                docs = await db[CALLBACKS].find({"routing_sequence": {"$gte": 0}}).to_list()
                return len(docs) == 5

            await eventually(moved, 30, "the attempts taken by routing")
            held_doc = await db[CALLBACKS].find_one({"_id": held})
            assert held_doc is not None
            seen_before = held_doc["routing_seen_at"]
            await pending_cancel(db, queued, CallbackState.QUEUED, batch_id=batch)
            await pending_cancel(db, connected, CallbackState.ROUTING)
            await pending_cancel(db, abandoned, CallbackState.QUEUED)
            await pending_cancel(db, redialled, CallbackState.ROUTING)
            await db[CALLBACKS].update_one(
                {"_id": closed},
                {"$set": {"state": "COMPLETED", "result": "CANCELLED_BY_ADMIN"}},
            )
            answers = [
                routing(queued, K.CANCELLED, 1),
                routing(queued, K.ROUTING, 2, agent="too-late"),  # routing dropped it: refused
                routing(queued, K.CANCELLED, 3),  # a repeated answer changes nothing
                routing(connected, K.PROCESSING, 2),
                routing(connected, K.CANCEL_REFUSED, 3),
                routing(abandoned, K.ABANDONED_IN_QUEUE, 1),
                routing(abandoned, K.CANCELLED, 2),
                routing(redialled, K.DIAL_FAILED, 2, dial_failure=DialFailure.BUSY),
                routing(redialled, K.CANCELLED, 0, attempt=2),
                routing(closed, K.QUEUED, 0),  # routing took a callback the platform closed
                routing(held, K.HELD, 1, position_in_queue=1),
            ]
            await produce(bootstrap, env["TOPIC_ROUTING_EVENTS"], encoded(answers))

            async def settled() -> bool:
                pending = await db[CALLBACKS].count_documents(
                    {"cancel_pending_since": {"$exists": 1}}
                )
                return pending == 0 and len(commands.messages) >= 1

            await eventually(settled, 30, "every pending cancel answered")
            await asyncio.sleep(1)
        finally:
            assert tracker.terminate() == 0, tracker.output()

    docs = {doc["_id"]: doc for doc in await db[CALLBACKS].find().to_list()}
    q = docs[queued]
    assert (q["state"], q["result"]) == ("COMPLETED", "CANCELLED_BY_ADMIN")
    assert q["cancel_request"]["status"] == "CANCELLED" and q.get("agent") is None
    assert [e["state"] for e in q["timeline"]] == ["SCHEDULED", "QUEUED", "COMPLETED"]
    c = docs[connected]
    assert (c["state"], c["cancel_request"]["status"]) == ("PROCESSING", "REFUSED")
    assert c["cancel_request"]["reason"].startswith("routing:")
    assert c["timeline"][-1]["state"] == "PROCESSING"  # the refusal, in the state it found
    a = docs[abandoned]
    assert (a["state"], a["result"]) == ("COMPLETED", "ABANDONED_IN_QUEUE")
    assert a["cancel_request"]["status"] == "REFUSED"
    assert "already COMPLETED" in a["cancel_request"]["reason"]
    r = docs[redialled]
    assert (r["state"], r["result"], r["attempt"]) == ("COMPLETED", "CANCELLED_BY_ADMIN", 2)
    assert "dispatch_at" not in r  # no next attempt was due while the cancel waited
    assert docs[held]["routing_seen_at"] > seen_before
    assert all("routing_seen_at" not in docs[i] for i in (queued, abandoned, redialled))

    unique = {m["event_id"]: m for m in lifecycle.messages}.values()
    settled_events = {
        m["callback_id"]: m for m in unique if m["kind"] in ("CANCELLED", "CANCELLATION_REFUSED")
    }
    assert {k: m["kind"] for k, m in settled_events.items()} == {
        str(queued): "CANCELLED",
        str(connected): "CANCELLATION_REFUSED",
        str(abandoned): "CANCELLATION_REFUSED",
        str(redialled): "CANCELLED",
    }
    first = settled_events[str(queued)]
    assert (first["actor"], first["batch_id"], first["previous_state"]) == (
        "ada",
        str(batch),
        "QUEUED",
    )
    assert (first["state"], first["result"]) == ("COMPLETED", "CANCELLED_BY_ADMIN")
    withdrawn = [(m["callback_id"], m["kind"], m["attempt"]) for m in commands.messages]
    assert withdrawn == [(str(closed), "WITHDRAW", 1)]
