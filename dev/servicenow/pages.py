"""The simulated instance's own pages, as an agent and an admin see ServiceNow: a record (what a ticket's `url`
opens), with what the routes set on it (company, assignment group, due date, assignee) shown by name as ServiceNow's
form shows a reference (its display value), and the groups and companies a route can name (`/sim`), each with its
sys_id and, for groups, whether it is active; so a newcomer can check the routes' preview against the records.
"""

from __future__ import annotations

import html
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

from dev.servicenow.table_api import TableApi
from dev.wire.messages import SimRequest, SimResponse
from dev.wire.pages import back_to_portal, head
from shared.tickets import HOME, parse_correlation

STATE_LABELS = {"1": "New", "2": "In Progress", "3": "On Hold", "6": "Resolved", "7": "Closed", "8": "Canceled"}
# The record's fields, in the order its form shows them (the state is the form's own); references are shown by
# their display value.
SHOWN = ("number", "short_description", "priority", "company", "assignment_group", "assigned_to",
         "due_date", "caller_id", "correlation_id", "sys_updated_on", "description", "close_code",
         "close_notes")  # fmt: skip
LABELS = {"short_description": "Short description", "assignment_group": "Assignment group",
          "assigned_to": "Assigned to", "due_date": "Due date", "caller_id": "Caller",
          "correlation_id": "Correlation ID", "sys_updated_on": "Updated", "close_code": "Resolution code",
          "close_notes": "Resolution notes"}  # fmt: skip
MULTI_LINE = ("description", "close_notes")
STYLE = (
    ".ref{color:#555;font-size:.85em;display:block}.inactive{color:#8a1c1c}"
    "@media (max-width:600px){.list thead{display:none}.list tr,.list td{display:block}"
    ".list tr{padding:.4em 0;border-bottom:1px solid #ddd}.list td{padding:.1em .3em}}"
)


def _html(status: int, title: str, body: str) -> SimResponse:
    page = f"<!doctype html><html lang=en>{head(title, STYLE)}<body><main>{body}</main></body></html>"
    return SimResponse(status, {"Content-Type": "text/html;charset=UTF-8"}, page.encode())


def _portal_view(record: dict[str, Any]) -> str:
    """The connector's own view of the record's tenant (`#tenant=...`, or nothing for a record it did not make)."""
    found = parse_correlation(str(record.get("correlation_id") or ""))
    if found is None:
        return ""
    return "#tenant=home" if found[0] == HOME else f"#tenant={found[0]}"


def _cell(simulator: TableApi, name: str, record: dict[str, Any]) -> str:
    value = record.get(name, "")
    if isinstance(value, dict):  # a reference: its display value, and its sys_id under it
        sys_id = str(value.get("value") or "")
        shown = simulator._display(name, sys_id) or "(not found)"
        return f'{html.escape(shown)}<span class="ref">{html.escape(sys_id)}</span>' if sys_id else ""
    if name == "priority":  # a choice: its label, as the form shows it
        return html.escape(simulator._display(name, str(value)))
    return html.escape(str(value))


