"""What Microsoft Entra ID means by the AADSTS codes the connector meets, in the connector's own words.

A code is read from Entra's text (`error_description` starts `AADSTS{code}: `) as a whole number and compared
exactly: AADSTS90002 (no such tenant) is not AADSTS900021 or AADSTS900023, which merely start with the same
digits (https://learn.microsoft.com/entra/identity-platform/reference-error-codes: "error_codes", the numeric
codes). Entra's own text is never shown; only the code, with what it means and who can fix it.

Facts, each with its source:
- AADSTS70021, 700211, 700212, 700213, 7002138: the client assertion matches no federated identity credential of
  the app (none at all; issuer; audience; subject; subject only when case is ignored, since February 2025 matching
  is case-sensitive) (Azure/azure-workload-identity#340, #616; Azure/login#482, #515, #517; https://learn.microsoft
  .com/entra/identity-platform/reference-breaking-changes). The subject is the managed identity's principal id,
  which changes when a user-assigned identity is deleted and created again.
- AADSTS900382 (reported as 900432 too, with the same text): "Confidential Client is not supported in Cross Cloud
  request" (MicrosoftDocs/azure-docs#35616, #35243, webprofusion/certify#553); federated credentials cannot reach
  another cloud (https://learn.microsoft.com/entra/
  workload-id/workload-identity-federation-config-app-trust-managed-identity).
- AADSTS90002: tenant not found; for a tenant that consented before, it no longer exists (or is in another cloud).
- AADSTS7000112: the application is disabled in that tenant, by its administrator or by Microsoft.
- AADSTS7000229, 650051, 65001, 700016, 500011: the app has no service principal or no consent there.
- AADSTS90024: "A transient error has occurred. Try again" (reference-error-codes).
- AADSTS50020 (consent page): the account signed in belongs to another tenant (MicrosoftDocs/azure-docs#114009;
  https://learn.microsoft.com/troubleshoot/entra/entra-id/app-integration/error-code-aadsts50020-user-account-
  identity-provider-does-not-exist); AADSTS65004: the user declined; AADSTS90094: an admin must grant it.
"""

from __future__ import annotations

import re
from typing import Any

from shared.problems import ConnectorError, ReaderAppMisconfigured, SecureScoreUnavailable, TenantNotConsented

_CODE = re.compile(r"AADSTS(\d{1,10})")
# Why the assertion matched no credential, by code.
FEDERATED_MISMATCH = {
    70021: "no federated credential of the reader app matches the managed identity's token",
    700211: "no federated credential of the reader app names the token's issuer",
    700212: "no federated credential of the reader app names the token's audience",
    700213: "no federated credential of the reader app names the token's subject, the managed identity's principal "
    "id (it changes when the identity is deleted and created again)",
    7002138: "the reader app's federated credential names the managed identity's principal id in another case "
    "(Entra ID compares subjects case-sensitively)",
}
NOT_CONSENTED = frozenset({7000229, 650051, 65001, 700016, 500011})
TENANT_GONE = 90002
APP_DISABLED = 7000112
OTHER_CLOUD = frozenset({900382, 900432})
TRANSIENT = frozenset({90024})
WRONG_ACCOUNT = 50020
DECLINED = 65004
NEEDS_ADMIN = 90094
_ROLE = "A Global Administrator or Privileged Role Administrator of that tenant"


def codes(text: str) -> frozenset[int]:
    """Every AADSTS code in Entra's text, as numbers."""
    return frozenset(int(found) for found in _CODE.findall(text[:4000]))


def _said(found: frozenset[int]) -> str:
    return ", ".join(f"AADSTS{code}" for code in sorted(found)) or "no AADSTS code"


def tenant_token_error(tenant: str, found: frozenset[int], presented: dict[str, Any], reader_app: str | None,
                       audience: str) -> ConnectorError | None:  # fmt: skip
    """What a refused token request for another tenant means, or None when the codes name nothing known."""
    mismatch = next((code for code in sorted(found) if code in FEDERATED_MISMATCH), None)
    if mismatch is not None:
        issuer = str(presented.get("iss") or "<login endpoint><your tenant id>/v2.0")
        subject = str(presented.get("sub") or presented.get("oid") or "<the managed identity's principal id>")
        return ReaderAppMisconfigured(
            f"Microsoft Entra ID refused the reader app's federated credential while reading tenant {tenant} "
            f"(AADSTS{mismatch}: {FEDERATED_MISMATCH[mismatch]}). This is the deployment's setup, not that tenant's "
            "doing: every added tenant fails the same way until it is restored.",
            remediation="Restore the reader app's federated identity credential: `azd provision` writes it again for "
            "the function app's current managed identity (infra/app/reader.bicep). By hand: Microsoft Entra admin "
            f"center > App registrations > the reader app ({reader_app or 'READER_APP_CLIENT_ID'}) > Certificates & "
            f"secrets > Federated credentials: issuer {issuer}, subject {subject} (the managed identity's principal "
            f"id), audience {audience}.",
        )
    if found & OTHER_CLOUD:
        return TenantNotConsented(
            f"Tenant {tenant} is in another Microsoft cloud than this deployment ({_said(found & OTHER_CLOUD)}): "
            "Entra ID issues no token across clouds, so this deployment cannot read it.",
            remediation="Remove the tenant from this connector (its tickets stay); a deployment in that tenant's "
            "cloud can read it.",
        )
    if TENANT_GONE in found:
        return TenantNotConsented(
            f"Microsoft Entra ID no longer knows tenant {tenant} (AADSTS90002): the tenant was deleted.",
            remediation="Nothing in the connector can bring it back. Ask the organisation whether it still has that "
            "tenant (and its id); if not, remove it from the connector: its tickets stay.",
        )
    if APP_DISABLED in found:
        return TenantNotConsented(
            f"The reader app is disabled in tenant {tenant} (AADSTS7000112): by that tenant's administrator, or by "
            "Microsoft.",
            remediation="Only that tenant can enable it again. Its Global Administrator opens Microsoft Entra admin "
            "center > Enterprise applications > the reader app > Properties: if 'Enabled for users to sign in' is No, "
            "setting it to Yes enables it; if Microsoft disabled the app, that page says so and why.",
        )
    consent = sorted(found & NOT_CONSENTED)
    if consent:
        return TenantNotConsented(
            f"The reader app has no consent in tenant {tenant} (AADSTS{consent[0]}): it was not given yet, not applied "
            "yet, or withdrawn.",
            remediation=f"{_ROLE} opens the tenant's consent link (its row on the page, or GET /api/tenants) and "
            "accepts.",
        )
    if found & TRANSIENT:
        return SecureScoreUnavailable(
            f"Microsoft Entra ID failed for a moment while issuing a token for tenant {tenant} ({_said(found)}).",
            retry_after=60,
            remediation="Nothing to fix: the connector tries again.",
        )
    return None


def unknown_token_error(tenant: str, found: frozenset[int], kind: str) -> SecureScoreUnavailable:
    """A token request that failed for a reason the connector does not know by its code."""
    return SecureScoreUnavailable(
        f"No Microsoft Graph token could be obtained for tenant {tenant} ({kind}; {_said(found)}).",
        retry_after=60,
        remediation="The connector tries again at the next refresh. If it lasts, look up the code in the admin "
        "guide's troubleshooting table (section 10.8) or Microsoft's AADSTS reference.",
    )
