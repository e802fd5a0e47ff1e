"""Where a local page may send the browser after sign-in: a path on the same site, nothing else.

Browsers read more into a redirect target than `startswith("/")` sees: `//host/x` and `/\\host/x` are other
sites (the WHATWG URL parser treats `\\` as `/` in http(s) URLs), and tabs and newlines are removed before
parsing, so `/\\t/host` is `//host` too. Anything that is not one plain same-origin path is refused.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

_PLAIN = re.compile(r"^/[!-~]*$")  # printable ASCII: no space, control character, DEL or non-ASCII
MAX_TARGET = 2048


def local_target(value: str | None, default: str) -> str:
    """`value` when it is a path on this site (a query allowed), else `default`."""
    if not value or len(value) > MAX_TARGET or not _PLAIN.fullmatch(value) or "\\" in value:
        return default
    if value.startswith("//"):
        return default
    try:
        parts = urlsplit(value)
    except ValueError:
        return default
    if parts.scheme or parts.netloc:
        return default
    return value
