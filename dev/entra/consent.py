"""The admin consent endpoint's pages, as a customer's admin meets them, and the simulator's own page.

`GET /{tenant}/v2.0/adminconsent?client_id&scope&redirect_uri&state` (learn `entra/identity-platform/
v2-admin-consent`): an unknown tenant or app, or a `redirect_uri` that is not exactly one the app registered, is an
error page and no redirect (AADSTS90002, AADSTS700016, AADSTS50011). Otherwise the signed-in admin sees the
permissions with Accept (`#accept`) and Cancel (`#cancel`):
- Accept: the app's service principal is created in that tenant with every application permission the app
  requires (`/.default`), and the browser goes to `redirect_uri?admin_consent=True&tenant={tenant id}&scope=
  ...&state=...` (the tenant by id even when the link named a domain).
- Cancel: `redirect_uri?error=access_denied&error_description=AADSTS65004: User declined to consent to access the
  app....&error_uri=...&admin_consent=True&state=...`, no `tenant` (the order and fields a real cancel returned,
  MicrosoftDocs/azure-docs#114009).
An admin who signs in with an account of another organisation (a provider's admin with their own account, `#other-
tenant`) is refused at sign-in and sent back with `error=access_denied` and AADSTS50020 "User account ... from
identity provider ... does not exist in tenant ..." (the fields MicrosoftDocs/azure-docs#114009 shows; learn
`troubleshoot/entra/entra-id/app-integration/error-code-aadsts50020-user-account-identity-provider-does-not-exist`).
A signed-in user whose role cannot grant Microsoft Graph application permissions (only a Global Administrator or a
Privileged Role Administrator can: learn `entra/identity/enterprise-apps/grant-admin-consent`) sees "Need admin
approval" instead, with "Return to the application without granting consent" (`#back`: `error=access_denied`,
AADSTS90094) and a way to sign in as someone else (`#role`, `#switch`). A scope that is not the app's
`{resource}/.default` (plus OpenID scopes) comes back as `error=invalid_scope` (AADSTS70011).
"""

from __future__ import annotations

import html
from typing import TYPE_CHECKING
from urllib.parse import urlencode

from dev.entra.directory import CONSENTING_ROLES, ROLES
from dev.entra.errors import description, error_page
from dev.entra.tenants import HOME, PUBLIC_CLOUD, Tenant, well_formed
from dev.wire import SimRequest, SimResponse, pages

if TYPE_CHECKING:
    from dev.entra.apps import App
    from dev.entra.directory import EntraDirectory

OPENID_SCOPES = {"openid", "profile", "email", "offline_access"}
PERMISSIONS = {  # what the consent page says each Microsoft Graph application permission allows
    "SecurityEvents.ReadWrite.All": "Read and update your organization's security events",
    "SecurityEvents.Read.All": "Read your organization's security events",
}


def _redirect(target: str, params: list[tuple[str, str]]) -> SimResponse:
    separator = "&" if "?" in target else "?"
    return SimResponse(302, {"Location": target + separator + urlencode(params)})


def _refused(sim: EntraDirectory, target: str, state: str | None, error: str, code: int, text: str) -> SimResponse:
    params = [("error", error), ("error_description", description(code, text, sim.clock())),
              ("error_uri", f"{sim.base_url}/error?code={code}"), ("admin_consent", "True")]  # fmt: skip
    return _redirect(target, params + ([("state", state)] if state is not None else []))


