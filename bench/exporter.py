"""Exporter: CPU time of the exporter process per cancellation event folded into the
Cancellation Summary Report (``COUNT`` CANCELLED lifecycle events of one bulk job, sent to the
lifecycle topic while the real ``callback-exporter`` process runs), from the first event sent
until the report holds them all; beside the CPU of the raw drivers doing the same database
work in this process: a plain aiokafka consumer reading the same records and PyMongo inserting
the same report entries in bulks of the exporter's batch size."""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import timedelta

from callback_dev.infra import Infrastructure
from callback_exporter.report import report_document
from callback_exporter.settings import ExporterSettings
from callback_shared.models import LifecycleEvent, LifecycleEventKind, utcnow
from callback_shared.mongo import CANCELLATION_REPORT, SHARED_INDEXES, ensure_indexes
from callback_shared.states import CallbackResult, CallbackState

from bench.common import consume, isolated_settings, prepare, produce, start_service, stop_service
from bench.harness import CpuMeter, Metric, Result, backend, cpu_metrics, idle_cpu_ms_per_s

COUNT = 20_000
ACTOR = "bench-supervisor"


async def run(infra: Infrastructure) -> Result:
    settings = isolated_settings(ExporterSettings, infra)
    db = await prepare(settings)
    batch_id = uuid.uuid4()
    desired = utcnow() + timedelta(days=1)
    events = [
        LifecycleEvent(
            callback_id=uuid.uuid4(),
            kind=LifecycleEventKind.CANCELLED,
            service_name="bulk",
            customer_number=f"+1415{n:07d}",
            desired_time=desired,
            state=CallbackState.COMPLETED,
            result=CallbackResult.CANCELLED_BY_ADMIN,
            previous_state=CallbackState.SCHEDULED,
            actor=ACTOR,
            batch_id=batch_id,
        )
        for n in range(COUNT)
    ]
    messages = [(event.key, event.model_dump_json().encode()) for event in events]

    exporter, _ = await start_service("callback-exporter", settings)
    try:
        meter = CpuMeter(exporter.pid).start()
        started = time.perf_counter()
        await produce(settings, settings.topic_lifecycle_events, messages)
        deadline = time.monotonic() + 600
        while await db[CANCELLATION_REPORT].count_documents({"actor": ACTOR}) < COUNT:
            if time.monotonic() > deadline:
                raise RuntimeError("the report did not list every cancellation in 10 minutes")
            await asyncio.sleep(0.25)
        elapsed = time.perf_counter() - started
        meter.stop()
        # nothing to fold: consumer polls and heartbeats, over as long, apart
        idle = await idle_cpu_ms_per_s(exporter.pid, meter.seconds)
    finally:
        await stop_service(exporter)

    # raw: the same records read, the same entries inserted, in a database of its own
    raw_db = db.client[f"{settings.mongodb_database}_raw"]
    await ensure_indexes(raw_db, SHARED_INDEXES)
    entries = [report_document(event, settings.report_retention) for event in events]
    size = settings.exporter_batch_size
    raw = CpuMeter().start()
    records = await consume(settings, settings.topic_lifecycle_events, COUNT)
    for start in range(0, len(entries), size):
        await raw_db[CANCELLATION_REPORT].insert_many(entries[start : start + size], ordered=False)
    raw.stop()
    if len(records) != COUNT or await raw_db[CANCELLATION_REPORT].count_documents({}) != COUNT:
        raise RuntimeError("the raw drivers did not read and write every entry")
    await db.client.drop_database(settings.mongodb_database)
    await db.client.drop_database(raw_db.name)

    result = Result("exporter", backend=f"{backend(infra)}; {COUNT} cancellation events")
    result.metrics = {
        **cpu_metrics("cancellation_event", meter, COUNT, idle, raw, target=0.2),
        "idle_cpu_ms_per_s": Metric(idle, "ms/s"),
        "cancellation_events_per_s": Metric(COUNT / elapsed, "1/s", better="higher"),
    }
    return result
