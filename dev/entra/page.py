"""`/sim`: the Entra simulator's own page: every tenant with the apps consented there, and the switches a person
tries the connector's answers with (add or delete a tenant, withdraw a consent, the consent's delay, a discovery
that fails for a moment, the reader app's federated credential broken one way per code, or restored)."""

from __future__ import annotations

import html
from typing import TYPE_CHECKING

from dev.entra.directory import DISCOVERY_FAILURES, FEDERATED_MISMATCHES, WITHDRAWALS
from dev.entra.tenants import well_formed
from dev.wire import SimRequest, SimResponse, pages

if TYPE_CHECKING:
    from dev.entra.directory import EntraDirectory

_BACK = SimResponse(303, {"Location": "/sim"})


def _text(status: int, message: str) -> SimResponse:
    return SimResponse(status, {"Content-Type": "text/plain"}, message.encode())


def _switch(sim: EntraDirectory, parts: list[str], form: dict[str, str]) -> SimResponse:
    """POST /sim/...: one switch, then back to the page."""
    if parts == ["sim", "tenants"]:
        if not (well_formed(form.get("domain", "")) and form.get("name")):
            return _text(400, "domain (a DNS name) and name are required")
        sim.add_tenant(form["domain"], form["name"][:100])
    elif len(parts) == 4 and parts[1] == "tenants" and parts[2] in sim.tenants and parts[3] in ("withdraw", "delete"):
        if parts[3] == "delete":
            sim.delete_tenant(parts[2])
        elif form.get("how", "delete") in WITHDRAWALS:
            sim.withdraw(parts[2], how=form.get("how", "delete"))
        else:
            return _text(404, "no such withdrawal")
    elif parts == ["sim", "consent-delay"] and form.get("seconds", "").isdigit():
        sim.consent_delay = float(min(int(form["seconds"]), 86_400))
    elif parts == ["sim", "discovery"] and form.get("mode") in DISCOVERY_FAILURES:
        sim.fail_discovery(form["mode"], times=max(1, min(int(form.get("times", "1") or 1), 100)))
    elif len(parts) == 4 and parts[1] == "apps" and parts[2] in sim.apps and parts[3] == "federated":
        code = form.get("code", "")
        if code == "restore":
            sim.restore_federated_credential(parts[2])
        elif code.isdigit() and int(code) in FEDERATED_MISMATCHES:
            sim.break_federated_credential(parts[2], int(code))
        else:
            return _text(400, "code must be restore or one of " + ", ".join(map(str, FEDERATED_MISMATCHES)))
    else:
        return _text(404, "no such switch")
    return _BACK


def _inline(action: str, fields: dict[str, str], label: str) -> str:
    hidden = "".join(f'<input type="hidden" name="{k}" value="{html.escape(v)}">' for k, v in fields.items())
    return f'<form method="post" action="{html.escape(action)}" class="inline">{hidden}<button>{label}</button></form> '


def sim_page(sim: EntraDirectory, request: SimRequest, parts: list[str]) -> SimResponse:
    if request.method == "POST":
        return _switch(sim, parts, request.form())
    if request.method != "GET" or parts != ["sim"]:
        return _text(404, "Not found")
    rows, apps = [], []
    with sim.lock:
        for tenant in sim.tenants.values():
            consented = [f"{html.escape(sim.apps[c].name if c in sim.apps else c)}: "
                         f"{'enabled' if p.enabled else 'disabled'}, {', '.join(p.roles) or 'no permissions'}"
                         for (t, c), p in sim.principals.items() if t == tenant.id]  # fmt: skip
            withdraw = "".join(
                _inline(f"/sim/tenants/{tenant.id}/withdraw", {"how": how}, label)
                for how, label in (("delete", "Delete the app"), ("disable", "Disable it"),
                                   ("revoke", "Remove its permissions"))
            ) if consented else ""  # fmt: skip
            withdraw += _inline(f"/sim/tenants/{tenant.id}/delete", {}, "Delete the tenant")
            rows.append(f"<tr><td>{html.escape(tenant.name)}</td><td>{html.escape(', '.join(tenant.domains))}</td>"
                        f"<td><code>{tenant.id}</code></td><td>{html.escape(tenant.cloud)}</td>"
                        f"<td>{'<br>'.join(consented) or 'not consented'}</td><td>{withdraw}</td></tr>")  # fmt: skip
        for app in sim.apps.values():
            matching = "matches the managed identity" if app.federated == sim.trusted.get(app.client_id) else "BROKEN"
            breaks = "".join(_inline(f"/sim/apps/{app.client_id}/federated", {"code": str(code)}, f"AADSTS{code}")
                             for code in (70021, 700211, 700212, 700213, 7002138))  # fmt: skip
            restore = _inline(f"/sim/apps/{app.client_id}/federated", {"code": "restore"}, "Restore (azd provision)")
            apps.append(f"<li>{html.escape(app.name)} (<code>{app.client_id}</code>): its federated credential "
                        f"{matching}. Break it: {breaks} {restore}</li>")  # fmt: skip
        delay, failing = sim.consent_delay, len(sim.discovery_failures)
    body = (
        f"<!doctype html><html lang=en>{pages.head('Entra ID simulator', 'form.inline{display:inline}')}<body><main>"
        "<h1>Microsoft Entra ID simulator: tenants and consent</h1>"
        f"<p>Whoever opens a consent link is signed in as a <b>{html.escape(sim.signed_in_role)}</b> of that tenant "
        "(change it on the consent page).</p>"
        '<table><tr><th scope="col">Tenant</th><th scope="col">Domains</th><th scope="col">Id</th>'
        '<th scope="col">Cloud</th><th scope="col">Consent</th><th scope="col">Switches</th></tr>'
        + "".join(rows) + "</table>"
        f"<h2>Apps</h2><ul>{''.join(apps)}</ul>"
        f"<h2>Consent delay</h2><p>Tokens carry a new consent's permission {delay:g} s after it is given (until "
        'then they come without roles).</p><form method="post" action="/sim/consent-delay"><label>Seconds '
        f'<input name="seconds" value="{delay:g}" inputmode="numeric"></label> <button>Set</button></form>'
        f"<h2>Discovery</h2><p>{failing} discovery request(s) will fail.</p>"
        + "".join(_inline("/sim/discovery", {"mode": mode}, label) for mode, label in (
            ("503", "Fail the next with 503"), ("drop", "Drop the next"), ("90024", "Answer AADSTS90024")))
        + '<h2>Add a tenant</h2><form method="post" action="/sim/tenants"><label>Domain <input name="domain" '
        'required></label> <label>Name <input name="name" required></label> <button>Add</button></form>'
        "</main></body></html>"
    )  # fmt: skip
    return SimResponse(200, {"Content-Type": "text/html; charset=utf-8"}, body.encode())
