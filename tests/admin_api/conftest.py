"""One admin API per test session, in process (ASGI), on the real Kafka and MongoDB.

Tests keep apart by using services of their own (``service`` fixture), so they share the app,
its database and its topics.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import httpx
import pytest
from asgi_lifespan import LifespanManager
from callback_admin_api.context import AdminApi
from callback_admin_api.main import build
from callback_admin_api.settings import AdminApiSettings
from callback_dev.infra import Infrastructure
from callback_shared.mongo import Document, make_mongo_client
from callback_shared.runtime import ServiceRuntime
from pymongo.asynchronous.database import AsyncDatabase

from tests.admin_api.support import SECRET, Tokens
from tests.support import isolated_env


@pytest.fixture(scope="session")
def admin_env(infra: Infrastructure) -> dict[str, str]:
    return {**isolated_env(infra), "JWT_SECRET": SECRET}


@pytest.fixture(scope="session")
def admin_settings(admin_env: dict[str, str]) -> AdminApiSettings:
    return AdminApiSettings(**{k.lower(): v for k, v in admin_env.items()})  # type: ignore[arg-type]


@pytest.fixture(scope="session")
async def runtime(admin_settings: AdminApiSettings) -> AsyncIterator[ServiceRuntime]:
    runtime = ServiceRuntime("admin-api", admin_settings)
    build(runtime)
    async with LifespanManager(runtime.app, startup_timeout=60, shutdown_timeout=60):
        await asyncio.wait_for(runtime.connected.wait(), 90)
        yield runtime
    client = make_mongo_client(admin_settings)
    await client.drop_database(admin_settings.mongodb_database)
    await client.close()


@pytest.fixture
def api(runtime: ServiceRuntime) -> AdminApi:
    admin_api: AdminApi = runtime.app.state.admin_api
    return admin_api


@pytest.fixture
def mongo(runtime: ServiceRuntime) -> AsyncDatabase[Document]:
    return runtime.db


@pytest.fixture
async def client(runtime: ServiceRuntime) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=runtime.app)
    async with httpx.AsyncClient(transport=transport, base_url="http://admin-api") as client:
        yield client


@pytest.fixture
def tokens() -> Tokens:
    return Tokens()


@pytest.fixture
def service() -> str:
    """A service (virtual queue) of this test's own."""
    return f"svc-{uuid.uuid4().hex[:10]}"
