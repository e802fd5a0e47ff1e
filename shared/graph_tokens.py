"""Tokens for Microsoft Graph, with no secret anywhere (docs/design.md#several-microsoft-tenants).

The home tenant's come from the managed identity (`DefaultAzureCredential`: the user-assigned identity in Azure).
Another tenant's come from the multi-tenant reader app, whose federated credential trusts that identity: the
identity's token for `api://AzureADTokenExchange` (per cloud) is the client assertion of a client-credentials
request to that tenant (azure-identity `ClientAssertionCredential`, one per tenant, so each keeps its own cache).

A token is kept only while it is good: one for another tenant that carries no Microsoft Graph role (consent not
applied yet: Entra can issue it right after the consent redirect, microsoftgraph/microsoft-graph-docs#10907,
microsoft-graph-docs-contrib#7087) is never kept, and one Graph refused (`forget`) is dropped. Dropping a tenant's
token drops its credential too: azure-identity keeps its tokens in an in-memory cache per credential
(azure-identity `_internal/aad_client_base.py`, `TokenCache()` per client), which would hand the same token back
for an hour. Refusals are read by their AADSTS codes (shared/entra_errors.py).
"""

from __future__ import annotations

import base64
import binascii
import json
import threading
import time
from typing import Any
from urllib.parse import urlsplit

from shared import deadlines, entra_errors
from shared.problems import SecureScoreUnavailable, TenantNotConsented

# The federated credential's audience by the cloud's login host (learn `entra/workload-id/workload-identity-
# federation-config-app-trust-managed-identity`: Public, Fairfax, Mooncake, USNat, USSec; msgraph-bicep-types
# `quickstart-templates/msi-as-a-fic-secretless/main.bicep`). The hosts: Azure's cloud metadata
# (`environment().authentication.loginEndpoint`, as infra/main.bicep sets ENTRA_AUTHORITY); China's consent and
# issuer host is also login.partner.microsoftonline.cn (smallstep/certificates#1309), USNat's and USSec's are
# login.microsoftonline.eaglex.ic.gov and login.microsoftonline.microsoft.scloud (learn `power-platform/admin/
# configure-azure-app-with-sharepoint-access`).
_AUDIENCES = {
    "login.microsoftonline.us": "api://AzureADTokenExchangeUSGov",
    "login.microsoftonline.eaglex.ic.gov": "api://AzureADTokenExchangeUSNat",
    "login.microsoftonline.microsoft.scloud": "api://AzureADTokenExchangeUSSec",
    "login.chinacloudapi.cn": "api://AzureADTokenExchangeChina",
    "login.partner.microsoftonline.cn": "api://AzureADTokenExchangeChina",
}
PUBLIC_AUDIENCE = "api://AzureADTokenExchange"
RENEW_BEFORE = 300.0  # seconds before a token expires that a new one is asked for
# A token for another tenant is good only with one of these Microsoft Graph app roles (the reader app requires
# SecurityEvents.ReadWrite.All; Read.All is enough to read).
READ_ROLES = frozenset({"SecurityEvents.ReadWrite.All", "SecurityEvents.Read.All"})
_IDENTITY_FIX = (
    "In Azure, check that the function app has its user-assigned managed identity and that AZURE_CLIENT_ID names "
    "it; locally, run `make run` (it starts a Graph simulator) or sign in with `az login`."
)


def federated_audience(authority: str) -> str:
    """The audience the reader app's federated credential expects, by the cloud the authority names."""
    return _AUDIENCES.get((urlsplit(authority).hostname or "").lower(), PUBLIC_AUDIENCE)


def unverified_claims(token: str) -> dict[str, Any] | None:
    """A JWT's claims, read without verifying it (the connector's own token, fresh from Entra ID): hints only.
    None when the token is not a JWT the connector can read."""
    parts = token.split(".")
    if len(parts) != 3:
        return None
    try:
        payload = json.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
    except (ValueError, binascii.Error):
        return None
    return payload if isinstance(payload, dict) else None


def _may_read(token: str) -> bool:
    """The token carries a role that reads Secure Score (a token the connector cannot read is left to Graph)."""
    claims = unverified_claims(token)
    if claims is None:
        return True
    roles = claims.get("roles")
    return isinstance(roles, list) and bool(READ_ROLES & {r for r in roles if isinstance(r, str)})


