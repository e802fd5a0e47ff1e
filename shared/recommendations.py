"""`GET /api/recommendations`: the tenant's improvement actions with their score and ticket, served from the
stored snapshot (never waiting for Graph), and filling a ticket request from its control."""

from __future__ import annotations

from typing import Any

from shared.controls import by_rank, complete_from_control, newest_tickets
from shared.problems import FieldError, SecureScoreUnavailable, ValidationFailed
from shared.services import Services
from shared.tickets import CATEGORIES, Ticket, TicketRequest

STATUS_FILTERS = ("open", "completed", "all")
TICKET_FILTERS = ("with", "without", "any")
_SHOWN = ("id", "title", "category", "service", "rank", "maxScore", "score", "completed", "state", "actionType",
          "tier", "userImpact", "implementationCost", "threats", "remediation", "actionUrl", "deprecated",
          "implementationStatus")  # fmt: skip


def _ticket_summary(ticket: Ticket, instance_url: str | None) -> dict[str, Any]:
    data = ticket.to_json(instance_url)
    return {k: data[k] for k in ("id", "number", "status", "url", "assignedTo")}


def list_recommendations(
    services: Services, *, category: str | None, status: str | None, ticket: str | None
) -> dict[str, Any]:
    errors = []
    status = "open" if status is None else status
    ticket = "any" if ticket is None else ticket
    if category is not None and category not in CATEGORIES:
        errors.append(FieldError("category", f"must be one of {', '.join(CATEGORIES)}"))
    if status not in STATUS_FILTERS:
        errors.append(FieldError("status", "must be open, completed or all"))
    if ticket not in TICKET_FILTERS:
        errors.append(FieldError("ticket", "must be with, without or any"))
    if errors:
        raise ValidationFailed(errors)
    snapshot = services.store.get_secure_score()
    if snapshot is None:
        return {"secureScore": None, "refreshedAt": None, "history": [], "recommendations": []}
    summary, controls = snapshot
    newest = newest_tickets(t for t, _ in services.store.list_tickets())
    shown = []
    for control in sorted(controls, key=by_rank):
        done = bool(control.get("completed"))
        if (status == "open" and (done or control.get("deprecated"))) or (status == "completed" and not done):
            continue
        if category is not None and control.get("category") != category:
            continue
        found = newest.get(control["id"])
        if (ticket == "with" and found is None) or (ticket == "without" and found is not None):
            continue
        item = {k: control.get(k) for k in _SHOWN}
        item["ticket"] = _ticket_summary(found, services.settings.instance_url) if found else None
        shown.append(item)
    return {
        "secureScore": summary.get("secureScore"),
        "refreshedAt": summary.get("refreshedAt"),
        "history": summary.get("history") or [],
        "recommendations": shown,
    }


def complete_request(services: Services, request: TicketRequest) -> TicketRequest:
    """A request that left fields for the control to fill gets them from the stored snapshot (one point read);
    a complete request is used as it is."""
    if not request.needs_control:
        return request
    control = services.store.get_secure_score_control(request.recommendation.id)
    if control is None and not request.name and services.store.get_secure_score() is None:
        raise SecureScoreUnavailable(
            "Microsoft Secure Score has not been read yet, so the improvement action cannot fill the ticket.",
            retry_after=60,
            remediation="Refresh it (POST /api/recommendations/refresh, or wait for the Secure Score timer), or "
            "send name, recommendation.source and recommendation.category yourself.",
        )
    return complete_from_control(request, control)
