"""State-tracker: routing events applied per second by the real ``callback-state-tracker``
process (its batch path: parse, conditional bulk write, read-back, lifecycle announcements) and
its CPU time per event (from the first event sent until every callback is completed), beside raw
PyMongo bulk updates of the same documents on the same server in the same run: plain ``$set``s
of the state (the target's baseline), and the very writes the tracker makes, as plain update
operators by id on fresh documents (the same work without the tracker's conditions, read-back
and announcements), whose CPU, with a plain aiokafka consumer reading the same records, is the
raw drivers' CPU."""

from __future__ import annotations

import time

from aiokafka import AIOKafkaConsumer
from callback_dev.infra import Infrastructure
from callback_shared.models import DialRetryPolicy, utcnow
from callback_shared.mongo import CALLBACKS
from callback_state_tracker.changes import plan_change
from callback_state_tracker.settings import StateTrackerSettings
from pymongo import UpdateOne

from bench.common import (
    ROUTING_KINDS,
    callback_documents,
    consume,
    insert,
    isolated_settings,
    prepare,
    produce,
    routing_events,
    start_service,
    stop_service,
)
from bench.harness import CpuMeter, Metric, Result, backend, cpu_metrics, idle_cpu_ms_per_s

CALLBACKS_COUNT = 5_000
BATCH = 500


async def run(infra: Infrastructure) -> Result:
    settings = isolated_settings(StateTrackerSettings, infra, state_tracker_batch_size=BATCH)
    db = await prepare(settings)
    now = utcnow()
    ours_docs = callback_documents([now] * CALLBACKS_COUNT)
    await insert(db, ours_docs)
    events = routing_events(ours_docs)
    messages = [(event.key, event.model_dump_json().encode()) for event in events]

    # ours: the real state-tracker process applies them as they come, batch by batch
    # done when every callback's completion is announced: watched on Kafka, not by asking the
    # server (whose every query would slow the tracker down)
    watcher = AIOKafkaConsumer(
        settings.topic_lifecycle_events,
        bootstrap_servers=settings.kafka_bootstrap_servers,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await watcher.start()
    tracker, _ = await start_service("callback-state-tracker", settings)
    try:
        meter = CpuMeter(tracker.pid).start()
        started = time.perf_counter()
        await produce(settings, settings.topic_routing_events, messages)
        deadline = time.monotonic() + 900
        announced = 0
        while announced < CALLBACKS_COUNT:
            if time.monotonic() > deadline:
                raise RuntimeError(f"only {announced} of {CALLBACKS_COUNT} callbacks completed")
            for records in (await watcher.getmany(timeout_ms=1000)).values():
                announced += sum(b'"state":"COMPLETED"' in record.value for record in records)
        ours = time.perf_counter() - started
        meter.stop()
        # nothing to apply: consumer polls and heartbeats, over as long, apart
        idle = await idle_cpu_ms_per_s(tracker.pid, meter.seconds)
    finally:
        await watcher.stop()
        await stop_service(tracker)
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
        for sequence, kind in enumerate(ROUTING_KINDS)
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
    raw_cpu = CpuMeter().start()  # the raw drivers: the same records read, the same writes
    records = await consume(settings, settings.topic_routing_events, len(events))
    started = time.perf_counter()
    for start in range(0, len(same_ops), BATCH):
        await db[CALLBACKS].bulk_write(same_ops[start : start + BATCH], ordered=True)
    raw_same = time.perf_counter() - started
    raw_cpu.stop()
    if len(records) != len(events):
        raise RuntimeError("the raw consumer did not read every routing event")
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
        **cpu_metrics("event", meter, len(events), idle, raw_cpu, target=0.3),
        "idle_cpu_ms_per_s": Metric(idle, "ms/s"),
    }
    return result
