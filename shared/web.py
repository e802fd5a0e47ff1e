"""HTTP response shaping shared by the function modules: JSON, problem+json, HTML, redirects."""

from __future__ import annotations

import html
import json
import logging
from collections.abc import Callable
from typing import Any

import azure.functions as func

from shared.auth import FUNCTION_KEY_CALLER, Caller
from shared.problems import ConnectorError, FieldError, ValidationFailed
from shared.services import Services, get_services

log = logging.getLogger(__name__)

_SECURITY_HEADERS = {"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"}


def flag(req: func.HttpRequest, name: str) -> bool:
    """A `true`/`false` query parameter; anything else is a validation failure, not a silent false."""
    value = req.params.get(name)
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


def redirect(location: str) -> func.HttpResponse:
    return func.HttpResponse(status_code=302, headers={**_SECURITY_HEADERS, "Location": location})


def no_content() -> func.HttpResponse:
    return func.HttpResponse(status_code=204, headers=dict(_SECURITY_HEADERS))


def html_page(title: str, paragraphs: list[str], status: int = 200) -> func.HttpResponse:
    """A minimal page; every piece of text is escaped, including what ServiceNow sent back."""
    body = "".join(f"<p>{html.escape(p)}</p>" for p in paragraphs if p)
    page = (
        "<!doctype html><html lang=en><head><meta charset=utf-8>"
        f"<title>{html.escape(title)}</title>"
        "<style>body{font-family:system-ui,sans-serif;max-width:40em;margin:3em auto;line-height:1.5}</style>"
        f"</head><body><h1>{html.escape(title)}</h1>{body}</body></html>"
    )
    return func.HttpResponse(
        page,
        status_code=status,
        headers={
            **_SECURITY_HEADERS,
            "Content-Type": "text/html; charset=utf-8",
            "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'",
        },
    )


Action = Callable[[Services, Caller], func.HttpResponse]


def handle(req: func.HttpRequest, action: Action, *, authenticate: bool = True) -> func.HttpResponse:
    """Run a function body with the app's services and the caller (Entra ID when configured; routes that
    ServiceNow or a browser call pass `authenticate=False`). A `ConnectorError` becomes its problem; anything
    else is logged (type only: messages may quote a request) and answered as a generic 500 problem."""
    path = req.url.split("?", 1)[0]
    try:
        services = get_services()
        caller = services.caller(req.headers) if authenticate else FUNCTION_KEY_CALLER
        return action(services, caller)
    except ConnectorError as exc:
        log.info("%s %s -> %s (%s)", req.method, path, exc.status, exc.code)
        return problem_response(exc, path)
    except Exception as exc:
        log.error("%s %s failed unexpectedly: %s", req.method, path, type(exc).__name__)
        return problem_response(ConnectorError("The connector failed unexpectedly; its log names the error."), path)
