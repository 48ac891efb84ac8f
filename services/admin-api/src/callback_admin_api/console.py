"""The admin console (a static single-page app) served at ``/console/``, same origin as the API.

The built files come from ``ADMIN_CONSOLE_DIR``; without it, from the repository's
``services/admin-console/dist`` when it exists (``npm run build``), else ``/app/console`` (the
container image). A path that is not a file gets ``index.html`` (client routes); a missing build
gets a page saying how to build it. ``/console/config.json`` (no auth) tells the console how the
deployment signs users in: ``oidc`` (Authorization Code with PKCE at the issuer, as the console's
public client) when OIDC_ISSUER and OIDC_CLIENT_ID are set, else ``token`` (pasted development
tokens), and which claims of the issuer's tokens name the user, roles and services.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse, Response

from callback_admin_api.settings import AdminApiSettings

CONSOLE_PATH = "/console"
ENV_VAR = "ADMIN_CONSOLE_DIR"
REPO_DIST = Path(__file__).resolve().parents[3] / "admin-console" / "dist"
IMAGE_DIST = Path("/app/console")

NOT_BUILT = """<!doctype html><html lang="en"><head><meta charset="utf-8">
<title>Admin console not built</title></head><body style="font-family:sans-serif;margin:2rem">
<h1>The admin console was not built</h1>
<p>No built console in <code>{where}</code>. Build it with
<code>cd services/admin-console &amp;&amp; npm ci &amp;&amp; npm run build</code>, or point
<code>ADMIN_CONSOLE_DIR</code> at a build. The API itself is at <code>/api/v1</code>.</p>
</body></html>"""


def console_dir() -> Path:
    """Where the built console is looked for (read at each request: a build may come later)."""
    configured = os.environ.get(ENV_VAR, "").strip()
    if configured:
        return Path(configured)
    return REPO_DIST if REPO_DIST.is_dir() else IMAGE_DIST


def console_config(settings: AdminApiSettings) -> dict[str, Any]:
    """What the console needs to sign users in: public values only (no secret exists)."""
    config: dict[str, Any] = {"sign_in": "token", "api_base": "/api/v1"}
    if settings.oidc_issuer is None:
        return config
    config["issuer"] = settings.oidc_issuer
    config["claims"] = {
        "username": settings.oidc_username_claim,
        "roles": settings.oidc_roles_claim,
        "services": settings.oidc_services_claim,
    }
    if settings.oidc_client_id:
        config.update(sign_in="oidc", client_id=settings.oidc_client_id, scope=settings.oidc_scope)
        if settings.oidc_resource:
            config["resource"] = settings.oidc_resource
    return config


def _file(root: Path, relative: str) -> Path | None:
    """The file under ``root`` named by ``relative``, never outside it."""
    if not relative:
        return None
    candidate = (root / relative).resolve()
    if not candidate.is_relative_to(root.resolve()) or not candidate.is_file():
        return None
    return candidate


def install_console(app: FastAPI, settings: AdminApiSettings) -> None:
    """Add the console's routes (not in the OpenAPI document)."""
    sign_in = console_config(settings)

    @app.get(CONSOLE_PATH, include_in_schema=False)
    async def console_root() -> Response:
        return RedirectResponse(f"{CONSOLE_PATH}/")

    @app.get(f"{CONSOLE_PATH}/config.json", include_in_schema=False)
    async def config() -> dict[str, Any]:
        return sign_in

    @app.get(CONSOLE_PATH + "/{path:path}", include_in_schema=False)
    async def console_file(path: str) -> Response:
        root = console_dir()
        index = root / "index.html"
        if not index.is_file():
            return HTMLResponse(NOT_BUILT.format(where=root), status_code=404)
        found = _file(root, path)
        if found is not None:
            immutable = path.startswith("assets/")
            cache = "public, max-age=31536000, immutable" if immutable else "no-cache"
            return FileResponse(found, headers={"Cache-Control": cache})
        if path.startswith("assets/") or "." in path.rsplit("/", 1)[-1]:
            return HTMLResponse("<h1>Not found</h1>", status_code=404)
        # a client route (e.g. /console/tools/search): the app decides what to show
        return FileResponse(index, headers={"Cache-Control": "no-cache"})
