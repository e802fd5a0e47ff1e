"""Provisioning's `refresh_queue` check (docs/api.md, Provisioning; docs/admin-guide.md, 10.5a): the queued Secure
Score refreshes that failed every try and sit in the poison queue, one failing check per tenant, with how many, the
last error when it is known, and the fix; what is not a refresh the connector queued, as such. No queue configured:
no fan-out, no check."""

from __future__ import annotations

from provisioning.checks import Check
from secure_score.api import CLEAR, POISON_QUEUE, PoisonedRefreshes, TenantPoison, read_poisoned
from shared import tenant_records
from shared.queues import MAX_DEQUEUE_COUNT, PEEK_LIMIT
from shared.services import Services
from shared.tenant_records import Tenants
from shared.tickets import HOME

NAME = "refresh_queue"
POISONED = "refresh_poisoned"  # a tenant's queued refresh failed every try
UNREADABLE = "queue_message_unreadable"  # a message in the poison queue that the connector never queued
UNAVAILABLE = "store_unavailable"  # the poison queue could not be read
_AGAIN = ("Nothing else is needed for the tenant: the next scheduled refresh (SECURE_SCORE_SCHEDULE) queues it again, "
          "or POST /api/recommendations/refresh (the page's Refresh) does now. A message in the poison queue is never "
          "run again; once the tenant is refreshed this check says so, and the message can be cleared: ")  # fmt: skip
_UNKNOWN = ("Its tries did not end with an error the connector could note (an instance stopped in the middle each "
            "time: a crash, a restart, the function's time-out): look at the secure_score_tenant invocations in "
            "Application Insights (exceptions and traces) around that time.")  # fmt: skip


def queue_checks(services: Services) -> list[Check]:
    try:
        document = tenant_records.load(services.store)
    except Exception:
        return []  # the store is down: its own check says so
    found = read_poisoned(services, document)
    if found is None:
        return []
    if found.error is not None:
        return [_check(False, f"The poison queue {POISON_QUEUE} could not be read: {found.error}",
                       "Check that the app's identity has Storage Queue Data Contributor on the app's storage account "
                       "(the Bicep grants it) and that the account answers (its Resource health); provisioning reads "
                       "the queue again when it is loaded again.", code=UNAVAILABLE)]  # fmt: skip
    checks = [_tenant(document, entry, found) for entry in found.failing()]
    if found.unreadable:
        checks.append(_check(False, f"{found.unreadable} message(s) in {POISON_QUEUE} are not refreshes the "
                             f"connector queued (the oldest moved there {found.unreadable_at}); they are never run."
                             + _more(found), "Something else adds messages to the app's queue: look at them (the "
                             f"Azure portal: the storage account > Queues > {POISON_QUEUE}), find what writes to "
                             f"the storage account, then clear them: {CLEAR}.", code=UNREADABLE))  # fmt: skip
    stale = [e for e in found.by_tenant.values() if e.stale]
    if stale:
        names = ", ".join(_name(document, e.tenant) for e in stale[:10]) + (" and others" if len(stale) > 10 else "")
        checks.append(
            _check(
                True,
                f"{sum(e.messages for e in stale)} old message(s) in {POISON_QUEUE} are for "
                f"tenants refreshed since ({names}): nothing to fix; they can be cleared: {CLEAR}.",
            )
        )
    if not checks:
        checks.append(_check(True, f"No queued refresh failed all its tries: {POISON_QUEUE} is empty."))
    return checks


def _tenant(document: Tenants, entry: TenantPoison, found: PoisonedRefreshes) -> Check:
    name = _name(document, entry.tenant)
    record = document.home if entry.tenant == HOME else document.added.get(entry.tenant)
    tries = f"{entry.messages} queued refresh message(s) of {name} failed {MAX_DEQUEUE_COUNT} tries each"
    moved = f" and moved to {POISON_QUEUE} (the last {entry.last_at})."
    if record is None or record.removed or (entry.tenant != HOME and not record.active):
        return _check(
            False,
            tries + moved + " The connector no longer reads that tenant." + _more(found),
            f"Nothing to fix for the tenant: clear the message(s): {CLEAR}.",
            entry.tenant,
            POISONED,
        )
    error = record.last_error if isinstance(record.last_error, dict) else None
    if error:
        said = f" The last error: {error.get('code')}: {error.get('detail')}"
        fix = str(error.get("remediation") or "Fix what the last error names.").split(" Its queued refresh failed")[0]
    else:
        said, fix = " The last error is not known.", _UNKNOWN
    return _check(False, tries + moved + said + _more(found), f"{fix} {_AGAIN}{CLEAR}.",
                  None if entry.tenant == HOME else entry.tenant, POISONED)  # fmt: skip


def _name(document: Tenants, tenant: str) -> str:
    if tenant == HOME:
        return "this organization's tenant"
    record = document.added.get(tenant)
    return f"{record.name or tenant} ({tenant})" if record is not None else f"tenant {tenant}"


def _more(found: PoisonedRefreshes) -> str:
    if found.total <= found.read:
        return ""
    return f" (The oldest {found.read} of its {found.total} messages were read: a peek returns at most {PEEK_LIMIT}.)"


def _check(ok: bool, detail: str, remediation: str | None = None, tenant: str | None = None,
           code: str | None = None) -> Check:  # fmt: skip
    return Check(NAME, ok, detail, remediation, tenant, code, group="tenant")
