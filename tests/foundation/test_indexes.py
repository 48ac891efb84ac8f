"""Index bootstrap against the real MongoDB-protocol server."""

import asyncio
import time
from datetime import timedelta
from uuid import uuid4

import pytest
from callback_admin_api.collections import ADMIN_INDEXES
from callback_shared.models import RETENTION, expire_at, utcnow
from callback_shared.mongo import CALLBACKS, Document, ensure_indexes
from pymongo import ASCENDING, IndexModel
from pymongo.asynchronous.database import AsyncDatabase


async def test_bootstrap_is_idempotent_and_ttl_index_has_right_options(
    db: AsyncDatabase[Document],
) -> None:
    await ensure_indexes(db)
    first = await db[CALLBACKS].index_information()
    await ensure_indexes(db)
    second = await db[CALLBACKS].index_information()
    assert first == second
    assert {"retention_ttl", "by_desired_time", "by_service_desired_time"} <= set(first)
    ttl = first["retention_ttl"]
    assert ttl["key"] == [("expire_at", 1)]
    assert ttl["expireAfterSeconds"] == 0
    assert sum("expireAfterSeconds" in index for index in first.values()) == 1


async def test_a_service_creates_the_callbacks_indexes_and_those_of_the_collections_it_names(
    db: AsyncDatabase[Document],
) -> None:
    await ensure_indexes(db)
    assert await db.list_collection_names() == [CALLBACKS]
    await ensure_indexes(db, ADMIN_INDEXES)
    assert set(await db.list_collection_names()) == {CALLBACKS, *ADMIN_INDEXES}
    for name, indexes in ADMIN_INDEXES.items():
        assert {model.document["name"] for model in indexes} <= set(
            await db[name].index_information()
        ), name


async def test_indexes_for_the_callbacks_collection_come_from_one_list_only(
    db: AsyncDatabase[Document],
) -> None:
    extra = {CALLBACKS: [IndexModel([("customer_name", ASCENDING)], name="by_customer_name")]}
    with pytest.raises(ValueError, match="CALLBACK_INDEXES"):
        await ensure_indexes(db, extra)
    assert await db.list_collection_names() == []  # refused before anything was created


@pytest.mark.slow
async def test_server_deletes_a_record_whose_expiry_has_passed(db: AsyncDatabase[Document]) -> None:
    """The TTL monitor runs about once a minute: wait up to three minutes for it."""
    await ensure_indexes(db)
    now = utcnow()
    expired_id, kept_id = uuid4(), uuid4()
    await db[CALLBACKS].insert_many(
        [
            # desired 14 days and a second ago: its expiry has passed
            {"_id": expired_id, "expire_at": expire_at(now - RETENTION - timedelta(seconds=1))},
            {"_id": kept_id, "expire_at": expire_at(now)},
        ]
    )
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if await db[CALLBACKS].count_documents({"_id": expired_id}) == 0:
            break
        await asyncio.sleep(2)
    assert await db[CALLBACKS].count_documents({"_id": expired_id}) == 0
    assert await db[CALLBACKS].count_documents({"_id": kept_id}) == 1
