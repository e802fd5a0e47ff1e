"""Exceptions that end soon, per tenant (docs/templates.md#exceptions-that-end): a small summary the templates write
(their hourly run, and each apply) and `GET /api/tenants` reads in one point read. Secure Score, which answers
`GET /api/tenants`, may not import the templates (the import-linter layers, pyproject.toml), so the summary is a
store document both know by name. Per tenant (`home` or an added tenant's id): how many controls' exceptions end
within 14 days and the first `until`; at most a few dozen characters a tenant, so 2,000 tenants stay well inside a
Table entity.
"""

from __future__ import annotations

from typing import Any

from shared.store import TicketStore, update_document

DOCUMENT = "templates-expiring"


def save(store: TicketStore, by_tenant: dict[str, dict[str, Any]], at: str) -> None:
    """Replace the summary (`{tenant: {"count": n, "next": until}}`), computed at `at`; an unchanged one is not
    written (most hours nothing changes)."""
    found = store.get_document(DOCUMENT)
    if found is not None and found[0].get("tenants") == by_tenant:
        return

    def edit(document: dict[str, Any]) -> None:
        document.clear()
        document.update(at=at, tenants=by_tenant)

    update_document(store, DOCUMENT, edit)


def load(store: TicketStore) -> dict[str, dict[str, Any]]:
    found = store.get_document(DOCUMENT)
    stored = (found[0] if found else {}).get("tenants")
    return {t: v for t, v in stored.items() if isinstance(v, dict)} if isinstance(stored, dict) else {}
