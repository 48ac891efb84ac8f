"""Set-up shared by the pipeline benchmarks: isolated database and topics, seeded callbacks."""

from __future__ import annotations

import uuid
from datetime import datetime

from callback_shared.documents import new_callback_document
from callback_shared.infra import Infrastructure
from callback_shared.kafka import ensure_topics
from callback_shared.models import CallbackType, utcnow
from callback_shared.mongo import CALLBACKS, Document, ensure_indexes, make_mongo_client
from callback_shared.settings import PlatformSettings, SettingsT
from pymongo.asynchronous.database import AsyncDatabase


def isolated_settings(cls: type[SettingsT], infra: Infrastructure, **extra: object) -> SettingsT:
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
    await ensure_indexes(db)
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


async def insert(db: AsyncDatabase[Document], docs: list[Document], chunk: int = 5000) -> None:
    for start in range(0, len(docs), chunk):
        await db[CALLBACKS].insert_many(docs[start : start + chunk], ordered=False)
