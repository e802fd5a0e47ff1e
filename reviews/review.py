"""A tenant's review for a period (docs/api.md#a-tenants-review): its Secure Score day by day with Secure Score's
comparative averages, the actions completed and regressed, its tickets (opened, resolved, overdue, median days to
resolve) and the open actions with the most points left. Everything comes from the store (the refresh keeps what a
review needs of each day, secure_score/daily.py), so a review never waits for Microsoft Graph, and only this
tenant's tickets are read (docs/design.md#isolation-between-customers)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from statistics import median
from typing import Any

from reviews.period import Period, moment, parse
from secure_score.api import is_open_action, newest_tickets
from shared import tenant_records
from shared.problems import NotFound
from shared.services import Services
from shared.text import printable
from shared.tickets import HOME, RESOLVED_STATUSES, TENANT_ID, Ticket

TOP_OPEN = 10


def tenant_of(services: Services, raw: str) -> tuple[str, dict[str, Any]]:
    """The tenant `raw` names (`home`, the home tenant's id, or an added tenant not removed): its store key and
    how the review names it. Any other is 404, as for PATCH and DELETE /api/tenants/{id}. `home` and an added
    tenant are known from the store alone; only another id is compared with the home tenant's (which may need the
    managed identity's token when no snapshot names it yet)."""
    wanted = raw.strip().lower()
    document = tenant_records.registrations(services.store)
    home = {"name": document.home.name or "This organization", "home": True}
    if wanted == "home":
        known = services.settings.entra_tenant_id or (services.store.get_secure_score_summary(HOME) or {}).get(
            "tenantId"
        )
        return HOME, {"id": known.lower() if isinstance(known, str) else None, **home}
    found = document.added.get(wanted) if TENANT_ID.fullmatch(wanted) else None
    if found is not None and not found.removed:
        return wanted, {"id": wanted, "name": found.name or wanted, "home": False}
    if found is None and TENANT_ID.fullmatch(wanted) and wanted == services.home_tenant_id():
        return HOME, {"id": wanted, **home}
    raise NotFound(f"The connector reads no tenant '{printable(raw, 64)}'.")


def _score(history: list[dict[str, Any]], period: Period) -> list[dict[str, Any]]:
    days = []
    for day in history:
        current, maximum = day.get("current"), day.get("max")
        if not period.start.isoformat() <= str(day.get("date")) <= period.end.isoformat():
            continue
        percent = round(100 * current / maximum, 1) if isinstance(current, int | float) and maximum else None
        days.append({"date": day["date"], "current": current, "max": maximum, "percent": percent})
    return days


def _actions(history: list[dict[str, Any]], period: Period, controls: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Each change in the period with the control's title and maxScore as the snapshot has them now."""
    found: dict[str, list[dict[str, Any]]] = {"completed": [], "regressed": []}
    for day in history:
        if not period.start.isoformat() <= str(day.get("date")) <= period.end.isoformat():
            continue
        for kind, items in found.items():
            for change in day.get(kind) or []:
                control = controls.get(str(change.get("id"))) or {}
                items.append({"id": change.get("id"), "title": control.get("title") or change.get("id"),
                              "points": change.get("points"), "maxScore": control.get("maxScore"),
                              "date": day["date"]})  # fmt: skip
    return found


def _comparative(history: list[dict[str, Any]], period: Period) -> list[dict[str, Any]]:
    """The averages of the newest day in the period that has them."""
    for day in reversed(history):
        if period.start.isoformat() <= str(day.get("date")) <= period.end.isoformat() and day.get("comparative"):
            return [{"basis": c.get("basis"), "averageScore": c.get("averageScore")} for c in day["comparative"]]
    return []


def _overdue(ticket: Ticket, at: datetime, now: datetime) -> bool:
    """Overdue at `at`: made by then, past its due date then, and not done by then (now: as GET /api/tenants says)."""
    if at >= now:
        return ticket.is_overdue(now)
    created, resolved, due = moment(ticket.created_at), moment(ticket.resolved_at), moment(ticket.due_date)
    if created is None or created > at or due is None or due >= at:
        return False
    return ticket.is_open or (resolved is not None and resolved > at)


def _tickets(tickets: list[Ticket], period: Period, now: datetime) -> dict[str, Any]:
    opened = [t for t in tickets if period.holds(moment(t.created_at))]
    resolved = [t for t in tickets if t.status in RESOLVED_STATUSES and period.holds(moment(t.resolved_at))]
    days = []
    for ticket in resolved:
        created, done = moment(ticket.created_at), moment(ticket.resolved_at)
        if created is not None and done is not None:
            days.append(max(0.0, (done - created).total_seconds() / 86400))
    at = min(period.until, now)
    return {
        "opened": len(opened),
        "resolved": len(resolved),
        "overdue": sum(1 for t in tickets if _overdue(t, at, now)),
        "medianDaysToResolve": round(median(days), 1) if days else None,
    }


def _top_open(controls: list[dict[str, Any]], tickets: list[Ticket], tenant: str, url: str | None) -> list[Any]:
    """The open actions with the most points left (then by rank), each with its newest ticket, if any."""
    newest = newest_tickets(tickets, tenant)

    def left(control: dict[str, Any]) -> float:
        maximum, score = control.get("maxScore"), control.get("score")
        return float(maximum or 0) - float(score or 0)

    chosen = sorted((c for c in controls if is_open_action(c)), key=lambda c: (-left(c), tenant_records.by_rank(c)))
    shown = []
    for control in chosen[:TOP_OPEN]:
        found = newest.get(control["id"])
        ticket = None
        if found is not None:
            data = found.to_json(url)
            ticket = {k: data[k] for k in ("id", "number", "status", "url")}
        shown.append({"id": control["id"], "title": control.get("title"), "category": control.get("category"),
                      "score": control.get("score"), "maxScore": control.get("maxScore"),
                      "pointsLeft": round(left(control), 2), "ticket": ticket})  # fmt: skip
    return shown


def review(services: Services, raw_tenant: str, params: Mapping[str, str]) -> dict[str, Any]:
    """The review of one tenant for the period `params` names (from, to); 404 for a tenant the connector does not
    read, `validation_failed` for a bad period."""
    now = services.clock()
    period = parse(params, now.date())
    tenant, named = tenant_of(services, raw_tenant)
    snapshot = services.store.get_secure_score(tenant)
    summary, controls = snapshot if snapshot is not None else ({}, [])
    history = [h for h in summary.get("history") or [] if isinstance(h, dict)]
    tickets = [t for t, _ in services.store.list_tickets(tenant) if t.tenant == tenant]
    return {
        "tenant": named,
        "from": period.start.isoformat(),
        "to": period.end.isoformat(),
        "score": _score(history, period),
        "comparative": _comparative(history, period),
        "actions": _actions(history, period, {str(c.get("id")): c for c in controls}),
        "tickets": _tickets(tickets, period, now),
        "topOpen": _top_open(controls, tickets, tenant, services.settings.instance_url),
    }
