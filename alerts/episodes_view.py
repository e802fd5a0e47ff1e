"""The episodes `GET /api/alerts` shows beside the alerts (docs/alerts.md#episodes-on-the-alerts-view): each (alert,
tenant) episode that is not over or that carries an error, so the Alerts view says what each alert is doing in each
tenant, a ticket a person closed while the score is still across and a step that failed with its fix, instead of
inferring it from the open tickets.

One range read of the episode documents (`alert-episode:{tenant}:{alert}`, the store's list_documents by prefix), each
shown under the tenant and alert its name says, as the engine finds it. An episode of an alert no longer saved is
left out; an error where the alert no longer checks the tenant (taken out of its tenants, the tenant removed) is not
shown, as provisioning does not show it (alerts/failures.py): nothing would step the episode again to clear it. At
most SHOWN entries, failing ones first, then the newest; `episodesLeftOut` counts the rest. An episode under way
names its ticket as the store has it (`ticketDetails`: number, status, link), only if it is the episode's tenant's (as
alerts/tickets.py ticket_of), so the page needs no list of tickets. Never a token."""

from __future__ import annotations

from typing import Any

from alerts.engine import OVER, PREFIX, STATES
from alerts.failures import FIX
from alerts.model import HOME_ID, Alert
from alerts.tickets import ticket_of
from shared import tenant_records
from shared.services import Services
from shared.text import clean_line
from shared.tickets import HOME

SHOWN = 1000  # entries; 100 alerts over many tenants could be more, yet most episodes are over and not shown
DETAIL = 1000  # characters of an error's detail: the connector's own sentences are far shorter
SHORT = 64  # a code, a time or a ticket id: longer is not one (store data is kept to what the engine writes)


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and len(value) <= SHORT else None


def _count(value: Any, least: int) -> int:
    """An integer from `least` that a browser reads exactly (JavaScript's safe integers), else `least`."""
    good = isinstance(value, int) and not isinstance(value, bool) and least <= value <= 2**53 - 1
    return value if good else least


def _error(value: Any) -> dict[str, Any] | None:
    if not isinstance(value, dict):
        return None
    return {"code": _text(value.get("code")) or "internal_error", "detail": clean_line(value.get("detail"), DETAIL),
            "attempts": _count(value.get("attempts"), 1),
            "at": _text(value.get("at")), "fix": FIX}  # fmt: skip


def _details(services: Services, ticket_id: str | None, tenant: str) -> dict[str, Any] | None:
    """The episode's ticket in the few words the page says, only if it is this tenant's (ticket_of)."""
    ticket = ticket_of(services, ticket_id, tenant)
    shown = ticket.to_json(services.settings.instance_url) if ticket else None
    return {"number": shown["number"], "status": shown["status"], "url": shown["url"]} if shown else None


def _entry(data: dict[str, Any], alert: Alert, shown: str, read: set[str]) -> dict[str, Any] | None:
    tenant = HOME if shown == HOME_ID else shown
    checked = alert.covers(tenant) and tenant in read
    error = _error(data.get("error")) if checked else None
    state = data.get("state") if data.get("state") in STATES else OVER
    if state == OVER and error is None:
        return None
    return {"alert": alert.id, "tenant": shown, "state": state,
            "episode": _count(data.get("episode"), 0),
            "since": _text(data.get("since")), "ticket": _text(data.get("ticket")), "error": error}  # fmt: skip


def episodes(services: Services, alerts: list[Alert]) -> tuple[list[dict[str, Any]], int]:
    """The episodes to show, failing first, then the newest; and how many were left out over SHOWN. One ticket read
    for each shown episode under way (an episode over says only its error)."""
    by_id = {a.id: a for a in alerts}
    found = services.store.list_documents(PREFIX) if alerts else {}
    read = set(tenant_records.readable(services.store)) if found else set()
    kept = []
    for name, (data, _) in found.items():
        # whose it is by its name (engine.document_name), as the engine finds it: never by members a document holds
        shown, _, alert_id = name.removeprefix(PREFIX).partition(":")
        alert = by_id.get(alert_id) if isinstance(data, dict) and shown else None
        entry = _entry(data, alert, shown, read) if alert is not None else None
        if entry is not None:
            kept.append(entry)
    failing = sorted((e for e in kept if e["error"]), key=lambda e: str(e["error"]["at"] or ""), reverse=True)
    others = sorted((e for e in kept if not e["error"]), key=lambda e: str(e["since"] or ""), reverse=True)
    kept = failing + others
    for entry in kept[:SHOWN]:
        tenant = HOME if entry["tenant"] == HOME_ID else entry["tenant"]
        under_way = entry["state"] != OVER
        entry["ticketDetails"] = _details(services, entry["ticket"], tenant) if under_way else None
    return kept[:SHOWN], max(0, len(kept) - SHOWN)
