"""An in-memory Microsoft Entra ID (login.microsoftonline.com) for what the connector does with other tenants:
OpenID discovery per tenant, the admin consent endpoint (consent.py), and the token endpoint for a multi-tenant
app that proves itself with a managed identity's token (a federated identity credential), no secret anywhere.

Facts and their sources: docs/design.md#entra-id-facts.
- `GET /{tenant}/v2.0/.well-known/openid-configuration` ({tenant}: an id or a domain): `issuer`
  `{base}/{tenant id}/v2.0` and every endpoint under the tenant *id* (learn `entra/identity-platform/
  v2-protocols-oidc`). An unknown tenant is 400 AADSTS90002 `invalid_tenant`; something that is neither a GUID nor a
  DNS name is 400 AADSTS900023 `invalid_request`.
- `POST /{tenant}/oauth2/v2.0/token`, `grant_type=client_credentials` with `client_assertion_type=urn:ietf:params:
  oauth:client-assertion-type:jwt-bearer` and a `client_assertion` that is the managed identity's token for
  `api://AzureADTokenExchange`, matched against the app's federated identity credentials (issuer, subject,
  audience: learn `entra/workload-id/workload-identity-federation-config-app-trust-managed-identity`). The
  tenant must hold the app's service principal (created by admin consent): none is 401 AADSTS7000229, a disabled
  one 400 AADSTS7000112. The token (RS256, its keys at `/{tenant}/discovery/v2.0/keys`) is for the resource the
  scope names, with `tid` = that tenant and `roles` = the application permissions its admin consented to.
- Consent reaches tokens after a delay (`consent_delay` seconds; `make run`: 20): until then the tenant issues the
  app tokens without the `roles` claim, as Entra does right after admin consent (microsoftgraph/microsoft-graph-docs
  #10907, microsoft-graph-docs-contrib#4160, #7087; a retry minutes later works), and Graph answers them 403.
- A tenant of another cloud (`TAILSPIN`, US Government): discovery answers 200 with that cloud's endpoints and
  `cloud_instance_name` (smallstep/certificates#1309); its token endpoint here refuses with 400 AADSTS900382
  "Confidential Client is not supported in Cross Cloud request" (MicrosoftDocs/azure-docs#35616,
  webprofusion/certify#553).
- Switches: `withdraw(tenant)` (the customer deleted the app, disabled it, or removed its permissions),
  `delete_tenant` (the organisation deleted its tenant: AADSTS90002), `fail_discovery` (discovery fails for a moment:
  503, a dropped connection, or AADSTS90024 "A transient error has occurred", learn `entra/identity-platform/
  reference-error-codes`), `fail_tokens` (the token endpoint answers an AADSTS code), `break_federated_credential`
  (the reader app's federated credential stops matching, one way per code: AADSTS70021, 700211, 700212, 700213,
  7002138; Azure/login#482, #515, #517, Azure/azure-workload-identity#340, #616), the signed-in admin's directory
  role (`signed_in_role`), more tenants (`add_tenant`), and the page at `/sim`.

What azure-identity 1.27's `ClientAssertionCredential(tenant_id, client_id, func, authority=..., ...)` calls:
only the token endpoint, `{authority}/{tenant}/oauth2/v2.0/token` (its `AadClient` posts there directly, no
discovery, no MSAL); `tenant_id=` on `get_token` (with `additionally_allowed_tenants=["*"]`) changes {tenant}. It
refuses an authority that is not https, so the simulator is served over TLS (tls.py). Its HTTP client is
azure-core's `RequestsTransport` (requests), which trusts the simulator's CA given either as
`connection_verify=<CA file>` on the credential or through `REQUESTS_CA_BUNDLE` (requests reads it whenever the
caller leaves verification on). httpx (the connector's own client, e.g. for discovery) reads `SSL_CERT_FILE`.
MSAL itself (other azure-identity credentials) reads `{authority}/{tenant}/v2.0/.well-known/openid-configuration`
and then the `token_endpoint` it names; it must be given `instance_discovery=False` (azure-identity:
`disable_instance_discovery=True`), as its instance discovery for an unknown host asks login.microsoftonline.com.
`make run` points both variables at a bundle of the usual public CAs plus the simulator's (tls.ca_bundle).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote

from dev.entra import consent, page, token
from dev.entra.directory import EntraDirectory
from dev.entra.errors import token_error
from dev.entra.tenants import CLOUDS, PUBLIC_CLOUD, Tenant, well_formed
from dev.wire.messages import SimRequest, SimResponse

CLAIMS_SUPPORTED = ["sub", "iss", "cloud_instance_name", "cloud_instance_host_name", "cloud_graph_host_name",
                    "msgraph_host", "aud", "exp", "iat", "auth_time", "acr", "nonce", "preferred_username", "name",
                    "tid", "ver", "at_hash", "c_hash", "email"]  # fmt: skip


class EntraSimulator(EntraDirectory):
    """The directory's endpoints: OpenID discovery, its keys, admin consent, the token endpoint, and `/sim`."""

    # -- dispatch ----------------------------------------------------------------------------------

    def handle(self, request: SimRequest) -> SimResponse:
        with self.lock:
            self.requests.append(request)
        parts = [unquote(p) for p in request.path.strip("/").split("/")]
        if parts[0] == "sim":
            return page.sim_page(self, request, parts)
        rest = parts[1:]
        if rest not in (["v2.0", ".well-known", "openid-configuration"], ["discovery", "v2.0", "keys"],
                        ["v2.0", "adminconsent"], ["oauth2", "v2.0", "token"]):  # fmt: skip
            return SimResponse(404, {"Content-Type": "text/html"}, b"<html><body>Not found</body></html>")
        identifier = parts[0]
        if rest == ["v2.0", "adminconsent"]:
            return consent.admin_consent(self, request, identifier)
        if not well_formed(identifier):
            return token_error("invalid_request", 900023, f"Specified tenant identifier '{identifier[:100]}' is "
                               "neither a valid DNS name, nor a valid external domain.", self.clock(),
                               self.base_url)  # fmt: skip
        tenant = self.find(identifier)
        if tenant is None:
            error = "invalid_request" if rest[0] == "oauth2" else "invalid_tenant"
            return token_error(error, 90002, f"Tenant '{identifier}' not found. Check to make sure you have the "
                               "correct tenant ID and are signing into the correct cloud. Check with your subscription "
                               "administrator, this may happen if there are no active subscriptions for the tenant.",
                               self.clock(), self.base_url)  # fmt: skip
        if rest[0] == "discovery":
            return SimResponse.json(200, self.jwks())
        if rest[0] == "v2.0":
            failing = self._take(self.discovery_failures)
            if failing is not None:
                return self._discovery_failure(failing)
            return SimResponse.json(200, self.openid_configuration(tenant))
        if request.method != "POST":
            return token_error("invalid_request", 900561, "The endpoint only accepts POST requests. Received a "
                               f"{request.method} request.", self.clock(), self.base_url)  # fmt: skip
        return token.endpoint(self, request, tenant)

    def _discovery_failure(self, mode: str) -> SimResponse:
        if mode == "drop":
            return SimResponse(200, drop=True)
        if mode == "503":
            return SimResponse(503, {"Content-Type": "text/html"}, b"<html><body>Service Unavailable</body></html>")
        return token_error("temporarily_unavailable", 90024, "A transient error has occurred. Try again.",
                           self.clock(), self.base_url)  # fmt: skip

    def openid_configuration(self, tenant: Tenant) -> dict[str, Any]:
        """The v2.0 discovery document (its real fields; every URL names the tenant by id, whatever named it). A
        tenant of another cloud answers with that cloud's login host and Graph (smallstep/certificates#1309)."""
        login, graph = CLOUDS[tenant.cloud]
        at = f"{self.base_url}/{tenant.id}" if tenant.cloud == PUBLIC_CLOUD else f"https://{login}/{tenant.id}"
        return {
            "token_endpoint": f"{at}/oauth2/v2.0/token",
            "token_endpoint_auth_methods_supported": ["client_secret_post", "private_key_jwt", "client_secret_basic"],
            "jwks_uri": f"{at}/discovery/v2.0/keys",
            "response_modes_supported": ["query", "fragment", "form_post"],
            "subject_types_supported": ["pairwise"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
            "scopes_supported": ["openid", "profile", "email", "offline_access"],
            "issuer": f"{at}/v2.0",
            "request_uri_parameter_supported": False,
            "userinfo_endpoint": f"https://{graph}/oidc/userinfo",
            "authorization_endpoint": f"{at}/oauth2/v2.0/authorize",
            "device_authorization_endpoint": f"{at}/oauth2/v2.0/devicecode",
            "http_logout_supported": True,
            "frontchannel_logout_supported": True,
            "end_session_endpoint": f"{at}/oauth2/v2.0/logout",
            "claims_supported": CLAIMS_SUPPORTED,
            "kerberos_endpoint": f"{at}/kerberos",
            "tenant_region_scope": "EU",
            "cloud_instance_name": tenant.cloud,
            "cloud_graph_host_name": "graph.windows.net",
            "msgraph_host": graph,
            "rbac_url": "https://pas.windows.net",
        }
