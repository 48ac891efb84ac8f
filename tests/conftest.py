"""Real infrastructure for tests: Kafka + a MongoDB-protocol server (callback_dev.infra)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from callback_dev.infra import Infrastructure, provide
from callback_shared.mongo import Document, make_mongo_client
from callback_shared.settings import PlatformSettings
from pymongo.asynchronous.database import AsyncDatabase

from tests.support import isolated_env


@pytest.fixture(scope="session")
def infra(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Infrastructure]:
    provided = provide(Path(tmp_path_factory.mktemp("infra")))
    yield provided
    provided.close()


@pytest.fixture
def env(infra: Infrastructure) -> dict[str, str]:
    """Environment for one test: its own database and its own topics on the shared servers."""
    return isolated_env(infra)


@pytest.fixture
def settings(env: dict[str, str]) -> PlatformSettings:
    values: dict[str, Any] = {k.lower(): v for k, v in env.items()}
    return PlatformSettings(**values)


@pytest.fixture
async def db(settings: PlatformSettings) -> AsyncIterator[AsyncDatabase[Document]]:
    client = make_mongo_client(settings)
    yield client[settings.mongodb_database]
    await client.drop_database(settings.mongodb_database)
    await client.close()


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--unit",
        action="store_true",
        help="only the tests that need no real infrastructure (no Kafka, no MongoDB, no browser)",
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """``--unit`` (``make test-unit``): keep the tests of pure cores and single handlers, the
    ones that use no ``infra`` fixture (directly or through another fixture), are not e2e and
    start no process (marker ``process``)."""
    if not config.getoption("--unit"):
        return
    kept: list[pytest.Item] = []
    left: list[pytest.Item] = []
    for item in items:
        needs_infra = "infra" in getattr(item, "fixturenames", ())
        apart = item.get_closest_marker("e2e") or item.get_closest_marker("process")
        (left if needs_infra or apart else kept).append(item)
    config.hook.pytest_deselected(items=left)
    items[:] = kept
