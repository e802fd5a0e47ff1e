"""HTTP response shaping shared by the function modules: JSON, problem+json, HTML, redirects."""

from __future__ import annotations

import html
import json
import logging
from collections.abc import Callable
from typing import Any

import azure.functions as func

from shared import edge
from shared.auth import Caller
from shared.edge import Body, Inbound
from shared.problems import ConnectorError, FieldError, ValidationFailed
from shared.services import Services, get_services

log = logging.getLogger(__name__)

_SECURITY_HEADERS = {"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"}


def flag(inbound: Inbound, name: str) -> bool:
    """A `true`/`false` query parameter; anything else is a validation failure, not a silent false."""
    value = inbound.params.get(name)
    if value is None or value == "false":
        return False
    if value == "true":
        return True
    raise ValidationFailed([FieldError(name, "must be 'true' or 'false'")])


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> func.HttpResponse:
    return func.HttpResponse(
        json.dumps(body),
        status_code=status,
        headers={**_SECURITY_HEADERS, "Content-Type": "application/json", **(headers or {})},
    )


def problem_response(error: ConnectorError, instance: str | None = None) -> func.HttpResponse:
    return func.HttpResponse(error.body(instance), status_code=error.status, headers=error.headers())


def redirect(location: str, headers: dict[str, str] | None = None) -> func.HttpResponse:
    return func.HttpResponse(status_code=302, headers={**_SECURITY_HEADERS, "Location": location, **(headers or {})})


def no_content() -> func.HttpResponse:
    return func.HttpResponse(status_code=204, headers=dict(_SECURITY_HEADERS))


PORTAL_PATH = "/api/portal"  # the security center page, on the app's own host (PORTAL_URL in Azure)
_PAGE_STYLE = (
    "body{font-family:system-ui,sans-serif;max-width:40em;margin:3em auto;padding:0 1em;line-height:1.5;"
    "overflow-wrap:anywhere}"
    ".button{display:inline-block;padding:.45rem .9rem;border-radius:6px;background:#0b5cad;color:#fff;"
    "text-decoration:none}.button:focus-visible{outline:3px solid #ffbf47;outline-offset:2px}"
)


def html_page(
    title: str,
    paragraphs: list[str],
    status: int = 200,
    headers: dict[str, str] | None = None,
    *,
    back: tuple[str, str] | None = None,
) -> func.HttpResponse:
    """A minimal page; every piece of text is escaped, including what ServiceNow sent back. `back` is a link
    (path, text) the page offers as its way on: always one of the app's own paths, never a parameter."""
    body = "".join(f"<p>{html.escape(p)}</p>" for p in paragraphs if p)
    if back is not None:
        body += f'<p><a class="button" id="back" href="{html.escape(back[0])}">{html.escape(back[1])}</a></p>'
    page = (
        "<!doctype html><html lang=en><head><meta charset=utf-8>"
        '<meta name="viewport" content="width=device-width, initial-scale=1"><link rel="icon" href="data:,">'
        f"<title>{html.escape(title)}</title><style>{_PAGE_STYLE}</style>"
        f"</head><body><main><h1>{html.escape(title)}</h1>{body}</main></body></html>"
    )
    return func.HttpResponse(
        page,
        status_code=status,
        headers={
            **_SECURITY_HEADERS,
            "Content-Type": "text/html; charset=utf-8",
            # Never framed: a page that reports a connection must not be overlaid by another site (clickjacking).
            "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; img-src data:; "
            "frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
            "X-Frame-Options": "DENY",
            **(headers or {}),
        },
    )


Action = Callable[[Services, Caller, Inbound], func.HttpResponse]
ANONYMOUS = Caller("anonymous")  # the OAuth callback and the push endpoint: protected by state and HMAC


def handle(
    req: func.HttpRequest,
    action: Action,
    *,
    authenticate: bool = True,
    role: str | None = None,
    body: Body | None = None,
    on_error: Callable[[ConnectorError], func.HttpResponse] | None = None,
    multi_line: frozenset[str] = frozenset(),
) -> func.HttpResponse:
    """Run a function body: the edge's checks (docs/design.md#robustness), the caller and the app `role` it needs
    (the two anonymous routes, which ServiceNow's redirect and its business rule call, pass
    `authenticate=False`), then `action`. A `ConnectorError` becomes its problem (or
    `on_error`'s page); anything else is logged by type only (messages may quote a request) and answered as a
    generic 500 problem, which no input should ever reach."""
    path = edge.request_path(req.url)
    try:
        services = get_services()
        params = dict(req.params)
        headers = dict(req.headers)
        edge.check_request(method=req.method, params=params, headers=headers,
                           own_origins=services.settings.app_origins, multi_line=multi_line)  # fmt: skip
        caller = services.caller(headers) if authenticate else ANONYMOUS
        if role is not None:
            caller.require(role)
        raw = req.get_body() or b""
        parsed = edge.read_body(req.method, headers, raw, body)
        inbound = Inbound(req.method.upper(), path, params, headers, raw, parsed)
        return action(services, caller, inbound)
    except ConnectorError as exc:
        log.info("%s %s -> %s (%s)", req.method, path, exc.status, exc.code)
        return on_error(exc) if on_error else problem_response(exc, path)
    except Exception as exc:
        log.error("%s %s failed unexpectedly: %s", req.method, path, type(exc).__name__)
        error = ConnectorError("The connector failed unexpectedly; its log names the error.")
        return on_error(error) if on_error else problem_response(error, path)
