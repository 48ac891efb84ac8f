from __future__ import annotations

import pytest
from callback_shared.kafka import ensure_topics
from callback_shared.mongo import ensure_indexes


@pytest.fixture
async def bootstrapped(settings, db):
    """Topics and indexes exist before the services start."""
    await ensure_topics(settings, "tests")
    await ensure_indexes(db)
