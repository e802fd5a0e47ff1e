"""How Microsoft Entra ID says no: the token endpoint's JSON error body and the sign-in pages' error page.

The JSON shape is the one learn `entra/identity-platform/reference-error-codes` documents ("Handling error codes in
your application": `error`, `error_description` starting `AADSTS{code}: ` and ending with the trace and correlation
ids and a timestamp, `error_codes`, `timestamp`, `trace_id`, `correlation_id`, `error_uri`). The status follows
RFC 6749 section 5.2: 401 for `invalid_client` (as Entra answers it, microsoft/Agents#202), 400 otherwise.
"""

from __future__ import annotations

import html
import uuid
from datetime import UTC, datetime

from dev.wire import SimResponse, pages


def _stamp(now: float) -> str:
    return datetime.fromtimestamp(now, UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def description(code: int, text: str, now: float, trace: str = "", correlation: str = "") -> str:
    """`AADSTS{code}: {text}` with the trace lines Entra appends (CRLF-separated, as it sends them)."""
    return (f"AADSTS{code}: {text}\r\nTrace ID: {trace or uuid.uuid4()}\r\nCorrelation ID: "
            f"{correlation or uuid.uuid4()}\r\nTimestamp: {_stamp(now)}")  # fmt: skip


def token_error(error: str, code: int, text: str, now: float, base_url: str) -> SimResponse:
    trace, correlation = str(uuid.uuid4()), str(uuid.uuid4())
    body = {
        "error": error,
        "error_description": description(code, text, now, trace, correlation),
        "error_codes": [code],
        "timestamp": _stamp(now),
        "trace_id": trace,
        "correlation_id": correlation,
        "error_uri": f"{base_url}/error?code={code}",
    }
    return SimResponse.json(401 if error == "invalid_client" else 400, body, {"Cache-Control": "no-store"})


def error_page(code: int, text: str, now: float) -> SimResponse:
    """What the browser shows when Entra cannot send it back to the app (an unknown tenant or app, a redirect URI
    that is not registered): the message and no redirect."""
    body = (
        f"<!doctype html><html lang=en>{pages.head('Sign in to your account')}<body><main>"
        "<h1>Sorry, but we're having trouble signing you in.</h1>"
        f'<p id="error">{html.escape(description(code, text, now)).replace(chr(13) + chr(10), "<br>")}</p>'
        "</main></body></html>"
    )
    return SimResponse(400, {"Content-Type": "text/html; charset=utf-8"}, body.encode())