def admin_consent(sim: EntraDirectory, request: SimRequest, identifier: str) -> SimResponse:
    params = request.query if request.method == "GET" else request.form()
    now = sim.clock()
    tenant = sim.find(identifier) if well_formed(identifier) else None
    if tenant is None:
        return error_page(90002, f"Tenant '{identifier[:100]}' not found. Check to make sure you have the correct "
                          "tenant ID and are signing into the correct cloud.", now)  # fmt: skip
    if tenant.cloud != PUBLIC_CLOUD:  # its admins sign in to their own cloud's login page, not this one
        return error_page(900382, "Confidential Client is not supported in Cross Cloud request.", now)
    client_id = params.get("client_id", "")
    with sim.lock:
        app = sim.apps.get(client_id)
    if app is None or (not app.multi_tenant and app.home != tenant.id):
        return error_page(700016, f"Application with identifier '{client_id[:100]}' was not found in the directory "
                          f"'{tenant.name}'. This can happen if the application has not been installed by the "
                          "administrator of the tenant or consented to by any user in the tenant.", now)  # fmt: skip
    target = params.get("redirect_uri", "")
    if target not in app.redirect_uris:  # exactly one of those registered (v2-admin-consent, redirect_uri)
        return error_page(50011, f"The redirect URI '{target[:300]}' specified in the request does not match the "
                          f"redirect URIs configured for the application '{app.client_id}'. Make sure the redirect URI "
                          "sent in the request matches one added to your application in the Azure portal. Navigate "
                          "to https://aka.ms/redirectUriMismatchError to learn more about how to fix this.",
                          now)  # fmt: skip
    state = params.get("state")
    scope = params.get("scope", "")
    if not scope.strip():
        return _refused(sim, target, state, "invalid_request", 900144,
                        "The request body must contain the following parameter: 'scope'.")  # fmt: skip
    if set(scope.split()) - OPENID_SCOPES != {f"{app.resource}/.default"}:
        return _refused(sim, target, state, "invalid_scope", 70011, f"The provided value for the input parameter "
                        f"'scope' is not valid. The scope {scope[:200]} is not valid.")  # fmt: skip
    may_consent = sim.signed_in_role in CONSENTING_ROLES
    action = params.get("action") if request.method == "POST" else None
    if action == "cancel":
        return _refused(sim, target, state, "access_denied", 65004, "User declined to consent to access the app.")
    if action == "back":
        return _refused(sim, target, state, "access_denied", 90094, "Administrator consent is required.")
    if action == "foreign":
        return _refused(sim, target, state, "access_denied", 50020, f"User account '{{EmailHidden}}' from identity "
                        f"provider 'https://sts.windows.net/{HOME.id}/' does not exist in tenant '{tenant.name}' and "
                        f"cannot access the application '{app.client_id}'({app.name}) in that tenant. The account "
                        "needs to be added as an external user in the tenant first. Sign out and sign in again with a "
                        "different Azure Active Directory user account.")  # fmt: skip
    if action == "accept" and may_consent:
        sim.grant(tenant.id, app.client_id)
        granted = [("admin_consent", "True"), ("tenant", tenant.id), ("scope", scope)]
        return _redirect(target, granted + ([("state", state)] if state is not None else []))
    if action == "signin" and params.get("role") in ROLES:
        sim.sign_in_as(params["role"])
        may_consent = sim.signed_in_role in CONSENTING_ROLES
    return _page(sim, tenant, app, identifier, params, may_consent)


def _page(
    sim: EntraDirectory, tenant: Tenant, app: App, identifier: str, params: dict[str, str], may: bool
) -> SimResponse:
    kept = "".join(f'<input type="hidden" name="{name}" value="{html.escape(params[name])}">'
                   for name in ("client_id", "scope", "redirect_uri", "state") if name in params)  # fmt: skip
    action = html.escape(f"/{identifier}/v2.0/adminconsent")
    who = f"admin@{tenant.domain}"
    options = "".join(f'<option{" selected" if role == sim.signed_in_role else ""}>{html.escape(role)}</option>'
                      for role in ROLES)  # fmt: skip
    switch = (f'<form method="post" action="{action}">{kept}<p><label for="role">Sign in with another account: '
              f'</label><select name="role" id="role">{options}</select> '
              '<button name="action" value="signin" id="switch">Sign in</button></p>'
              '<p><button name="action" value="foreign" id="other-tenant">Sign in with an account of another '
              f"organization (admin@{HOME.domain})</button></p></form>")  # fmt: skip
    signed_in = (f'<p id="signed-in">Signed in as <b>{html.escape(who)}</b> ({html.escape(sim.signed_in_role)}) '
                 f"in <b>{html.escape(tenant.name)}</b></p>")  # fmt: skip
    name = html.escape(app.name)
    if may:
        permissions = "".join(
            f"<li><b>{html.escape(PERMISSIONS.get(role, role))}</b> ({html.escape(role)}): application permission, "
            "allows the app to act without a signed-in user</li>"
            for role in app.roles
        )
        main = (
            f"<h1>Permissions requested</h1><p><b>{name}</b> (unverified) wants to:</p><ul>{permissions}</ul>"
            "<p>If you accept, this app will get access to the specified resources for all users in your "
            "organization. No one else will be prompted to review these permissions.</p>"
            f'<form method="post" action="{action}">{kept}'
            '<button name="action" value="accept" id="accept">Accept</button> '
            '<button name="action" value="cancel" id="cancel">Cancel</button></form>'
        )
    else:
        main = (
            f"<h1>Need admin approval</h1><p><b>{name}</b> needs permission to access resources in your "
            "organization that only an admin can grant. Please ask an admin to grant permission to this app before "
            "you can use it.</p><p>Have an admin account? Sign in with that account (a Global Administrator or a "
            "Privileged Role Administrator).</p>"
            f'<form method="post" action="{action}">{kept}'
            '<button name="action" value="back" id="back">Return to the application without granting consent'
            "</button></form>"
        )
    body = (f"<!doctype html><html lang=en>{pages.head('Permissions requested')}<body><main>{signed_in}{main}"
            f"{switch}</main></body></html>")  # fmt: skip
    return SimResponse(200, {"Content-Type": "text/html; charset=utf-8"}, body.encode())
