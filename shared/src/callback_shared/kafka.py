"""Kafka plumbing: the FastStream broker factory and topic creation."""

from __future__ import annotations

import contextlib
import logging

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError
from faststream.kafka import KafkaBroker

from callback_shared.settings import PlatformSettings


def topics(settings: PlatformSettings) -> list[str]:
    return [
        settings.topic_due_callbacks,
        settings.topic_routing_events,
        settings.topic_lifecycle_events,
        settings.topic_dead_letter,
    ]


def make_broker(settings: PlatformSettings, client_id: str) -> KafkaBroker:
    """A FastStream broker: idempotent producer, acks from all replicas, structured logs."""
    return KafkaBroker(
        settings.kafka_bootstrap_servers,
        client_id=client_id,
        acks="all",
        enable_idempotence=True,
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
