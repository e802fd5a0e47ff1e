"""`GET /api/alerts` and `PUT /api/alerts`: the whole list at once, under a version, as the routes
(create_ticket/routing/saving.py; docs/alerts.md#the-api).

The version is derived from the store's ETag of the `alerts` document. A PUT without `If-Match`, or with `*`, is
`428 precondition_required`; an older version is `412 precondition_failed` with the current list. The write is
conditional on the ETag the version named, so of two admins saving at once one wins and the other gets the 412.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

from alerts.model import Alert, parse
from shared import tenant_records
from shared.problems import PreconditionFailed, PreconditionRequired
from shared.services import Services
from shared.store import StoreConflict, TicketStore
from shared.tickets import HOME

DOCUMENT = "alerts"


@dataclass(frozen=True)
class Saved:
    alerts: list[Alert]
    saved_at: str | None
    saved_by: str | None
    etag: str | None


def load(store: TicketStore) -> Saved:
    found = store.get_document(DOCUMENT)
    data, etag = found if found else ({}, None)
    listed = data.get("alerts")
    kept = listed if isinstance(listed, list) else []
    alerts = [Alert.from_json(a) for a in kept if isinstance(a, dict) and "id" in a]
    return Saved(alerts, data.get("savedAt"), data.get("savedBy"), etag)


def version_of(etag: str | None) -> str:
    return hashlib.sha256(f"{DOCUMENT}\n{etag or ''}".encode()).hexdigest()[:20]


def shown(saved: Saved) -> dict[str, Any]:
    return {"alerts": [a.to_json() for a in saved.alerts], "version": version_of(saved.etag),
            "savedAt": saved.saved_at, "savedBy": saved.saved_by}  # fmt: skip


def etag_header(saved: Saved) -> dict[str, str]:
    return {"ETag": f'"{version_of(saved.etag)}"'}


def _named(if_match: str, version: str) -> bool:
    """A list of entity tags compared strongly (RFC 9110 13.1.1); a bare version is taken too."""
    return any(tag.strip() in (f'"{version}"', version) for tag in if_match.split(","))


def _stale(store: TicketStore) -> PreconditionFailed:
    return PreconditionFailed(
        "The alerts changed since you read them (If-Match names an older version); nothing was saved.",
        remediation="Apply your change to the current alerts (in this answer, or GET /api/alerts) and PUT them with "
        "the current version in If-Match.",
        extra=shown(load(store)),
    )


def known_tenants(store: TicketStore) -> set[str]:
    """What an alert may name besides `home`: every added tenant not removed (a paused one too: its alerts wait)."""
    return {t for t in tenant_records.readable(store) if t != HOME}


def save(services: Services, body: Any, if_match: str | None, saved_by: str | None) -> Saved:
    """Replace the whole list if `if_match` names the current version; every alert valid, or nothing saved. An alert
    taken out leaves its open episode's ticket as it is (docs/alerts.md#removing-an-alert)."""
    if if_match is None or if_match.strip() == "*":
        raise PreconditionRequired(
            "A PUT of the alerts must name the version it replaces: send If-Match with the ETag GET /api/alerts "
            "gave (also for the first save).",
            remediation="GET /api/alerts, change the list, and PUT it with 'If-Match: <its ETag>'.",
        )
    saved = load(services.store)
    if not _named(if_match, version_of(saved.etag)):
        raise _stale(services.store)
    alerts = parse(body, known_tenants(services.store))
    now = services.clock().isoformat()
    document = {"alerts": [a.to_json() for a in alerts], "savedAt": now, "savedBy": saved_by}
    try:  # on the ETag the caller's version named: a save in between makes this one stale, never overwritten
        etag = services.store.put_document(DOCUMENT, document, saved.etag)
    except StoreConflict:
        raise _stale(services.store) from None
    return Saved(alerts, now, saved_by, etag)
