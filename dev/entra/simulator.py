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

import json
import secrets
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import replace
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

from dev.entra import consent, page, token
from dev.entra.apps import App, FederatedCredential, ServicePrincipal
from dev.entra.consent import CONSENTING_ROLES, ROLES
from dev.entra.errors import token_error
from dev.entra.tenants import BUILT_IN, CLOUDS, PUBLIC_CLOUD, Tenant, new_tenant, well_formed
from dev.wire.messages import SimRequest, SimResponse

if TYPE_CHECKING:
    from dev.graph.identity import ManagedIdentity

PUBLIC_LOGIN = "https://login.microsoftonline.com"  # where a real managed identity's token says it comes from
GRAPH = "https://graph.microsoft.com"
TOKEN_EXCHANGE = "api://AzureADTokenExchange"  # the public cloud's audience for a federated credential
SECURITY_EVENTS_READWRITE_ALL = "SecurityEvents.ReadWrite.All"
READER_APP_ID = "7d1c9b3e-5a2f-4e8d-b6c4-3f2a1e0d9c8b"  # make run's reader app
CLAIMS_SUPPORTED = ["sub", "iss", "cloud_instance_name", "cloud_instance_host_name", "cloud_graph_host_name",
                    "msgraph_host", "aud", "exp", "iat", "auth_time", "acr", "nonce", "preferred_username", "name",
                    "tid", "ver", "at_hash", "c_hash", "email"]  # fmt: skip
WITHDRAWALS = ("delete", "disable", "revoke")
DISCOVERY_FAILURES = ("503", "drop", "90024")
FEDERATED_MISMATCHES = (70021, 700211, 700212, 700213, 7002138)


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
        self.tenants: dict[str, Tenant] = {t.id: t for t in BUILT_IN}
        self.apps: dict[str, App] = {}
        self.trusted: dict[str, list[FederatedCredential]] = {}  # client id -> its credentials as registered
        self.consent_delay = 0.0  # seconds from consent until tokens carry the consented roles
        self.consent_clock = clock  # what a consent's age is measured by (a test moves it without real time passing)
        self.discovery_failures: list[str] = []  # the next discoveries fail, one mode each (DISCOVERY_FAILURES)
        self.token_failures: list[tuple[str, int, str]] = []  # the next token requests answer (error, code, text)
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
            self.trusted[client_id] = list(app.federated)
        return credential

    def break_federated_credential(self, client_id: str, code: int) -> None:
        """What an admin or a redeployment does that makes the app's federated credential stop matching, one way
        per code: 70021 none left; 700211 another issuer; 700212 another audience; 700213 another subject (the
        managed identity deleted and created again: a new principal id); 7002138 the subject in another case."""
        if code not in FEDERATED_MISMATCHES:
            raise ValueError(f"code must be one of {FEDERATED_MISMATCHES}")
        with self.lock:
            app = self.apps[client_id]
            kept = self.trusted.get(client_id, app.federated)

            def changed(c: FederatedCredential) -> FederatedCredential | None:
                if code == 700211:
                    return replace(c, issuer=f"{PUBLIC_LOGIN}/{uuid.uuid4()}/v2.0")
                if code == 700212:
                    return replace(c, audiences=(f"{TOKEN_EXCHANGE}USGov",))
                if code == 700213:
                    return replace(c, subject=str(uuid.uuid4()))
                return replace(c, subject=c.subject.upper()) if code == 7002138 else None

            app.federated = [found for c in kept if (found := changed(c)) is not None]
        self._changed()

    def restore_federated_credential(self, client_id: str) -> None:
        """`azd provision`: the credentials as registered."""
        with self.lock:
            self.apps[client_id].federated = list(self.trusted.get(client_id, []))
        self._changed()

    def delete_tenant(self, tenant_id: str) -> None:
        """The organisation deleted its tenant: discovery and the token endpoint answer AADSTS90002 from now on."""
        with self.lock:
            self.tenants.pop(tenant_id, None)
            for key in [k for k in self.principals if k[0] == tenant_id]:
                del self.principals[key]
        self._changed()

    def fail_discovery(self, mode: str, times: int = 1) -> None:
        """The next `times` discoveries fail for a moment, as `mode` says (DISCOVERY_FAILURES)."""
        if mode not in DISCOVERY_FAILURES:
            raise ValueError(f"mode must be one of {DISCOVERY_FAILURES}")
        with self.lock:
            self.discovery_failures.extend([mode] * times)

    def fail_tokens(self, code: int, text: str, error: str = "invalid_request", times: int = 1) -> None:
        """The next `times` token requests answer `error` with AADSTS`code` and `text`."""
        with self.lock:
            self.token_failures.extend([(error, code, text)] * times)

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
            principal = ServicePrincipal(str(uuid.uuid4()), app.roles, by or f"admin@{tenant.domain}",
                                         self.consent_clock())  # fmt: skip
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
        applied = self.consent_clock() >= principal.granted_at + self.consent_delay
        if principal.roles and applied:  # no app role assigned (or not applied yet): no roles claim at all
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

    def _take(self, queue: list[Any]) -> Any:
        with self.lock:
            return queue.pop(0) if queue else None

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
