"""Helpers of the pipeline tests: seed callbacks, read topics, wait for conditions."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from callback_shared.documents import new_callback_document
from callback_shared.models import CallbackType, utcnow
from callback_shared.mongo import CALLBACKS, Document
from pymongo.asynchronous.database import AsyncDatabase


async def seed_callbacks(
    db: AsyncDatabase[Document],
    desired_times: list[datetime],
    service_name: str = "billing",
    priority: int = 0,
) -> list[uuid.UUID]:
    now = utcnow()
    docs = [
        new_callback_document(
            callback_id=uuid.uuid4(),
            service_name=service_name,
            customer_number=f"+1415555{n:04d}",
            type=CallbackType.SCHEDULED if at > now else CallbackType.IMMEDIATE,
            desired_time=at,
            now=now,
            priority=priority,
            created_by="test",
        )
        for n, at in enumerate(desired_times)
    ]
    await db[CALLBACKS].insert_many(docs)
    return [doc["_id"] for doc in docs]


class TopicReader:
    """Reads a whole topic from the beginning, in the background, into ``messages`` (parsed)
    and ``records`` (as consumed)."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        self.consumer = AIOKafkaConsumer(
            topic,
            bootstrap_servers=bootstrap,
            auto_offset_reset="earliest",
            enable_auto_commit=False,
            group_id=None,
        )
        self.messages: list[dict[str, Any]] = []
        self.records: list[Any] = []
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> TopicReader:
        await self.consumer.start()
        self._task = asyncio.create_task(self._read())
        return self

    async def _read(self) -> None:
        async for record in self.consumer:
            self.records.append(record)
            try:
                self.messages.append(json.loads(record.value))
            except ValueError:
                self.messages.append({"unparsable": record.value})

    async def __aexit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)
        await self.consumer.stop()


async def produce(bootstrap: str, topic: str, messages: list[tuple[bytes, bytes]]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        for key, value in messages:
            await producer.send_and_wait(topic, value, key=key)
    finally:
        await producer.stop()


async def eventually(
    check: Callable[[], Awaitable[bool]], within: float = 60, what: str = "condition"
) -> None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if await check():
            return
        await asyncio.sleep(0.2)
    raise AssertionError(f"{what} not reached within {within}s")
