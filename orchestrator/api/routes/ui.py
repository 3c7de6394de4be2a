"""The dashboard: one static page and a small script under /ui (no build step, no data of its own).

The page holds no data and no secrets; it calls the token-protected API with the token the user
types in. It is served with a strict Content-Security-Policy (scripts and connections to this origin
only), and the script renders every model-written string as text, never as HTML.
"""

from __future__ import annotations

from pathlib import Path

from fastapi.staticfiles import StaticFiles
from starlette.responses import RedirectResponse, Response
from starlette.types import Scope

STATIC_DIR = Path(__file__).resolve().parent.parent / "static"
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' blob: data:; connect-src 'self'; "
       "base-uri 'none'; form-action 'none'; frame-ancestors 'none'")


class DashboardFiles(StaticFiles):
    async def get_response(self, path: str, scope: Scope) -> Response:
        response = await super().get_response(path, scope)
        response.headers["Content-Security-Policy"] = CSP
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Referrer-Policy"] = "no-referrer"
        return response


def dashboard() -> DashboardFiles:
    return DashboardFiles(directory=STATIC_DIR, html=True)


def home_redirect() -> RedirectResponse:
    return RedirectResponse("/ui/")
