"""Messages cross OS processes through the real broker; committed offsets survive a restart."""

import asyncio
import os
import subprocess
import sys
import uuid
from pathlib import Path

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from callback_shared.kafka import make_broker, publish_all, send_keyed

from tests.pipeline.helpers import TopicReader, eventually

PEER = Path(__file__).with_name("kafka_peer.py")


def peer(env: dict[str, str], *args: str) -> list[str]:
    run = subprocess.run(
        [sys.executable, str(PEER), *args],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr
    return run.stdout.split()


def test_consumer_group_reads_each_message_once_across_restarts(env):
    topic, group = f"peer-{uuid.uuid4().hex[:8]}", "peer-group"
    peer(env, "produce", topic, "0", "10")
    first = peer(env, "consume", topic, group, "10")
    assert sorted(first) == sorted(f"message-{n}" for n in range(10))

    peer(env, "produce", topic, "10", "5")
    restarted = peer(env, "consume", topic, group, "5")
    assert sorted(restarted) == sorted(f"message-{n}" for n in range(10, 15))


async def test_send_keyed_puts_each_message_where_send_would_in_order(settings):
    """Batches per partition through FastStream's own producer: every message lands once, in
    the partition the key gives with a plain send, in the order given, with the JSON header."""
    topic = f"keyed-{uuid.uuid4().hex[:8]}"
    plain = f"{topic}-plain"
    messages = [(f"callback-{n % 37}".encode(), b'{"n": %d}' % n) for n in range(3000)]
    broker = make_broker(settings, "keyed-test")
    await broker.start()
    try:
        await ensure_partitioned(settings, [topic, plain])
        sent = await send_keyed(broker, topic, messages)
        assert sorted(p for positions, _ in sent for p in positions) == list(range(3000))
        assert len(sent) > 3  # several partitions, and batches split when full
        await asyncio.gather(*(acked for _, acked in sent))
        await publish_all(broker, ((plain, value, key) for key, value in messages))
    finally:
        await broker.stop()
    async with (
        TopicReader(settings.kafka_bootstrap_servers, topic) as keyed,
        TopicReader(settings.kafka_bootstrap_servers, plain) as reference,
    ):
        await eventually(lambda: _holds(keyed, 3000), 30, "keyed messages")
        await eventually(lambda: _holds(reference, 3000), 30, "plain messages")
    place = {(r.key, r.value): r.partition for r in reference.records}
    assert {(r.key, r.value): r.partition for r in keyed.records} == place
    for partition in set(place.values()):
        in_keyed = [r.value for r in keyed.records if r.partition == partition]
        assert in_keyed == [r.value for r in reference.records if r.partition == partition]
    assert all(dict(r.headers)["content-type"] == b"application/json" for r in keyed.records)


async def _holds(reader: TopicReader, count: int) -> bool:
    return len(reader.records) >= count


async def ensure_partitioned(settings, names: list[str]) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap_servers)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(name, 3, 1) for name in names])
    finally:
        await admin.close()
