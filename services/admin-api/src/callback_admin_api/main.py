"""Entry point of the admin-api service: the HTTP API of PRODUCT.md under ``/api/v1``."""

from __future__ import annotations

from typing import Any

from callback_shared.mongo import CALLBACKS
from callback_shared.outbox import OutboxRelay
from callback_shared.runtime import ServiceRuntime, run_service
from callback_shared.settings import load_settings
from fastapi.openapi.utils import get_openapi

from callback_admin_api.auth import TokenVerifier
from callback_admin_api.bulk import JOBS_RELAYED_AT_ONCE, job_outbox_relay, reap_loop
from callback_admin_api.collections import ADMIN_INDEXES
from callback_admin_api.console import install_console
from callback_admin_api.context import AdminApi
from callback_admin_api.limits import BodyLimit
from callback_admin_api.live import LifecycleFeed, document_stream
from callback_admin_api.problems import PROBLEM_JSON, Problem, install_problem_handlers
from callback_admin_api.repository import Repository
from callback_admin_api.routes import API_PREFIX, ROUTERS
from callback_admin_api.settings import AdminApiSettings

SERVICE = "admin-api"
DESCRIPTION = """Commands and queries of the Callback Administrator's Guide.

Every request carries `Authorization: Bearer <JWT>` with the claims `sub` (username), `roles`
(`callback_monitor`, `callback_supervisor`, `callback_administrator`) and `services` (granted
virtual queues, `*` for all). Errors are `application/problem+json` documents naming the field.
"""


def build(runtime: ServiceRuntime) -> None:
    """Wire the API, its collaborators and the outbox relay onto the runtime."""
    settings = runtime.settings
    if not isinstance(settings, AdminApiSettings):
        settings = AdminApiSettings.model_validate(settings.model_dump())
    runtime.create_indexes(ADMIN_INDEXES)
    repository = Repository(runtime.db)
    api = AdminApi(
        settings=settings,
        repository=repository,
        relay=OutboxRelay(runtime.db[CALLBACKS], runtime.broker),
        job_relay=job_outbox_relay(repository, runtime.broker),
        verifier=TokenVerifier(settings),
        spawn=runtime.spawn,
    )
    if not api.verifier.configured:
        runtime.log.warning(
            "none of JWT_SECRET, JWT_PUBLIC_KEY, OIDC_ISSUER is set: every API call is 401"
        )
    if settings.oidc_issuer is not None:
        runtime.log.info(
            "tokens of the OIDC issuer are verified with its published keys",
            issuer=settings.oidc_issuer,
            console_sign_in="oidc" if settings.oidc_client_id else "token",
        )
    app = runtime.app
    app.state.admin_api = api
    app.state.runtime = runtime
    feed = LifecycleFeed(settings, api.repository, api.clock, runtime.spawn)
    app.state.live_feed = feed
    install_problem_handlers(app)
    app.add_middleware(BodyLimit, max_bytes=settings.admin_max_body_bytes)
    for router in ROUTERS:
        app.include_router(router, prefix=API_PREFIX)
    app.openapi = lambda: _openapi(runtime)  # type: ignore[method-assign]
    install_console(app, settings)  # the admin console at /console/ (not in the schema)

    @runtime.on_ready
    async def start_outbox_relay(runtime: ServiceRuntime) -> None:
        runtime.spawn(api.relay.run(), "outbox-relay")
        runtime.spawn(api.job_relay.run(limit=JOBS_RELAYED_AT_ONCE), "bulk-cancel-relay")
        runtime.spawn(reap_loop(api), "bulk-cancel-reaper")
        runtime.spawn(end_live_updates_on_stop(), "live-updates-stop")

    async def end_live_updates_on_stop() -> None:
        """Live update streams end as the service begins to stop (uvicorn waits for open
        responses before the app's shutdown)."""
        await runtime.stopping.wait()
        await feed.close()


def _openapi(runtime: ServiceRuntime) -> dict[str, Any]:
    """The published schema: error responses are problem documents."""
    app = runtime.app
    if app.openapi_schema is None:
        schema = get_openapi(
            title="Callback admin API",
            version="1.0.0",
            description=DESCRIPTION,
            routes=app.routes,
        )
        problem = Problem.model_json_schema(ref_template="#/components/schemas/{model}")
        components = schema.setdefault("components", {}).setdefault("schemas", {})
        components.update(problem.pop("$defs", {}))
        components["Problem"] = problem
        for path in schema["paths"].values():
            for operation in path.values():
                for code, response in operation.get("responses", {}).items():
                    content = response.get("content", {})
                    if code.startswith("4") and "application/json" in content:
                        content[PROBLEM_JSON] = content.pop("application/json")
        document_stream(schema, f"{API_PREFIX}/callbacks/events")
        app.openapi_schema = schema
    return app.openapi_schema


def main() -> None:
    run_service(SERVICE, load_settings(AdminApiSettings), build)
