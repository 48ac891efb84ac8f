"""Set-up shared by the pipeline benchmarks: isolated database and topics, seeded callbacks."""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import sys
import time
import uuid
from collections.abc import Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord
from callback_dev.infra import Infrastructure, free_port
from callback_shared.documents import new_callback_document, timeline_entry
from callback_shared.kafka import ensure_topics
from callback_shared.models import CallbackType, RoutingEvent, RoutingEventKind, utcnow
from callback_shared.mongo import (
    CALLBACKS,
    SHARED_INDEXES,
    Document,
    ensure_indexes,
    make_mongo_client,
)
from callback_shared.settings import PlatformSettings, SettingsT
from callback_shared.states import CallbackResult, CallbackState
from pydantic import SecretStr
from pymongo.asynchronous.database import AsyncDatabase


def isolated_settings(cls: type[SettingsT], infra: Infrastructure, **extra: Any) -> SettingsT:
    tag = uuid.uuid4().hex[:8]
    return cls(
        kafka_bootstrap_servers=infra.kafka_bootstrap_servers,
        mongodb_url=infra.mongodb_url,
        mongodb_database=f"bench_{tag}",
        topic_due_callbacks=f"bench-{tag}.due",
        topic_routing_events=f"bench-{tag}.routing-events",
        topic_lifecycle_events=f"bench-{tag}.lifecycle",
        topic_dead_letter=f"bench-{tag}.dead-letter",
        **extra,
    )


async def prepare(settings: PlatformSettings) -> AsyncDatabase[Document]:
    await ensure_topics(settings, "bench")
    db = make_mongo_client(settings)[settings.mongodb_database]
    await ensure_indexes(db, SHARED_INDEXES)
    return db


def callback_documents(
    desired_times: list[datetime], service_name: str = "billing"
) -> list[Document]:
    now = utcnow()
    return [
        new_callback_document(
            callback_id=uuid.uuid4(),
            service_name=service_name,
            customer_number=f"+1415{n % 10_000_000:07d}",
            type=CallbackType.SCHEDULED,
            desired_time=at,
            now=now,
        )
        for n, at in enumerate(desired_times)
    ]


#: the states a seeded callback whose desired time has passed is left in
PAST_STATES = [
    (CallbackState.COMPLETED, CallbackResult.AGENT),
    (CallbackState.COMPLETED, CallbackResult.CANCELLED_BY_ADMIN),
    (CallbackState.COMPLETED, CallbackResult.ABANDONED_IN_QUEUE),
    (CallbackState.QUEUED, None),
    (CallbackState.ROUTING, None),
    (CallbackState.PROCESSING, None),
]
#: a routed callback's events, in order
ROUTING_KINDS = [
    RoutingEventKind.QUEUED,
    RoutingEventKind.ROUTING,
    RoutingEventKind.PROCESSING,
    RoutingEventKind.COMPLETED,
]


