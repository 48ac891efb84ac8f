"""admin-api serves the built console at /console/ (files, client routes, a missing build)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from callback_admin_api.main import build
from callback_admin_api.settings import AdminApiSettings
from callback_shared.runtime import ServiceRuntime


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    settings = AdminApiSettings(
        kafka_bootstrap_servers="127.0.0.1:9", mongodb_url="mongodb://127.0.0.1:9"
    )
    runtime = ServiceRuntime("admin-api", settings)
    build(runtime)
    transport = httpx.ASGITransport(app=runtime.app)
    async with httpx.AsyncClient(transport=transport, base_url="http://admin-api") as client:
        yield client


@pytest.fixture
def dist(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    (tmp_path / "assets").mkdir()
    (tmp_path / "index.html").write_text("<!doctype html><title>console</title>")
    (tmp_path / "assets" / "index-abc.js").write_text("console.log(1)")
    (tmp_path.parent / "secret.txt").write_text("no")
    monkeypatch.setenv("ADMIN_CONSOLE_DIR", str(tmp_path))
    return tmp_path


async def test_serves_the_built_files_and_index_for_client_routes(
    client: httpx.AsyncClient, dist: Path
) -> None:
    assert (await client.get("/console")).headers["location"] == "/console/"
    index = await client.get("/console/")
    assert index.status_code == 200 and "<title>console</title>" in index.text
    asset = await client.get("/console/assets/index-abc.js")
    assert asset.status_code == 200 and "immutable" in asset.headers["cache-control"]
    route = await client.get("/console/tools/search")
    assert route.status_code == 200 and "<title>console</title>" in route.text
    assert (await client.get("/console/assets/missing.js")).status_code == 404
    assert (await client.get("/console/..%2Fsecret.txt")).status_code in (200, 404)
    assert "no" != (await client.get("/console/..%2Fsecret.txt")).text


async def test_config_needs_no_token(client: httpx.AsyncClient, dist: Path) -> None:
    answer = await client.get("/console/config.json")
    assert answer.status_code == 200
    assert answer.json()["sign_in"] == "token"


async def test_a_missing_build_says_how_to_build_it(
    client: httpx.AsyncClient, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ADMIN_CONSOLE_DIR", str(tmp_path / "nothing"))
    answer = await client.get("/console/")
    assert answer.status_code == 404
    assert "npm run build" in answer.text


async def test_the_console_is_not_in_the_openapi_document(client: httpx.AsyncClient) -> None:
    paths = (await client.get("/openapi.json")).json()["paths"]
    assert not any(path.startswith("/console") for path in paths)
