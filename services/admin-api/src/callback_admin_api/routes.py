"""The HTTP edge under ``/api/v1``: parse, authorise, call a command or query, shape the answer."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Literal
from uuid import UUID

from callback_shared.models import (
    CreateCallback,
    RequestDate,
    RescheduleCallback,
    ServiceConfig,
)
from fastapi import APIRouter, Body, Path, Query, Response, status
from fastapi.responses import JSONResponse

from callback_admin_api import bulk, commands, live, queries
from callback_admin_api.deps import Api, Configurer, Exporter, Operator, Reader
from callback_admin_api.problems import problem_responses
from callback_admin_api.report import CSV_MEDIA_TYPE, ReportEntry, report_csv
from callback_admin_api.views import (
    Availability,
    BulkCancelPreview,
    BulkCancelRequest,
    BulkCancelResult,
    CallbackPage,
    CallbackView,
    ListQuery,
    RecreateCallback,
    SearchResults,
    ServiceList,
    ServiceView,
)

API_PREFIX = "/api/v1"

CallbackId = Annotated[UUID, Path(description="The callback id (UUID).")]
ServiceName = Annotated[str, Path(min_length=1, max_length=200, description="Virtual queue.")]

callbacks = APIRouter(prefix="/callbacks", tags=["callbacks"])
search = APIRouter(tags=["search"])
services = APIRouter(prefix="/services", tags=["services"])
reports = APIRouter(prefix="/reports", tags=["reports"])


@callbacks.post(
    "",
    status_code=status.HTTP_201_CREATED,
    summary="Create an immediate or schedule a callback",
    responses=problem_responses(400, 401, 403, 409, 422, 429),
)
async def create_callback(
    api: Api, principal: Operator, command: CreateCallback, response: Response
) -> CallbackView:
    doc, config = await commands.create_callback(api, principal, command)
    response.headers["Location"] = f"{API_PREFIX}/callbacks/{doc['_id']}"
    return await queries.view(api, doc, config)


@callbacks.post(
    "/bulk-cancel/preview",
    summary="What a bulk cancel would cancel, and what it excludes with why",
    responses=problem_responses(400, 401, 403, 422),
)
async def preview_bulk_cancel(
    api: Api, principal: Operator, body: BulkCancelRequest
) -> BulkCancelPreview:
    return await bulk.preview(api, principal, body)


@callbacks.post(
    "/bulk-cancel",
    summary="Cancel chosen callbacks, or every open one of a range; a large range: a job (202)",
    responses={
        202: {"description": "A large range: cancelled by a job, see Location"},
        **problem_responses(400, 401, 403, 422),
    },
)
async def bulk_cancel(
    api: Api, principal: Operator, body: BulkCancelRequest, response: Response
) -> BulkCancelResult:
    result, as_job = await bulk.bulk_cancel(api, principal, body)
    if as_job:
        response.status_code = status.HTTP_202_ACCEPTED
        response.headers["Location"] = f"{API_PREFIX}/callbacks/bulk-cancel/{result.batch_id}"
    return result


@callbacks.get(
    "/bulk-cancel/{batch_id}",
    summary="Progress of a bulk cancel job (its actor only)",
    responses=problem_responses(401, 403, 404, 422),
)
async def get_bulk_cancel(
    api: Api,
    principal: Operator,
    batch_id: Annotated[UUID, Path(description="The batch_id a bulk cancel returned.")],
) -> BulkCancelResult:
    return await bulk.get_job(api, principal, batch_id)


@callbacks.get(
    "",
    summary="List callbacks: time range, states, services, search box; pages with a cursor",
    response_model=CallbackPage,
    responses=problem_responses(401, 403, 422),
)
async def list_callbacks(
    api: Api, principal: Reader, request: Annotated[ListQuery, Query()]
) -> Response:
    page = await queries.list_callbacks(api, principal, request)
    # already validated: serialised once, not validated again against the response model
    return Response(page.model_dump_json(), media_type="application/json")


@callbacks.get(
    "/{callback_id}",
    summary="One callback with its metrics; advanced=true adds the timeline and actors",
    responses=problem_responses(401, 403, 404, 422),
)
async def get_callback(
    api: Api,
    principal: Reader,
    callback_id: CallbackId,
    advanced: Annotated[bool, Query(description="Add the timeline with actors.")] = False,
) -> CallbackView:
    return await queries.get_callback(api, principal, callback_id, advanced=advanced)


@callbacks.post(
    "/{callback_id}/reschedule",
    summary="Reschedule a SCHEDULED callback to an open slot",
    responses=problem_responses(400, 401, 403, 404, 409, 422),
)
async def reschedule_callback(
    api: Api, principal: Operator, callback_id: CallbackId, command: RescheduleCallback
) -> CallbackView:
    doc, config = await commands.reschedule_callback(
        api, principal, callback_id, command.desired_time
    )
    return await queries.view(api, doc, config)


@callbacks.post(
    "/{callback_id}/cancel",
    summary="Cancel a callback unless PROCESSING or COMPLETED; one routing may hold: asked of "
    "routing (202)",
    responses={
        202: {
            "description": "Routing may hold the callback (due, QUEUED or ROUTING): the cancel "
            "was asked of routing and is pending (`cancel_pending`, `cancel_request`) until "
            "routing answers: COMPLETED(CANCELLED_BY_ADMIN) if nothing reached an agent, else "
            "the cancel is REFUSED and the callback goes on.",
            "model": CallbackView,
        },
        **problem_responses(401, 403, 404, 409, 422),
    },
)
async def cancel_callback(
    api: Api, principal: Operator, callback_id: CallbackId, response: Response
) -> CallbackView:
    doc, outcome = await commands.cancel_callback(api, principal, callback_id)
    if outcome is commands.CancelOutcome.REQUESTED:
        response.status_code = status.HTTP_202_ACCEPTED
    return await queries.view(api, doc)


@callbacks.post(
    "/{callback_id}/recreate",
    status_code=status.HTTP_201_CREATED,
    summary="Recreate a COMPLETED callback as a new linked record",
    responses=problem_responses(400, 401, 403, 404, 409, 422, 429),
)
async def recreate_callback(
    api: Api,
    principal: Operator,
    callback_id: CallbackId,
    response: Response,
    body: Annotated[RecreateCallback | None, Body()] = None,
) -> CallbackView:
    doc, config = await commands.recreate_callback(
        api, principal, callback_id, body or RecreateCallback()
    )
    response.headers["Location"] = f"{API_PREFIX}/callbacks/{doc['_id']}"
    return await queries.view(api, doc, config)


@search.get(
    "/search",
    summary="Callback Search: by callback id or customer number, over all retained records",
    responses=problem_responses(401, 403, 422),
)
async def search_callbacks(
    api: Api,
    principal: Reader,
    q: Annotated[str, Query(min_length=1, max_length=100, description="Callback id or number.")],
) -> SearchResults:
    return await queries.search_callbacks(api, principal, q)


@services.get(
    "", summary="The services granted to the caller", responses=problem_responses(401, 403)
)
async def list_services(api: Api, principal: Reader) -> ServiceList:
    return await queries.list_services(api, principal)


@services.get("/{name}", summary="A service's settings", responses=problem_responses(401, 403, 422))
async def get_service(api: Api, principal: Reader, name: ServiceName) -> ServiceView:
    return await queries.get_service(api, principal, name)


@services.put(
    "/{name}",
    summary="Store a service's settings (administrator)",
    responses=problem_responses(400, 401, 403, 422),
)
async def put_service(
    api: Api, principal: Configurer, name: ServiceName, settings: ServiceConfig
) -> ServiceView:
    saved = await commands.save_service(api, principal, name, settings)
    return ServiceView(settings=saved, stored=True)


@services.delete(
    "/{name}",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Remove a service's stored settings: the defaults apply again (administrator)",
    responses=problem_responses(401, 403, 404, 422),
)
async def delete_service(api: Api, principal: Configurer, name: ServiceName) -> None:
    await commands.delete_service(api, principal, name)


@services.get(
    "/{name}/availability",
    summary="Open slots of a local date with remaining capacity",
    responses=problem_responses(401, 403, 422),
)
async def get_availability(
    api: Api,
    principal: Reader,
    name: ServiceName,
    date_: Annotated[RequestDate, Query(alias="date", description="Local date of the service.")],
) -> Availability:
    return await queries.availability(api, principal, name, date_)


@reports.get(
    "/cancellations",
    summary="The caller's Cancellation Summary Report (recent cancellations); format=csv: a file",
    response_model=list[ReportEntry],
    responses={
        200: {"content": {CSV_MEDIA_TYPE: {}}, "description": "JSON, or the CSV file"},
        **problem_responses(401, 403, 404, 422),
    },
)
async def cancellation_report(
    api: Api,
    principal: Exporter,
    format_: Annotated[
        Literal["json", "csv"], Query(alias="format", description="csv: download the file.")
    ] = "json",
) -> Response:
    entries = await queries.cancellation_report(api, principal)
    if format_ == "json":
        return JSONResponse([entry.model_dump(mode="json") for entry in entries])
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    return Response(
        report_csv(entries),
        media_type=CSV_MEDIA_TYPE,
        headers={"Content-Disposition": f'attachment; filename="cancellation-summary-{stamp}.csv"'},
    )


#: live.router first: its /callbacks/events is not a callback id
ROUTERS = [live.router, callbacks, search, services, reports]
