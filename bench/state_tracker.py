"""State-tracker: routing events applied per second (the tracker's own batch path: parse,
conditional bulk write, read-back, lifecycle announcements) beside raw PyMongo bulk updates of
the same documents on the same server in the same run: plain ``$set``s of the state (the
target's baseline), and the very writes the tracker makes, as plain update operators by id on
fresh documents (the same work without the tracker's conditions, read-back and announcements)."""

from __future__ import annotations

import time

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from callback_shared.infra import Infrastructure
from callback_shared.kafka import make_broker
from callback_shared.models import DialRetryPolicy, RoutingEvent, RoutingEventKind, utcnow
from callback_shared.mongo import CALLBACKS, SERVICES
from callback_shared.settings import StateTrackerSettings
from callback_state_tracker.changes import plan_change
from callback_state_tracker.tracker import StateTracker
from pymongo import UpdateOne

from bench.common import callback_documents, insert, isolated_settings, prepare
from bench.harness import Metric, Result, backend

CALLBACKS_COUNT = 5_000
KINDS = [
    RoutingEventKind.QUEUED,
    RoutingEventKind.ROUTING,
    RoutingEventKind.PROCESSING,
    RoutingEventKind.COMPLETED,
]
BATCH = 500


async def run(infra: Infrastructure) -> Result:
    settings = isolated_settings(StateTrackerSettings, infra, state_tracker_batch_size=BATCH)
    db = await prepare(settings)
    now = utcnow()
    ours_docs = callback_documents([now] * CALLBACKS_COUNT)
    await insert(db, ours_docs)
    events = [
        RoutingEvent(
            callback_id=doc["_id"],
            kind=kind,
            service_name=doc["service_name"],
            attempt=1,
            sequence=sequence,
            agent="agent-1" if kind is RoutingEventKind.ROUTING else None,
        )
        for sequence, kind in enumerate(KINDS)
        for doc in ours_docs
    ]
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap_servers, linger_ms=5)
    await producer.start()
    try:
        sent = [
            await producer.send(
                settings.topic_routing_events, event.model_dump_json().encode(), key=event.key
            )
            for event in events
        ]
        for future in sent:
            await future
    finally:
        await producer.stop()

    # ours: consume and apply exactly as the subscriber does, batch by batch
    broker = make_broker(settings, "bench-state-tracker")
    await broker.start()
    consumer = AIOKafkaConsumer(
        settings.topic_routing_events,
        bootstrap_servers=settings.kafka_bootstrap_servers,
        group_id="bench",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        max_poll_records=BATCH,
    )
    await consumer.start()
    tracker = StateTracker(db[CALLBACKS], db[SERVICES], broker, settings)
    applied = 0
    try:
        started = time.perf_counter()
        while applied < len(events):
            # as the subscriber gets them: one batch across partitions
            fetched = await consumer.getmany(timeout_ms=1000, max_records=BATCH)
            records = [record for part in fetched.values() for record in part]
            if records:
                await tracker.handle_batch(records)
                applied += len(records)
                await consumer.commit()
        ours = time.perf_counter() - started
    finally:
        await consumer.stop()
        await broker.stop()
    completed = await db[CALLBACKS].count_documents({"state": "COMPLETED", "result": "AGENT"})
    if completed != CALLBACKS_COUNT:
        raise RuntimeError(f"only {completed} of {CALLBACKS_COUNT} callbacks completed")

    # raw: as many plain updates by id of the same documents (same collection, same indexes),
    # in bulks of the same size
    raw_ops = [
        UpdateOne(
            {"_id": doc["_id"]},
            {
                "$set": {
                    "state": kind.value,
                    "routing_sequence": 10 + sequence,
                    "updated_at": utcnow(),
                }
            },
        )
        for sequence, kind in enumerate(KINDS)
        for doc in ours_docs
    ]
    started = time.perf_counter()
    for start in range(0, len(raw_ops), BATCH):
        await db[CALLBACKS].bulk_write(raw_ops[start : start + BATCH], ordered=True)
    raw = time.perf_counter() - started

    # raw, the same writes: what the tracker writes for each event, unconditionally
    fresh = callback_documents([now] * CALLBACKS_COUNT)
    await insert(db, fresh)
    same_id = {doc["_id"]: other["_id"] for doc, other in zip(ours_docs, fresh, strict=True)}
    policy = DialRetryPolicy()
    same_ops = [
        UpdateOne(
            {"_id": same_id[event.callback_id]},
            plan_change(event, policy, utcnow()).writes.unconditional(),
        )
        for event in events
    ]
    started = time.perf_counter()
    for start in range(0, len(same_ops), BATCH):
        await db[CALLBACKS].bulk_write(same_ops[start : start + BATCH], ordered=True)
    raw_same = time.perf_counter() - started
    same_done = await db[CALLBACKS].count_documents(
        {"_id": {"$in": [doc["_id"] for doc in fresh[:50]]}, "state": "COMPLETED"}
    )
    if same_done != 50:
        raise RuntimeError("the raw same writes did not complete the callbacks")
    await db.client.drop_database(settings.mongodb_database)

    result = Result("state_tracker", backend=backend(infra))
    result.metrics = {
        "events_per_s": Metric(len(events) / ours, "1/s", better="higher"),
        "raw_bulk_updates_per_s": Metric(len(raw_ops) / raw, "1/s", better="higher"),
        "apply_ratio_vs_raw": Metric(raw / ours, "ratio", target=0.8, better="higher"),
        "raw_same_writes_per_s": Metric(len(same_ops) / raw_same, "1/s", better="higher"),
        "apply_ratio_vs_raw_same_writes": Metric(raw_same / ours, "ratio", better="higher"),
    }
    return result