class GraphTokens:
    def __init__(
        self,
        resource: str,
        *,
        client_id: str | None,
        reader_app_id: str | None = None,
        authority: str = "https://login.microsoftonline.com",
        credential: Any = None,
    ) -> None:
        self._scope = f"{resource}/.default"
        self._client_id = client_id
        self._reader_app_id = reader_app_id
        self._authority = authority.rstrip("/")
        self._home = credential
        self._tenants: dict[str, Any] = {}
        self._held: dict[str, tuple[str, float]] = {}  # tenant -> (token, renew after), held by this instance
        self._presented: dict[str, Any] = {}  # the last client assertion's issuer, subject and audience (no secret)
        self._transport: Any = None
        self._fetching: dict[str, threading.Lock] = {}
        self._lock = threading.Lock()

    @property
    def audience(self) -> str:
        return federated_audience(self._authority)

    def _home_credential(self) -> Any:
        with self._lock:
            if self._home is None:
                from azure.identity import DefaultAzureCredential  # lazy: only Graph work pays for it

                self._home = DefaultAzureCredential(managed_identity_client_id=self._client_id)
            return self._home

    def _shared_transport(self) -> Any:
        """One HTTP session for every tenant's credential (called under the lock): each new TLS connection loads the
        CA bundle again (about 20 ms of CPU), so a hundred tenants share a small pool instead of one each."""
        if self._transport is None:
            import requests
            from azure.core.pipeline.transport import RequestsTransport
            from requests.adapters import HTTPAdapter

            session = requests.Session()
            adapter = HTTPAdapter(pool_connections=4, pool_maxsize=16, max_retries=0)
            session.mount("https://", adapter)
            session.mount("http://", adapter)
            self._transport = RequestsTransport(session=session, session_owner=False)
        return self._transport

    def _assertion(self) -> str:
        """The managed identity's token for the token exchange: the reader app's client assertion."""
        token = str(self._home_credential().get_token(f"{self.audience}/.default").token)
        claims = unverified_claims(token) or {}
        self._presented = {k: claims[k] for k in ("iss", "sub", "oid", "aud") if isinstance(claims.get(k), str)}
        return token

    def _tenant_credential(self, tenant: str) -> Any:
        with self._lock:
            credential = self._tenants.get(tenant)
            if credential is None:
                if not self._reader_app_id:
                    raise TenantNotConsented(
                        "The connector has no reader app, so it cannot read any tenant but its own.",
                        remediation="Deploy the reader app (the Bicep does) so READER_APP_CLIENT_ID is set.",
                    )
                from azure.identity import ClientAssertionCredential

                credential = ClientAssertionCredential(
                    tenant, self._reader_app_id, self._assertion, authority=self._authority,
                    transport=self._shared_transport(),
                )  # fmt: skip
                self._tenants[tenant] = credential
            return credential

    def forget(self, tenant: str) -> None:
        """Graph refused `tenant`'s token (401, 403): the next read asks Entra ID for a new one. Another tenant's
        credential goes with it (its own cache holds the token); the home tenant's managed identity endpoint caches
        its tokens itself, for up to 24 hours (learn `entra/identity/managed-identities-azure-resources/
        managed-identity-best-practice-recommendations`), so only the connector's copy is dropped."""
        with self._lock:
            self._held.pop(tenant, None)
            if tenant:
                self._tenants.pop(tenant, None)

    def token(self, tenant: str, seconds: float) -> str:
        """A Graph token for `tenant` (HOME: the deployment's own), within `seconds`."""

        held = self._held.get(tenant)
        if held is not None and time.time() < held[1]:  # no thread and no SDK call for a token still fresh
            return held[0]
        with self._lock:
            fetching = self._fetching.setdefault(tenant, threading.Lock())
        if not fetching.acquire(timeout=seconds):  # one request per tenant asks; the others wait for its token
            raise SecureScoreUnavailable(
                f"The token endpoint did not answer within {seconds:g} s.", retry_after=60, remediation=_IDENTITY_FIX
            )
        try:
            held = self._held.get(tenant)
            if held is not None and time.time() < held[1]:
                return held[0]
            return self._fetch(tenant, seconds)
        finally:
            fetching.release()

    def _fetch(self, tenant: str, seconds: float) -> str:
        from azure.core.exceptions import AzureError, ClientAuthenticationError

        credential = self._tenant_credential(tenant) if tenant else self._home_credential()
        try:
            token = deadlines.call_within(seconds, lambda: credential.get_token(self._scope), "the Graph token request")
        except ClientAuthenticationError as exc:
            found = entra_errors.codes(str(exc))
            if tenant and found:
                known = entra_errors.tenant_token_error(tenant, found, self._presented, self._reader_app_id,
                                                        self.audience)  # fmt: skip
                raise known or entra_errors.unknown_token_error(tenant, found, type(exc).__name__) from None
            raise SecureScoreUnavailable(
                f"No token for Microsoft Graph could be obtained ({type(exc).__name__}"
                + (f", tenant {tenant}" if tenant else "")
                + ").",
                retry_after=60,
                remediation=_IDENTITY_FIX,
            ) from None
        except TimeoutError:
            raise SecureScoreUnavailable(
                f"The token endpoint did not answer within {seconds:g} s.", retry_after=60, remediation=_IDENTITY_FIX
            ) from None
        except AzureError as exc:  # Entra ID unreachable (ServiceRequestError), or an answer that is no token
            raise SecureScoreUnavailable(
                f"Microsoft Entra ID could not be reached for a Graph token ({type(exc).__name__}"
                + (f", tenant {tenant}" if tenant else "")
                + ").",
                retry_after=60,
                remediation="Nothing to fix in the connector if Entra ID is briefly unreachable: the next refresh "
                "tries again. If it lasts, check the app's outbound network to login.microsoftonline.com "
                "(ENTRA_AUTHORITY).",
            ) from None
        if tenant and not _may_read(str(token.token)):
            self.forget(tenant)  # never kept, here or in the credential's cache: the next try asks Entra ID again
            raise TenantNotConsented(
                f"Tenant {tenant} issued the reader app a token without its Microsoft Graph permission: the consent "
                "has not reached its tokens yet (this can take minutes), or the permission was removed.",
                remediation="Right after consent: nothing to do, the connector tries again. Otherwise a Global "
                "Administrator or Privileged Role Administrator of that tenant opens its consent link and accepts.",
            )
        # Renewed 5 minutes before it expires, as azure-identity's own cache does (its refresh_on, when given, first).
        renew = float(getattr(token, "refresh_on", None) or 0) or float(token.expires_on) - RENEW_BEFORE
        self._held[tenant] = (str(token.token), min(renew, float(token.expires_on) - RENEW_BEFORE))
        return str(token.token)
