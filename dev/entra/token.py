"""The Entra simulator's token endpoint: `POST /{tenant}/oauth2/v2.0/token` with `grant_type=client_credentials`, a
`client_assertion_type` of `urn:ietf:params:oauth:client-assertion-type:jwt-bearer` and a `client_assertion` that is
the managed identity's token for `api://AzureADTokenExchange`, matched against the app's federated identity
credentials on issuer, subject and audience (learn `entra/workload-id/workload-identity-federation-config-app-
trust-managed-identity`). The tenant must hold the app's service principal (created by admin consent): none is 401
AADSTS7000229, a disabled one 400 AADSTS7000112; a tenant of another cloud is 400 AADSTS900382.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from dev.entra.errors import token_error
from dev.entra.tenants import PUBLIC_CLOUD, Tenant
from dev.wire import SimRequest, SimResponse

if TYPE_CHECKING:
    from dev.entra.apps import App
    from dev.entra.directory import EntraDirectory

JWT_BEARER = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"


def endpoint(sim: EntraDirectory, request: SimRequest, tenant: Tenant) -> SimResponse:
    now = sim.clock()

    def fail(error: str, code: int, text: str) -> SimResponse:
        return token_error(error, code, text, now, sim.base_url)

    if not request.headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
        return fail("invalid_request", 900144, "The request body must contain the following parameter: "
                    "'grant_type'.")  # fmt: skip
    form = request.form()
    failing = sim._take(sim.token_failures)
    if failing is not None:
        return fail(*failing)
    for required in ("grant_type", "client_id", "scope"):
        if not form.get(required):
            return fail("invalid_request", 900144,
                        f"The request body must contain the following parameter: '{required}'.")  # fmt: skip
    if form["grant_type"] != "client_credentials":
        return fail("unsupported_grant_type", 70003, f"The app requested an unsupported grant type "
                    f"'{form['grant_type'][:100]}'.")  # fmt: skip
    with sim.lock:
        app = sim.apps.get(form["client_id"])
        principal = sim.principals.get((tenant.id, form["client_id"]))
    if tenant.cloud != PUBLIC_CLOUD:  # an app of this cloud, a tenant of another
        return fail("invalid_request", 900382, "Confidential Client is not supported in Cross Cloud request.")
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
    refused = assertion_refused(sim, app, form["client_assertion"], now)
    if refused is not None:
        return fail("invalid_request" if refused[0] == 70021 else "invalid_client", *refused)  # as #616 shows
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
    token = sim._access_token(tenant, app, principal, resource)
    return SimResponse.json(200, {"token_type": "Bearer", "expires_in": sim.lifetime,
                                  "ext_expires_in": sim.lifetime, "access_token": token},
                            {"Cache-Control": "no-store"})  # fmt: skip


def assertion_refused(sim: EntraDirectory, app: App, assertion: str, now: float) -> tuple[int, str] | None:
    """Why the client assertion does not prove the app (an AADSTS code and text), or None when it does: a token
    the trusted managed identity signed, within its lifetime, matching one of the app's federated credentials
    on issuer, subject and audience, each compared exactly (FIC matching is case-sensitive: learn
    `entra/identity-platform/reference-breaking-changes`, February 2025)."""
    claims = sim.identity.verify(assertion) if sim.identity is not None and assertion.isascii() else None
    if claims is None:
        return 700027, "Client assertion failed signature validation."
    if not int(claims.get("nbf", 0)) <= now < int(claims.get("exp", 0)):
        return 700024, (
            f"Client assertion is not within its valid time range. Current time: {int(now)}, "
            f"assertion valid from {claims.get('nbf')}, expiry time of assertion {claims.get('exp')}."
        )
    issuer, subject, audience = str(claims.get("iss")), str(claims.get("sub")), claims.get("aud")
    if not app.federated:  # the form azure-workload-identity#616 shows
        return 70021, (f"No matching federated identity record found for presented assertion. Assertion Issuer: "
                       f"'{issuer}'. Assertion Subject: '{subject}'. Assertion Audience: '{audience}'. "
                       "https://learn.microsoft.com/entra/workload-id/workload-identity-federation")  # fmt: skip
    matching = [c for c in app.federated if c.issuer == issuer]
    if not matching:
        return 700211, f"No matching federated identity record found for presented assertion issuer '{issuer}'."
    if not any(c.subject == subject for c in matching) and any(c.subject.lower() == subject.lower()
                                                                for c in matching):  # fmt: skip
        return 7002138, (f"No matching federated identity record found for presented assertion subject "
                         f"'{subject}'. Please note that the matching is done using a case-sensitive comparison. "
                         "Check your federated identity credential Subject, Audience and Issuer against the "
                         "presented assertion.")  # fmt: skip
    matching = [c for c in matching if c.subject == subject]
    if not matching:
        return 700213, (f"No matching federated identity record found for presented assertion subject "
                        f"'{subject}'. Check your federated identity credential Subject, Audience and Issuer "
                        "against the presented assertion.")  # fmt: skip
    if not any(audience in c.audiences for c in matching):
        return 700212, f"No matching federated identity record found for presented assertion audience '{audience}'."
    return None
