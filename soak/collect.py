"""Reads what the auditor needs once the system is quiet: MongoDB's collections, then every
topic from its start up to its end at that moment."""

from __future__ import annotations

import asyncio
import contextlib
import json
from datetime import UTC, datetime, timedelta
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from callback_shared.models import ServiceConfig
from pymongo import AsyncMongoClient

from soak.audit import Message
from soak.load import utcnow
from soak.platform import DATABASE, TOPICS


async def partitions(admin: AIOKafkaAdminClient, topics: list[str]) -> list[TopicPartition]:
    """Every partition of these topics, from the broker's metadata."""
    described = await admin.describe_topics(topics)
    return [
        TopicPartition(topic["topic"], part["partition"])
        for topic in described
        for part in topic["partitions"]
    ]


async def read_topic(bootstrap: str, topic: str) -> list[Message]:
    """Every record of ``topic`` from its start to its end now."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        parts = await partitions(admin, [topic])
    finally:
        await admin.close()
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, enable_auto_commit=False, group_id=None
    )
    await consumer.start()
    try:
        if not parts:
            return []
        consumer.assign(parts)
        await consumer.seek_to_beginning(*parts)
        ends = await consumer.end_offsets(parts)
        found: list[Message] = []
        while [p for p in parts if await consumer.position(p) < ends[p]]:
            batches = await consumer.getmany(timeout_ms=1000, max_records=5000)
            for records in batches.values():
                for record in records:
                    at = datetime.fromtimestamp(record.timestamp / 1000, UTC)
                    try:
                        value = json.loads(record.value or b"")
                    except ValueError:
                        value = {"unparsable": repr(record.value)}
                    found.append(Message(at, value))
        return found
    finally:
        with contextlib.suppress(Exception, asyncio.CancelledError):
            await consumer.stop()


async def quiet(
    mongo_url: str, bootstrap: str, lag: Any, within: float, heartbeat: float
) -> tuple[bool, str]:
    """Wait (at most ``within`` seconds) until nothing is in flight: consumers caught up,
    outboxes empty, cancels answered, nothing due and not taken, no attempt routing went
    silent on. Returns whether it got there, and what was still in flight otherwise."""
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(
        mongo_url, tz_aware=True, uuidRepresentation="standard"
    )
    callbacks = client[DATABASE].callbacks
    deadline = asyncio.get_running_loop().time() + within
    still = ""
    try:
        while asyncio.get_running_loop().time() < deadline:
            now = utcnow()
            recent = now - timedelta(seconds=3)
            silent = now - timedelta(seconds=heartbeat * 3)
            counts = {
                "outbox": await callbacks.count_documents({"outbox_since": {"$exists": True}}),
                "cancel pending": await callbacks.count_documents(
                    {"cancel_pending_since": {"$exists": True}}
                ),
                "due not taken": await callbacks.count_documents({"dispatch_at": {"$lte": recent}}),
                "silent attempts": await callbacks.count_documents(
                    {"state": {"$in": ["QUEUED", "ROUTING"]}, "routing_seen_at": {"$lte": silent}}
                ),
            }
            with contextlib.suppress(Exception):
                for group in ("state-tracker", "routing-sim", "exporter"):
                    counts[f"{group} lag"] = await lag(group)
            still = ", ".join(f"{k} {v}" for k, v in counts.items() if v)
            if not still:
                return True, ""
            await asyncio.sleep(1)
        return False, still
    finally:
        await client.close()


async def read_mongo(mongo_url: str) -> dict[str, Any]:
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(
        mongo_url, tz_aware=True, uuidRepresentation="standard"
    )
    db = client[DATABASE]
    try:
        return {
            "callbacks": {str(d["_id"]): d for d in await db.callbacks.find().to_list()},
            "services": {
                d["_id"]: ServiceConfig.from_document(d) for d in await db.services.find().to_list()
            },
            "slots": await db.slots.find().to_list(),
            "counters": await db.request_counters.find().to_list(),
            "open_counts": await db.open_counts.find().to_list(),
            "report": await db.cancellation_report.find().to_list(),
        }
    finally:
        await client.close()


async def read_topics(bootstrap: str) -> dict[str, list[Message]]:
    names = {
        "lifecycle": "TOPIC_LIFECYCLE_EVENTS",
        "due": "TOPIC_DUE_CALLBACKS",
        "routing_events": "TOPIC_ROUTING_EVENTS",
        "dead_letters": "TOPIC_DEAD_LETTER",
    }
    return {key: await read_topic(bootstrap, TOPICS[name]) for key, name in names.items()}
