"""`GET /api/tenants`: every tenant with its score and trend, open actions, open and overdue tickets, last refresh and
last error with its fix (docs/design.md#several-microsoft-tenants): the page's tenant overview, and what an MSP looks at
first. With the fan-out (docs/architecture.md#fan-out-on-storage-queues), also a queued refresh's progress and each
tenant's messages in the poison queue (poison.py)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from secure_score import tenants
from secure_score.controls import is_open_action
from secure_score.poison import PoisonedRefreshes, read_poisoned
from shared import expiring, tenant_records
from shared.services import Services
from shared.tenant_records import Tenant, Tenants
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
    return sum(1 for c in controls if is_open_action(c))


# A queued refresh shows as in progress at most this long: the tries of its last messages (host.json: 5 tries, 30 s
# apart, each within TENANT_DEADLINE) end well before, and one that never ends (no instance takes the queue) must
# not show as running for ever; provisioning says what failed.
ROUND_LIMIT = timedelta(hours=1)


def _refreshing(document: Tenants, poison: PoisonedRefreshes | None, now: datetime) -> dict[str, Any] | None:
    """The queued refresh still running: `due` tenants queued at `at`, `done` of them with an outcome since (a
    failed one too, and one whose message went to the poison queue), `failed` of those, `running` now (a lease
    held). None when none runs."""
    queued = document.fanout or {}
    at, due = str(queued.get("at") or ""), queued.get("queued")
    try:
        started = datetime.fromisoformat(at)
    except ValueError:
        return None
    if not isinstance(due, int) or due <= 0 or not timedelta(0) <= now - started <= ROUND_LIMIT:
        return None
    records = {t: r for t, r in document.added.items() if r.active}  # what a refresh reads (tenants.to_read)
    if document.home_state != "paused":
        records[HOME] = document.home
    landed = {t for t, r in records.items() if r.last_refresh_at > at}
    failed = {t for t in landed if (records[t].last_refresh or {}).get("status") == "failed"}
    poisoned = {p.tenant for p in (poison.failing() if poison else []) if p.due >= at and p.tenant in records}
    done = min(due, len(landed | poisoned))
    if done >= due:
        return None
    held = [r.refreshing_until for r in records.values() if r.refreshing_until is not None]
    running = sum(1 for until in held if until > now.isoformat())
    return {"at": at, "due": due, "done": done, "failed": len(failed | poisoned), "running": running}


def _row(services: Services, tenant: str, record: Tenant, tickets: list[Ticket], admin: bool,
         poison: PoisonedRefreshes | None, soon: dict[str, dict[str, Any]]) -> dict[str, Any]:  # fmt: skip
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
        "poisoned": None,
        "expiring": soon.get("home" if tenant == HOME else tenant),  # a template's exceptions ending within 14 days
    }
    stuck = poison.by_tenant.get(tenant) if poison is not None else None
    if stuck is not None and not stuck.stale:
        row["poisoned"] = stuck.to_json()
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
    poison = read_poisoned(services, document)
    every = [t for t, _ in services.store.list_tickets()]
    soon = expiring.load(services.store)  # one point read: what the templates' exceptions end soon, per tenant
    rows = [_row(services, HOME, document.home.updated(state=document.home_state), every, admin, poison, soon)]
    for tenant_id, record in sorted(document.added.items(), key=lambda kv: str(kv[1].name).lower()):
        if not record.removed:
            rows.append(_row(services, tenant_id, record, every, admin, poison, soon))
    return {"tenants": rows, "refreshing": _refreshing(document, poison, services.clock())}
