"""`POST /api/routes/preview`: a dry run of a proposed routes list over every open recommendation of every tenant the
connector reads (docs/design.md#connections-and-routes). The list is validated and its groups and companies found
exactly as a save would; each recommendation then takes the decision a create takes (routing/rules.py `decide`,
from the same control's facts), with the request naming no priority and no due date, as the portal's "create" of an
action does.

Nothing is saved. A recommendation that has an open ticket already says so: a route change never moves a ticket.
"""

from __future__ import annotations

from typing import Any

from create_ticket.routing.decision import Target, control_facts, decide
from create_ticket.routing.document import load
from create_ticket.routing.rules import Rules, rule_of
from create_ticket.routing.saving import validated, with_notes, within_deadline
from shared import deadlines
from shared.connections import Connection
from shared.problems import FieldError
from shared.runs import TENANTS, run_document
from shared.services import Services
from shared.tickets import HOME, PRIORITY_NAMES, Ticket


def _is_open(control: dict[str, Any]) -> bool:
    """What `GET /api/recommendations` lists as open: scored, not completed, not deprecated."""
    scored = bool(control.get("scored", control.get("score") is not None))
    return scored and not control.get("completed") and not control.get("deprecated")


def _rank(control: dict[str, Any]) -> tuple[bool, int, str]:
    rank = control.get("rank")
    return rank is None, rank if isinstance(rank, int) else 0, str(control.get("id"))


def _tenants(services: Services) -> list[str]:
    """HOME and every registered tenant not removed: what `GET /api/recommendations?tenant=all` lists."""
    registered = run_document(services.store, TENANTS).get("tenants") or {}
    return [HOME, *sorted(t for t, r in registered.items() if r.get("state") != "removed")]


def _open_tickets(services: Services) -> dict[str, Ticket]:
    return {t.claim_key: t for t, _ in services.store.list_tickets() if t.is_open and not t.duplicate_of}


def describe_target(target: Target, connection: Connection) -> dict[str, Any]:
    """Where a ticket would go, as the preview shows it (and as the ticket then records it)."""
    return {
        "connection": target.connection,
        "table": target.table or connection.table,
        "assignmentGroup": target.assignment_group.to_json() if target.assignment_group else None,
        "company": target.company.to_json() if target.company else None,
        "priority": PRIORITY_NAMES[target.priority],
        "dueDate": target.due_date.isoformat().replace("+00:00", "Z") if target.due_date else None,
        "dueInDays": (target.route or {}).get("set", {}).get("dueInDays"),
        "fields": dict(target.fields),
    }


def preview(services: Services, body: Any) -> dict[str, Any]:
    """The dry run, within ROUTES_DEADLINE (create_ticket/routing/saving.py)."""
    with within_deadline(services, "The preview of the routes"):
        return _preview(services, body)


def _preview(services: Services, body: Any) -> dict[str, Any]:
    notes: list[FieldError] = []
    routes = validated(services, body, load(services.store), notes)
    given = [r.get("id") for r in body["routes"]]  # a new rule's id is made when it is saved: none yet
    rules = Rules([rule_of(i, {**r, "id": given[i]}) for i, r in enumerate(routes)])
    now = services.clock()
    connections: dict[str, Connection] = {}
    open_tickets = _open_tickets(services)
    counts = [0] * len(rules)
    items = []
    for tenant in _tenants(services):
        snapshot = services.store.get_secure_score(tenant)
        for control in sorted((snapshot or ({}, []))[1], key=_rank):
            if not _is_open(control):
                continue
            deadlines.check_run()
            target = decide(rules, control_facts(tenant, control), priority=None, due=None, now=now)
            if target.connection not in connections:
                connections[target.connection] = services.connection_named(target.connection)
            route = target.route
            if route is not None:
                counts[route["index"]] += 1
            ticket = open_tickets.get(f"{tenant}|{control['id']}" if tenant else str(control["id"]))
            items.append({
                "tenant": tenant or None, "id": control.get("id"), "title": control.get("title"),
                "category": control.get("category"), "service": control.get("service"),
                "maxScore": control.get("maxScore"),
                "rule": {"index": route["index"], "id": route["rule"], "name": route["name"]} if route else None,
                "target": describe_target(target, connections[target.connection]),
                "ticket": {"id": ticket.id, "number": ticket.number, "connection": ticket.connection or "default"}
                if ticket else None,
            })  # fmt: skip
    return with_notes({
        "at": now.isoformat(),
        "recommendations": items,
        "rules": [{"index": r.index, "id": r.id, "name": r.name, "matched": counts[r.index]} for r in rules],
        "unmatched": sum(1 for item in items if item["rule"] is None),
    }, notes)  # fmt: skip
