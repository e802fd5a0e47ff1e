"""What the simulators' own HTML pages share: the head (no favicon request), a style that fits a 1280 px window
and a phone, and the link back to the connector's portal."""

from __future__ import annotations

import html
from urllib.parse import urlsplit

_LOOPBACK = ("localhost", "127.0.0.1", "::1")
STYLE = (
    "body{font-family:system-ui,sans-serif;margin:0 auto;padding:1rem 1.5rem;max-width:75rem;line-height:1.45;"
    "overflow-wrap:anywhere}table{border-collapse:collapse;width:100%}"
    "th,td{padding:.3em .6em;text-align:left;vertical-align:top}tr:nth-child(even){background:#f3f3f3}"
    ".multi{white-space:pre-wrap}.back{margin:0 0 1rem}button,th{overflow-wrap:normal;white-space:nowrap}"
    "@media (max-width:600px){.fields th,.fields td{display:block}.fields th{padding-bottom:0}}"
)


def head(title: str, style: str = "") -> str:
    """`<head>` with a declared (empty) icon, so the browser asks no /favicon.ico."""
    return (
        '<head><meta charset=utf-8><meta name="viewport" content="width=device-width, initial-scale=1">'
        f'<link rel="icon" href="data:,"><title>{html.escape(title)}</title><style>{STYLE}{style}</style></head>'
    )


def back_to_portal(page_url: str, port: int | None, view: str = "") -> str:
    """A link to the connector's portal on the host name the browser used for this page (localhost, 127.0.0.1
    or [::1]: the local host answers on all three), at `view` (`#tenant=...`); nothing when its port is not known."""
    if port is None:
        return ""
    host = urlsplit(page_url).hostname or "localhost"
    host = host if host in _LOOPBACK else "localhost"
    netloc = f"[{host}]" if ":" in host else host
    target = html.escape(f"http://{netloc}:{port}/api/portal{view}")
    return f'<p class="back"><a id="portal" href="{target}">Back to the connector</a></p>'
