"""A route's control id patterns, matched by RE2 (google-re2): in time linear in the control id, whatever the pattern.

Python's `re` backtracks, so a pattern such as `.?` repeated 32 times then `!` takes minutes on a 60-character id,
and holds the interpreter (every other request waits) while it runs. RE2 never backtracks; what it cannot do in linear
time (backreferences, lookaround, conditionals) it refuses to compile, and such a pattern is `validation_failed`
naming it. The syntax: https://github.com/google/re2/wiki/Syntax (docs/routes.md says which parts routes use).

RE2 is imported on first use, so a cold start that never routes a ticket does not load it.

A list's patterns are matched all at once through one RE2 set (one pass over the id for every rule): a create and a
preview then cost about the same whatever the number of patterns. A set whose automaton does not fit its memory
budget answers "no match" to everything (RE2::Set::Match's documented out-of-memory failure), so a set is used only
once it has answered a probe it must match; otherwise each rule's patterns are matched one by one (still linear).
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from typing import Any

MAX_LENGTH = 200
SET_MEMORY = 32 << 20  # bytes RE2 may use for a list's set (its default is 8 MiB per pattern)
_PROBE = "\x00"  # never in a control id (ids are A-Z, a-z, 0-9, '.', '_', ':', '-'): the set's self-check


def _re2() -> Any:
    import re2  # lazy: cold start

    return re2


def _options(max_mem: int | None = None) -> Any:
    options = _re2().Options()
    options.log_errors = False  # a refused pattern is said in the answer; RE2 must not also print it to stderr
    options.never_capture = True  # fullmatch only: no submatch is ever read
    if max_mem is not None:
        options.max_mem = max_mem
    return options


@lru_cache(maxsize=8192)
def compile_pattern(text: str) -> tuple[Any | None, str | None]:
    """(the compiled RE2 pattern, None), or (None, why it is refused); each text compiled once per process (a save
    checks a list's patterns, and then its rules are compiled from the same texts)."""
    if not 1 <= len(text) <= MAX_LENGTH:
        return None, f"must be a regular expression of 1-{MAX_LENGTH} characters"
    re2 = _re2()
    try:
        return re2.compile(text, _options()), None
    except re2.error as exc:
        reason = exc.args[0].decode("utf-8", "replace") if exc.args and isinstance(exc.args[0], bytes) else "refused"
        return None, (
            f"is not a pattern RE2 can run in linear time ({_printable(reason)}): backreferences, lookaround "
            "((?=...), (?!...), (?<=...)), conditionals and possessive repeats are not RE2 syntax, and a repeat "
            "counts at most 1000 (docs/routes.md: Patterns)"
        )


def _printable(text: str) -> str:
    return "".join(c if c.isprintable() else "?" for c in text)[:120]


class ControlMatcher:
    """Which rules' control patterns match a control id (each pattern against the whole id). `patterns[i]` is rule
    i's list, or None for a rule that matches any control."""

    def __init__(self, patterns: Sequence[Sequence[str] | None]) -> None:
        self._rules: list[list[Any] | None] = []
        owners: list[int] = []
        texts: list[str] = []
        for index, listed in enumerate(patterns):
            if listed is None:
                self._rules.append(None)
                continue
            compiled = []
            for text in listed:
                pattern, _ = compile_pattern(text)
                if pattern is not None:  # saved rules were validated; an unreadable one matches nothing
                    compiled.append(pattern)
                    owners.append(index)
                    texts.append(text)
            self._rules.append(compiled)
        self._owners = owners
        self._set = _set_of(texts)

    def rules_matching(self, control: str) -> list[int] | None:
        """The rules (ascending) whose patterns match `control`, found in one pass by the set; None when there is
        no set to ask (then ask `rule_matches` rule by rule)."""
        if self._set is None:
            return None
        found = self._set.Match(control) or ()
        return sorted({self._owners[i] for i in found if i < len(self._owners)})

    def rule_matches(self, rule: int, control: str) -> bool:
        """Whether rule `rule`'s own patterns match `control` (a rule without patterns: True)."""
        compiled = self._rules[rule]
        return compiled is None or any(p.fullmatch(control) is not None for p in compiled)


def _set_of(texts: list[str]) -> Any | None:
    """One RE2 set over every pattern (anchored at both ends: the whole id), or None when RE2 cannot build it
    within SET_MEMORY (then each rule is matched on its own)."""
    if not texts:
        return None
    re2 = _re2()
    matcher = re2.Set.FullMatchSet(_options(SET_MEMORY))
    try:
        for text in texts:
            matcher.Add(text)
        probe = matcher.Add(re2.escape(_PROBE))
        matcher.Compile()
    except re2.error:
        return None
    # An automaton too large for its budget fails on every text alike (RE2's DFA refuses at its start), so one
    # probe it must match tells whether the set can be trusted with "no match".
    return matcher if (matcher.Match(_PROBE) or []) == [probe] else None
