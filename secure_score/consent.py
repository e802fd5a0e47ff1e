"""`GET /api/tenants/consent`: where a tenant's admin comes back from Microsoft's admin consent
(docs/design.md#several-microsoft-tenants, docs/design.md#consent-clouds-and-identities).

Anonymous, like the OAuth callback: the single-use `state` bound to the tenant record is the guard. The redirect
proves nothing by itself (`admin_consent=True` is a parameter anyone can type): the connector confirms consent by
getting a Graph token for that tenant and reading its latest Secure Score, and only then is the tenant `active`.
A consent that came back but cannot be proved yet makes the tenant `confirming` (confirmation.py): Microsoft can
take minutes to apply it. A state that is unknown, used or expired, a redirect for another tenant, or an `error=`
leaves the tenant `pending` and uses nothing up. Every page says what happened in the connector's own words, never a
parameter's text: of `error_description` only the AADSTS code is read (shared/entra_errors.py), so an admin who
signed in with an account of another organisation (AADSTS50020) is told to sign in as that tenant's admin, and only
a real cancel (AADSTS65004) is "declined".

`tenant_confirmation` (every 30 s) and each refresh run the later tries (`confirm_due`).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, replace

from secure_score import confirmation, tenant_runs, tenants
from secure_score.refresh import SecureScoreRefresh
from shared import deadlines
from shared.entra_errors import DECLINED, NEEDS_ADMIN, WRONG_ACCOUNT, codes
from shared.problems import ReaderAppMisconfigured, TenantNotConsented
from shared.services import Services
from shared.tenant_records import Tenant

log = logging.getLogger(__name__)

# learn `entra/identity-platform/v2-admin-consent` (error responses): the codes the page names, in its own words.
_ERRORS = {
    "access_denied": "The administrator declined (or cancelled) the consent.",
    "consent_required": "Microsoft needs an administrator's consent, which was not given.",
    "invalid_request": "Microsoft refused the consent request as malformed.",
    "unauthorized_client": "Microsoft does not allow the connector's reader app to be consented in that tenant.",
    "server_error": "Microsoft Entra ID failed while consenting.",
    "temporarily_unavailable": "Microsoft Entra ID could not take the consent right now.",
}
_ROLE = "a Global Administrator or Privileged Role Administrator of that tenant"
_RETRIES = "about 30 seconds from now, then after 1, 2, 4 and 8 more minutes, then at every refresh, for 24 hours"


@dataclass(frozen=True)
class ConsentPage:
    ok: bool
    status: int
    title: str
    lines: tuple[str, ...]
    tenant: str | None = None  # the tenant the link was for: the page leads to its view on the connector's page

    @property
    def back(self) -> tuple[str, str]:
        """The way on: the connector's page, at the tenant's own view (its admins sign in there; a customer's admin
        who is not one is asked to sign in and refused, as anywhere else)."""
        view = f"#tenant={self.tenant}" if self.tenant else ""
        return f"/api/portal{view}", "Open the connector's page (for its administrators)"


def _failed(status: int, *lines: str) -> ConsentPage:
    return ConsentPage(False, status, "Tenant not added", lines)


def finish_consent(services: Services, params: Mapping[str, str]) -> ConsentPage:
    state = params.get("state", "")
    record = tenants.find_consent(services, state) if state else None
    page = _finish(services, params, state, record)
    return replace(page, tenant=str(record.id)) if record is not None else page


def _finish(services: Services, params: Mapping[str, str], state: str, record: Tenant | None) -> ConsentPage:
    if record is None:
        return _failed(
            400,
            "This consent link is unknown, was already used, or has expired (links last 14 days).",
            "Ask the connector's admin for the tenant's current link (its row on the connector's page).",
        )
    name = str(record.name or record.id)
    error = params.get("error", "")
    if error:
        return _refused(services, record, name, error, codes(params.get("error_description", "")))
    if params.get("tenant", "").lower() != record.id:
        log.warning("A consent for tenant %s came back from another tenant", record.id)
        return _failed(400, f"The consent was given in another tenant than {name}, the one this link was made for.",
                       f"The tenant stays pending. Open the link as {_ROLE} of {name} itself.")  # fmt: skip
    if params.get("admin_consent", "").lower() != "true":
        return _failed(400, f"{name}: Microsoft did not report an administrator's consent.",
                       f"Open the link again as {_ROLE} and accept.")  # fmt: skip
    taken = tenants.take_consent(services, state, reported_at=services.clock().isoformat())
    if taken is None:
        return _failed(400, "This consent link was used a moment ago.", "Nothing to do if the tenant shows as active.")
    with deadlines.run_deadline(services.run_deadline):
        failure = confirmation.attempt(services, str(taken.id))  # proof: a real token and a real read
        if failure is None:
            SecureScoreRefresh(services).refresh(only=[str(taken.id)])  # its first refresh; a failure shows on its row
    if failure is None:
        log.info("Tenant %s consented and read", str(taken.id))
        lines = (f"{name} is now read by the connector.", "Its score and improvement actions are on the connector's "
                 "page, in its own view.")  # fmt: skip
        return ConsentPage(True, 200, "Tenant added", lines)
    if isinstance(failure, ReaderAppMisconfigured):  # the deployment's own setup: not for this admin to fix
        return ConsentPage(False, 503, "Consent received", (
            f"Microsoft reported the consent for {name}. Thank you: nothing more is needed from you.",
            "The connector's own setup keeps it from reading the tenant yet; its administrator sees what to fix on the "
            f"connector's page. It tries again {_RETRIES}."))  # fmt: skip
    last = () if isinstance(failure, TenantNotConsented) else (f"The last try: {failure.detail}",)
    return ConsentPage(True, 202, "Consent received", (
        f"Microsoft reported the consent for {name} and is applying it, which can take a few minutes.",
        f"The connector confirms it with a read {_RETRIES}; the tenant shows as confirming on the connector's page "
        "until then, and then as active. Nothing more to do here.", *last))  # fmt: skip


def _refused(services: Services, record: Tenant, name: str, error: str, found: frozenset[int]) -> ConsentPage:
    """An `error=` redirect: what happened, by its AADSTS code where one is known; the link stays usable."""
    again = "The tenant stays pending; the same link stays valid until it is used."
    if error == "access_denied" and WRONG_ACCOUNT in found:
        meaning = ("The consent was given with an account that does not belong to the tenant (AADSTS50020), for "
                   "example a provider's own admin account.")  # fmt: skip
        fix = (
            f"Sign out, then open the same link and sign in as a Global Administrator or Privileged Role "
            f"Administrator of {name} itself: an account of that tenant, not a guest or another organization's."
        )
        code = "consent_wrong_account"
    elif error == "access_denied" and NEEDS_ADMIN in found:
        meaning = "The account that signed in may not grant this consent (AADSTS90094)."
        fix = f"Open the same link as {_ROLE} of {name} and accept."
        code = "consent_needs_admin"
    elif error == "access_denied" and (DECLINED in found or not found):
        meaning = "The administrator declined (or cancelled) the consent."
        fix = f"Open the same link again as {_ROLE} of {name} and accept."
        code = "consent_declined"
    else:
        meaning = _ERRORS.get(error, "Microsoft reported that the consent did not succeed.")
        fix = f"Open the same link again as {_ROLE} of {name} and accept."
        code = "consent_declined" if error == "access_denied" else "consent_failed"
    said = "".join(f" (AADSTS{c})" for c in sorted(found)[:1]) if code in ("consent_declined", "consent_failed") else ""
    _note(services, str(record.id), code, meaning.rstrip(".") + said + ".", fix)
    log.info("Consent for tenant %s ended with an error (%s, %s)", record.id, error if error in _ERRORS else "?",
             ",".join(str(c) for c in sorted(found)) or "no code")  # fmt: skip
    return _failed(400, f"{name}: {meaning}", f"{fix} {again}")


def confirm_due(services: Services, *, at_refresh: bool = False) -> list[str]:
    """`tenant_confirmation`: try the confirming tenants whose next try has come; refresh those it confirmed."""
    with deadlines.run_deadline(services.run_deadline):
        confirmed = confirmation.run_due(services, at_refresh=at_refresh)
        if confirmed:
            SecureScoreRefresh(services).refresh(only=confirmed)
    return confirmed


def _note(services: Services, tenant_id: str, code: str, detail: str, remediation: str) -> None:
    error = {"code": code, "detail": detail, "remediation": remediation, "at": services.clock().isoformat()}
    tenant_runs.note_error(services, tenant_id, error)
