from __future__ import annotations

from pathlib import Path

import pytest
from callback_shared.kafka import ensure_topics
from callback_shared.mongo import SHARED_INDEXES, Document, ensure_indexes
from callback_shared.settings import PlatformSettings
from pymongo.asynchronous.database import AsyncDatabase

from tests.console.support import CHROMIUM, DIST


@pytest.fixture
async def bootstrapped(settings: PlatformSettings, db: AsyncDatabase[Document]) -> None:
    """Topics and indexes exist before the services start."""
    await ensure_topics(settings, "tests")
    await ensure_indexes(db, SHARED_INDEXES)  # as callback-bootstrap does


@pytest.fixture
def browser_and_build() -> None:
    """The built console and Debian's Chromium are there (.ci/run installs both)."""
    assert (DIST / "index.html").is_file(), (
        "build the console first: cd services/admin-console && npm ci && npm run build"
    )
    assert Path(CHROMIUM).exists(), "install Debian's chromium (apt-get install -y chromium)"