def record_page(simulator: TableApi, request: SimRequest) -> SimResponse:
    """The record as an agent sees it: its fields (multi-line ones keep their line breaks), resolution, work notes
    and comments (newest first), and a form to change its state and assignee."""
    uri = request.query.get("uri", "")
    target = urlsplit(uri)
    table = target.path.removesuffix(".do")
    sys_id = dict(parse_qsl(target.query)).get("sys_id", "")
    with simulator.lock:
        record = simulator.tables.get(table, {}).get(sys_id)
        journal = [entry for entry in simulator.journal if entry[0] == sys_id]
        users = list(simulator.tables["sys_user"].values())
    if record is None:
        return _html(404, "No record", "<p>Record not found</p>")
    here = f"/nav_to.do?{urlencode({'uri': uri})}"
    if request.method == "POST":
        form = request.form()
        changes = {k: v for k, v in form.items() if k in ("state", "assigned_to") and v != ""}
        simulator.update(table, sys_id, **changes)
        return SimResponse(303, {"Location": here})
    assignee = record.get("assigned_to")
    assigned = assignee.get("value") if isinstance(assignee, dict) else ""
    states = "".join(f'<option value="{v}"{" selected" if record.get("state") == v else ""}>{label}</option>'
                     for v, label in STATE_LABELS.items())  # fmt: skip
    people = '<option value="">(nobody)</option>' + "".join(
        f'<option value="{html.escape(u["sys_id"])}"{" selected" if u["sys_id"] == assigned else ""}>'
        f"{html.escape(u['name'])}</option>"
        for u in users
    )
    rows = "".join(
        f'<tr><th scope="row">{LABELS.get(name, name.replace("_", " ").capitalize())}</th>'
        f'<td id="{name.replace("_", "-")}"{" class=multi" if name in MULTI_LINE else ""}>'
        f"{_cell(simulator, name, record)}</td></tr>"
        for name in SHOWN
    )
    kinds = {"work_notes": "Work notes", "comments": "Additional comments"}
    notes = "".join(f"<li><b>{kinds.get(kind, kind)}</b><div class=multi>{html.escape(text)}</div></li>"
                    for _, kind, text in reversed(journal))  # fmt: skip
    number = html.escape(str(record["number"]))
    back = back_to_portal(request.url, simulator.portal_port, _portal_view(record))
    body = (
        f'{back}<h1>ServiceNow simulator: {number}</h1><table class="fields">{rows}</table>'
        f'<form method="post" action="{html.escape(here)}">'
        f'<p><label>State <select name="state" id="state">{states}</select></label> '
        f'<label>Assigned to <select name="assigned_to" id="assigned_to">{people}</select></label> '
        '<button id="update">Update</button></p></form>'
        "<h2>Work notes and comments</h2>"
        + (f'<ol id="journal" reversed>{notes}</ol>' if notes else '<p id="journal">None yet.</p>')
        + '<p><a id="directory" href="/sim">The groups and companies of this instance</a></p>'
    )
    return _html(200, str(record["number"]), body)


def directory_page(simulator: TableApi, request: SimRequest) -> SimResponse:
    """`/sim`: the assignment groups (`sys_user_group`) and companies (`core_company`) a route can name, by name and
    sys_id. Two records share a name in each table, and retired groups keep theirs, as on real instances: a route
    that names one of those gets the connector's answer, which this page lets a newcomer check."""
    with simulator.lock:
        groups = sorted(simulator.tables["sys_user_group"].values(), key=lambda r: (r.get("name", ""), r["sys_id"]))
        companies = sorted(simulator.tables["core_company"].values(), key=lambda r: (r.get("name", ""), r["sys_id"]))
    group_rows = "".join(
        f"<tr><td>{html.escape(str(g.get('name', '')))}</td><td><code>{html.escape(g['sys_id'])}</code></td>"
        + ("<td>active</td>" if g.get("active") != "false" else '<td class="inactive">inactive (retired)</td>')
        + f"<td>{html.escape(str(g.get('description', '')))}</td></tr>"
        for g in groups
    )
    company_rows = "".join(
        f"<tr><td>{html.escape(str(c.get('name', '')))}</td><td><code>{html.escape(c['sys_id'])}</code></td>"
        f"<td>{html.escape(', '.join(filter(None, (str(c.get('city', '')), str(c.get('country', ''))))))}</td></tr>"
        for c in companies
    )
    shared = [name for rows in (groups, companies) for name, count in _counts(rows).items() if count > 1]
    body = (
        f"{back_to_portal(request.url, simulator.portal_port)}<h1>ServiceNow simulator: groups and companies</h1>"
        "<p>What a route's assignment group and company can name, by name or sys_id. "
        f"{html.escape(' and '.join(shared))} {'each name' if len(shared) > 1 else 'names'} two records: a route "
        "names the one it means by its sys_id. An inactive group is refused: a ticket assigned to it would reach "
        "nobody.</p>"
        '<h2 id="groups-title">Assignment groups (sys_user_group)</h2>'
        '<table class="list" id="groups" aria-labelledby="groups-title"><thead><tr><th scope="col">Name</th>'
        '<th scope="col">sys_id</th><th scope="col">Active</th><th scope="col">Description</th></tr></thead>'
        f"<tbody>{group_rows}</tbody></table>"
        '<h2 id="companies-title">Companies (core_company)</h2>'
        '<table class="list" id="companies" aria-labelledby="companies-title"><thead><tr><th scope="col">Name</th>'
        f'<th scope="col">sys_id</th><th scope="col">Where</th></tr></thead><tbody>{company_rows}</tbody></table>'
    )
    return _html(200, "Groups and companies", body)


def _counts(rows: list[dict[str, Any]]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for row in rows:
        if row.get("active") != "false":
            counts[str(row.get("name", ""))] = counts.get(str(row.get("name", "")), 0) + 1
    return counts
