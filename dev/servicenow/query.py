"""The subset of ServiceNow's encoded query language the connector uses, evaluated over dict records.

`^` is AND, `^OR` ORs with its neighbour, `^NQ` starts a new OR-ed group; invalid fields are ignored
(ServiceNow's default). Values compare as strings, which orders `YYYY-MM-DD HH:MM:SS` correctly. `=` and `!=`
ignore case, as ServiceNow's queries do: "GlideRecord queries are case-insensitive" (GlideFilter API,
https://www.servicenow.com/docs/r/api-reference/server-api-reference/c_GlideFilterScopedAPI.html; GlideRecord
`addQuery`: "Value on which to query (not case-sensitive)"), so `name=service desk` finds "Service Desk". (The
Table API page calls values case-sensitive; the stricter answer for a client is the one that can surprise it.)
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

_FIELD = re.compile(r"^[a-z_][a-z0-9_.]*")
_OPERATORS = (
    "STARTSWITH",
    "ENDSWITH",
    "ISNOTEMPTY",
    "ISEMPTY",
    "NOT IN",
    "IN",
    "LIKE",
    ">=",
    "<=",
    "!=",
    ">",
    "<",
    "=",
)


@dataclass(frozen=True)
class Condition:
    field: str
    op: str
    value: str

    @property
    def members(self) -> frozenset[str]:
        """An IN list's values (`fieldINa,b,c`)."""
        return frozenset(self.value.split(","))


@dataclass(frozen=True)
class Query:
    groups: list[list[list[Condition]]]  # NQ groups -> AND terms -> OR alternatives
    order: list[tuple[str, bool]]  # (field, descending)


def _plain(value: Any) -> str:
    if isinstance(value, dict):
        return str(value.get("value", ""))
    return "" if value is None else str(value)


def parse(text: str, resolve: Callable[[str], str]) -> Query:
    groups: list[list[list[Condition]]] = []
    order: list[tuple[str, bool]] = []
    for group_text in text.split("^NQ") if text else []:
        terms: list[list[Condition]] = []
        for part in group_text.split("^"):
            if not part:
                continue
            if part.startswith("ORDERBYDESC"):
                order.append((part[len("ORDERBYDESC") :], True))
                continue
            if part.startswith("ORDERBY"):
                order.append((part[len("ORDERBY") :], False))
                continue
            is_or = part.startswith("OR") and terms
            condition = _condition(part[2:] if is_or else part, resolve)
            if condition is None:
                continue
            if is_or:
                terms[-1].append(condition)
            else:
                terms.append([condition])
        groups.append(terms)
    return Query(groups, order)


def _condition(text: str, resolve: Callable[[str], str]) -> Condition | None:
    match = _FIELD.match(text)
    if not match:
        return None
    field, rest = match.group(0), text[match.end() :]
    for op in _OPERATORS:
        if rest.startswith(op):
            value = rest[len(op) :]
            if value.startswith("javascript:"):
                value = resolve(value)
            return Condition(field, op, value)
    return None


def _holds(condition: Condition, record: dict[str, Any], known: set[str]) -> bool:
    if condition.field not in known:
        return True  # ServiceNow ignores conditions on unknown fields
    actual = _plain(record.get(condition.field))
    value, op = condition.value, condition.op
    if op == "=":
        return actual.casefold() == value.casefold()
    if op == "!=":
        return actual.casefold() != value.casefold()
    if op == "STARTSWITH":
        return actual.startswith(value)
    if op == "ENDSWITH":
        return actual.endswith(value)
    if op == "LIKE":
        return value.lower() in actual.lower()
    if op == "IN":
        return actual in condition.members
    if op == "NOT IN":
        return actual not in condition.members
    if op == "ISEMPTY":
        return actual == ""
    if op == "ISNOTEMPTY":
        return actual != ""
    return {">=": actual >= value, "<=": actual <= value, ">": actual > value, "<": actual < value}[op]


def candidate_ids(query: Query) -> frozenset[str] | None:
    """The only sys_ids a query can match when every group requires `sys_idIN...` (a lookup, not a scan); None
    when it must scan. Only the simulator's speed depends on this, never an answer."""
    found: set[str] = set()
    for group in query.groups or [[]]:
        lists = [
            term[0].members for term in group if len(term) == 1 and term[0].field == "sys_id" and term[0].op == "IN"
        ]
        if not lists:
            return None
        found |= lists[0]
    return frozenset(found)


def matches(query: Query, record: dict[str, Any], known: set[str]) -> bool:
    if not query.groups:
        return True
    return any(all(any(_holds(c, record, known) for c in term) for term in group) for group in query.groups)


def sort(query: Query, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    ordered = sorted(records, key=lambda r: _plain(r.get("sys_id")))
    for field, descending in reversed(query.order):
        ordered.sort(key=lambda r, f=field: _plain(r.get(f)), reverse=descending)  # type: ignore[misc]
    return ordered
