"""Serving the portal's files: read once on first use (never at import), from an allow-list of names, under
a strict Content-Security-Policy (no inline script or style, nothing from elsewhere; `script-src 'self'` admits
the page's ES modules, served as text/javascript as module scripts require)."""

from __future__ import annotations

import functools
from pathlib import Path

import azure.functions as func

from shared.problems import NotFound

STATIC = Path(__file__).resolve().parent.parent / "portal" / "static"
# The page's ES modules (docs/portal.md#how-the-page-is-built): app.js is the entry, the others are what it imports.
MODULES = (
    "app.js", "view.js", "actions.js", "trend.js", "tickets.js", "ticket-dialog.js", "tenants.js", "connections.js",
    "routes.js", "route-draft.js", "route-words.js", "route-editor.js", "route-preview.js", "refreshing.js",
    "templates.js", "template-form.js", "template-run.js", "alerts.js", "alerts-form.js", "review.js",
    "review-charts.js",
    "api.js", "dom.js", "problems.js", "roles.js", "scope.js", "words.js",
)  # fmt: skip
FILES = {**dict.fromkeys(MODULES, "text/javascript; charset=utf-8"), "app.css": "text/css; charset=utf-8"}
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "font-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": CSP,
}


@functools.cache
def _read(name: str) -> bytes:
    return (STATIC / name).read_bytes()


def page_response() -> func.HttpResponse:
    return func.HttpResponse(
        _read("index.html"),
        status_code=200,
        headers={**_HEADERS, "Content-Type": "text/html; charset=utf-8", "Cache-Control": "no-cache"},
    )


def static_response(name: str) -> func.HttpResponse:
    if name not in FILES:
        raise NotFound("There is no such file of the portal.")
    return func.HttpResponse(
        _read(name), status_code=200, headers={**_HEADERS, "Content-Type": FILES[name], "Cache-Control": "no-cache"}
    )
