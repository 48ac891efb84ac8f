"""Scheduler: dispatch lateness with 100k pending callbacks and 10k due within one minute (the
real scheduler process), and dispatch throughput beside a raw aiokafka producer sending the
same messages in the same run."""

from __future__ import annotations

import asyncio
import random
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from callback_dev.infra import Infrastructure, free_port
from callback_scheduler.dispatcher import DUE_FIELDS, Dispatcher
from callback_scheduler.settings import SchedulerSettings
from callback_shared.documents import due_callback_event
from callback_shared.kafka import make_broker
from callback_shared.models import DueCallback, utcnow
from callback_shared.mongo import CALLBACKS

from bench.common import (
    callback_documents,
    consume,
    insert,
    isolated_settings,
    prepare,
    produce,
    ready,
    service_env,
    start_service,
    stop_service,
)
from bench.harness import (
    CpuMeter,
    Metric,
    Result,
    backend,
    cpu_metrics,
    idle_cpu_ms_per_s,
    percentile,
)

PENDING = 100_000
DUE_IN_THE_MINUTE = 10_000
BACKLOG = 10_000
#: the CPU phase's backlog is due this long after its seeding starts: 10k callbacks with every
#: index go in at 500-900/s on the local server (20 s was too short with the VM slow)
BACKLOG_LEAD = timedelta(seconds=60)


