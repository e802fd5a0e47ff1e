"""Provisioning's check per added Microsoft tenant (docs/design.md#several-microsoft-tenants): consent, permission and
last refresh, with the fix.

The home tenant is the `secure_score` check beside these; a removed tenant has none.
"""

from __future__ import annotations

from typing import Any

from provisioning.checks import Check
from secure_score.api import confirmation_schedule, home_id
from shared import tenant_records
from shared.problems import ConnectorError
from shared.services import Services
from shared.tenant_records import Tenant

_ROLE = "a Global Administrator or Privileged Role Administrator of that tenant"


def tenant_checks(services: Services, *, live: bool) -> list[Check]:
    checks = []
    document = tenant_records.load(services.store)
    if document.home_state == "paused":
        paused = "This organization's own tenant is paused: the connector does not read it (POST /api/tenants with "
        checks.append(Check("tenant", True, paused + "its id reads it again).", tenant=home_id(services)))
    now = services.clock()
    for tenant_id, record in sorted(document.added.items()):
        if record.removed:
            continue
        checks.append(_check(services, tenant_id, record, now, live=live and record.active))
    for check in checks:
        # A tenant's health is on its row, never on the ServiceNow card (docs/design.md#where-the-admin-reads-what).
        check.group = "tenant"
    return checks


def _check(services: Services, tenant_id: str, record: Tenant, now: Any, *, live: bool) -> Check:
    name = f"{record.name or tenant_id} ({tenant_id})"
    error = record.last_error if isinstance(record.last_error, dict) else None
    code = str((error or {}).get("code") or "") or None
    if record.confirming:
        plan = confirmation_schedule(record)
        when = f"next try {plan['nextAttemptAt']}" if plan["nextAttemptAt"] else "next try at the next refresh"
        said = f" The last try: {error.get('detail')}" if error else ""
        return Check("tenant", False, f"{name}: its admin consented on {plan['since']}; Microsoft is applying the "
                     f"consent, which the connector confirms with a read ({when}; until {plan['until']}).{said}",
                     (error or {}).get("remediation") or "Nothing to do: a new consent can take minutes to reach "
                     "tokens, and the connector tries again.", tenant_id, code or "tenant_not_consented")  # fmt: skip
    if record.state == "pending":
        if record.consent_expired(now):
            return Check("tenant", False, f"{name}: its consent link expired before anyone used it.",
                         "Add the tenant again (the page's Add a tenant, or POST /api/tenants) for a new link.",
                         tenant_id, "tenant_not_consented")  # fmt: skip
        said = f" The last attempt: {error.get('detail')}" if error else ""
        fix = (error or {}).get("remediation") if code and code.startswith("consent_") else None
        return Check("tenant", False, f"{name}: waiting for its admin's consent.{said}",
                     fix or f"Send the tenant's consent link (GET /api/tenants, or its row on the page) to {_ROLE}.",
                     tenant_id, "tenant_not_consented")  # fmt: skip
    if live:
        try:
            services.graph.secure_scores(1, tenant=tenant_id)
        except ConnectorError as exc:
            return Check("tenant", False, f"{name}: {exc.detail}", exc.remediation, tenant_id, exc.code)
    if error:
        return Check("tenant", False, f"{name}: the last refresh failed: {error.get('code')}: {error.get('detail')}",
                     error.get("remediation") or "Fix what the error names; the next refresh tries again.",
                     tenant_id, code)  # fmt: skip
    last = record.last_refresh or {}
    if not last:
        return Check("tenant", True, f"{name}: consented; not refreshed yet.", tenant=tenant_id)
    return Check("tenant", True, f"{name}: last refresh {last.get('at')}, {last.get('controls', 0)} controls "
                 f"({last.get('scored', 0)} scored)" + (" (Microsoft Graph answers now)." if live else "."),
                 tenant=tenant_id)  # fmt: skip


def home_poisoned(services: Services) -> Check | None:
    """The home tenant's queued refresh failed its last try and went to the poison queue: said with the fix
    (docs/architecture.md#fan-out-on-storage-queues)."""
    try:
        error = tenant_records.load(services.store).home.last_error
    except Exception:
        return None  # the store is down: its own check says so
    if not isinstance(error, dict) or not isinstance(error.get("poisoned"), dict):
        return None
    return Check(
        "secure_score",
        False,
        f"The queued Secure Score refresh of this tenant failed {error['poisoned'].get('attempts')} times "
        f"({error['poisoned'].get('at')}): {error.get('code')}: {error.get('detail')}",
        str(error.get("remediation") or ""),
        code=str(error.get("code") or "") or None,
    )
