"""FastAPI dependencies: the shared collaborators and the authenticated caller with a role."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from callback_admin_api.auth import InvalidToken, IssuerUnavailable, Permission, Principal
from callback_admin_api.context import AdminApi
from callback_admin_api.problems import Forbidden, ServiceUnavailable, Unauthorized

bearer = HTTPBearer(auto_error=False, description="A JWT with sub, roles and services claims.")


async def get_api(request: Request) -> AdminApi:
    # async, as every dependency here: FastAPI runs a plain ``def`` dependency in a worker thread,
    # two thread hops per request for an attribute read
    if not request.app.state.runtime.connected.is_set():
        raise ServiceUnavailable("starting: MongoDB and Kafka are not connected yet")
    api: AdminApi = request.app.state.admin_api
    return api


Api = Annotated[AdminApi, Depends(get_api)]


async def current_principal(
    api: Api, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]
) -> Principal:
    if credentials is None:
        raise Unauthorized("an Authorization: Bearer <token> header is required")
    try:
        return await api.verifier.verify_async(credentials.credentials)
    except InvalidToken as exc:
        raise Unauthorized(str(exc)) from None
    except IssuerUnavailable as exc:
        raise ServiceUnavailable(f"tokens cannot be verified now: {exc}") from None


def permitted(permission: Permission) -> Callable[[Principal], Awaitable[Principal]]:
    """A dependency returning the caller if one of their roles allows ``permission``."""

    async def check(principal: Annotated[Principal, Depends(current_principal)]) -> Principal:
        if not principal.can(permission):
            raise Forbidden(f"your roles do not allow this ({permission.value})")
        return principal

    return check


Reader = Annotated[Principal, Depends(permitted(Permission.READ))]
Operator = Annotated[Principal, Depends(permitted(Permission.OPERATE))]
Configurer = Annotated[Principal, Depends(permitted(Permission.CONFIGURE))]
Exporter = Annotated[Principal, Depends(permitted(Permission.EXPORT))]
