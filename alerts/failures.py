"""The alerts that failed, in one small document (`alert-failures`), so provisioning reads one document however many
tenants and alerts there are (docs/alerts.md#when-an-alert-fails). Each entry is also on its episode; an entry goes
when its episode's next step succeeds, and at most the 100 newest are kept."""

from __future__ import annotations

import contextlib
from typing import Any

from shared.store import StoreConflict, TicketStore, update_document

DOCUMENT = "alert-failures"
KEPT = 100


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


def failures(store: TicketStore, alert_ids: set[str]) -> list[dict[str, Any]]:
    """The failing (alert, tenant) pairs of the alerts saved now, newest first: `{alert, tenant, at, code, detail,
    attempts}`. An alert taken out of the list is no longer checked, so its failure is not shown."""
    found = store.get_document(DOCUMENT)
    failing = (found[0].get("failing") or {}) if found else {}
    kept = [v for v in failing.values() if isinstance(v, dict) and v.get("alert") in alert_ids]
    return sorted(kept, key=lambda v: str(v.get("at")), reverse=True)
