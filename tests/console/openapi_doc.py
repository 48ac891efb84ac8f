"""The admin API's OpenAPI document as the console's typed client is generated from it.

``python -m tests.console.openapi_doc --write`` (npm run gen:api does it) writes
``services/admin-console/src/api/openapi.json``; ``test_api_client.py`` fails when that file
differs from what the current app publishes.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from callback_admin_api.main import build
from callback_admin_api.settings import AdminApiSettings
from callback_shared.runtime import ServiceRuntime

ROOT = Path(__file__).resolve().parents[2]
CONSOLE = ROOT / "services" / "admin-console"
OPENAPI_JSON = CONSOLE / "src" / "api" / "openapi.json"


def openapi_document() -> dict[str, Any]:
    """Built without connecting to anything; only the public ``/api/v1`` paths."""
    settings = AdminApiSettings(
        kafka_bootstrap_servers="127.0.0.1:9", mongodb_url="mongodb://127.0.0.1:9"
    )
    runtime = ServiceRuntime("admin-api", settings)
    build(runtime)
    schema = dict(runtime.app.openapi())
    schema["paths"] = {k: v for k, v in schema["paths"].items() if k.startswith("/api/v1/")}
    return schema


def render() -> str:
    return json.dumps(openapi_document(), indent=2, ensure_ascii=False) + "\n"


def main() -> None:
    if "--write" in sys.argv[1:]:
        OPENAPI_JSON.write_text(render(), encoding="utf-8")
        print(f"wrote {OPENAPI_JSON.relative_to(ROOT)}")
    else:
        sys.stdout.write(render())


if __name__ == "__main__":
    main()
