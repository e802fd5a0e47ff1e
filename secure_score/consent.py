"""`GET /api/tenants/consent`: where a tenant's admin comes back from Microsoft's admin consent (DESIGN 12).

Anonymous, like the OAuth callback: the single-use `state` bound to the tenant record is the guard. The redirect
proves nothing by itself (`admin_consent=True` is a parameter anyone can type): the connector confirms consent by
getting a Graph token for that tenant and reading its latest Secure Score, and only then is the tenant `active`.
A state that is unknown, used or expired, a redirect for another tenant, or an `error=` leaves the tenant `pending`
and uses nothing up; every page says what happened in the connector's own words, never a parameter's text.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass

from secure_score import tenants
from secure_score.refresh import SecureScoreSync
from shared.problems import ConnectorError
from shared.runs import describe
from shared.services import Services

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


@dataclass(frozen=True)
class ConsentPage:
    ok: bool
    status: int
    title: str
    lines: tuple[str, ...]


def _failed(status: int, *lines: str) -> ConsentPage:
    return ConsentPage(False, status, "Tenant not added", lines)


def finish_consent(services: Services, params: Mapping[str, str]) -> ConsentPage:
    state = params.get("state", "")
    record = tenants.find_consent(services, state) if state else None
    if record is None:
        return _failed(
            400,
            "This consent link is unknown, was already used, or has expired (links last 14 days).",
            "Ask the connector's admin for the tenant's current link (its row on the connector's page).",
        )
    name = str(record.get("name") or record["id"])
    error = params.get("error", "")
    if error:
        meaning = _ERRORS.get(error, "Microsoft reported that the consent did not succeed.")
        _note(services, record["id"], "consent_declined", meaning, f"Open the link again as {_ROLE} and accept.")
        log.info("Consent for tenant %s ended with an error (%s)", record["id"], error if error in _ERRORS else "?")
        return _failed(400, f"{name}: {meaning}", f"The tenant stays pending. Open the same link again as {_ROLE} "
                       "and accept; it stays valid until it is used.")  # fmt: skip
    if params.get("tenant", "").lower() != record["id"]:
        log.warning("A consent for tenant %s came back from another tenant", record["id"])
        return _failed(400, f"The consent was given in another tenant than {name}, the one this link was made for.",
                       f"The tenant stays pending. Open the link as {_ROLE} of {name} itself.")  # fmt: skip
    if params.get("admin_consent", "").lower() != "true":
        return _failed(400, f"{name}: Microsoft did not report an administrator's consent.",
                       f"Open the link again as {_ROLE} and accept.")  # fmt: skip
    taken = tenants.take_consent(services, state, reported_at=services.clock().isoformat())
    if taken is None:
        return _failed(400, "This consent link was used a moment ago.", "Nothing to do if the tenant shows as active.")
    try:
        services.graph.secure_scores(1, tenant=taken["id"])  # proof: a real token and a real read
    except ConnectorError as exc:
        code, detail = describe(exc)
        _note(services, taken["id"], code, detail, exc.remediation or "")
        return _failed(503, f"Microsoft reported the consent for {name}, but the connector cannot read it yet: "
                       f"{detail}",
                       "The connector tries again at every refresh (a new consent can take a few minutes to apply); "
                       "the tenant's row says when it is active.")  # fmt: skip
    SecureScoreSync(services).refresh(only=[taken["id"]])  # its first refresh; a failure there shows on its row
    log.info("Tenant %s consented and read", taken["id"])
    return ConsentPage(True, 200, "Tenant added", (f"{name} is now read by the connector.",
                                                   "Its improvement actions are on the connector's page."))  # fmt: skip


def _note(services: Services, tenant_id: str, code: str, detail: str, remediation: str) -> None:
    error = {"code": code, "detail": detail, "remediation": remediation, "at": services.clock().isoformat()}
    tenants.note_error(services, tenant_id, error)
