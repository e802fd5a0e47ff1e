"""Each tenant's run state, written on every refresh: its last run, the error that stopped it, and the fan-out's lease
(`refreshingUntil`, `refreshingBy`). It is a small store document per tenant (shared/tenant_records.py,
`run_document`), written under its own ETag: a refresh of one tenant never writes another's, nor the tenants document
an admin changes (tenants.py), so refreshes on many instances never wait for one another.

A tenant's first write starts from the run state an earlier version kept in the tenants document, so no tenant's
last outcome is lost; the write that needs the tenants document too (a withdrawn consent's new link) is rare.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any, TypeVar

from secure_score import tenants
from shared import tenant_records
from shared.services import Services
from shared.store import update_document
from shared.tenant_records import Tenant, run_document
from shared.tickets import HOME

T = TypeVar("T")


def _registration(services: Services, tenant_id: str) -> Tenant | None:
    """The tenant's record in the tenants document (None: no such tenant)."""
    document = tenant_records.registrations(services.store)
    return document.home if tenant_id == HOME else document.added.get(tenant_id)


def _change_run(
    services: Services, tenant_id: str, record: Tenant | None, edit: Callable[[Tenant], tuple[T, Tenant]]
) -> T:
    """Apply `edit(record with its run state) -> (answer, record to store)` to the tenant's run document under its
    ETag, re-reading on a lost race. Only the run state of the record it returns is stored. `record` is the
    tenant's registration, None for one not read yet: the tenants document is then read only for a first write."""
    known: list[Tenant] = [record] if record is not None else []

    def edited(run: dict[str, Any]) -> T:
        if not run:  # the first write: from the run state the tenants document kept (an earlier version's)
            if not known:
                known.append(_registration(services, tenant_id) or Tenant())
            run.update(known[0].run_state())
        answer, changed = edit((known[0] if known else Tenant()).with_run(run))
        run.clear()
        run.update(changed.run_state())
        return answer

    return update_document(services.store, run_document(tenant_id), edited)


def record_run(
    services: Services, tenant_id: str, last: dict[str, Any], error: dict[str, Any] | None, *, release: bool = False
) -> None:
    """A refresh's outcome on its tenant's run state: the last run, and the error that stopped it (or none); with
    `release`, in the same write, the end of the fan-out's lease the refresh held (`claim_refresh`). The tenants
    document is not read (the refresh chose a registered tenant), unless this is the tenant's first write."""

    def note(current: Tenant) -> tuple[None, Tenant]:
        current = current.updated(last_refresh=last, last_error=error)
        if release and current.refreshing_until is not None:
            current = current.updated(refreshing_until=None, refreshing_by=None)
        return None, current

    _change_run(services, tenant_id, None, note)
    _renew_if_not_consented(services, tenant_id, error)


def claim_refresh(services: Services, tenant_id: str, due: str, lease: timedelta, message: str) -> str:
    """Take the tenant's refresh lease (`refreshingUntil`, `refreshingBy`) for queue message `message`, due at
    `due`, under its run document's ETag so two instances never both take it: `claimed`, or why not: `done` (a
    refresh began after `due` and did not fail: this message is a repeat), `busy` (another message's refresh holds
    the lease), `gone` (no longer read). The queue hides a message while its function runs, so the same message seen
    again means its earlier run is over (its instance died): it takes its own lease back at once."""
    now = services.clock()
    record = _registration(services, tenant_id)
    if record is None or (tenant_id == HOME and record.state == "paused") or (tenant_id != HOME and not
                                                                               record.active):  # fmt: skip
        return "gone"

    def take(current: Tenant) -> tuple[str, Tenant]:
        if current.last_refresh_at > due and (current.last_refresh or {}).get("status") != "failed":
            return "done", current  # a failed one is not: the message's next try refreshes again
        held = current.refreshing_until is not None and current.refreshing_until > now.isoformat()
        if held and current.refreshing_by != message:
            return "busy", current
        return "claimed", current.updated(refreshing_until=(now + lease).isoformat(), refreshing_by=message)

    return _change_run(services, tenant_id, record, take)


def note_poisoned(services: Services, tenant_id: str, queue: str, attempts: int) -> None:
    """The tenant's queued refresh failed its last try and the host moves the message to `queue`: its row and
    provisioning say so, with the fix of the error that failed it."""
    at = services.clock().isoformat()
    record = _registration(services, tenant_id)
    if record is None:
        return

    def note(current: Tenant) -> tuple[None, Tenant]:
        error = dict(current.last_error or {"code": "refresh_failed", "detail": "The refresh failed."})
        fix = error.get("remediation") or "Fix what the error names."
        error["poisoned"] = {"queue": queue, "attempts": attempts, "at": at}
        error["remediation"] = (
            f"{fix} Its queued refresh failed {attempts} times in a row and its message moved to the queue {queue}; "
            "the next scheduled refresh queues the tenant again (the message in that queue can then be deleted)."
        )
        return None, current.updated(last_error=error)

    _change_run(services, tenant_id, record, note)


def note_error(services: Services, tenant_id: str, error: dict[str, Any] | None, *, renew: bool = True) -> None:
    """An error met outside a refresh (the consent's proof read, its confirmation) on an added tenant's row; None:
    the error is over. With `renew`, a consent found missing gives the row a new consent link."""
    record = _registration(services, tenant_id) if tenant_id != HOME else None
    if record is None:
        return
    _change_run(services, tenant_id, record, lambda current: (None, current.updated(last_error=error)))
    if renew:
        _renew_if_not_consented(services, tenant_id, error)


def _renew_if_not_consented(services: Services, tenant_id: str, error: dict[str, Any] | None) -> None:
    """A consent never given, or withdrawn, and no link left: the row shows a new consent link (the tenants
    document's write, rare: only for this error)."""
    if tenant_id == HOME or not error or error.get("code") != "tenant_not_consented":
        return

    def renew(document: dict[str, Any]) -> None:
        record = tenants.added_in(document, tenant_id)
        if record is not None and not record.consent and record.state != "confirming":
            tenants.put_in(document, tenant_id, tenants.renew_link(services, record))

    tenants.change(services, renew)
