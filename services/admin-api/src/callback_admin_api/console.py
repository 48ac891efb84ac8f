"""The admin console (a static single-page app) served at ``/console/``, same origin as the API.

The built files come from ``ADMIN_CONSOLE_DIR``; without it, from the repository's
``services/admin-console/dist`` when it exists (``npm run build``), else ``/app/console`` (the
container image). A path that is not a file gets ``index.html`` (client routes); a missing build
gets a page saying how to build it. ``/console/config.json`` (no auth) tells the console how the
deployment signs users in: ``token`` (pasted development tokens) until OIDC comes.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse, Response

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


def console_config() -> dict[str, Any]:
    return {"sign_in": "token", "api_base": "/api/v1"}


def _file(root: Path, relative: str) -> Path | None:
    """The file under ``root`` named by ``relative``, never outside it."""
    if not relative:
        return None
    candidate = (root / relative).resolve()
    if not candidate.is_relative_to(root.resolve()) or not candidate.is_file():
        return None
    return candidate


def install_console(app: FastAPI) -> None:
    """Add the console's routes (not in the OpenAPI document)."""

    @app.get(CONSOLE_PATH, include_in_schema=False)
    async def console_root() -> Response:
        return RedirectResponse(f"{CONSOLE_PATH}/")

    @app.get(f"{CONSOLE_PATH}/config.json", include_in_schema=False)
    async def config() -> dict[str, Any]:
        return console_config()

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
