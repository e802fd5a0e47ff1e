"""A route's control id patterns: compiled once when saved, and refused when they could backtrack for long.

The patterns run on every create (fullmatch against a control id of at most 64 characters), so a pattern that can
backtrack exponentially (a repeated group that itself repeats or alternates: `(a+)+`, `(a|aa)*`) or that needs
backtracking by nature (a backreference) is refused when the rules are saved; so is a pattern with more than
MAX_REPEATS repeats, whose polynomial backtracking grows with each one. Python's own regex parser reads the pattern,
so what is checked is exactly what runs.
"""

from __future__ import annotations

import importlib
import re
from typing import Any

MAX_LENGTH = 200
MAX_REPEATS = 4
_REPEATS = ("MAX_REPEAT", "MIN_REPEAT", "POSSESSIVE_REPEAT")
# The standard library's parser (`sre_parse`, which `re` itself uses); imported by name, since the public alias
# warns of its deprecation and the private module has no type stubs.
_parser: Any = importlib.import_module("re._parser")


def compile_pattern(text: str) -> tuple[re.Pattern[str] | None, str | None]:
    """(the compiled pattern, None), or (None, why it is refused)."""
    if not 1 <= len(text) <= MAX_LENGTH:
        return None, f"must be a regular expression of 1-{MAX_LENGTH} characters"
    try:
        compiled = re.compile(text)
    except (re.error, OverflowError, RecursionError) as exc:
        return None, f"is not a regular expression Python can compile ({getattr(exc, 'msg', type(exc).__name__)})"
    refusal = _risk(_parser.parse(text))
    return (None, refusal) if refusal else (compiled, None)


def _risk(tree: Any) -> str | None:
    repeats = 0
    stack = [tree]
    while stack:
        for op, value in stack.pop():
            name = str(op)
            if name in ("GROUPREF", "GROUPREF_EXISTS"):
                return "must not use a backreference or a conditional group (they backtrack by nature)"
            if name in _REPEATS and value[1] > 1:
                repeats += 1
                if _repeats_or_alternates(value[2]):
                    return (
                        "must not repeat a group that itself repeats or alternates, such as (a+)+ or (a|b)*: "
                        "it can backtrack exponentially; write the alternatives out, or use a character class"
                    )
            stack.extend(_inside(name, value))
    if repeats > MAX_REPEATS:
        return f"must have at most {MAX_REPEATS} repeats (*, +, {{m,n}}): each one multiplies the backtracking"
    return None


def _repeats_or_alternates(tree: Any) -> bool:
    stack = [tree]
    while stack:
        for op, value in stack.pop():
            name = str(op)
            if name == "BRANCH" or (name in _REPEATS and value[0] != value[1]):
                return True  # a choice inside the repeat: the same text splits many ways
            stack.extend(_inside(name, value))
    return False


def _inside(name: str, value: Any) -> list[Any]:
    """The subpatterns a parsed node holds."""
    if name in _REPEATS:
        return [value[2]]
    if name == "SUBPATTERN":
        return [value[3]]
    if name == "BRANCH":
        return list(value[1])
    if name in ("ASSERT", "ASSERT_NOT"):
        return [value[1]]
    return [value] if name == "ATOMIC_GROUP" else []
