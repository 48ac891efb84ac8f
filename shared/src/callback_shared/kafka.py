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
        settings.topic_routing_commands,
        settings.topic_lifecycle_events,
        settings.topic_dead_letter,
    ]


#: Most bytes of one Kafka record batch (below the broker's default message.max.bytes): what
#: one :func:`publish_all` call sends to one partition travels as one batch up to this size.
MAX_BATCH_BYTES = 1_000_000


def make_broker(settings: PlatformSettings, client_id: str) -> KafkaBroker:
    """A FastStream broker: acks from all replicas, structured logs.

    Not an idempotent producer: aiokafka's never recovers once a batch is refused while a
    broker restarts (LeaderNotAvailable leaves a gap in its sequence numbers: every later send
    failed with ``OutOfOrderSequenceNumber``, for ever; seen in CI, reproduced by a test), and
    it never expires a batch, so an outage could not surface as an error. Without it a batch
    fails after ``request_timeout_ms`` and the caller's retry sends it again; a message
    written twice carries the same ``event_id`` (every consumer here de-duplicates), and
    :func:`publish_all` keeps a retry from putting a callback's later event before an earlier
    one."""
    return KafkaBroker(
        settings.kafka_bootstrap_servers,
        client_id=client_id,
        acks="all",
        enable_idempotence=False,
        max_batch_size=MAX_BATCH_BYTES,
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
    broker: KafkaBroker, topic: str, messages: Sequence[tuple[bytes | None, bytes]]
) -> list[tuple[list[int], asyncio.Future[Any]]]:
    """Hand keyed messages (key, JSON value) to the producer in batches, one partition each,
    without waiting: for each batch, the positions in ``messages`` it holds and the future of
    its acknowledgement. The partition is the default partitioner's for the key (as for any
    Kafka client), the order within a partition the given one. A record batch is written
    whole or not at all. (FastStream's publish of one message costs about as much as the rest
    of its way to Kafka.)"""
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
    """Publish messages without waiting for each acknowledgement in turn (awaiting each in turn
    measured ten times slower), then wait for all of them; raises the first failure.

    What the call sends to one partition goes as one record batch (up to
    :data:`MAX_BATCH_BYTES`), written whole or not at all. A failed call may have published
    some partitions' batches; callers retry with the same events (stable ids), so a retry can
    repeat events but never put a callback's later event before an earlier one."""
    by_topic: dict[str, list[tuple[bytes | None, bytes]]] = {}
    for topic, value, key in messages:
        by_topic.setdefault(topic, []).append((key, value))
    pending: list[asyncio.Future[Any]] = []
    try:
        for topic, keyed in by_topic.items():
            pending += [acked for _, acked in await send_keyed(broker, topic, keyed)]
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
