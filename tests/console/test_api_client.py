"""The console's committed OpenAPI document is what admin-api publishes now (the console's
vitest suite checks that ``schema.d.ts`` is what openapi-typescript makes of it)."""

from __future__ import annotations

from tests.console.openapi_doc import OPENAPI_JSON, render


def test_committed_openapi_document_is_current() -> None:
    assert OPENAPI_JSON.read_text(encoding="utf-8") == render(), (
        "services/admin-console/src/api/openapi.json is stale: run "
        "`cd services/admin-console && npm run gen:api` and commit the result"
    )


def test_the_console_uses_only_api_v1() -> None:
    import json

    paths = json.loads(OPENAPI_JSON.read_text(encoding="utf-8"))["paths"]
    assert paths and all(path.startswith("/api/v1/") for path in paths)
