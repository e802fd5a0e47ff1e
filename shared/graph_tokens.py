"""Tokens for Microsoft Graph, with no secret anywhere (DESIGN 12).

The home tenant's come from the managed identity (`DefaultAzureCredential`: the user-assigned identity in Azure).
Another tenant's come from the multi-tenant reader app, whose federated credential trusts that identity: the
identity's token for `api://AzureADTokenExchange` (per cloud) is the client assertion of a client-credentials
request to that tenant (azure-identity `ClientAssertionCredential`, one per tenant, so each keeps its own cache).
A tenant whose admin never consented, or withdrew consent, is `tenant_not_consented`: the token endpoint says so
with its AADSTS code, and Graph answers 403 once a cached token meets a removed grant.
"""

from __future__ import annotations

import threading
import time
from typing import Any
from urllib.parse import urlsplit

from shared import deadlines
from shared.problems import SecureScoreUnavailable, TenantNotConsented

HOME = ""
# The federated credential's audience per cloud (msgraph-bicep-types quickstart-templates/msi-as-a-fic-secretless).
_AUDIENCES = {"login.microsoftonline.us": "api://AzureADTokenExchangeUSGov",
              "login.chinacloudapi.cn": "api://AzureADTokenExchangeChina"}  # fmt: skip
PUBLIC_AUDIENCE = "api://AzureADTokenExchange"
RENEW_BEFORE = 300.0  # seconds before a token expires that a new one is asked for
# What the token endpoint answers when the reader app holds no consent in that tenant (AADSTS7000229: no service
# principal; 650051/65001: consent missing; 700016: app not found in the directory; 90002: no such tenant).
_NOT_CONSENTED = ("AADSTS7000229", "AADSTS650051", "AADSTS65001", "AADSTS700016", "AADSTS500011", "AADSTS90002")
_IDENTITY_FIX = (
    "In Azure, check that the function app has its user-assigned managed identity and that AZURE_CLIENT_ID names "
    "it; locally, run `make run` (it starts a Graph simulator) or sign in with `az login`."
)


def federated_audience(authority: str) -> str:
    """The audience the reader app's federated credential expects, by the cloud the authority names."""
    return _AUDIENCES.get((urlsplit(authority).hostname or "").lower(), PUBLIC_AUDIENCE)


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
        self._held: dict[str, tuple[str, float]] = {}
        self._transport: Any = None
        self._fetching: dict[str, threading.Lock] = {}  # tenant -> (token, renew after), held by this instance
        self._lock = threading.Lock()

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

                audience = f"{federated_audience(self._authority)}/.default"
                credential = ClientAssertionCredential(
                    tenant,
                    self._reader_app_id,
                    lambda: str(self._home_credential().get_token(audience).token),
                    authority=self._authority,
                    transport=self._shared_transport(),
                )
                self._tenants[tenant] = credential
            return credential

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
            said = str(exc)
            code = next((c for c in _NOT_CONSENTED if c in said), None)
            if tenant and "AADSTS7000112" in said:  # the tenant's admin disabled the app (its consent stays)
                raise TenantNotConsented(
                    f"The connector's reader app is disabled in tenant {tenant} (AADSTS7000112).",
                    remediation="That tenant's Global Administrator enables it again: Microsoft Entra admin center > "
                    "Enterprise applications > the reader app > Properties > Enabled for users to sign in = Yes.",
                ) from None
            if tenant and code is not None:
                raise TenantNotConsented(
                    f"Tenant {tenant} has not consented to the connector's reader app, or withdrew consent ({code}).",
                    remediation="A Global Administrator or Privileged Role Administrator of that tenant opens its "
                    "consent link (the tenant's row on the page, or GET /api/tenants) and accepts.",
                ) from None
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
        # Renewed 5 minutes before it expires, as azure-identity's own cache does (its refresh_on, when given, first).
        renew = float(getattr(token, "refresh_on", None) or 0) or float(token.expires_on) - RENEW_BEFORE
        self._held[tenant] = (str(token.token), min(renew, float(token.expires_on) - RENEW_BEFORE))
        return str(token.token)
