"""The routes of the page: its HTML at ``/``, its script and style sheet under ``/web/``, each with a
Content-Security-Policy that allows this origin only and no inline script or style."""

from __future__ import annotations

from functools import cache
from importlib import resources

from fastapi import APIRouter, Response

__all__ = ["ASSETS", "CSP", "WEB_PATHS", "router"]

#: the files served, by URL path: (file in this package's ``static`` folder, media type)
ASSETS = {
    "/": ("index.html", "text/html; charset=utf-8"),
    "/web/app.js": ("app.js", "text/javascript; charset=utf-8"),
    "/web/app.css": ("app.css", "text/css; charset=utf-8"),
    "/web/icon.svg": ("icon.svg", "image/svg+xml"),
}
#: the paths that need no key (the page signs in from the browser)
WEB_PATHS = frozenset(ASSETS)

CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self'; "
    "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    # no stale script after an upgrade of the package, and the page is small
    "Cache-Control": "no-cache",
}

router = APIRouter(include_in_schema=False)


@cache
def _read(name: str) -> bytes:
    return resources.files(__package__).joinpath("static", name).read_bytes()


def _serve(path: str) -> Response:
    name, media_type = ASSETS[path]
    return Response(_read(name), media_type=media_type, headers=_HEADERS)


@router.get("/")
async def page() -> Response:
    return _serve("/")


@router.get("/web/app.js")
async def script() -> Response:
    return _serve("/web/app.js")


@router.get("/web/app.css")
async def style() -> Response:
    return _serve("/web/app.css")


@router.get("/web/icon.svg")
async def icon() -> Response:
    return _serve("/web/icon.svg")
