"""A consent Microsoft reported, confirmed by a token and a read (docs/design.md#consent-clouds-and-identities).

Right after the admin consent redirect, Entra ID can still issue the reader app a token without the `roles` claim
(or refuse one), and a retry minutes later works (microsoftgraph/microsoft-graph-docs#10907,
microsoft-graph-docs-contrib#4160, #7087). So a tenant whose consent came back is `confirming`, never "not
consented": the consent page tries at once, then the connector tries again about 30 s later and after 1, 2, 4 and
8 more minutes (`tenant_confirmation`, every 30 s), then at every refresh, for 24 hours. Each try asks for a new
token (a token without the permission is never kept: shared/graph_tokens.py) and reads the latest Secure Score; the
first that works makes the tenant `active`. After 24 hours it is `pending` again, with the last reason, its fix
and a new consent link.

The refresh never reads a confirming tenant as if it were active (tenants.to_read): it only runs these tries.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

from secure_score import tenant_runs, tenants
from shared import deadlines, tenant_records
from shared.problems import ConnectorError, SecureScoreUnavailable
from shared.runs import describe
from shared.services import Services
from shared.tenant_records import Tenant

log = logging.getLogger(__name__)

RETRIES = (30, 60, 120, 240, 480)  # seconds before each scheduled try after the consent page's own


def due(services: Services, *, at_refresh: bool) -> list[str]:
    """The confirming tenants to try now: each whose next try has come; at a refresh, every one."""
    now = services.clock()
    chosen = []
    for tenant_id, record in sorted(tenant_records.registered(services.store).items()):
        if not record.confirming:
            continue
        next_at = (record.confirm or {}).get("nextAt")
        scheduled = next_at is not None and datetime.fromisoformat(str(next_at)) <= now
        if at_refresh or scheduled or now >= tenants.confirmation_until(record) or record.state == "pending":
            chosen.append(tenant_id)
    return chosen


def attempt(services: Services, tenant_id: str) -> ConnectorError | None:
    """One try: a new token for the tenant and a read of its latest Secure Score. None: it worked, and the tenant
    is active (its first refresh is the caller's); else what failed, kept on the tenant's row."""
    try:
        services.graph.secure_scores(1, tenant=tenant_id)
    except deadlines.RunOutOfTime:
        failure: ConnectorError = SecureScoreUnavailable(
            "Microsoft did not answer the confirmation's read within the run's deadline.", retry_after=60,
            remediation="Nothing to fix: the connector tries again.")  # fmt: skip
    except ConnectorError as exc:
        failure = exc
    else:
        _confirmed(services, tenant_id)
        return None
    _failed(services, tenant_id, failure)
    return failure


def run_due(services: Services, *, at_refresh: bool) -> list[str]:
    """Try every confirming tenant that is due, until the run's deadline; the ones that became active. One tenant's
    try never stops another's, nor the refresh that runs them."""
    confirmed = []
    for tenant_id in due(services, at_refresh=at_refresh):
        left = deadlines.run_left()
        if left is not None and left <= 0:
            break
        try:
            if attempt(services, tenant_id) is None:
                confirmed.append(tenant_id)
        except Exception as exc:  # the store failing for a moment, say: the next tick tries again
            log.warning("Confirming tenant %s failed (%s); the next try goes on", tenant_id, type(exc).__name__)
    return confirmed


def _confirmed(services: Services, tenant_id: str) -> None:
    now = services.clock().isoformat()

    def edit(document: dict[str, Any]) -> bool:
        record = tenants.added_in(document, tenant_id)
        if record is not None and record.confirming:
            tenants.put_in(document, tenant_id, record.updated(state="active", consented_at=now,
                                                               consent_reported_at=None, confirm=None))  # fmt: skip
            return True
        return False

    if tenants.change(services, edit):
        tenant_runs.note_error(services, tenant_id, None)  # its row's error is over
    log.info("Tenant %s: consent confirmed by a token and a read; active", tenant_id)


def _failed(services: Services, tenant_id: str, exc: ConnectorError) -> None:
    now = services.clock()
    code, detail = describe(exc)
    error = {"code": code, "detail": detail, "remediation": exc.remediation or "", "at": now.isoformat()}

    def edit(document: dict[str, Any]) -> dict[str, Any] | None:
        """The tenants document's change; the answer is the error its row shows (None: not confirming)."""
        record = tenants.added_in(document, tenant_id)
        if record is None or not record.confirming:
            return None
        attempts = record.confirm_attempts + 1
        if now >= tenants.confirmation_until(record):
            given_up = _given_up(services, record, error)
            tenants.put_in(document, tenant_id, given_up.updated(last_error=record.last_error))  # as it was
            return given_up.last_error
        wait = RETRIES[attempts - 1] if attempts <= len(RETRIES) else None
        confirm = {"attempts": attempts, "nextAt": (now + timedelta(seconds=wait)).isoformat() if wait else None}
        tenants.put_in(document, tenant_id, record.updated(state="confirming", confirm=confirm))
        return error

    shown = tenants.change(services, edit)
    if shown is not None:
        tenant_runs.note_error(services, tenant_id, shown, renew=False)  # the run document holds a row's error
    log.info("Tenant %s: consent not confirmed yet (%s)", tenant_id, code)


def _given_up(services: Services, record: Tenant, error: dict[str, Any]) -> Tenant:
    """24 hours after the consent: `pending` again, with why and what to do, and a new consent link."""
    since = str(record.consent_reported_at)[:16].replace("T", " ")
    detail = (f"Microsoft reported its administrator's consent on {since} UTC, but for 24 hours no token for the "
              f"reader app could read its Secure Score. The last try: {error['detail']}")  # fmt: skip
    remediation = error["remediation"] or (
        "A Global Administrator or Privileged Role Administrator of that tenant opens the new consent link (its row) "
        "and accepts; in that tenant's Enterprise applications, the reader app must hold the Microsoft Graph "
        "permission SecurityEvents.ReadWrite.All, granted."
    )
    record = record.updated(state="pending", consent_reported_at=None, confirm=None,
                            last_error={**error, "detail": detail, "remediation": remediation})  # fmt: skip
    log.warning("Tenant %s: consent not confirmed within 24 hours; pending again with a new link", record.id)
    return tenants.renew_link(services, record)
