"""The Graph simulator's page (`/sim`): every scored control of a tenant with its score, its state and the last
few entries of its state history, a button that completes or regresses it, a form with which a person sets its state
(as in the Defender portal, so a template's drift can be shown in `make run`), and links to the other tenants'."""

from __future__ import annotations

import html
from typing import Any
from urllib.parse import quote

from dev.graph.tenant import TenantData
from dev.wire.messages import SimRequest, SimResponse
from dev.wire.pages import back_to_portal, head

# The four states Graph documents: https://learn.microsoft.com/graph/api/securescorecontrolprofile-update
STATES = ("Default", "Ignored", "ThirdParty", "Reviewed")
MAX_COMMENT = 1000  # the page's own bound on a comment (Graph documents none)
MAX_BY = 256  # a user principal name is at most 113 characters; an email address at most 254 (RFC 5321)
SHOWN = 3  # history entries shown per control, newest first

# At 1280 px a table; on a phone each control is a block of its own (no header row), nothing wider than the screen.
_STYLE = (
    ".score{white-space:nowrap}th:nth-child(4){width:30%}.hist{margin:0;padding-left:1em;font-size:.9em}"
    "summary{cursor:pointer}.set label{display:block;margin:.2em 0}"
    ".set input,.set select{max-width:100%;box-sizing:border-box}"
    "@media (max-width:600px){.controls tr:first-child{display:none}.controls tr,.controls td{display:block}"
    ".controls tr{padding:.4em 0;border-bottom:1px solid #ddd}.controls td{padding:.1em .3em}}"
)


def tenant_query(tenant: TenantData, home: TenantData, joiner: str = "?") -> str:
    """`?tenant={id}` for a tenant other than the home tenant (whose page needs none, as before)."""
    return "" if tenant is home else f"{joiner}tenant={tenant.id}"


def controls_page(
    request: SimRequest | None, tenant: TenantData, home: TenantData, tenants: list[TenantData], portal_port: int | None
) -> SimResponse:
    """Every control with its score and its newest note, and the switch; long notes and ids wrap, so the page
    fits a 1280 px window. With several tenants, links to each tenant's controls. Called under the simulator's
    lock."""
    rows = []
    for profile in tenant.ranked():
        cid = profile["id"]
        if cid not in tenant.scores:
            continue  # not scored for this tenant: nothing to complete
        score, max_score = tenant.scores[cid], profile.get("maxScore") or 0.0
        note = ((profile.get("controlStateUpdates") or [{}])[-1] or {}).get("comment") or ""
        action = "regress" if score >= max_score else "complete"
        target = f"/sim/controls/{quote(cid, safe='')}/{action}?back=page"
        target += tenant_query(tenant, home, "&")
        rows.append(
            f"<tr><td>{html.escape(cid)}</td><td>{html.escape(str(profile.get('title')))}</td>"
            f'<td class="score">{score:g} / {max_score:g}</td><td class="multi">{html.escape(note)}</td><td>'
            f'<form method="post" action="{html.escape(target)}">'
            f"<button>{'Regress' if action == 'regress' else 'Complete'}</button></form></td>"
            f"<td>{_state_cell(profile, tenant, home)}</td></tr>"
        )
    links = ""
    if len(tenants) > 1:
        links = "<p>Tenants: " + " | ".join(
            f"<b>{html.escape(t.name)}</b>" if t is tenant
            else f'<a href="/sim{html.escape(tenant_query(t, home))}">{html.escape(t.name)}</a>'
            for t in tenants
        ) + "</p>"  # fmt: skip
    view = "#tenant=home" if tenant is home else f"#tenant={tenant.id}"
    back = back_to_portal(request.url if request else "", portal_port, view)
    page = (
        "<!doctype html><html lang=en>"
        + head("Graph simulator: Secure Score", _STYLE)
        + f"<body><main>{back}<h1>Microsoft Graph simulator: Secure Score controls</h1>{links}"
        "<p>Complete or regress a control, or set its state as a person would in the Defender portal, then refresh "
        "Secure Score in the connector "
        "(<code>POST /api/recommendations/refresh</code> or the portal).</p>"
        '<table class="controls"><tr><th scope="col">Control</th><th scope="col">Title</th>'
        '<th scope="col">Score</th><th scope="col">Note (write-back)</th><th scope="col">Switch</th>'
        '<th scope="col">State (newest first)</th></tr>' + "".join(rows) + "</table></main></body></html>"
    )
    return SimResponse(200, {"Content-Type": "text/html; charset=utf-8"}, page.encode())


def _state_cell(profile: dict[str, Any], tenant: TenantData, home: TenantData) -> str:
    """The last few controlStateUpdates entries (state, by, when) and the form that adds one."""
    history = [e for e in profile.get("controlStateUpdates") or [] if isinstance(e, dict)][-SHOWN:][::-1]
    items = "".join(f"<li>{_entry(e)}</li>" for e in history)
    current = str((history[0] if history else {}).get("state") or "Default")
    options = "".join(f"<option{' selected' if s.lower() == current.lower() else ''}>{s}</option>" for s in STATES)
    target = f"/sim/controls/{quote(profile['id'], safe='')}/state" + tenant_query(tenant, home)
    return (
        f'<ul class="hist">{items}</ul><details><summary>Set state</summary>'
        f'<form class="set" method="post" action="{html.escape(target)}">'
        f"<label>State <select name=state>{options}</select></label>"
        f"<label>Comment <input name=comment maxlength={MAX_COMMENT}></label>"
        f'<label>By <input name=by value="alex@contoso.com" maxlength={MAX_BY}></label>'
        "<button>Set state</button></form></details>"
    )


def _entry(entry: dict[str, Any]) -> str:
    """`Reviewed by alex@contoso.com, 2026-12-07 15:04`; the catalogue's first entries name no one and no time."""
    text = html.escape(str(entry.get("state") or "Default"))
    if entry.get("updatedBy"):
        text += f" by {html.escape(str(entry['updatedBy']))}"
    if entry.get("updatedDateTime"):
        text += f", {html.escape(str(entry['updatedDateTime'])[:16].replace('T', ' '))}"
    return text


def state_form(request: SimRequest, tenant: TenantData, control_id: str, home: TenantData) -> SimResponse:
    """`POST /sim/controls/{id}/state` (form-encoded `state`, `comment`, `by`): a person's change, as the Defender
    portal makes it; back to the page. A state outside Graph's four or a comment too long is refused (400)."""
    if control_id not in tenant.profiles:
        return _plain(404, f"No control {control_id!r} in this tenant.")
    form = request.form()
    state = {s.lower(): s for s in STATES}.get(form.get("state", "").lower())
    if state is None:
        return _plain(400, f"state must be one of {', '.join(STATES)}.")
    comment, by = form.get("comment", ""), form.get("by", "").strip() or "alex@contoso.com"
    if len(comment) > MAX_COMMENT:
        return _plain(400, f"comment is over {MAX_COMMENT:,} characters.")
    if len(by) > MAX_BY:
        return _plain(400, f"by is over {MAX_BY} characters.")
    tenant.set_state(control_id, state, by=by, comment=comment or None)
    return SimResponse(303, {"Location": "/sim" + tenant_query(tenant, home)})


def _plain(status: int, text: str) -> SimResponse:
    return SimResponse(status, {"Content-Type": "text/plain; charset=utf-8"}, text.encode())
