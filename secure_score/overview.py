"""`GET /api/tenants`: every tenant with its score and trend, open actions, open and overdue tickets, last refresh and
last error with its fix (docs/design.md#several-microsoft-tenants): the page's tenant overview, and what an MSP looks at
first."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from secure_score import tenants
from shared import tenant_records
from shared.services import Services
from shared.tenant_records import Tenant
from shared.tickets import HOME, Ticket


def _change(history: list[dict[str, Any]], days: int) -> float | None:
    """The score now against `days` ago (the newest snapshot at or before then), from the stored 90-day history."""
    points = [h for h in history if isinstance(h.get("current"), int | float)]
    if len(points) < 2:
        return None
    newest = points[-1]
    then = (datetime.fromisoformat(str(newest["date"])) - timedelta(days=days)).date().isoformat()
    older = [h for h in points if str(h["date"]) <= then]
    return round(float(newest["current"]) - float(older[-1]["current"]), 2) if older else None


def _open_actions(controls: list[dict[str, Any]]) -> int:
    return sum(1 for c in controls if c.get("scored", c.get("score") is not None) and not c.get("completed")
               and not c.get("deprecated"))  # fmt: skip


def _row(services: Services, tenant: str, record: Tenant, tickets: list[Ticket], admin: bool) -> dict[str, Any]:
    snapshot = services.store.get_secure_score(tenant) if not record.removed else None
    summary, controls = snapshot if snapshot is not None else ({}, [])
    history = list(summary.get("history") or [])
    mine = [t for t in tickets if t.tenant == tenant]
    now = services.clock()
    row = {
        "id": record.id or (tenants.home_id(services) if tenant == HOME else tenant),
        "name": record.name or ("This organization" if tenant == HOME else tenant),
        "domain": record.domain,
        "home": tenant == HOME,
        "state": record.state or "active",
        "score": summary.get("secureScore"),
        "change7": _change(history, 7),
        "change30": _change(history, 30),
        "openRecommendations": _open_actions(controls) if snapshot is not None else None,
        "openTickets": sum(1 for t in mine if t.is_open),
        "overdueTickets": sum(1 for t in mine if t.is_overdue(now)),
        "lastRefresh": record.last_refresh,
        "lastError": record.last_error,
    }
    waiting = tenant != HOME and record.consent_state and not record.consent_expired(now)
    if tenant != HOME and record.confirming:  # consent received, not proved by a read yet
        row["confirming"] = tenants.confirmation_schedule(record)
    if tenant != HOME and row["state"] == "pending":  # which wait: for the admin, for the proof, or for a new link
        row["consent"] = "reported" if record.consent_reported_at else "open" if waiting else "expired"
    if admin and waiting:
        row["consentUrl"] = tenants.consent_url(services, tenant, str(record.consent_state))
    return row


def tenant_overview(services: Services, *, admin: bool) -> dict[str, Any]:
    """The home tenant first, then the others by name; consent links only for admins (a link is a capability)."""
    document = tenant_records.load(services.store)
    every = [t for t, _ in services.store.list_tickets()]
    rows = [_row(services, HOME, document.home.updated(state=document.home_state), every, admin)]
    for tenant_id, record in sorted(document.added.items(), key=lambda kv: str(kv[1].name).lower()):
        if not record.removed:
            rows.append(_row(services, tenant_id, record, every, admin))
    return {"tenants": rows}
