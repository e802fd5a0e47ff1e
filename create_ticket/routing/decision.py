"""Where a ticket goes (docs/design.md#connections-and-routes): the one decision that both a create and a preview take,
so the two cannot drift, and a ticket request routed: the facts of its recommendation, the saved rules' decision, and
the services of the connection it goes to. A preview of the same recommendation takes the same decision
(routing/preview.py builds its facts from the same control). With no rule matching, a ticket goes as before routes:
the default connection, its table, nothing more.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from create_ticket.request import TicketRequest
from create_ticket.routing.document import load
from create_ticket.routing.rules import Facts, Reference, Rules
from shared.connections import DEFAULT, Connection
from shared.problems import NotConfigured, NotConnected, NotFound, ReauthorizationRequired
from shared.services import Services
from shared.text import printable
from shared.tickets import PRIORITY_NAMES

DEFAULT_PRIORITY = 3  # medium: what a request without a priority gets when no rule sets one


@dataclass(frozen=True)
class Target:
    """Where and how one ticket is made: the decision a create follows and a preview shows."""

    connection: str
    table: str | None  # None: the connection's table
    priority: int
    due_date: datetime | None
    assignment_group: Reference | None = None
    company: Reference | None = None
    fields: dict[str, str] = field(default_factory=dict)
    route: dict[str, Any] | None = None  # what the ticket records: the rule, and what it set (None: no rule)

    def record_fields(self) -> dict[str, str]:
        """The ServiceNow fields the rule adds to the record (group and company by sys_id, then its extra fields)."""
        values = dict(self.fields)
        if self.assignment_group is not None:
            values["assignment_group"] = self.assignment_group.sys_id
        if self.company is not None:
            values["company"] = self.company.sys_id
        return values


def decide(rules: Rules, facts: Facts, *, priority: int | None, due: datetime | None, now: datetime) -> Target:
    """The target of a ticket for `facts`: the first matching rule's, the request's own priority and due date
    winning over the rule's (None: the request names none)."""
    rule = rules.first_match(facts)
    if rule is None:
        return Target(DEFAULT, None, priority or DEFAULT_PRIORITY, due)
    chosen = rule.set
    applied: dict[str, Any] = {"connection": chosen.connection}
    if chosen.table:
        applied["table"] = chosen.table
    if chosen.assignment_group is not None:
        applied["assignmentGroup"] = chosen.assignment_group.to_json()
    if chosen.company is not None:
        applied["company"] = chosen.company.to_json()
    if priority is None and chosen.priority is not None:
        priority = chosen.priority
        applied["priority"] = PRIORITY_NAMES[priority]
    if due is None and chosen.due_in_days is not None:
        due = (now + timedelta(days=chosen.due_in_days)).replace(microsecond=0)
        applied["dueInDays"] = chosen.due_in_days
    if chosen.fields:
        applied["fields"] = dict(chosen.fields)
    if chosen.on_risk_accepted:  # kept on the ticket (its `route`): the status sync reads it there when it closes
        applied["onRiskAccepted"] = chosen.on_risk_accepted
    route = {"rule": rule.id, "name": rule.name, "index": rule.index, "set": applied}
    return Target(chosen.connection, chosen.table, priority or DEFAULT_PRIORITY, due, chosen.assignment_group,
                  chosen.company, dict(chosen.fields), route)  # fmt: skip


def control_facts(tenant: str, control: dict[str, Any]) -> Facts:
    """A Secure Score control's facts, as a preview sees them and a create filled from the control does."""
    points = control.get("maxScore")
    return Facts(tenant, str(control.get("id") or ""), control.get("category"), control.get("service"),
                 float(points) if isinstance(points, int | float) else None)  # fmt: skip


def request_facts(services: Services, request: TicketRequest, rules: Rules) -> Facts:
    """A request's facts. One that did not need its control (the caller named everything) reads it only when a
    rule matches on what only the control knows (its service, its points)."""
    rec = request.recommendation
    control = request.control
    if control is None and rec.source == "microsoft" and rules.need_control:
        control = services.store.get_secure_score_control(rec.id, request.tenant)
    control = control or {}
    points = control.get("maxScore")
    return Facts(request.tenant, rec.id, rec.category or None, control.get("service"),
                 float(points) if isinstance(points, int | float) else None)  # fmt: skip


def connection_of(services: Services, connection_id: str, why: str) -> Connection:
    """The connection a rule or a ticket names; gone since (removed by an admin) is `not_configured`, never another."""
    try:
        return services.connection_named(connection_id)
    except NotFound:
        raise NotConfigured(
            f"{why} names the ServiceNow connection '{printable(connection_id, 40)}', which the connector no longer "
            "has; the ticket is not made anywhere else.",
            remediation="Add the connection again under the same id (POST /api/connections), or change the routes "
            "(PUT /api/routes) so that no rule names it.",
        ) from None


def route_request(services: Services, request: TicketRequest) -> tuple[Target, Services]:
    """Where the request's ticket goes (the first matching rule, or as before routes) and those services."""
    return routed_by(services, request, load(services.store).rules(), services.clock())


def routed_by(services: Services, request: TicketRequest, rules: Rules, now: datetime) -> tuple[Target, Services]:
    """Where the request's ticket goes under `rules`, decided at `now`, and the services of its connection."""
    priority = request.priority if request.priority_named else None
    target = decide(rules, request_facts(services, request, rules), priority=priority, due=request.due_date, now=now)
    why = f"Route {target.route['index']}" if target.route else "The default route"
    return target, services.for_connection(connection_of(services, target.connection, why))


def waiting(services: Services, exc: NotConnected | ReauthorizationRequired) -> NotConnected | ReauthorizationRequired:
    """A ticket whose connection cannot be used yet: it waits there, pending, with the fix (on the row and in the
    answer)."""
    connection = services.connection
    exc.detail += (
        " The ticket is pending; repeating the request resumes it without a duplicate."
        if connection.is_default
        else f" The ticket waits, pending, on ServiceNow connection '{connection.id}' ({connection.instance_url}), "
        "where its route sends it: once that connection is authorized, the status sync (or this request again) "
        "creates it there, never on another instance."
    )
    if not connection.is_default:
        exc.remediation = (
            f"Authorize connection '{connection.id}': open /api/connect?connection={connection.id} and sign in as "
            "its integration user."
        )
    return exc
