"""What each apply wrote, one store document per (template, tenant): `template-apply:{template id}:{tenant}`
(docs/templates.md#records-exactly-once). A tenant's document is small (at most 500 controls' records) and is
written by that tenant's apply only, so tenants never contend and no entity nears Table Storage's 1 MiB.

A document holds a lease (`applyingUntil`, `applyingBy`): one apply of a template in a tenant at a time, so two
applies at once never both write a control. Each control's record (`before`, `after`, `version`, `by`, `at`,
`status`) is written as an intent (`pending`) *before* its PATCH and marked `done` after it: a crash between the two
leaves a pending intent, which the next apply resolves by what Graph holds (exactly once).

Names are safe Table RowKeys: a template id is 12 lower-case letters and digits, a tenant `home` or a GUID.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from shared import deadlines
from shared.store import TicketStore, update_document
from shared.tickets import HOME
from templates.model import HOME_ID, Template
from templates.saving import RECORDS_PREFIX

PENDING, DONE, FAILED = "pending", "done", "failed"
EXPIRING_DAYS = 14  # an exception that ends within this many days shows as `expiring` (docs/design.md, section 17)


class LeaseHeld(Exception):
    """Another apply of this template is writing this tenant now."""


def name(template_id: str, tenant: str) -> str:
    return f"{RECORDS_PREFIX}{template_id}:{tenant}"


def load(store: TicketStore, template_id: str, tenant: str) -> dict[str, Any]:
    found = store.get_document(name(template_id, tenant))
    return found[0] if found else {}


def controls_of(document: dict[str, Any]) -> dict[str, dict[str, Any]]:
    stored = document.get("controls")
    return {c: r for c, r in stored.items() if isinstance(r, dict)} if isinstance(stored, dict) else {}


def _edit(store: TicketStore, template_id: str, tenant: str, edit: Callable[[dict[str, Any]], None]) -> None:
    update_document(store, name(template_id, tenant), edit)


def take_lease(store: TicketStore, template_id: str, tenant: str, run: str, now: datetime, seconds: float) -> None:
    """The tenant's lease for `run`, or `LeaseHeld` while another run's lease lasts."""

    def edit(document: dict[str, Any]) -> None:
        until, holder = document.get("applyingUntil"), document.get("applyingBy")
        if holder not in (None, run) and isinstance(until, str) and until > now.isoformat():
            raise LeaseHeld(until)
        document.update(template=template_id, tenant=tenant, applyingBy=run,
                        applyingUntil=(now + timedelta(seconds=seconds)).isoformat())  # fmt: skip

    _edit(store, template_id, tenant, edit)


def write(store: TicketStore, template_id: str, tenant: str, run: str, records: dict[str, dict[str, Any]],
          drift: dict[str, dict[str, Any] | None], *, release: bool = False) -> None:  # fmt: skip
    """Merge control `records` and `drift` (None: no drift any more) into the tenant's document, only while `run`
    holds the lease (a run whose lease ran out and was taken writes nothing: `LeaseHeld`)."""

    def edit(document: dict[str, Any]) -> None:
        if document.get("applyingBy") != run:
            raise LeaseHeld(str(document.get("applyingUntil")))
        document["controls"] = {**controls_of(document), **records}
        drifted = {**(document.get("drift") or {}), **drift}
        document["drift"] = {c: d for c, d in drifted.items() if d is not None}
        if release:
            document.update(applyingBy=None, applyingUntil=None)

    _edit(store, template_id, tenant, edit)


def all_of(store: TicketStore, template_id: str) -> dict[str, dict[str, Any]]:
    """Every tenant's document of a template, by tenant."""
    prefix = name(template_id, "")
    return {n[len(prefix) :]: d for n, (d, _) in store.list_documents(prefix).items()}


def drift_and_expiring(
    store: TicketStore, template: Template, now: datetime, snapshots: bool = False
) -> tuple[list[Any], list[Any], bool]:
    """What a template's answer shows: each drifted control as the last apply found it (with `snapshots`, also each
    control whose state in the tenant's latest refreshed snapshot, newer than the write, differs from what the
    template wrote: `by` unknown), and each exception that ends within EXPIRING_DAYS. Only the template's controls and
    tenants now: a record of one taken out since is no longer the template's (another may set that control now).
    Under the run's deadline: the tenants read by then, and False when some were not."""
    drift: list[dict[str, Any]] = []
    expiring: list[dict[str, Any]] = []
    soon = (now + timedelta(days=EXPIRING_DAYS)).isoformat()
    mine = set(template.controls)
    for tenant, document in sorted(all_of(store, template.id).items()):
        if not template.covers(tenant):
            continue
        left = deadlines.run_left()
        if left is not None and left <= 0:
            return drift, expiring, False
        found = {c: d for c, d in (document.get("drift") or {}).items() if c in mine}
        if snapshots:
            found.update({c: d for c, d in _refreshed_drift(store, tenant, document).items()
                          if c not in found and c in mine})  # fmt: skip
        for control, seen in sorted(found.items()):
            drift.append({"tenant": tenant, "control": control, **seen})
        for control, record in sorted((c, r) for c, r in controls_of(document).items() if c in mine):
            until = record.get("until")
            if record.get("status") == DONE and isinstance(until, str) and until <= soon:
                expiring.append({"tenant": tenant, "control": control, "until": until})
    return drift, expiring, True


def _refreshed_drift(store: TicketStore, tenant: str, document: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The controls whose state in the tenant's stored snapshot (one read) differs from what the template wrote, when
    that snapshot was refreshed after the write: a refresh saw a person's change before any apply did."""
    stored = store.get_secure_score(HOME if tenant == HOME_ID else tenant)
    if stored is None:
        return {}
    refreshed = str(stored[0].get("refreshedAt") or "")
    states = {str(c.get("id")): c.get("state") for c in stored[1]}
    return {c: {"state": states[c], "by": None, "at": refreshed} for c, r in controls_of(document).items()
            if r.get("status") == DONE and c in states and states[c] != r.get("after")
            and refreshed > str(r.get("at") or "")}  # fmt: skip
