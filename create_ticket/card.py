"""`GET /api/tickets`: the data behind the portal's ServiceNow card."""

from __future__ import annotations

from collections import Counter
from typing import Any

from shared import tenant_records
from shared.problems import FieldError, ValidationFailed
from shared.runs import last_sync
from shared.services import Services
from shared.tickets import CLOSED_STATUSES, HOME, OPEN_STATUSES, known_categories

STATUS_FILTERS = ("open", "closed", "overdue", "all")
SUMMARY_KEYS = ("pending", "new", "in_progress", "on_hold", "resolved", "closed", "canceled", "unknown", "missing")


def _tenant(services: Services, value: str | None, errors: list[FieldError]) -> str | None:
    try:
        return tenant_records.resolve(services, value)
    except ValidationFailed as exc:
        errors.extend(exc.errors)
        return HOME


def ticket_card(
    services: Services, *, status: str | None, category: str | None, tenant: str | None = None
) -> dict[str, Any]:
    errors: list[FieldError] = []
    status = "open" if status is None else status
    if status not in STATUS_FILTERS:
        errors.append(FieldError("status", "must be open, closed, overdue or all"))
    chosen = _tenant(services, tenant, errors)
    tickets = [t for t, _ in services.store.list_tickets(chosen)]
    known = known_categories(t.recommendation.get("category") for t in tickets)
    if category is not None and category not in known:
        errors.append(FieldError("category", f"must be one of {', '.join(known)}"))
    if errors:
        raise ValidationFailed(errors)
    if category is not None:
        tickets = [t for t in tickets if t.recommendation.get("category") == category]
    summary = Counter({key: 0 for key in SUMMARY_KEYS})
    summary.update(t.status for t in tickets)
    now = services.clock()
    summary["overdue"] = sum(1 for t in tickets if t.is_overdue(now))
    wanted = {"open": OPEN_STATUSES, "closed": CLOSED_STATUSES}.get(status)
    if status == "overdue":
        shown = [t for t in tickets if t.is_overdue(now)]
    else:
        shown = [t for t in tickets if wanted is None or t.status in wanted]
    shown.sort(key=lambda t: t.created_at, reverse=True)
    return {
        # Each says whether it is overdue now (open and past its due date), as the count does: the page marks them.
        "tickets": [{**t.to_json(services.settings.instance_url), "overdue": t.is_overdue(now)} for t in shown],
        "summary": dict(summary),
        "lastSync": last_sync(services.store),
    }
