"""A control open again after its exception ended (templates/endings.py): its ticket, where a route matches it.

The ticket is made through ticket creation's own path (`create_ticket.api.creator_for`), with an idempotency key of
the ending (template, tenant, control, until) and the connector as the caller, as a refresh makes a regressed
control's new ticket (secure_score/edges.py `recreate`): a run that stops after the POST and is run again finds the
same ticket by its key and its claim, and never POSTs a second one. A control with an open ticket already gets that
ticket back (the claim), not another. Until the ticket exists the control's record says `"ticket": "due"`, so a run
that failed (ServiceNow unavailable) is tried again by the next.
"""

from __future__ import annotations

import logging
from typing import Any

from create_ticket.api import (
    Recommendation,
    TicketRequest,
    complete_from_control,
    control_facts,
    creator_for,
    decide,
    load_routes,
)
from shared.auth import SYSTEM_CALLER
from shared.services import Services
from shared.tickets import HOME
from templates.model import HOME_ID, Template

log = logging.getLogger(__name__)

DUE = "due"
DEFAULT_PRIORITY = 3  # a route's priority wins (priority_named=False), as in a create that names none


def graph_tenant(tenant: str) -> str:
    return HOME if tenant == HOME_ID else tenant


def ticket_due(record: dict[str, Any]) -> bool:
    return record.get("ticket") == DUE


def make_ticket(services: Services, template: Template, tenant: str, control_id: str,
                record: dict[str, Any]) -> tuple[dict[str, Any], bool]:  # fmt: skip
    """The record with the control's ticket where a route matches it (its id), or `"ticket": None` where none does,
    and whether this call made the ticket. A failure of the create is raised: the record stays due for the next
    run."""
    target = graph_tenant(tenant)
    control = services.store.get_secure_score_control(control_id, target)
    if control is None:  # never refreshed: no facts to route on, nor a title for a ticket
        return {**record, "ticket": None, "ticketSkipped": "not_in_snapshot"}, False
    rules = load_routes(services.store).rules()
    chosen = decide(rules, control_facts(target, control), priority=None, due=None, now=services.clock())
    if chosen.route is None:  # no route matches this control: no ticket, as before the exception
        return {**record, "ticket": None, "ticketSkipped": "no_route"}, False
    day = str(record.get("until"))[:10]
    opening = (f"The exception '{template.name}' (a posture template) ended on {day}: the control is Default in "
               "Secure Score again, and open.")  # fmt: skip
    rec = Recommendation(control_id, "microsoft", str(control.get("category") or ""), None)
    draft = TicketRequest("", "", DEFAULT_PRIORITY, None, rec, None, tenant=target, priority_named=False)
    request = complete_from_control(draft, control)
    key = f"exception-ended:{template.id}:{tenant}:{control_id}:{record.get('until')}"
    # `origin`: the key, so a later run whose snapshot says more about the control is the same request
    request = TicketRequest(request.name, f"{opening}\n\n{request.description}", request.priority, request.due_date,
                            request.recommendation, None, request.control, key, target, False)  # fmt: skip
    ticket, created = creator_for(services).create(request, caller=SYSTEM_CALLER, idempotency_key=key)
    log.info("Template %s: control %s in tenant %s opened again; its ticket is %s", template.id, control_id, tenant,
             ticket.id)  # fmt: skip
    return {**record, "ticket": ticket.id}, created