async def lateness(infra: Infrastructure) -> dict[str, Metric]:
    settings = isolated_settings(SchedulerSettings, infra)
    db = await prepare(settings)
    rng = random.Random(1)
    later = [
        utcnow() + timedelta(hours=1, seconds=rng.uniform(0, 3600))
        for _ in range(PENDING - DUE_IN_THE_MINUTE)
    ]
    await insert(db, callback_documents(later))
    port = free_port()
    # no routing runs here to take the callbacks: never emit them again
    env = service_env(settings, port, SCHEDULER_REDISPATCH_AFTER_SECONDS="3600")
    scheduler = await asyncio.create_subprocess_exec(
        str(Path(sys.executable).parent / "callback-scheduler"), env=env
    )
    await ready(port)  # a running scheduler: its start-up is not lateness
    start = utcnow() + timedelta(seconds=40)  # after the last inserts
    due_soon = [start + timedelta(seconds=rng.uniform(0, 60)) for _ in range(DUE_IN_THE_MINUTE)]
    await insert(db, callback_documents(due_soon))
    if utcnow() > start - timedelta(seconds=2):
        scheduler.terminate()
        raise RuntimeError("seeding took too long: the first callbacks would be due already")
    consumer = AIOKafkaConsumer(
        settings.topic_due_callbacks,
        bootstrap_servers=settings.kafka_bootstrap_servers,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    late_ms: dict[str, float] = {}
    due_at: dict[str, datetime] = {}
    try:
        deadline = time.monotonic() + 240
        while len(late_ms) < DUE_IN_THE_MINUTE and time.monotonic() < deadline:
            batches = await consumer.getmany(timeout_ms=1000)
            for records in batches.values():
                for record in records:
                    event = DueCallback.model_validate_json(record.value)
                    emitted = datetime.fromtimestamp(record.timestamp / 1000, UTC)
                    lateness_ms = (emitted - event.desired_time).total_seconds() * 1000
                    late_ms.setdefault(str(event.callback_id), lateness_ms)
                    due_at.setdefault(str(event.callback_id), event.desired_time)
    finally:
        await consumer.stop()
        scheduler.terminate()
        await asyncio.wait_for(scheduler.wait(), 30)
    if len(late_ms) != DUE_IN_THE_MINUTE:
        raise RuntimeError(f"only {len(late_ms)} of {DUE_IN_THE_MINUTE} callbacks were emitted")
    await db.client.drop_database(settings.mongodb_database)
    values = list(late_ms.values())
    return {
        "lateness_p50_ms": Metric(percentile(values, 50), "ms"),
        "lateness_p99_ms": Metric(percentile(values, 99), "ms", target=100),
        "lateness_max_ms": Metric(max(values), "ms"),
        "late_over_100ms_share": Metric(sum(v > 100 for v in values) / len(values), "ratio"),
        # when the late ones were due: one burst points at a server stall, not at the design
        "late_over_100ms_span_s": Metric(late_span_seconds(late_ms, due_at), "s"),
    }


def late_span_seconds(late_ms: dict[str, float], due_at: dict[str, datetime]) -> float:
    late = sorted(due_at[key] for key, value in late_ms.items() if value > 100)
    return (late[-1] - late[0]).total_seconds() if late else 0.0


async def throughput(infra: Infrastructure) -> dict[str, Metric]:
    """A backlog of 10k due callbacks: the leader empties it; then a raw producer sends the
    very same messages; then a raw ``find`` reads the same documents once."""
    # one dispatcher driven by hand here, nobody renews its lease: make it outlast the run
    settings = isolated_settings(SchedulerSettings, infra, scheduler_lease_seconds=3600)
    db = await prepare(settings)
    docs = callback_documents([utcnow() - timedelta(seconds=1)] * BACKLOG)
    await insert(db, docs)
    broker = make_broker(settings, "bench-scheduler")
    await broker.start()
    try:
        dispatcher = Dispatcher(db, broker, settings)
        if not await dispatcher.hold_lease():
            raise RuntimeError("the benchmark's dispatcher could not take the lease")
        started = time.perf_counter()
        emitted = 0
        while emitted < BACKLOG:
            emitted += await dispatcher.dispatch_due()
        ours = time.perf_counter() - started
    finally:
        await broker.stop()

    payloads = [
        (due_callback_event(doc).key, due_callback_event(doc).model_dump_json().encode())
        for doc in docs
    ]
    # the platform's producer settings (callback_shared.kafka.make_broker)
    producer = AIOKafkaProducer(
        bootstrap_servers=settings.kafka_bootstrap_servers, acks="all", request_timeout_ms=15_000
    )
    await producer.start()
    try:
        started = time.perf_counter()
        sent = [
            # the same (existing) topic: a topic created on first use would slow the raw side
            await producer.send(settings.topic_due_callbacks, value, key=key)
            for key, value in payloads
        ]
        await asyncio.gather(*sent)
        raw = time.perf_counter() - started
    finally:
        await producer.stop()

    started = time.perf_counter()
    await db[CALLBACKS].find({"dispatch_at": {"$lte": utcnow()}}).to_list()
    raw_mongo = time.perf_counter() - started
    await db.client.drop_database(settings.mongodb_database)
    return {
        "dispatch_per_s": Metric(BACKLOG / ours, "1/s", better="higher"),
        "raw_producer_per_s": Metric(BACKLOG / raw, "1/s", better="higher"),
        "throughput_ratio_vs_raw": Metric(raw / ours, "ratio", target=0.5, better="higher"),
        "raw_mongo_read_per_s": Metric(BACKLOG / raw_mongo, "1/s", better="higher"),
        "throughput_ratio_vs_raw_mongo_read": Metric(raw_mongo / ours, "ratio", better="higher"),
    }


async def cpu(infra: Infrastructure) -> dict[str, Metric]:
    """CPU time of the scheduler process per dispatch: a backlog of 10k callbacks all due at one
    instant while it leads, measured from a second before that instant until the last one is on
    Kafka; beside the raw drivers' CPU for the same work in this process (a ``find`` of the same
    documents, a plain producer sending the same messages). Then its idle CPU (leading, nothing
    due) over as long, apart."""
    # no routing runs here to take the callbacks: never emit them again
    settings = isolated_settings(SchedulerSettings, infra, scheduler_redispatch_after_seconds=3600)
    db = await prepare(settings)
    scheduler, _ = await start_service("callback-scheduler", settings)
    try:
        due = utcnow() + BACKLOG_LEAD
        await insert(db, callback_documents([due] * BACKLOG))
        wait = (due - utcnow()).total_seconds() - 1
        if wait < 1:
            raise RuntimeError("seeding took too long: the callbacks would be due already")
        await asyncio.sleep(wait)
        meter = CpuMeter(scheduler.pid).start()
        records = await consume(settings, settings.topic_due_callbacks, BACKLOG)
        meter.stop()
        # leading with nothing due: polls, lease renewals, looks for what routing lost
        idle = await idle_cpu_ms_per_s(scheduler.pid, meter.seconds)
    finally:
        await stop_service(scheduler)
    messages = [(record.key, record.value) for record in records]
    raw = CpuMeter().start()
    found = await db[CALLBACKS].find({"dispatch_at": {"$lte": utcnow()}}, DUE_FIELDS).to_list()
    await produce(settings, settings.topic_due_callbacks, messages)
    raw.stop()
    if len(found) != BACKLOG:
        raise RuntimeError(f"the raw find read {len(found)} of {BACKLOG} documents")
    await db.client.drop_database(settings.mongodb_database)
    return {
        **cpu_metrics("dispatch", meter, BACKLOG, idle, raw, target=0.05),
        "idle_cpu_ms_per_s": Metric(idle, "ms/s"),
        "cpu_phase_s": Metric(meter.seconds, "s"),
    }


async def run(infra: Infrastructure) -> Result:
    result = Result("scheduler", backend=backend(infra))
    result.metrics.update(await lateness(infra))
    result.metrics.update(await throughput(infra))
    result.metrics.update(await cpu(infra))
    return result