def seeded_record(
    rng: random.Random,
    now: datetime,
    services: Sequence[str],
    past: timedelta,
    future: timedelta,
    customer_number: str | None = None,
) -> Document:
    """A callback of one of ``services`` desired between ``past`` before ``now`` and ``future``
    after it: still waiting if ahead, else in one of :data:`PAST_STATES`; its number
    ``customer_number``, or ``+1415`` and 7 random digits."""
    desired = now + timedelta(seconds=rng.uniform(-past.total_seconds(), future.total_seconds()))
    desired = desired.replace(microsecond=desired.microsecond // 1000 * 1000)
    doc = new_callback_document(
        callback_id=uuid.UUID(int=rng.getrandbits(128), version=4),
        service_name=rng.choice(services),
        customer_number=customer_number or f"+1415{rng.randrange(10**7):07d}",
        type=rng.choice(list(CallbackType)),
        desired_time=desired,
        now=desired - timedelta(hours=1),
        created_by="seed",
    )
    if desired < now:
        state, result = rng.choice(PAST_STATES)
        doc.pop("dispatch_at")
        doc.update(state=state.value, result=result.value if result else None, updated_at=desired)
        doc["timeline"].append(timeline_entry(desired, state, "routing", result=result))
    return doc


def routing_events(docs: list[Document]) -> list[RoutingEvent]:
    """Routing's events taking each callback through :data:`ROUTING_KINDS` (attempt 1), each
    kind for every callback before the next kind."""
    return [
        RoutingEvent(
            callback_id=doc["_id"],
            kind=kind,
            service_name=doc["service_name"],
            attempt=1,
            sequence=sequence,
            agent="agent-1" if kind is RoutingEventKind.ROUTING else None,
        )
        for sequence, kind in enumerate(ROUTING_KINDS)
        for doc in docs
    ]


async def insert(db: AsyncDatabase[Document], docs: list[Document], chunk: int = 5000) -> None:
    for start in range(0, len(docs), chunk):
        await db[CALLBACKS].insert_many(docs[start : start + chunk], ordered=False)


def service_env(settings: PlatformSettings, port: int, **extra: str) -> dict[str, str]:
    """The environment of a service process run on these settings."""
    values = {
        name.upper(): str(value.get_secret_value() if isinstance(value, SecretStr) else value)
        for name, value in settings.model_dump().items()
        if value is not None  # unset optional settings stay unset
    }
    return {
        **os.environ,
        **values,
        "HTTP_PORT": str(port),
        "LOG_LEVEL": "WARNING",
        **extra,
    }


async def start_service(
    command: str, settings: PlatformSettings, **extra: str
) -> tuple[asyncio.subprocess.Process, int]:
    """Run a service's console script as its own process (its CPU apart from the benchmark's)
    and wait until it is ready; returns the process and its HTTP port. With
    ``BENCH_PROFILE=<command>`` that service runs under pyinstrument (report in /tmp; its CPU
    figures then include the profiler's). With ``BENCH_SERVICES_BIN=<a checkout>/.venv/bin`` the
    services run from another checkout (a before/after comparison under the same benchmark)."""
    port = free_port()
    scripts = os.environ.get("BENCH_SERVICES_BIN") or Path(sys.executable).parent
    argv = [str(Path(scripts) / command)]
    if os.environ.get("BENCH_PROFILE") == command:  # e.g. BENCH_PROFILE=callback-scheduler
        report = f"/tmp/bench-profile-{command}.txt"
        argv = [sys.executable, "-m", "pyinstrument", "-r", "text", "-o", report, *argv]
        print(f"profiling {command} with pyinstrument into {report}", flush=True)
    process = await asyncio.create_subprocess_exec(*argv, env=service_env(settings, port, **extra))
    try:
        await ready(port)
    except BaseException:
        await stop_service(process)
        raise
    return process, port


async def stop_service(process: asyncio.subprocess.Process) -> None:
    if process.returncode is None:
        process.terminate()
        await asyncio.wait_for(process.wait(), 60)


async def ready(port: int, within: float = 120) -> None:
    deadline = time.monotonic() + within
    async with httpx.AsyncClient() as http:
        while time.monotonic() < deadline:
            with contextlib.suppress(httpx.HTTPError):
                if (await http.get(f"http://127.0.0.1:{port}/readyz")).status_code == 200:
                    return
            await asyncio.sleep(0.2)
    raise RuntimeError(f"the service on port {port} was not ready after {within}s")


def raw_producer(settings: PlatformSettings) -> AIOKafkaProducer:
    """A plain aiokafka producer with the platform's producer settings (acks from all)."""
    return AIOKafkaProducer(
        bootstrap_servers=settings.kafka_bootstrap_servers, acks="all", request_timeout_ms=15_000
    )


async def produce(
    settings: PlatformSettings, topic: str, messages: Sequence[tuple[bytes | None, bytes]]
) -> None:
    """Send (key, value) messages without waiting for each acknowledgement, then wait for all."""
    producer = raw_producer(settings)
    await producer.start()
    try:
        await send_all(producer, topic, messages)
    finally:
        await producer.stop()


async def send_all(
    producer: AIOKafkaProducer, topic: str, messages: Sequence[tuple[bytes | None, bytes]]
) -> None:
    """Send (key, value) messages through a started producer, then wait for every ack."""
    sent = [await producer.send(topic, value, key=key) for key, value in messages]
    await asyncio.gather(*sent)


async def consume(
    settings: PlatformSettings, topic: str, count: int, within: float = 300
) -> list[ConsumerRecord[bytes, bytes]]:
    """The first ``count`` records of ``topic`` (all partitions), read by a plain consumer."""
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=settings.kafka_bootstrap_servers,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        max_poll_records=1000,
    )
    await consumer.start()
    records: list[ConsumerRecord[bytes, bytes]] = []
    try:
        deadline = time.monotonic() + within
        while len(records) < count:
            if time.monotonic() > deadline:
                raise RuntimeError(f"only {len(records)} of {count} records on {topic}")
            batches = await consumer.getmany(timeout_ms=1000, max_records=1000)
            for part in batches.values():
                records += part
    finally:
        await consumer.stop()
    return records
