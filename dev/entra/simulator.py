"""An in-memory Microsoft Entra ID (login.microsoftonline.com) for what the connector does with other tenants:
OpenID discovery per tenant, the admin consent endpoint (consent.py), and the token endpoint for a multi-tenant
app that proves itself with a managed identity's token (a federated identity credential), no secret anywhere.

Facts and sources: ../shared/reference/tenants-and-routing.md, sections 2 and 3.
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
- Switches: `withdraw(tenant)` (the customer deleted the app, disabled it, or removed its permissions), the
  signed-in admin's directory role (`signed_in_role`), more tenants (`add_tenant`), and the page at `/sim`.

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

import json
import secrets
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

from dev.entra import consent
from dev.entra.consent import CONSENTING_ROLES, ROLES
from dev.entra.errors import token_error
from dev.entra.tenants import CUSTOMERS, HOME, Tenant, new_tenant, well_formed
from dev.simulator.core import SimRequest, SimResponse

if TYPE_CHECKING:
    from dev.graph.simulator import ManagedIdentity

PUBLIC_LOGIN = "https://login.microsoftonline.com"  # where a real managed identity's token says it comes from
GRAPH = "https://graph.microsoft.com"
TOKEN_EXCHANGE = "api://AzureADTokenExchange"  # the public cloud's audience for a federated credential
JWT_BEARER = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
SECURITY_EVENTS_READWRITE_ALL = "SecurityEvents.ReadWrite.All"
READER_APP_ID = "7d1c9b3e-5a2f-4e8d-b6c4-3f2a1e0d9c8b"  # make run's reader app
CLAIMS_SUPPORTED = ["sub", "iss", "cloud_instance_name", "cloud_instance_host_name", "cloud_graph_host_name",
                    "msgraph_host", "aud", "exp", "iat", "auth_time", "acr", "nonce", "preferred_username", "name",
                    "tid", "ver", "at_hash", "c_hash", "email"]  # fmt: skip
WITHDRAWALS = ("delete", "disable", "revoke")


@dataclass(frozen=True)
class FederatedCredential:
    issuer: str
    subject: str
    audiences: tuple[str, ...]


@dataclass
class App:
    """An app registration in the home tenant: its redirect URIs, and the application permissions (app roles of
    `resource`, Microsoft Graph's identifier) it requires."""

    client_id: str
    name: str
    redirect_uris: list[str]
    roles: tuple[str, ...]
    resource: str
    multi_tenant: bool = True
    home: str = HOME.id
    federated: list[FederatedCredential] = field(default_factory=list)


@dataclass
class ServicePrincipal:
    """The app in a tenant whose admin consented: its object id, its app role assignments, whether it is enabled."""

    object_id: str
    roles: tuple[str, ...]
    granted_by: str
    granted_at: float
    enabled: bool = True


def _public_jwk(key: rsa.RSAPublicKey) -> dict[str, Any]:
    jwk: dict[str, Any] = json.loads(RSAAlgorithm.to_jwk(key))
    return jwk


class EntraSimulator:
    def __init__(
        self, identity: ManagedIdentity | None = None, *, clock: Callable[[], float] = time.time, lifetime: int = 3599
    ) -> None:
        self.identity = identity  # the managed identity whose tokens federated credentials may name
        self.clock = clock
        self.lifetime = lifetime
        self.base_url = PUBLIC_LOGIN
        self.lock = threading.RLock()
        self.tenants: dict[str, Tenant] = {t.id: t for t in (HOME, *CUSTOMERS)}
        self.apps: dict[str, App] = {}
        self.principals: dict[tuple[str, str], ServicePrincipal] = {}  # (tenant id, client id)
        self.signed_in_role = CONSENTING_ROLES[0]  # the directory role of whoever opens the consent link
        self.requests: list[SimRequest] = []
        self.issued: set[str] = set()  # every access token handed out (a log scan looks for them)
        self.on_change: Callable[[], None] | None = None  # make run keeps the state (persist.py)
        self._key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self._kid = secrets.token_hex(8)

    # -- setup -------------------------------------------------------------------------------------

    def bind(self, base_url: str) -> None:
        self.base_url = base_url.rstrip("/")

    def add_tenant(self, domain: str, name: str, tenant_id: str | None = None) -> Tenant:
        tenant = new_tenant(domain, name, tenant_id)
        with self.lock:
            self.tenants[tenant.id] = tenant
        self._changed()
        return tenant

    def find(self, identifier: str) -> Tenant | None:
        """The tenant an id or one of its domains names, or None."""
        with self.lock:
            return next((t for t in self.tenants.values() if t.named_by(identifier)), None)

    def register_app(
        self,
        client_id: str,
        redirect_uris: Iterable[str],
        roles: Iterable[str] = (SECURITY_EVENTS_READWRITE_ALL,),
        *,
        name: str = "Secure Score reader (ServiceNow connector)",
        resource: str = GRAPH,
        multi_tenant: bool = True,
    ) -> App:
        app = App(client_id, name, list(redirect_uris), tuple(roles), resource.rstrip("/"), multi_tenant)
        with self.lock:
            self.apps[client_id] = app
        return app

    def add_federated_credential(
        self, client_id: str, subject: str, *, issuer: str | None = None, audience: str = TOKEN_EXCHANGE
    ) -> FederatedCredential:
        """Trust tokens from `issuer` (default: the home tenant's v2.0 issuer, as for a managed identity) whose
        subject is `subject` (a managed identity's principal id) and audience `audience`."""
        app = self.apps[client_id]
        credential = FederatedCredential(issuer or f"{PUBLIC_LOGIN}/{app.home}/v2.0", subject, (audience,))
        with self.lock:
            app.federated.append(credential)
        return credential

    def trust_identity(self, client_id: str, identity: ManagedIdentity) -> FederatedCredential:
        """The reader app's federated credential naming `identity`, and that identity's tokens accepted."""
        self.identity = identity
        return self.add_federated_credential(client_id, identity.object_id)

    # -- consent, as the admin consent endpoint records it, and its withdrawal ----------------------------

    def grant(self, tenant_id: str, client_id: str, by: str = "") -> ServicePrincipal:
        """What Accept on the consent page does: the app's service principal in the tenant, holding the app's
        required application permissions (learn `v2-admin-consent`: `/.default` asks for all of them)."""
        tenant, app = self.tenants[tenant_id], self.apps[client_id]
        with self.lock:
            principal = ServicePrincipal(str(uuid.uuid4()), app.roles, by or f"admin@{tenant.domain}", self.clock())
            self.principals[(tenant.id, client_id)] = principal
        self._changed()
        return principal

    def consent_of(self, tenant_id: str, client_id: str) -> ServicePrincipal | None:
        with self.lock:
            return self.principals.get((tenant_id, client_id))

    def withdraw(self, tenant_id: str, client_id: str | None = None, *, how: str = "delete") -> None:
        """What the customer's admin does later. `delete`: Enterprise applications > the app > Delete (the service
        principal goes: tokens are refused with AADSTS7000229); `disable`: Properties > Enabled for users to sign
        in = No (AADSTS7000112); `revoke`: its permissions removed (tokens come without roles; Graph answers 403)."""
        if how not in WITHDRAWALS:
            raise ValueError(f"how must be one of {WITHDRAWALS}")
        with self.lock:
            for (tenant, app), principal in list(self.principals.items()):
                if tenant != tenant_id or (client_id is not None and app != client_id):
                    continue
                if how == "delete":
                    del self.principals[(tenant, app)]
                elif how == "disable":
                    principal.enabled = False
                else:
                    principal.roles = ()
        self._changed()

    def sign_in_as(self, role: str) -> None:
        """Whoever opens a consent link from now on has this directory role in that tenant (one of `ROLES`)."""
        if role not in ROLES:
            raise ValueError(f"role must be one of {ROLES}")
        self.signed_in_role = role
        self._changed()

    def _changed(self) -> None:
        if self.on_change is not None:
            self.on_change()

    # -- tokens ------------------------------------------------------------------------------------

    def jwks(self) -> dict[str, Any]:
        return {"keys": [{**_public_jwk(self._key.public_key()), "kid": self._kid, "use": "sig", "alg": "RS256"}]}

    def verify(self, token: str) -> dict[str, Any] | None:
        """The claims of an access token this simulator issued (signature only: expiry and audience are the
        resource's to check), or None."""
        try:
            claims: dict[str, Any] = jwt.decode(
                token, self._key.public_key(), algorithms=["RS256"],
                options={"verify_exp": False, "verify_aud": False, "verify_nbf": False, "verify_iat": False},
            )  # fmt: skip
        except jwt.PyJWTError:
            return None
        return claims

    def _access_token(self, tenant: Tenant, app: App, principal: ServicePrincipal, resource: str) -> str:
        """An app-only access token as Graph receives it (v1.0 shape: `appid`, `iss` on sts.windows.net)."""
        now = int(self.clock())
        claims: dict[str, Any] = {
            "aud": resource, "iss": f"https://sts.windows.net/{tenant.id}/", "iat": now, "nbf": now,
            "exp": now + self.lifetime, "app_displayname": app.name, "appid": app.client_id, "appidacr": "2",
            "idp": f"https://sts.windows.net/{tenant.id}/", "idtyp": "app", "oid": principal.object_id,
            "sub": principal.object_id, "tid": tenant.id, "ver": "1.0",
        }  # fmt: skip
        if principal.roles:  # no app role assigned: no roles claim at all
            claims["roles"] = list(principal.roles)
        token = jwt.encode(claims, self._key, algorithm="RS256", headers={"kid": self._kid})
        with self.lock:
            self.issued.add(token)
        return token

    # -- dispatch ----------------------------------------------------------------------------------

    def handle(self, request: SimRequest) -> SimResponse:
        with self.lock:
            self.requests.append(request)
        parts = [unquote(p) for p in request.path.strip("/").split("/")]
        if parts[0] == "sim":
            return consent.sim_page(self, request, parts)
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
            return SimResponse.json(200, self.openid_configuration(tenant))
        if request.method != "POST":
            return token_error("invalid_request", 900561, "The endpoint only accepts POST requests. Received a "
                               f"{request.method} request.", self.clock(), self.base_url)  # fmt: skip
        return self._token(request, tenant)

    def openid_configuration(self, tenant: Tenant) -> dict[str, Any]:
        """The v2.0 discovery document (its real fields; every URL names the tenant by id, whatever named it)."""
        at = f"{self.base_url}/{tenant.id}"
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
            "userinfo_endpoint": "https://graph.microsoft.com/oidc/userinfo",
            "authorization_endpoint": f"{at}/oauth2/v2.0/authorize",
            "device_authorization_endpoint": f"{at}/oauth2/v2.0/devicecode",
            "http_logout_supported": True,
            "frontchannel_logout_supported": True,
            "end_session_endpoint": f"{at}/oauth2/v2.0/logout",
            "claims_supported": CLAIMS_SUPPORTED,
            "kerberos_endpoint": f"{at}/kerberos",
            "tenant_region_scope": "EU",
            "cloud_instance_name": "microsoftonline.com",
            "cloud_graph_host_name": "graph.windows.net",
            "msgraph_host": "graph.microsoft.com",
            "rbac_url": "https://pas.windows.net",
        }

    def _token(self, request: SimRequest, tenant: Tenant) -> SimResponse:
        now = self.clock()

        def fail(error: str, code: int, text: str) -> SimResponse:
            return token_error(error, code, text, now, self.base_url)

        if not request.headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
            return fail("invalid_request", 900144, "The request body must contain the following parameter: "
                        "'grant_type'.")  # fmt: skip
        form = request.form()
        for required in ("grant_type", "client_id", "scope"):
            if not form.get(required):
                return fail("invalid_request", 900144,
                            f"The request body must contain the following parameter: '{required}'.")  # fmt: skip
        if form["grant_type"] != "client_credentials":
            return fail("unsupported_grant_type", 70003, f"The app requested an unsupported grant type "
                        f"'{form['grant_type'][:100]}'.")  # fmt: skip
        with self.lock:
            app = self.apps.get(form["client_id"])
            principal = self.principals.get((tenant.id, form["client_id"]))
        if app is None or (not app.multi_tenant and app.home != tenant.id):
            return fail("unauthorized_client", 700016, f"Application with identifier '{form['client_id'][:100]}' "
                        f"was not found in the directory '{tenant.name}'. This can happen if the application has not "
                        "been installed by the administrator of the tenant or consented to by any user in the tenant. "
                        "You may have sent your authentication request to the wrong tenant.")  # fmt: skip
        if form.get("client_assertion_type") != JWT_BEARER or not form.get("client_assertion"):
            return fail("invalid_client", 7000218, "The request body must contain the following parameter: "
                        "'client_assertion' or 'client_secret'.")  # fmt: skip
        if principal is None:
            return fail("invalid_client", 7000229, f"The client application {app.client_id} is missing service "
                        f"principal in the tenant {tenant.id}. See instructions here: "
                        "https://go.microsoft.com/fwlink/?linkid=2225119")  # fmt: skip
        if not principal.enabled:
            return fail("unauthorized_client", 7000112, f"Application '{app.client_id}'({app.name}) is disabled.")
        refused = self._assertion_refused(app, form["client_assertion"], now)
        if refused is not None:
            return fail("invalid_client", *refused)
        scope = form["scope"]
        if " " in scope.strip() or not scope.endswith("/.default"):
            return fail("invalid_scope", 1002012, f"The provided value for scope {scope[:200]} is not valid. Client "
                        "credential flows must have a scope value with /.default suffixed to the resource identifier "
                        "(application ID URI).")  # fmt: skip
        resource = scope.removesuffix("/.default").rstrip("/")
        if resource != app.resource:
            return fail("invalid_resource", 500011, f"The resource principal named {resource[:200]} was not found in "
                        f"the tenant named {tenant.name}. This can happen if the application has not been installed "
                        "by the administrator of the tenant or consented to by any user in the tenant. You might have "
                        "sent your authentication request to the wrong tenant.")  # fmt: skip
        token = self._access_token(tenant, app, principal, resource)
        return SimResponse.json(200, {"token_type": "Bearer", "expires_in": self.lifetime,
                                      "ext_expires_in": self.lifetime, "access_token": token},
                                {"Cache-Control": "no-store"})  # fmt: skip

    def _assertion_refused(self, app: App, assertion: str, now: float) -> tuple[int, str] | None:
        """Why the client assertion does not prove the app (an AADSTS code and text), or None when it does: a token
        the trusted managed identity signed, within its lifetime, matching one of the app's federated credentials
        on issuer, subject and audience, each compared exactly (FIC matching is case-sensitive: learn
        `entra/identity-platform/reference-breaking-changes`, February 2025)."""
        claims = self.identity.verify(assertion) if self.identity is not None and assertion.isascii() else None
        if claims is None:
            return 700027, "Client assertion failed signature validation."
        if not int(claims.get("nbf", 0)) <= now < int(claims.get("exp", 0)):
            return 700024, (
                f"Client assertion is not within its valid time range. Current time: {int(now)}, "
                f"assertion valid from {claims.get('nbf')}, expiry time of assertion {claims.get('exp')}."
            )
        issuer, subject, audience = str(claims.get("iss")), str(claims.get("sub")), claims.get("aud")
        matching = [c for c in app.federated if c.issuer == issuer]
        if not matching:
            return 700211, f"No matching federated identity record found for presented assertion issuer '{issuer}'."
        matching = [c for c in matching if c.subject == subject]
        if not matching:
            return 700213, (f"No matching federated identity record found for presented assertion subject "
                            f"'{subject}'. Check your federated identity credential Subject, Audience and Issuer "
                            "against the presented assertion.")  # fmt: skip
        if not any(audience in c.audiences for c in matching):
            return 700212, f"No matching federated identity record found for presented assertion audience '{audience}'."
        return None
