"""The services' Kafka consuming edge (``ServiceRuntime.consume_batches``) on FastStream's
in-memory test broker: what a batch handler is given, and what a failing one does to its batch.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest
from aiokafka import ConsumerRecord
from callback_shared import runtime as runtime_module
from callback_shared.runtime import ServiceRuntime
from callback_shared.settings import PlatformSettings
from faststream.kafka import TestKafkaBroker

TOPIC = "edge.routing-events"


def a_runtime() -> ServiceRuntime:
    # nothing connects: the in-memory broker stands in for Kafka, MongoDB is never used
    settings = PlatformSettings(
        kafka_bootstrap_servers="127.0.0.1:9", mongodb_url="mongodb://127.0.0.1:9"
    )
    return ServiceRuntime("edge", settings)


async def test_a_batch_handler_gets_the_records_as_sent_even_a_malformed_one() -> None:
    runtime = a_runtime()
    batches: list[Sequence[ConsumerRecord[Any, Any]]] = []

    async def handler(records: Sequence[ConsumerRecord[Any, Any]]) -> None:
        batches.append(records)

    runtime.consume_batches(TOPIC, "edge-group", 10, handler)
    async with TestKafkaBroker(runtime.broker) as broker:
        await broker.publish(b'{"kind": "QUEUED"}', TOPIC, key=b"callback-1")
        await broker.publish(b"not json {", TOPIC)
    records = [record for batch in batches for record in batch]
    # raw records: the handler parses them and parks what is malformed (FastStream's decoder
    # would have failed before the handler on the second one)
    assert [(record.key, record.value) for record in records] == [
        (b"callback-1", b'{"kind": "QUEUED"}'),
        (b"", b"not json {"),
    ]
    assert all(record.topic == TOPIC for record in records)


async def test_a_failing_batch_handler_fails_the_batch_so_it_is_not_committed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(runtime_module, "BATCH_RETRY_PAUSE_SECONDS", 0)
    runtime = a_runtime()
    seen: list[bytes] = []

    async def handler(records: Sequence[ConsumerRecord[Any, Any]]) -> None:
        seen.extend(record.value for record in records)
        raise RuntimeError("the database is away")

    runtime.consume_batches(TOPIC, "edge-group", 10, handler)
    async with TestKafkaBroker(runtime.broker) as broker:
        # the subscriber raises (NACK_ON_ERROR: the offsets stay where they were)
        with pytest.raises(RuntimeError, match="the database is away"):
            await broker.publish(b'{"kind": "ROUTING"}', TOPIC, key=b"callback-2")
    assert seen == [b'{"kind": "ROUTING"}']
