"""Property-based run of schemathesis against the published OpenAPI of the real process:
no 5xx, and every response (status, media type, headers, body) matches the schema.

Generation is wide: valid and invalid inputs (schemathesis's positive and negative modes, NUL
bytes allowed), and every ``date-time`` and ``date`` anywhere in years 1 to 9999 with any UTC
offset (the strategies of the property tests), where the default formats stay near today."""

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import schemathesis
from callback_admin_api.main import build
from callback_admin_api.settings import AdminApiSettings
from callback_dev.infra import Infrastructure
from callback_shared.runtime import ServiceRuntime
from hypothesis import HealthCheck, settings
from schemathesis import Case, GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.admin_api.strategies import DATES, TIMES
from tests.admin_api.support import SECRET, Tokens
from tests.support import ServiceProcess, isolated_env, start_service

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]
AUTH = Tokens().administrator(sub="schemathesis")

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def admin_process(
    infra: Infrastructure, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServiceProcess]:
    env = {**isolated_env(infra), "JWT_SECRET": SECRET}
    process = start_service("admin-api", env, tmp_path_factory.mktemp("schemathesis"))
    try:
        process.wait_ready()
        yield process
    finally:
        code = process.terminate()
        assert code == 0, process.output()


def published_schema() -> dict[str, Any]:
    """The schema the service publishes, built without connecting to anything (the test below
    checks that the process publishes the same)."""
    settings = AdminApiSettings(
        kafka_bootstrap_servers="127.0.0.1:9", mongodb_url="mongodb://127.0.0.1:9"
    )
    runtime = ServiceRuntime("admin-api", settings)
    build(runtime)
    return runtime.app.openapi()


schemathesis.openapi.format("date-time", TIMES.map(lambda at: at.isoformat()))
schemathesis.openapi.format("date", DATES.map(lambda day: day.isoformat()))
PUBLISHED = published_schema()
#: the live updates stream never ends by itself: tests/admin_api/test_live_events.py covers it
LIVE_EVENTS = "/api/v1/callbacks/events"
schema = schemathesis.openapi.from_dict(PUBLISHED).exclude(path=LIVE_EVENTS)
schema.config.generation.update(
    modes=[GenerationMode.POSITIVE, GenerationMode.NEGATIVE], allow_x00=True
)


def test_the_schema_is_published_with_every_operation(admin_process: ServiceProcess) -> None:
    published = httpx.get(f"{admin_process.url}/openapi.json").json()
    assert published == PUBLISHED
    operations = {
        (method.upper(), path) for path, item in published["paths"].items() for method in item
    }
    assert operations == {
        ("POST", "/api/v1/callbacks"),
        ("GET", "/api/v1/callbacks"),
        ("GET", LIVE_EVENTS),
        ("GET", "/api/v1/callbacks/{callback_id}"),
        ("POST", "/api/v1/callbacks/{callback_id}/reschedule"),
        ("POST", "/api/v1/callbacks/{callback_id}/cancel"),
        ("POST", "/api/v1/callbacks/{callback_id}/recreate"),
        ("POST", "/api/v1/callbacks/bulk-cancel/preview"),
        ("POST", "/api/v1/callbacks/bulk-cancel"),
        ("GET", "/api/v1/callbacks/bulk-cancel/{batch_id}"),
        ("GET", "/api/v1/reports/cancellations"),
        ("GET", "/api/v1/search"),
        ("GET", "/api/v1/services"),
        ("GET", "/api/v1/services/{name}"),
        ("PUT", "/api/v1/services/{name}"),
        ("DELETE", "/api/v1/services/{name}"),
        ("GET", "/api/v1/services/{name}/availability"),
    }
    assert "bearer" in str(published["components"]["securitySchemes"]).lower()


@schema.parametrize()
@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
def test_every_operation_conforms_to_the_schema(
    case: Case[Any], admin_process: ServiceProcess
) -> None:
    case.call_and_validate(base_url=admin_process.url, headers=AUTH, checks=CHECKS)
