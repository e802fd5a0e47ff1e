"""The simulated directory: tenants, app registrations with their federated credentials, the service principals
admin consent creates, the directory role of whoever opens a consent link, the key tokens are signed with, and the
switches a test turns. The endpoints that read and change it (simulator.py, consent.py, token.py, page.py) stand on
it. Facts and their sources: docs/design.md#entra-id-facts and simulator.py.
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

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

from dev.entra.apps import App, FederatedCredential, ServicePrincipal
from dev.entra.tenants import BUILT_IN, Tenant, new_tenant
from dev.wire.messages import SimRequest

if TYPE_CHECKING:
    from dev.graph.identity import ManagedIdentity

PUBLIC_LOGIN = "https://login.microsoftonline.com"  # where a real managed identity's token says it comes from
GRAPH = "https://graph.microsoft.com"
TOKEN_EXCHANGE = "api://AzureADTokenExchange"  # the public cloud's audience for a federated credential
SECURITY_EVENTS_READWRITE_ALL = "SecurityEvents.ReadWrite.All"
READER_APP_ID = "7d1c9b3e-5a2f-4e8d-b6c4-3f2a1e0d9c8b"  # make run's reader app
WITHDRAWALS = ("delete", "disable", "revoke")
DISCOVERY_FAILURES = ("503", "drop", "90024")
FEDERATED_MISMATCHES = (70021, 700211, 700212, 700213, 7002138)
# Who may grant tenant-wide consent to Microsoft Graph application permissions (learn `entra/identity/
# enterprise-apps/grant-admin-consent`, Prerequisites): Cloud Application and Application Administrators may grant
# "any permission for any API, except Microsoft Graph app roles".
CONSENTING_ROLES = ("Global Administrator", "Privileged Role Administrator")
ROLES = (*CONSENTING_ROLES, "Cloud Application Administrator", "Application Administrator", "User")


def _public_jwk(key: rsa.RSAPublicKey) -> dict[str, Any]:
    jwk: dict[str, Any] = json.loads(RSAAlgorithm.to_jwk(key))
    return jwk


class EntraDirectory:
    """What the directory holds, and the setup and switches a test or `make run` uses on it."""

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

    def _take(self, queue: list[Any]) -> Any:
        with self.lock:
            return queue.pop(0) if queue else None
