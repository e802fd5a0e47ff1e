"""The edge: every request's input is checked here, once, before route logic sees it (docs/design.md#robustness).

- The problem `instance` is the request path; `Host` and `X-Forwarded-*` are never echoed.
- Query values are valid one-line text of bounded length.
- A request body is JSON or nothing: another media type is `415 unsupported_media_type`; the bytes are
  strict UTF-8; nesting deeper than `MAX_DEPTH` is refused by a linear scan *before* the parser runs, so no
  input reaches a recursion limit; every string (keys too) is free of lone surrogates and NUL; NaN and
  Infinity are not JSON; an integer too long to convert is refused, not raised.
- Unsafe methods refuse a cross-site `Origin` (browser sessions are cookies: docs/design.md#portal-and-sign-in).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from shared.problems import FieldError, Forbidden, UnsupportedMediaType, ValidationFailed
from shared.text import multi_line_ok, never_acceptable, one_line_ok, printable

MAX_DEPTH = 32
MAX_PARAM = 2048
MAX_PATH_SHOWN = 200
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
_STRUCTURE = re.compile(r'[\[\]{}"\\]')


@dataclass(frozen=True)
class Body:
    """What a route accepts as a body: JSON of at most `max_bytes`, `required` or optional."""

    max_bytes: int
    required: bool = True


@dataclass(frozen=True)
class Inbound:
    """A request after the edge's checks; `json` is the parsed body (None when there is none)."""

    method: str
    path: str
    params: Mapping[str, str]
    headers: Mapping[str, str]
    raw: bytes
    json: Any = None

    def header(self, name: str) -> str | None:
        return header(self.headers, name)


def header(headers: Mapping[str, str], name: str) -> str | None:
    """A header by case-insensitive name (the Functions host and the local host differ in case)."""
    value = headers.get(name)
    if value is None:
        lowered = name.lower()
        value = next((v for k, v in headers.items() if k.lower() == lowered), None)
    return value


def request_path(url: str) -> str:
    """The path only, printable and bounded: what a problem names as its `instance` and logs show."""
    try:
        path = urlsplit(url).path or "/"
    except ValueError:
        path = "/"
    return printable(path, MAX_PATH_SHOWN)


def check_request(
    *,
    method: str,
    params: Mapping[str, str],
    headers: Mapping[str, str],
    own_origins: tuple[str, ...],
    multi_line: frozenset[str] = frozenset(),
) -> None:
    """Query values and, for unsafe methods, the `Origin`: checked before the caller is authenticated. Values are one
    line, except those a route names in `multi_line` (Entra ID's `error_description` ends with its trace lines)."""
    bad = [
        FieldError(printable(name, 64), f"must be one line of at most {MAX_PARAM} characters")
        for name, value in params.items()
        if len(value) > MAX_PARAM
        or len(name) > 100
        or not one_line_ok(name)
        or not (multi_line_ok(value) if name in multi_line else one_line_ok(value))
    ]
    if bad:
        raise ValidationFailed(bad[:10])
    if method.upper() not in SAFE_METHODS:
        _refuse_cross_site(header(headers, "Origin"), own_origins)


def read_body(method: str, headers: Mapping[str, str], raw: bytes, body: Body | None) -> Any:
    """The parsed JSON body of an unsafe method (None for safe methods, which take none). A route that
    declares no body still refuses a non-JSON one, so no state-changing route takes a form post."""
    if method.upper() in SAFE_METHODS:
        return None
    if body is None:
        if not raw:
            return None
        body = Body(4096, required=False)
    return parse_json_body(raw, header(headers, "Content-Type"), body)


def _refuse_cross_site(origin: str | None, own_origins: tuple[str, ...]) -> None:
    if origin is None:
        return  # not a browser, or a same-origin request from an old one: function keys and tokens still apply
    if origin.strip().rstrip("/").lower() not in own_origins:
        raise Forbidden(
            "Cross-site requests are refused: the Origin header is not this app's own.",
            remediation="Call the API from the connector's own pages or from a client that sends no Origin header.",
        )


def _media_type(content_type: str | None) -> tuple[str, dict[str, str]]:
    kind, _, rest = (content_type or "").partition(";")
    params = {}
    for part in rest.split(";"):
        name, _, value = part.partition("=")
        if name.strip():
            params[name.strip().lower()] = value.strip().strip('"').lower()
    return kind.strip().lower(), params


def parse_json_body(raw: bytes, content_type: str | None, body: Body) -> Any:
    if not raw:
        if body.required:
            raise ValidationFailed([FieldError("body", "is required: a JSON object")])
        return None
    kind, params = _media_type(content_type)
    if kind != "application/json" or params.get("charset", "utf-8") != "utf-8":
        raise UnsupportedMediaType(
            "The request body must be JSON (Content-Type: application/json).",
            remediation="Send the body as UTF-8 JSON with the header 'Content-Type: application/json'.",
        )
    if len(raw) > body.max_bytes:
        raise ValidationFailed([FieldError("body", f"must be at most {body.max_bytes} bytes")])
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ValidationFailed([FieldError("body", "must be UTF-8 encoded JSON")]) from None
    if too_deep(text, MAX_DEPTH):
        raise ValidationFailed([FieldError("body", f"must not nest arrays and objects deeper than {MAX_DEPTH} levels")])
    try:
        value = json.loads(text, parse_constant=_not_json)
    except (ValueError, RecursionError):  # RecursionError cannot happen after the scan; kept as a last guard
        raise ValidationFailed([FieldError("body", "must be valid JSON")]) from None
    errors: list[FieldError] = []
    _check_strings(value, "", errors)
    if errors:
        raise ValidationFailed(errors[:10])
    return value


def _not_json(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def too_deep(text: str, limit: int) -> bool:
    """True when brackets outside strings nest deeper than `limit`. One pass, jumping between the characters
    that matter; no regex backtracking, no recursion."""
    depth = 0
    in_string = False
    skip_to = -1
    for match in _STRUCTURE.finditer(text):
        at = match.start()
        if at < skip_to:
            continue
        char = text[at]
        if in_string:
            if char == "\\":
                skip_to = at + 2
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
            if depth > limit:
                return True
        elif char in "]}":
            depth -= 1
    return False


def _check_strings(value: Any, where: str, errors: list[FieldError]) -> None:
    if isinstance(value, str):
        if never_acceptable(value):
            errors.append(FieldError(where or "body", "must be valid Unicode text without NUL characters"))
    elif isinstance(value, dict):
        for key, item in value.items():
            if never_acceptable(key):
                errors.append(FieldError(where or "body", "has a member name that is not valid Unicode"))
                continue
            name = printable(key, 64)
            _check_strings(item, f"{where}.{name}" if where else name, errors)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            _check_strings(item, f"{where}[{index}]", errors)
