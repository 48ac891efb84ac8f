"""routing-sim: CPU time of the routing-sim process per due callback it routes to the end
(``COUNT`` due callbacks sent while the real ``callback-routing-sim`` process runs, with a
profile that answers at once: enough agents, no handle or dial time, no failures, so each
becomes QUEUED, ROUTING, PROCESSING, COMPLETED), from the first one sent until the last
COMPLETED event is on Kafka; beside the CPU of a plain aiokafka consumer reading the same due
callbacks and a plain producer sending the same routing events, in this process."""

from __future__ import annotations

import json
import time
import uuid

from aiokafka import AIOKafkaConsumer
from callback_dev.infra import Infrastructure
from callback_routing_sim.settings import RoutingSimSettings
from callback_shared.models import CallbackType, DueCallback, utcnow

from bench.common import consume, isolated_settings, prepare, produce, start_service, stop_service
from bench.harness import CpuMeter, Metric, Result, backend, cpu_metrics, idle_cpu_ms_per_s

COUNT = 5_000
#: answers at once, never fails: the simulation's own cost per callback, no waiting
PROFILE = {
    "agents": 10_000,
    "handle_seconds_min": 0,
    "handle_seconds_max": 0,
    "dial_seconds": 0,
    "dial_failure_probability": 0,
    "position_updates": False,
    "heartbeat_seconds": 3600,
}


async def run(infra: Infrastructure) -> Result:
    tag = uuid.uuid4().hex[:8]
    settings = isolated_settings(
        RoutingSimSettings,
        infra,
        topic_routing_commands=f"bench-{tag}.routing-commands",
        routing_sim_group_id=f"bench-{tag}-routing-sim",
        routing_sim_default_profile=json.dumps(PROFILE),
    )
    db = await prepare(settings)
    now = utcnow()
    due = [
        DueCallback(
            callback_id=uuid.uuid4(),
            service_name="billing",
            customer_number=f"+1415{n:07d}",
            type=CallbackType.IMMEDIATE,
            desired_time=now,
            attempt=1,
        )
        for n in range(COUNT)
    ]
    messages = [(event.key, event.model_dump_json().encode()) for event in due]

    watcher = AIOKafkaConsumer(
        settings.topic_routing_events,
        bootstrap_servers=settings.kafka_bootstrap_servers,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await watcher.start()
    simulation, _ = await start_service("callback-routing-sim", settings)
    events: list[tuple[bytes | None, bytes]] = []
    completed = 0
    try:
        meter = CpuMeter(simulation.pid).start()
        started = time.perf_counter()
        await produce(settings, settings.topic_due_callbacks, messages)
        deadline = time.monotonic() + 600
        while completed < COUNT:
            if time.monotonic() > deadline:
                raise RuntimeError(f"only {completed} of {COUNT} callbacks completed")
            for records in (await watcher.getmany(timeout_ms=1000)).values():
                for record in records:
                    events.append((record.key, record.value))
                    completed += b'"kind":"COMPLETED"' in record.value
        elapsed = time.perf_counter() - started
        meter.stop()
        # no callback held: consumer polls and heartbeats, over as long, apart
        idle = await idle_cpu_ms_per_s(simulation.pid, meter.seconds)
    finally:
        await watcher.stop()
        await stop_service(simulation)

    # raw: the same due callbacks read, the same routing events sent
    raw = CpuMeter().start()
    read = await consume(settings, settings.topic_due_callbacks, COUNT)
    await produce(settings, settings.topic_routing_events, events)
    raw.stop()
    if len(read) != COUNT:
        raise RuntimeError("the raw consumer did not read every due callback")
    await db.client.drop_database(settings.mongodb_database)

    result = Result(
        "routing_sim",
        backend=f"{backend(infra)}; {COUNT} due callbacks, {len(events)} routing events",
    )
    result.metrics = {
        **cpu_metrics("due_callback", meter, COUNT, idle, raw),
        "idle_cpu_ms_per_s": Metric(idle, "ms/s"),
        "routing_events_per_due_callback": Metric(len(events) / COUNT, "1"),
        "due_callbacks_per_s": Metric(COUNT / elapsed, "1/s", better="higher"),
    }
    return result
