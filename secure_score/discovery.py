"""A tenant's id and cloud through OpenID Connect discovery, before it is added
(docs/design.md#consent-clouds-and-identities).

`GET {ENTRA_AUTHORITY}/{id or domain}/v2.0/.well-known/openid-configuration`: its `issuer` names the tenant id (learn
`entra/identity-platform/v2-protocols-oidc`). The public cloud's discovery also answers 200 for a tenant of another
cloud, with that cloud's endpoints and `cloud_instance_name` (smallstep/certificates#1309), and a federated
credential cannot reach another cloud (AADSTS900382; learn `entra/workload-id/workload-identity-federation-config-
app-trust-managed-identity`: "Accessing resources in another cloud is not supported"). So a tenant whose
`cloud_instance_name` (or issuer host) is not the home tenant's is refused when it is added, naming its cloud.

Only a 400 says there is no such tenant (AADSTS90002, or an identifier Entra cannot read); a 5xx, a 429, a
time-out or AADSTS90024 ("A transient error has occurred", learn `entra/identity-platform/reference-error-codes`)
is Entra failing for a moment: 503 `secure_score_unavailable` with `Retry-After`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpx

from shared import deadlines
from shared.entra_errors import TRANSIENT, codes
from shared.problems import FieldError, SecureScoreUnavailable, ValidationFailed
from shared.retries import capped_retry_after, retry_after_seconds
from shared.services import Services
from shared.text import printable
from shared.tickets import TENANT_ID

_ISSUER_ID = re.compile(r"/([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})/")
# `cloud_instance_name` -> how the page names the cloud (learn `entra/identity-platform/authentication-national-cloud`).
CLOUD_NAMES = {
    "microsoftonline.com": "Microsoft's global cloud (Azure commercial, including GCC)",
    "microsoftonline.us": "Azure Government (US: GCC High or DoD)",
    "partner.microsoftonline.cn": "Azure operated by 21Vianet (China)",
    "chinacloudapi.cn": "Azure operated by 21Vianet (China)",
    "microsoftonline.eaglex.ic.gov": "Azure Government Secret (USNat)",
    "microsoftonline.microsoft.scloud": "Azure Government Top Secret (USSec)",
}
HOME_CLOUD = "secure_score.discovery.home_cloud"  # the home tenant's discovery, kept per Services


@dataclass(frozen=True)
class Discovered:
    id: str
    cloud: str | None  # `cloud_instance_name`, lower case
    issuer_host: str | None


def cloud_name(cloud: str | None, host: str | None) -> str:
    if cloud and cloud in CLOUD_NAMES:
        return f"{CLOUD_NAMES[cloud]} ({cloud})"
    return f"the cloud of {printable(cloud or host or 'an unknown login host', 80)}"


def _unavailable(what: str, said: str, retry_after: float | None) -> SecureScoreUnavailable:
    return SecureScoreUnavailable(
        f"Microsoft Entra ID could not say which tenant {what} is right now ({said}).",
        retry_after=capped_retry_after(retry_after, 60),
        remediation="Nothing is wrong with the tenant: Entra ID failed for a moment. Try again in a minute, or add "
        "the tenant by its id (Microsoft Entra admin center > Overview > Tenant ID).",
    )


def _body(response: httpx.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def discover(services: Services, identifier: str) -> Discovered:
    """The tenant a domain (or an id) names, with its cloud; `validation_failed` when Entra ID knows none."""
    url = f"{services.settings.entra_authority}/{identifier}/v2.0/.well-known/openid-configuration"
    try:
        response = deadlines.send(services.entra_http, services.entra_http.build_request("GET", url), 30.0)
    except httpx.HTTPError as exc:
        raise _unavailable(identifier, type(exc).__name__, None) from None
    body = _body(response)
    found = codes(str(body.get("error_description") or ""))
    status = response.status_code
    if status >= 500 or status == 429 or found & TRANSIENT:
        said = f"HTTP {status}" + "".join(f", AADSTS{code}" for code in sorted(found))
        raise _unavailable(identifier, said, retry_after_seconds(response))
    if status == 400:
        what = "with the id" if TENANT_ID.fullmatch(identifier) else "for the domain"
        raise ValidationFailed([FieldError("tenant", f"Microsoft Entra ID knows no tenant {what} {identifier}")])
    issuer = str(body.get("issuer") or "") if status == 200 else ""
    match = _ISSUER_ID.search(issuer.lower())
    if match is None:
        raise _unavailable(identifier, f"HTTP {status} without a tenant's issuer", None)
    cloud = body.get("cloud_instance_name")
    host = urlsplit(issuer).hostname
    return Discovered(match[1], cloud.strip().lower() if isinstance(cloud, str) and cloud.strip() else None,
                      host.lower() if host else None)  # fmt: skip


def _home_cloud(services: Services, home: str) -> Discovered:
    return services.component(HOME_CLOUD, lambda s: discover(s, home))


def same_cloud(services: Services, found: Discovered, home: str) -> None:
    """Refuse a tenant of another cloud than the home tenant's, naming both clouds."""
    ours = _home_cloud(services, home)
    other = (found.cloud and ours.cloud and found.cloud != ours.cloud) or (
        found.issuer_host and ours.issuer_host and found.issuer_host != ours.issuer_host
    )
    if other:
        raise ValidationFailed([FieldError("tenant", (
            f"is in {cloud_name(found.cloud, found.issuer_host)}, and this deployment runs in "
            f"{cloud_name(ours.cloud, ours.issuer_host)}: Microsoft Entra ID issues no token across clouds "
            "(AADSTS900382), so this deployment cannot read it. A deployment of the connector in that cloud can."
        ))])  # fmt: skip
