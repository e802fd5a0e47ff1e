"""What counts as acceptable text from outside (callers, ServiceNow, Graph, push notices): docs/design.md#robustness.

Everywhere: valid Unicode (no lone surrogate) and no NUL. Multi-line text also refuses the other C0 and C1
control characters except tab, CR and LF. One-line text additionally refuses line and paragraph separators,
bidirectional controls and zero-width characters, which can hide or reorder what a reader sees.
"""

from __future__ import annotations

import re

# Character classes as regex source (escapes, not the characters), so the OpenAPI document can carry the same
# patterns. C0 except tab/LF/CR, DEL, and C1 (U+0085 NEL is C1):
MULTI_LINE_CLASS = r"\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f"
# All C0 and C1, line and paragraph separators, zero-width and bidirectional controls (LRM/RLM/ALM,
# embeddings, overrides, isolates), word joiner and invisible operators, BOM, Mongolian vowel separator:
ONE_LINE_CLASS = r"\x00-\x1f\x7f-\x9f\u2028\u2029\u200b-\u200f\u202a-\u202e\u2060-\u2064\u2066-\u2069\ufeff\u061c\u180e"
_SURROGATES = r"\ud800-\udfff"

_NEVER = re.compile(rf"[{_SURROGATES}\x00]")
_MULTI_LINE = re.compile(rf"[{_SURROGATES}{MULTI_LINE_CLASS}]")
_ONE_LINE = re.compile(rf"[{_SURROGATES}{ONE_LINE_CLASS}]")


def never_acceptable(value: str) -> bool:
    """A lone surrogate or a NUL: refused in every string of every request, whatever the field."""
    return _NEVER.search(value) is not None


def multi_line_ok(value: str) -> bool:
    return _MULTI_LINE.search(value) is None


def one_line_ok(value: str) -> bool:
    return _ONE_LINE.search(value) is None


def ascii_int(value: str | None, *, max_digits: int = 18) -> int | None:
    """A header number: ASCII digits only (`str.isdigit` accepts superscripts and other scripts' digits,
    which `int` refuses or reads), at most `max_digits` of them, so parsing cannot fail or build a huge int."""
    if value is None:
        return None
    value = value.strip(" \t")
    if not 0 < len(value) <= max_digits or not value.isascii() or not value.isdigit():
        return None
    return int(value)


def printable(value: str, limit: int = 200) -> str:
    """For logs and messages: non-printable characters escaped, cut to `limit` characters."""
    cut = value if len(value) <= limit else value[:limit] + "..."
    return "".join(ch if ch.isprintable() else f"\\u{ord(ch):04x}" for ch in cut)


def clean_line(value: object, limit: int) -> str:
    """Outside text as one clean line: control and invisible characters become spaces, runs of space one."""
    if not isinstance(value, str):
        return ""
    return " ".join(_ONE_LINE.sub(" ", value).split())[:limit]
