"""Edges, not levels (docs/design.md#secure-score): what a refresh does to a ticket when its control's completion
changes.

Each ticket remembers the completion it last saw for its control. A change from not completed to completed
resolves the ServiceNow record (once); from completed to not completed, a resolved record goes back to in
progress with a work note, a closed one gets a new ticket that names it, a canceled one is left alone. A human's
later change in ServiceNow is never undone, because nothing is re-applied. A control the snapshot does not score
has no edge either way, and a duplicate a person opened by hand is never acted on (it is not the recommendation's
ticket: `controls.newest_tickets`).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any, Protocol

from create_ticket.api import Recommendation, TicketRequest, complete_from_control, creator_for
from shared.auth import SYSTEM_CALLER
from shared.problems import NotFound, ServiceNowRejected
from shared.records import apply_record, record_fields
from shared.servicenow import table_result
from shared.services import Services
from shared.store import change_ticket
from shared.tickets import OPEN_STATUSES, Ticket

OPEN = OPEN_STATUSES - {"pending"}  # a ticket whose record exists: a pending one has nothing to resolve yet


class Tally(Protocol):
    resolved: int
    reopened: int
    recreated: int


def observe(services: Services, ticket_id: str, completed: bool) -> Ticket | None:
    """Remember the completion the ticket's control has now (the edge counts as seen)."""

    def change(ticket: Ticket) -> Ticket | None:
        data = dict(ticket.secure_score or {})
        if data.get("completed") is completed:
            return None
        return replace(ticket, secure_score={**data, "completed": completed})

    return change_ticket(services.store, ticket_id, change)


def follow(services: Services, ticket: Ticket, control: dict[str, Any], day: str, tally: Tally) -> Ticket | None:
    """Act on the ticket's edge, if its control has one; returns the ticket as stored afterwards."""
    if control.get("score") is None or control.get("stale"):  # not scored, or kept from before: no edge
        return ticket
    completed = bool(control["completed"])
    seen = (ticket.secure_score or {}).get("completed")
    if seen is None or seen is completed or not ticket.sys_id:
        return observe(services, ticket.id, completed) if seen is None else ticket
    figures = f"{control['score']:g} of {control['maxScore']:g} points"
    if services.settings.secure_score_auto_resolve:
        if completed and ticket.status in OPEN:
            notes = f"Microsoft Secure Score reports this improvement action completed on {day}: {figures}."
            set_state(services, ticket, "resolved", {"resolution_notes": notes}, resolution=True)
            tally.resolved += 1
        elif not completed and ticket.status == "resolved" and not _connection_gone(services, ticket):
            note = (
                f"Microsoft Secure Score reports this improvement action no longer completed on {day} "
                f"({figures}); the connector reopened this ticket."
            )
            set_state(services, ticket, "in_progress", {"work_notes": note})
            tally.reopened += 1
        elif not completed and ticket.status in ("closed", "resolved"):  # resolved: on a connection since removed
            recreate(services, ticket, control, day, figures)
            tally.recreated += 1
    return observe(services, ticket.id, completed)


def _connection_gone(services: Services, ticket: Ticket) -> bool:
    """The ticket's connection was removed (allowed once none of its tickets was open): it cannot be reopened there,
    so a regression gets a new ticket, as a closed one does."""
    try:
        services.for_ticket(ticket)
    except NotFound:
        return True
    return False


def set_state(
    services: Services, ticket: Ticket, status: str, notes: dict[str, str], *, resolution: bool = False
) -> None:
    services = services.for_ticket(ticket)  # the record lives on the ticket's connection
    field_map = services.settings.field_map
    raw = field_map.state_for(status)
    if raw is None:
        raise ServiceNowRejected(
            f"The state map for '{ticket.table}' names no '{status}' state, so the connector cannot set it.",
            remediation=f'Add the table\'s {status} state to SERVICENOW_FIELD_MAP "states".',
        )
    body = {field_map.target("state"): raw}
    for logical, text in notes.items():
        if field_map.target(logical):
            body[field_map.target(logical)] = text
    if resolution and field_map.target("resolution_code") and field_map.resolution_code:
        body[field_map.target("resolution_code")] = field_map.resolution_code
    try:
        response = services.servicenow.table_request(
            services.tokens,
            "PATCH",
            ticket.table,
            sys_id=ticket.sys_id,
            params={"sysparm_fields": record_fields(services), "sysparm_exclude_reference_link": "true"},
            json_body=body,
        )
    except ServiceNowRejected as exc:
        if resolution and "data policy" in exc.detail.lower():
            exc.remediation = (
                'Set "resolution_code": {"field": "close_code", "value": "<one of its choices>"} in '
                "SERVICENOW_FIELD_MAP (and map any other mandatory field), or relax the data policy in "
                "System Policy > Rules > Data Policies."
            )
        raise
    apply_record(services, ticket.id, table_result(response))


def recreate(services: Services, old: Ticket, control: dict[str, Any], day: str, figures: str) -> None:
    """A closed record whose control regressed: a new ticket (one, whatever the retries) naming the old."""
    opening = (
        f"Microsoft Secure Score reports this improvement action no longer completed on {day} ({figures}). "
        f"It was closed in {old.number}."
    )
    rec = Recommendation(control["id"], "microsoft", str(control.get("category") or ""), None)
    draft = TicketRequest("", "", old.priority, None, rec, None, tenant=old.tenant)
    request = complete_from_control(draft, control)
    request = replace(request, description=f"{opening}\n\n{request.description}")
    creator_for(services).create(request, caller=SYSTEM_CALLER, idempotency_key=f"regressed:{old.id}:{day}")
