"""The alerts that failed, in one small document (`alert-failures`), so provisioning reads one document however many
tenants and alerts there are (docs/alerts.md#when-an-alert-fails). Each entry is also on its episode; an entry goes
when its episode's next step succeeds, and at most the 100 newest are kept."""

from __future__ import annotations

import contextlib
from typing import Any

from alerts.model import HOME_ID, Alert
from shared import tenant_records
from shared.store import StoreConflict, TicketStore, update_document
from shared.tickets import HOME

DOCUMENT = "alert-failures"
KEPT = 100
# What to do about a failed step: provisioning's `score_alerts` check and the Alerts view (`GET /api/alerts`) say it
FIX = ("Fix what the error names (the ServiceNow connection, its state map's resolved state, the route's connection); "
       "the next refresh of the tenant tries again, without a second ticket (docs/alerts.md).")  # fmt: skip


def note_failure(store: TicketStore, episode: str, entry: dict[str, Any]) -> None:
    def edit(document: dict[str, Any]) -> None:
        failing = {k: v for k, v in (document.get("failing") or {}).items() if isinstance(v, dict)}
        failing[episode] = entry
        newest = sorted(failing, key=lambda k: str(failing[k].get("at")), reverse=True)[:KEPT]
        document["failing"] = {k: failing[k] for k in newest}

    with contextlib.suppress(StoreConflict):  # kept on the episode too: the next failure notes it again
        update_document(store, DOCUMENT, edit)


def clear_failure(store: TicketStore, episode: str) -> None:
    found = store.get_document(DOCUMENT)
    if found is None or episode not in (found[0].get("failing") or {}):
        return

    def edit(document: dict[str, Any]) -> None:
        document["failing"] = {k: v for k, v in (document.get("failing") or {}).items() if k != episode}

    with contextlib.suppress(StoreConflict):
        update_document(store, DOCUMENT, edit)


def failures(store: TicketStore, alerts: list[Alert]) -> list[dict[str, Any]]:
    """The failing (alert, tenant) pairs the alerts saved now still check, newest first: `{alert, tenant, at, code,
    detail, attempts}`. An alert taken out, a tenant taken out of an alert, or a tenant removed is no longer checked:
    its episode never steps again to clear the entry, so it is not shown."""
    found = store.get_document(DOCUMENT)
    failing = (found[0].get("failing") or {}) if found else {}
    by_id = {a.id: a for a in alerts}
    read = set(tenant_records.readable(store)) if failing else set()

    def checked(entry: dict[str, Any]) -> bool:
        tenant = HOME if entry.get("tenant") in (None, HOME_ID) else str(entry["tenant"])
        alert = by_id.get(str(entry.get("alert")))
        return alert is not None and alert.covers(tenant) and tenant in read

    kept = [v for v in failing.values() if isinstance(v, dict) and checked(v)]
    return sorted(kept, key=lambda v: str(v.get("at")), reverse=True)
