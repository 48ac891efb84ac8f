"""``callback-bootstrap`` (the compose one-shot service and the chart's Job) against real Kafka
and MongoDB: it creates every topic and index, a second run changes nothing, and a topic that
already exists with another partition count is reported and left alone."""

import json
import os
import subprocess

import pytest
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from callback_shared.mongo import (
    CALLBACK_INDEXES,
    CALLBACKS,
    CANCELLATION_REPORT,
    CANCELLATION_REPORT_INDEXES,
    Document,
)
from callback_shared.settings import PlatformSettings
from pymongo.asynchronous.database import AsyncDatabase

from tests.support import BIN


def run_bootstrap(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "callback-bootstrap"), "--timeout", "60"],
        env={**os.environ, **env, "LOG_FORMAT": "json"},
        capture_output=True,
        text=True,
        timeout=120,
    )


async def partitions(settings: PlatformSettings) -> dict[str, int]:
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap_servers)
    await admin.start()
    try:
        names = [
            settings.topic_due_callbacks,
            settings.topic_routing_events,
            settings.topic_lifecycle_events,
            settings.topic_dead_letter,
        ]
        existing = set(await admin.list_topics())
        described = await admin.describe_topics([n for n in names if n in existing])
    finally:
        await admin.close()
    return {topic["topic"]: len(topic["partitions"]) for topic in described}


async def test_bootstrap_creates_topics_and_indexes_and_is_idempotent(
    env: dict[str, str], settings: PlatformSettings, db: AsyncDatabase[Document]
) -> None:
    assert await partitions(settings) == {}

    first = run_bootstrap(env)
    assert first.returncode == 0, first.stderr

    topics = await partitions(settings)
    assert topics == {
        settings.topic_due_callbacks: 3,
        settings.topic_routing_events: 3,
        settings.topic_lifecycle_events: 3,
        settings.topic_dead_letter: 3,
    }
    indexes = await db[CALLBACKS].index_information()
    assert {model.document["name"] for model in CALLBACK_INDEXES} <= set(indexes)
    assert indexes["retention_ttl"]["expireAfterSeconds"] == 0
    report = await db[CANCELLATION_REPORT].index_information()
    assert {model.document["name"] for model in CANCELLATION_REPORT_INDEXES} <= set(report)
    # the shared collections only: admin-api creates its own when it starts
    assert set(await db.list_collection_names()) == {CALLBACKS, CANCELLATION_REPORT}

    second = run_bootstrap(env)
    assert second.returncode == 0, second.stderr
    assert await partitions(settings) == topics
    assert await db[CALLBACKS].index_information() == indexes


async def test_existing_topic_with_other_partition_count_is_reported_not_changed(
    env: dict[str, str], settings: PlatformSettings
) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap_servers)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(settings.topic_dead_letter, 1, 1)])
    finally:
        await admin.close()

    run = run_bootstrap(env)
    assert run.returncode == 0, run.stderr
    warnings = [
        line
        for line in map(json.loads, run.stderr.splitlines())
        if line["event"].startswith("topic exists with another partition count")
    ]
    assert [(w["topic"], w["partitions"], w["configured"]) for w in warnings] == [
        (settings.topic_dead_letter, 1, 3)
    ]
    assert (await partitions(settings))[settings.topic_dead_letter] == 1


@pytest.mark.process
def test_bootstrap_refuses_bad_configuration() -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("KAFKA_BOOTSTRAP_SERVERS",)}
    env["MONGODB_URL"] = "mongodb://127.0.0.1:27017"
    run = subprocess.run(
        [str(BIN / "callback-bootstrap")], env=env, capture_output=True, text=True, timeout=60
    )
    assert run.returncode == 2
    assert run.stderr.strip() == "invalid configuration: KAFKA_BOOTSTRAP_SERVERS: Field required"
