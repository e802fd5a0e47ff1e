"""The Graph simulator's page (`/sim`): every scored control of a tenant with its score and newest note, a button
that completes or regresses it, and links to the other tenants' controls."""

from __future__ import annotations

import html
from urllib.parse import quote

from dev.graph.tenant import TenantData
from dev.wire.messages import SimRequest, SimResponse
from dev.wire.pages import back_to_portal, head

# At 1280 px a table; on a phone each control is a block of its own (no header row), nothing wider than the screen.
_STYLE = (
    ".score{white-space:nowrap}th:nth-child(4){width:40%}"
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
            f"<button>{'Regress' if action == 'regress' else 'Complete'}</button></form></td></tr>"
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
        "<p>Complete or regress a control, then refresh Secure Score in the connector "
        "(<code>POST /api/recommendations/refresh</code> or the portal).</p>"
        '<table class="controls"><tr><th scope="col">Control</th><th scope="col">Title</th>'
        '<th scope="col">Score</th><th scope="col">Note (write-back)</th><th scope="col">Switch</th></tr>'
        + "".join(rows)
        + "</table></main></body></html>"
    )
    return SimResponse(200, {"Content-Type": "text/html; charset=utf-8"}, page.encode())
