"""An alert episode's ticket (docs/alerts.md#tickets): made through ticket creation's own path, noted while the
episode lasts, resolved when the score recovers.

The ticket is created with `create_ticket.api.creator_for(...).create(...)` and an idempotency key per episode
(`alert:{alert id}:{tenant}:{episode}`), as templates/opened.py makes a control's ticket: a run that stops after the
POST and runs again finds the same ticket by its key and its claim (the in-doubt lookup by correlation id,
docs/design.md), and never POSTs a second one. Its recommendation id is `alert/{alert id}`, so its correlation id is
`m365sec:alert/{id}` for the home tenant and `m365sec:{tag}/alert/{id}` for another (shared/tickets.py).
"""

from __future__ import annotations

from typing import Any

from alerts.model import Alert
from create_ticket.api import Recommendation, TicketRequest, creator_for
from shared.auth import SYSTEM_CALLER
from shared.problems import NotFound, ServiceNowRejected
from shared.records import apply_record, mark_missing, record_fields
from shared.servicenow import table_result
from shared.services import Services
from shared.tickets import ALERT_PREFIX, OPEN_STATUSES, Ticket

CATEGORY = "Infrastructure"
PRIORITY = 3  # a route's priority wins (priority_named=False), as in a create that names none
NAME_LIMIT = 160


def recommendation_id(alert: Alert) -> str:
    return f"{ALERT_PREFIX}{alert.id}"


def key_of(alert: Alert, tenant: str, episode: int) -> str:
    return f"alert:{alert.id}:{tenant or 'home'}:{episode}"


def whose(tenant: str) -> str:
    return f"tenant {tenant}" if tenant else "the home tenant"


def open_ticket(services: Services, alert: Alert, tenant: str, episode: int, why: str) -> Ticket:
    """The episode's one ticket, through the routes (a tenant/category route matches it; else the default
    connection, as a create that no route matches)."""
    name = f"Secure Score alert: {alert.name}"[:NAME_LIMIT]
    description = (f"{why}\n\nThe connector resolves this ticket when the score recovers, and notes each change "
                   f"until then. Alert '{alert.id}', episode {episode}, {whose(tenant)}.")  # fmt: skip
    key = key_of(alert, tenant, episode)
    rec = Recommendation(recommendation_id(alert), "microsoft", CATEGORY, None)
    # `origin`: the key, so a later run whose description differs (the score moved) is the same request
    request = TicketRequest(name, description, PRIORITY, None, rec, None, None, key, tenant, False)
    ticket, _ = creator_for(services).create(request, caller=SYSTEM_CALLER, idempotency_key=key)
    return ticket


def ticket_of(services: Services, ticket_id: str | None, tenant: str) -> Ticket | None:
    """The episode's ticket as stored, only if it is this tenant's (an episode never touches another's ticket)."""
    found = services.store.get_ticket(ticket_id) if ticket_id else None
    if found is None or found[0].tenant != tenant:
        return None
    return found[0]


def is_open(ticket: Ticket | None) -> bool:
    return ticket is not None and bool(ticket.sys_id) and ticket.status in OPEN_STATUSES - {"pending"}


def as_servicenow_has_it(services: Services, ticket: Ticket) -> Ticket | None:
    """The ticket after one GET of its record (as a change notice is read, status_sync/events.py): a person's
    close or cancel that the status sync has not seen yet is never noted nor resolved over (docs/alerts.md)."""
    services = services.for_ticket(ticket)
    try:
        response = services.servicenow.table_request(
            services.tokens, "GET", ticket.table, sys_id=ticket.sys_id,
            params={"sysparm_fields": record_fields(services), "sysparm_exclude_reference_link": "true"},
        )  # fmt: skip
    except NotFound:  # deleted, or hidden by ACLs: as the sweep concludes
        mark_missing(services, ticket.id)
        return None
    apply_record(services, ticket.id, table_result(response))
    found = services.store.get_ticket(ticket.id)
    return found[0] if found else None


def note(services: Services, ticket: Ticket, text: str) -> None:
    _patch(services, ticket, {"work_notes": text}, None)


def resolve(services: Services, ticket: Ticket, text: str) -> None:
    """As Secure Score's auto-resolve does (secure_score/edges.py): the state map's `resolved`, resolution notes, the
    resolution code where the field map names one."""
    _patch(services, ticket, {"resolution_notes": text}, "resolved")


def _patch(services: Services, ticket: Ticket, notes: dict[str, str], status: str | None) -> None:
    services = services.for_ticket(ticket)  # the record lives on the ticket's connection
    field_map = services.settings.field_map
    body: dict[str, Any] = {}
    if status is not None:
        raw = field_map.state_for(status)
        if raw is None:
            raise ServiceNowRejected(
                f"The state map for '{ticket.table}' names no '{status}' state, so the connector cannot set it.",
                remediation=f'Add the table\'s {status} state to SERVICENOW_FIELD_MAP "states".',
            )
        body[field_map.target("state")] = raw
        if field_map.target("resolution_code") and field_map.resolution_code:
            body[field_map.target("resolution_code")] = field_map.resolution_code
    for logical, text in notes.items():
        if field_map.target(logical):
            body[field_map.target(logical)] = text
    if not body:
        return
    response = services.servicenow.table_request(
        services.tokens, "PATCH", ticket.table, sys_id=ticket.sys_id,
        params={"sysparm_fields": record_fields(services), "sysparm_exclude_reference_link": "true"}, json_body=body,
    )  # fmt: skip
    apply_record(services, ticket.id, table_result(response))
