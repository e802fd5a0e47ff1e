"""The rules model (docs/design.md#connections-and-routes): the ordered rules that say where a recommendation's ticket
goes, each read from its saved JSON, and a list of them compiled once per process.

The rules live in the routes document (routing/document.py) as they were saved: validated, and with every assignment
group and company already a sys_id (names were resolved against ServiceNow when the rules were saved, so a create adds
no ServiceNow request). The first rule that matches wins (routing/decision.py `decide`).
"""

from __future__ import annotations

import hashlib
import heapq
import json
import threading
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from create_ticket.routing.patterns import ControlMatcher
from shared.connections import DEFAULT
from shared.tickets import HOME, PRIORITIES

HOME_TENANT = "home"  # how a rule names the deployment's own tenant (tickets carry HOME, "")
MAX_RULES = 200


@dataclass(frozen=True)
class Reference:
    """A ServiceNow record a rule points at (an assignment group, a company): its sys_id, and its name when saved."""

    sys_id: str
    name: str

    def to_json(self) -> dict[str, str]:
        return {"sysId": self.sys_id, "name": self.name}


@dataclass(frozen=True)
class Facts:
    """What a rule can match on: one recommendation of one tenant."""

    tenant: str  # HOME ("") or a tenant id
    control: str  # the recommendation (control) id
    category: str | None
    service: str | None  # None: not a Secure Score control, or not known
    max_score: float | None


@dataclass(frozen=True)
class Match:
    """Each member left out (None) matches everything; a rule matches when every member given does."""

    tenants: frozenset[str] | None = None
    categories: frozenset[str] | None = None
    services: frozenset[str] | None = None
    min_points: float | None = None
    controls: tuple[str, ...] | None = None  # RE2 patterns, each against the whole control id (Rules matches them)

    def admits(self, facts: Facts) -> bool:
        """Whether every member but `controls` matches (the control patterns are Rules' to match, all at once)."""
        if self.tenants is not None and facts.tenant not in self.tenants:
            return False
        if self.categories is not None and facts.category not in self.categories:
            return False
        if self.services is not None and facts.service not in self.services:
            return False
        return self.min_points is None or (facts.max_score is not None and facts.max_score >= self.min_points)

    @property
    def needs_control(self) -> bool:
        """Matching needs the Secure Score control's own figures (its service, its points)."""
        return self.services is not None or self.min_points is not None


@dataclass(frozen=True)
class Setting:
    connection: str = DEFAULT
    table: str | None = None  # None: the connection's table
    assignment_group: Reference | None = None
    company: Reference | None = None
    priority: int | None = None  # used when the request names none
    due_in_days: int | None = None  # used when the request names no due date
    fields: dict[str, str] = field(default_factory=dict)
    on_risk_accepted: str | None = None  # "ignore": a close code of risk_accepted_codes sets the control Ignored


@dataclass(frozen=True)
class Rule:
    index: int
    id: str | None  # None only in a preview of rules not saved yet
    name: str | None
    match: Match
    set: Setting


class Rules:
    """An ordered list of rules with their control patterns compiled once (create_ticket/routing/patterns.py): the first
    rule that matches wins."""

    def __init__(self, rules: list[Rule]) -> None:
        self.items = rules
        self._matcher = ControlMatcher([r.match.controls for r in rules])
        self._unpatterned = [i for i, r in enumerate(rules) if r.match.controls is None]

    def __iter__(self) -> Iterator[Rule]:
        return iter(self.items)

    def __len__(self) -> int:
        return len(self.items)

    @property
    def need_control(self) -> bool:
        """Some rule matches on what only the Secure Score control knows (its service, its points)."""
        return any(r.match.needs_control for r in self.items)

    def first_match(self, facts: Facts) -> Rule | None:
        hits = self._matcher.rules_matching(facts.control)
        if hits is not None:  # only the rules whose patterns match, and those without patterns, can match
            return next((self.items[i] for i in heapq.merge(hits, self._unpatterned)
                         if self.items[i].match.admits(facts)), None)  # fmt: skip
        return next((rule for i, rule in enumerate(self.items)
                     if rule.match.admits(facts) and self._matcher.rule_matches(i, facts.control)), None)  # fmt: skip


# -- the saved rules --------------------------------------------------------------------------------


def _reference(value: Any) -> Reference | None:
    return Reference(str(value["sysId"]), str(value.get("name") or "")) if isinstance(value, dict) else None


def _members(value: Any) -> frozenset[str] | None:
    return frozenset(str(v) for v in value) if isinstance(value, list) else None


def rule_of(index: int, saved: dict[str, Any]) -> Rule:
    """A rule from its saved JSON (written by the validator, so trusted in shape)."""
    match, chosen = saved.get("match") or {}, saved.get("set") or {}
    tenants = _members(match.get("tenants"))
    priority = chosen.get("priority")
    return Rule(
        index,
        saved.get("id"),
        saved.get("name"),
        Match(
            frozenset(HOME if t == HOME_TENANT else t for t in tenants) if tenants is not None else None,
            _members(match.get("categories")),
            _members(match.get("services")),
            float(match["minPoints"]) if match.get("minPoints") is not None else None,
            tuple(str(p) for p in match["controls"]) if isinstance(match.get("controls"), list) else None,
        ),
        Setting(
            str(chosen.get("connection") or DEFAULT),
            chosen.get("table") or None,
            _reference(chosen.get("assignmentGroup")),
            _reference(chosen.get("company")),
            PRIORITIES[priority] if isinstance(priority, str) else None,
            int(chosen["dueInDays"]) if chosen.get("dueInDays") is not None else None,
            {str(k): str(v) for k, v in (chosen.get("fields") or {}).items()},
            "ignore" if chosen.get("onRiskAccepted") == "ignore" else None,
        ),
    )


_CACHE_SIZE = 4  # compiled lists kept per process (the one in force, and a few being previewed or saved)
_cache: OrderedDict[str, Rules] = OrderedDict()
_cache_lock = threading.Lock()


def compiled(routes: list[dict[str, Any]], revision: str | None = None) -> Rules:
    """The rules of a saved list, compiled once per process: by the save's `revision`, or (a list saved before
    revisions) by its content."""
    key = revision or hashlib.sha256(json.dumps(routes, sort_keys=True).encode()).hexdigest()
    with _cache_lock:
        held = _cache.get(key)
        if held is not None:
            _cache.move_to_end(key)
            return held
    built = Rules([rule_of(i, r) for i, r in enumerate(routes)])
    with _cache_lock:
        _cache[key] = built
        while len(_cache) > _CACHE_SIZE:
            _cache.popitem(last=False)
    return built
