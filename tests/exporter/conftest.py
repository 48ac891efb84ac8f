import pytest
from callback_shared.kafka import ensure_topics
from callback_shared.mongo import SHARED_INDEXES, Document, ensure_indexes
from callback_shared.settings import PlatformSettings
from pymongo.asynchronous.database import AsyncDatabase


@pytest.fixture(autouse=True)
async def bootstrapped(settings: PlatformSettings, db: AsyncDatabase[Document]) -> None:
    """Topics and indexes exist before a test's readers and writers start."""
    await ensure_topics(settings, "tests")
    await ensure_indexes(db, SHARED_INDEXES)  # as callback-bootstrap does
