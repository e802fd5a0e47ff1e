"""`GET /api/recommendations`: the tenant's improvement actions with their score and ticket, served from the
stored snapshot (never waiting for Graph), and filling a ticket request from its control.

A control the tenant's snapshot does not score does not apply to the tenant: it is never open and never counted,
and is listed only on request (`status=all`, or `scored=false`); the list says how many it leaves out."""

from __future__ import annotations

from typing import Any

from secure_score.controls import newest_tickets
from shared import tenant_records
from shared.problems import FieldError, ValidationFailed
from shared.services import Services
from shared.tickets import HOME, Ticket, known_categories

STATUS_FILTERS = ("open", "completed", "all")
TICKET_FILTERS = ("with", "without", "any")
SCORED_FILTERS = ("true", "false", "any")
_SHOWN = ("id", "title", "category", "service", "rank", "maxScore", "score", "completed", "state", "actionType",
          "tier", "userImpact", "implementationCost", "threats", "remediation", "actionUrl", "deprecated",
          "implementationStatus", "scored")  # fmt: skip


def _ticket_summary(ticket: Ticket, instance_url: str | None) -> dict[str, Any]:
    data = ticket.to_json(instance_url)
    return {k: data[k] for k in ("id", "number", "status", "url", "assignedTo")}


def _is_scored(control: dict[str, Any]) -> bool:
    """Snapshots stored before `scored` was recorded knew it as a score that is not null."""
    return bool(control.get("scored", control.get("score") is not None))


def _status_matches(control: dict[str, Any], status: str) -> bool:
    done = bool(control.get("completed"))
    if status == "open":
        return _is_scored(control) and not done and not control.get("deprecated")
    if status == "completed":
        return _is_scored(control) and done
    return True


def list_recommendations(
    services: Services,
    *,
    category: str | None,
    status: str | None,
    ticket: str | None,
    scored: str | None = None,
    tenant: str | None = HOME,
) -> dict[str, Any]:
    """One tenant's actions (HOME by default) or, with `tenant` None, every tenant's, each item naming its tenant."""
    errors = []
    status = ("all" if scored == "false" else "open") if status is None else status
    ticket = "any" if ticket is None else ticket
    scored = "any" if scored is None else scored
    if status not in STATUS_FILTERS:
        errors.append(FieldError("status", "must be open, completed or all"))
    if ticket not in TICKET_FILTERS:
        errors.append(FieldError("ticket", "must be with, without or any"))
    if scored not in SCORED_FILTERS:
        errors.append(FieldError("scored", "must be true, false or any"))
    chosen = [tenant] if tenant is not None else tenant_records.readable(services.store)
    snapshots = {t: services.store.get_secure_score(t) for t in chosen}
    known = known_categories(c.get("category") for found in snapshots.values() if found for c in found[1])
    if category is not None and category not in known:
        errors.append(FieldError("category", f"must be one of {', '.join(known)}"))
    if errors:
        raise ValidationFailed(errors)
    every = [t for t, _ in services.store.list_tickets()]
    shown: list[dict[str, Any]] = []
    not_scored = 0
    for tenant_id, snapshot in snapshots.items():
        if snapshot is None:
            continue
        controls = snapshot[1]
        not_scored += sum(1 for c in controls if not _is_scored(c))
        newest = newest_tickets(every, tenant_id)
        for control in sorted(controls, key=tenant_records.by_rank):
            matches = _status_matches(control, status) and (
                scored == "any" or _is_scored(control) == (scored == "true")
            )
            if not matches or (category is not None and control.get("category") != category):
                continue
            found = newest.get(control["id"])
            if (ticket == "with" and found is None) or (ticket == "without" and found is not None):
                continue
            item = {k: control.get(k) for k in _SHOWN}
            item["scored"] = _is_scored(control)
            item["ticket"] = _ticket_summary(found, services.settings.instance_url) if found else None
            if tenant is None:
                item["tenant"] = tenant_id or None
            shown.append(item)
    summary = (snapshots.get(HOME if tenant is None else tenant) or ({}, []))[0]
    return {
        "secureScore": summary.get("secureScore"),
        "refreshedAt": summary.get("refreshedAt"),
        # The days as the list has always shown them; what a review keeps of each day is the review's.
        "history": [{k: h.get(k) for k in ("date", "current", "max")} for h in summary.get("history") or []],
        "recommendations": shown,
        "notScored": not_scored,
    }
