"""Kafka plumbing: the FastStream broker factory and topic creation."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import structlog
from aiokafka import AIOKafkaProducer, ConsumerRecord
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError
from aiokafka.partitioner import DefaultPartitioner
from faststream.kafka import KafkaBroker
from faststream.message import StreamMessage
from prometheus_client import Counter

from callback_shared.models import DeadLetter, Event
from callback_shared.settings import PlatformSettings


def topics(settings: PlatformSettings) -> list[str]:
    return [
        settings.topic_due_callbacks,
        settings.topic_routing_events,
        settings.topic_lifecycle_events,
        settings.topic_dead_letter,
    ]


def make_broker(settings: PlatformSettings, client_id: str) -> KafkaBroker:
    """A FastStream broker: acks from all replicas, structured logs.

    Not an idempotent producer: aiokafka's never recovers from a broker that lost its producer
    state (after a broker restart every later send failed with ``OutOfOrderSequenceNumber``,
    for ever; seen in CI and reproduced), and it never expires a batch, so an outage could not
    surface as an error. Without it a batch fails after ``request_timeout_ms`` and the caller's
    retry sends it again; aiokafka keeps one batch in flight per partition, so order holds, and
    a message written twice carries the same ``event_id``: every consumer here de-duplicates."""
    return KafkaBroker(
        settings.kafka_bootstrap_servers,
        client_id=client_id,
        acks="all",
        enable_idempotence=False,
        request_timeout_ms=15_000,
        graceful_timeout=settings.shutdown_grace_seconds,
        logger=logging.getLogger(f"callback.{client_id}.broker"),
    )


async def ensure_topics(settings: PlatformSettings, client_id: str) -> None:
    """Create the platform's topics if missing (keyed by callback id; partitions configurable)."""
    admin = AIOKafkaAdminClient(
        bootstrap_servers=settings.kafka_bootstrap_servers, client_id=f"{client_id}-admin"
    )
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [
            NewTopic(
                name,
                num_partitions=settings.topic_partitions,
                replication_factor=settings.topic_replication_factor,
            )
            for name in topics(settings)
            if name not in existing
        ]
        if missing:
            with contextlib.suppress(TopicAlreadyExistsError):
                await admin.create_topics(missing)
    finally:
        await admin.close()


JSON_HEADERS = {"content-type": "application/json"}

DEAD_LETTERS = Counter(
    "callback_dead_letters_total", "Messages parked on the dead-letter topic", ["source_topic"]
)
log = structlog.get_logger(__name__)


#: A message to publish: topic, JSON value, key.
Message = tuple[str, bytes, bytes | None]


async def send(broker: KafkaBroker, message: Message) -> asyncio.Future[Any]:
    """Hand one message to the producer without waiting: the future resolves when the broker
    acknowledged it (acks=all), or fails."""
    topic, value, key = message
    future: asyncio.Future[Any] = await broker.publish(
        value, topic, key=key, headers=JSON_HEADERS, no_confirm=True
    )
    return future


def producer_of(broker: KafkaBroker) -> AIOKafkaProducer:
    """The aiokafka producer FastStream started for ``broker`` (same connection and settings:
    acks=all). FastStream does not expose it; a test checks this path still leads
    to it with the locked FastStream version."""
    state = getattr(broker.config.producer, "_producer", None)
    producer = getattr(state, "producer", None)
    if not isinstance(producer, AIOKafkaProducer):
        raise RuntimeError("the broker is not started, or FastStream moved its producer")
    return producer


_PARTITIONER = DefaultPartitioner()
_JSON_HEADER_BYTES = [(name, value.encode()) for name, value in JSON_HEADERS.items()]


async def send_keyed(
    broker: KafkaBroker, topic: str, messages: Sequence[tuple[bytes, bytes]]
) -> list[tuple[list[int], asyncio.Future[Any]]]:
    """Hand keyed messages (key, JSON value) to the producer in batches, one partition each,
    without waiting: for each batch, the positions in ``messages`` it holds and the future of
    its acknowledgement. Same partitions as :func:`send` (the default partitioner of the key),
    same order within a partition. FastStream's publish costs about as much as the rest of a
    message's way to Kafka; a hot path sending thousands a second uses this instead."""
    producer = producer_of(broker)
    partitions = sorted(await producer.partitions_for(topic))
    by_partition: dict[int, list[int]] = {}
    for position, (key, _) in enumerate(messages):
        partition = _PARTITIONER(key, partitions, partitions)
        by_partition.setdefault(partition, []).append(position)
    sent: list[tuple[list[int], asyncio.Future[Any]]] = []
    for partition, positions in by_partition.items():
        batch, held = producer.create_batch(), []
        for position in positions:
            key, value = messages[position]
            if batch.append(key=key, value=value, timestamp=None, headers=_JSON_HEADER_BYTES):
                held.append(position)
                continue
            if not held:
                raise ValueError(f"a message of {len(value)} bytes does not fit in a batch")
            sent.append((held, await producer.send_batch(batch, topic, partition=partition)))
            batch, held = producer.create_batch(), [position]
            if not batch.append(key=key, value=value, timestamp=None, headers=_JSON_HEADER_BYTES):
                raise ValueError(f"a message of {len(value)} bytes does not fit in a batch")
        sent.append((held, await producer.send_batch(batch, topic, partition=partition)))
    return sent


async def publish_all(broker: KafkaBroker, messages: Iterable[Message]) -> None:
    """Publish messages in order without waiting for each acknowledgement in turn (the producer
    batches them; awaiting each in turn measured ten times slower), then wait for all of them;
    raises the first failure. A failed call may have published part: callers publish what is
    safe to publish twice (events with stable ids)."""
    pending: list[asyncio.Future[Any]] = []
    try:
        for message in messages:
            pending.append(await send(broker, message))
    finally:
        outcomes = await asyncio.gather(*pending, return_exceptions=True)
    for outcome in outcomes:
        if isinstance(outcome, BaseException):
            raise outcome


def event_messages(topic: str, events: Iterable[Event]) -> Iterator[Message]:
    """Contract events as messages to ``topic``, keyed by callback id."""
    return ((topic, event.model_dump_json().encode(), event.key) for event in events)


def raw_body(message: StreamMessage[Any]) -> Any:
    """A subscriber decoder that hands the handler the bytes as sent (a list of them for a batch
    subscriber): parsing, and parking what is malformed on the dead-letter topic, is the
    handler's job. FastStream's own decoder would fail on a malformed JSON body before the
    handler runs, and with NACK_ON_ERROR the message would come back for ever."""
    return message.body


def dead_letter(record: ConsumerRecord[Any, Any], reason: str) -> DeadLetter:
    """The dead letter of a consumed record that cannot be used, with the reason (logged and
    counted here; publish it with :func:`park`)."""
    key = record.key.decode(errors="replace") if record.key is not None else None
    DEAD_LETTERS.labels(record.topic).inc()
    log.warning(
        "message parked on the dead-letter topic",
        topic=record.topic,
        partition=record.partition,
        offset=record.offset,
        key=key,
        reason=reason[:500],
    )
    return DeadLetter(
        source_topic=record.topic,
        partition=record.partition,
        offset=record.offset,
        key=key,
        payload=(record.value or b"").decode(errors="replace"),
        reason=reason,
    )


async def park(broker: KafkaBroker, topic: str, letters: Sequence[DeadLetter]) -> None:
    """Publish dead letters to the dead-letter ``topic``, keyed as their messages were."""
    await publish_all(
        broker,
        (
            (topic, letter.model_dump_json().encode(), letter.key.encode() if letter.key else None)
            for letter in letters
        ),
    )
