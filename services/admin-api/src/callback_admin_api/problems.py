"""Errors as ``application/problem+json`` (RFC 9457) documents that name the offending field."""

from __future__ import annotations

from collections.abc import Mapping
from http import HTTPStatus
from typing import Any

import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from pymongo.errors import ConnectionFailure
from starlette.exceptions import HTTPException as StarletteHTTPException

PROBLEM_JSON = "application/problem+json"

log = structlog.get_logger("admin-api")


class FieldError(BaseModel):
    field: str = Field(description="The offending field, e.g. customer_number or page_size.")
    location: str = Field(description="Where it was: body, query, path or header.")
    message: str


class Problem(BaseModel):
    """An error. Extension members (e.g. ``open_callback_ids``) may follow."""

    model_config = ConfigDict(extra="allow")

    type: str = "about:blank"
    title: str
    status: int
    detail: str | None = None
    errors: list[FieldError] | None = None


class ApiError(Exception):
    status = 500
    title = "Internal Server Error"

    def __init__(
        self,
        detail: str,
        *,
        errors: list[FieldError] | None = None,
        headers: dict[str, str] | None = None,
        **extensions: Any,
    ) -> None:
        super().__init__(detail)
        self.detail = detail
        self.errors = errors
        self.headers = headers
        self.extensions = extensions

    def problem(self) -> Problem:
        return Problem(
            title=self.title,
            status=self.status,
            detail=self.detail,
            errors=self.errors,
            **self.extensions,
        )


class Unauthorized(ApiError):
    status, title = 401, "Unauthorized"

    def __init__(self, detail: str) -> None:
        super().__init__(detail, headers={"WWW-Authenticate": 'Bearer error="invalid_token"'})


class Forbidden(ApiError):
    status, title = 403, "Forbidden"


class NotFound(ApiError):
    status, title = 404, "Not Found"


class Conflict(ApiError):
    status, title = 409, "Conflict"


class InvalidField(ApiError):
    """Well-formed input that breaks a rule of the service (422, naming the field)."""

    status, title = 422, "Unprocessable Content"

    def __init__(self, field: str, message: str, *, location: str = "body") -> None:
        super().__init__(
            f"{field}: {message}",
            errors=[FieldError(field=field, location=location, message=message)],
        )


class TooManyRequests(ApiError):
    status, title = 429, "Too Many Requests"

    def __init__(self, detail: str, retry_after_seconds: int) -> None:
        super().__init__(detail, headers={"Retry-After": str(max(1, retry_after_seconds))})


class ServiceUnavailable(ApiError):
    status, title = 503, "Service Unavailable"

    def __init__(self, detail: str) -> None:
        super().__init__(detail, headers={"Retry-After": "5"})


def problem_response(problem: Problem, headers: Mapping[str, str] | None = None) -> JSONResponse:
    return JSONResponse(
        problem.model_dump(mode="json", exclude_none=True),
        status_code=problem.status,
        media_type=PROBLEM_JSON,
        headers=headers,
    )


def _field_errors(exc: RequestValidationError) -> list[FieldError]:
    errors = []
    for error in exc.errors():
        location, *path = [str(part) for part in error.get("loc", ())] or ["body"]
        errors.append(
            FieldError(
                field=".".join(path) or location,
                location=location,
                message=str(error.get("msg", "invalid")),
            )
        )
    return errors


def install_problem_handlers(app: FastAPI) -> None:
    async def api_error(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, ApiError)
        return problem_response(exc.problem(), exc.headers)

    async def validation_error(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        errors = _field_errors(exc)
        malformed = any(error.get("type") == "json_invalid" for error in exc.errors())
        status, title = (400, "Bad Request") if malformed else (422, "Unprocessable Content")
        detail = "; ".join(f"{error.field}: {error.message}" for error in errors)
        return problem_response(Problem(title=title, status=status, detail=detail, errors=errors))

    async def http_error(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        return problem_response(
            Problem(title=_title(exc.status_code), status=exc.status_code, detail=exc.detail),
            exc.headers,
        )

    async def database_unreachable(_: Request, exc: Exception) -> JSONResponse:
        log.warning("MongoDB unreachable", error=repr(exc))
        error = ServiceUnavailable("the database is unreachable; try again shortly")
        return problem_response(error.problem(), error.headers)

    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("request failed", path=request.url.path, exc_info=exc)
        return problem_response(
            Problem(title="Internal Server Error", status=500, detail="unexpected error")
        )

    app.add_exception_handler(ApiError, api_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(ConnectionFailure, database_unreachable)
    app.add_exception_handler(Exception, unexpected)


def _title(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


def problem_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` entries for these error statuses (problem documents)."""
    descriptions = {
        400: "Malformed request",
        401: "Missing, invalid or expired token",
        403: "Role or service not granted",
        404: "No such record among the caller's services",
        409: "The record's state does not allow it",
        422: "Invalid input; the problem names the field",
        429: "Throttled",
    }
    return {
        status: {
            "description": descriptions[status],
            "content": {PROBLEM_JSON: {"schema": {"$ref": "#/components/schemas/Problem"}}},
        }
        for status in statuses
    }
