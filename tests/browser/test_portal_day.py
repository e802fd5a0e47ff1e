"""The admin's day with many tenants and instances (issue 29), in Chromium: the local host with App Service
Authentication emulated, the ServiceNow, Graph and Entra ID simulators on loopback. Each thing is said where it
belongs: a ticket's route on its ServiceNow record, a tenant's health on its row and never on the ServiceNow card, a
note Secure Score does not take on its ticket and nowhere as a failure, overdue in words and colour, the Routes
view's Back as the browser's. Screenshots go to tests/artifacts/ (docs/images/ with `make pictures`)."""

from __future__ import annotations

import re
from typing import Any

from playwright.sync_api import expect

from dev.entra import FABRIKAM, NORTHWIND
from tests.browser.test_portal import Portal, axe_violations, browser, connect, open_portal, portal, shoot
from tests.browser.test_portal_tenants import api, several, tenants

__all__ = ["browser", "portal", "tenants"]  # fixtures, used by name

OVERFLOW = "document.documentElement.scrollWidth - document.documentElement.clientWidth"
IAM = "Identity and Access Management"


def clean(page: Any, name: str) -> None:
    """At 1280 and 390 pixels: nothing wider than the window and no axe-core violation of any impact (the page's
    context opened with `bypass_csp=True`, so axe can be injected); a picture of each. Back at 1280 after."""
    for width in (1280, 390):
        page.set_viewport_size({"width": width, "height": 900})
        assert page.evaluate(OVERFLOW) <= 0, (name, width)
        found = axe_violations(page)
        assert found == [], (name, width, found)
        shoot(page, f"{name}-{width}")
    page.set_viewport_size({"width": 1280, "height": 900})


def _route_everything_to(page: Any, portal: Portal, **chosen: Any) -> None:
    current = page.request.get(f"{portal.url}/api/routes")
    rule = {"name": "Everything to IAM", "set": chosen}
    saved = page.request.put(f"{portal.url}/api/routes", data={"routes": [rule]},
                             headers={"If-Match": current.headers["etag"]})  # fmt: skip
    assert saved.ok, saved.text()


def test_the_record_page_shows_what_the_route_set_and_a_page_lists_groups_and_companies(browser, portal):
    """Item 7: company, assignment group, due date and assignee on the simulated record, by name; the groups and
    companies a route can name, with their sys_ids, on the simulator's own page."""
    page = open_portal(browser, portal, bypass_csp=True)
    connect(page, portal)
    assert page.request.post(f"{portal.url}/api/recommendations/refresh").ok
    _route_everything_to(page, portal, assignmentGroup=IAM, company="Fabrikam", dueInDays=14)
    created = page.request.post(f"{portal.url}/api/tickets", data={"recommendation": {"id": "AdminMFAV2"}})
    assert created.status == 201, created.text()
    ticket = created.json()
    agent = page.context.new_page()
    agent.goto(ticket["url"])
    assert agent.inner_text("#assignment-group").startswith(IAM)
    assert agent.inner_text("#company").startswith("Fabrikam")
    assert agent.inner_text("#due-date") == ticket["dueDate"].replace("T", " ").removesuffix("Z")
    assert agent.inner_text("#assigned-to") == ""
    agent.select_option("#assigned_to", label="M365 Integration")
    agent.click("#update")
    agent.wait_for_selector("#assigned-to:has-text('M365 Integration')")
    clean(agent, "servicenow-record-routed")

    agent.click("#directory")
    agent.wait_for_selector("#groups")
    groups = agent.inner_text("#groups")
    assert "477a05d153013010b846ddeeff7b1225" in groups and IAM in groups  # by name and sys_id
    assert groups.count("Service Desk") == 2 and "inactive" in groups
    assert agent.locator("#groups tbody tr").count() == len(portal.servicenow.tables["sys_user_group"])
    assert agent.locator("#companies tbody tr").count() == len(portal.servicenow.tables["core_company"])
    clean(agent, "servicenow-directory")
    agent.click("#portal")
    agent.wait_for_selector("body[data-ready=true]")
    assert agent.url == f"{portal.url}/api/portal"


def test_back_to_the_connector_from_a_record_or_the_graph_page_lands_on_its_tenant(browser, tenants):
    """Item 11: from a Fabrikam ticket's record (and Fabrikam's controls on the Graph simulator's page), "Back to
    the connector" opens Fabrikam's own view, not the overview; the Graph simulator's page fits a phone."""
    setup = several(browser, tenants)
    fabrikam = api(tenants, setup, "GET", f"/api/tickets?tenant={FABRIKAM.id}")["tickets"][0]
    viewer = open_portal(browser, tenants.portal, bypass_csp=True)
    agent = viewer.context.new_page()
    agent.goto(fabrikam["url"])
    agent.click("#portal")
    agent.wait_for_selector(f'body[data-ready=true][data-view=tenant][data-tenant="{FABRIKAM.id}"]')
    graph = viewer.context.new_page()
    graph.goto(f"{tenants.portal.graph_url}/sim?tenant={FABRIKAM.id}")
    clean(graph, "graph-sim")
    graph.set_viewport_size({"width": 390, "height": 900})
    rightmost = "Math.max(...[...document.querySelectorAll('button')].map((b) => b.getBoundingClientRect().right))"
    assert graph.evaluate(rightmost) <= 390
    graph.click("#portal")
    graph.wait_for_selector(f'body[data-ready=true][data-view=tenant][data-tenant="{FABRIKAM.id}"]')
    clean(graph, "portal-tenant-from-graph")


def test_each_thing_is_said_where_it_belongs_and_a_refused_note_is_no_failure(browser, tenants):
    """Items 2 and 3: with Fabrikam active, Northwind waiting for consent and a ticket for a control whose notes
    Secure Score refuses (scid_5094), the ServiceNow card says Connected, on every view; the refusal is said on the
    ticket; Northwind's wait is on its row and its own page."""
    setup = several(browser, tenants)
    scid = api(tenants, setup, "POST", "/api/tickets", {"recommendation": {"id": "scid_5094"}})
    for _ in range(2):
        assert setup.request.post(f"{tenants.url}/admin/functions/status_sync").status == 202
    api(tenants, setup, "POST", "/api/recommendations/refresh")
    ticket = api(tenants, setup, "GET", f"/api/tickets/{scid['id']}")
    assert ticket["secureScore"]["refused"] is True

    page = open_portal(browser, tenants.portal, bypass_csp=True)  # bypass only so axe can be injected
    views = ["#tenants", "#tenant=home", f"#tenant={FABRIKAM.id}", f"#tenant={NORTHWIND.id}"]
    for view in views:
        page.goto(f"{tenants.url}/api/portal{view}")  # the hash only: the page routes it, the document stays
        shown = "[data-view=overview]" if view == "#tenants" else f'[data-tenant="{view.split("=")[1]}"]'
        page.wait_for_selector(f"body[data-ready=true]{shown}")
        state = page.inner_text("#connection-state")
        assert state.startswith("Connected \N{EN DASH}"), (view, state)
        assert page.locator("#checks li").count() == 0, (view, page.inner_text("#checks"))
        assert "scid_5094" not in page.inner_text("#connection") and "consent" not in page.inner_text("#connection")
    assert "Waiting for consent" in page.locator(f'#tenant-table tr[data-tenant="{NORTHWIND.id}"]').inner_text()
    page.goto(f"{tenants.url}/api/portal#tenant={NORTHWIND.id}")
    page.wait_for_selector(f'body[data-ready=true][data-tenant="{NORTHWIND.id}"]')
    assert "waiting for its admin's consent" in page.inner_text("#score-checks")
    page.goto(f"{tenants.url}/api/portal#tenant=home")
    page.wait_for_selector("body[data-ready=true][data-tenant=home]")
    refused = page.locator("#tickets tbody tr", has_text=ticket["number"])
    assert "Secure Score does not accept notes for this control" in refused.inner_text()
    assert page.locator("#score-checks li").count() == 0
    clean(page, "portal-refused-note")


def test_the_consent_link_opens_from_the_page_and_the_consent_page_leads_back_to_the_tenant(browser, tenants):
    """Item 5: the link is opened from its row (not only copied out of a cut-off box), and the page Microsoft sends
    the admin back to leads to the tenant's own view."""
    setup = open_portal(browser, tenants.portal)
    api(tenants, setup, "POST", "/api/recommendations/refresh")
    added = api(tenants, setup, "POST", "/api/tenants", {"tenant": FABRIKAM.domain, "name": FABRIKAM.name})
    page = open_portal(browser, tenants.portal, ignore_https_errors=True, bypass_csp=True)  # the simulator's CA
    row = page.locator(f'#tenant-table tr[data-tenant="{FABRIKAM.id}"]')
    box = row.locator(".link")
    assert box.inner_text() == added["consentUrl"]
    whole = "(b) => b.scrollWidth <= b.clientWidth && b.getBoundingClientRect().right <= innerWidth"
    assert box.evaluate(whole), "the whole link is on screen"
    box.focus()  # selects all of it, to copy by hand
    assert page.evaluate("getSelection().toString()") == added["consentUrl"]
    clean(page, "portal-consent-link")
    page.set_viewport_size({"width": 390, "height": 900})
    assert box.evaluate(whole), "the whole link is on a phone's screen too"
    page.set_viewport_size({"width": 1280, "height": 900})
    opening = row.locator("a.open")
    assert opening.get_attribute("aria-label") == f"Open consent link for {FABRIKAM.name}"
    opening.click()
    page.wait_for_selector("#accept")
    page.click("#accept")
    page.wait_for_selector("h1:text-is('Tenant added')")
    back = page.locator("#back")
    assert back.get_attribute("href") == f"/api/portal#tenant={FABRIKAM.id}"
    back.click()
    page.wait_for_selector(f'body[data-ready=true][data-view=tenant][data-tenant="{FABRIKAM.id}"]')
    assert page.inner_text("#tenant-title") == FABRIKAM.name and "Active" in page.inner_text("#tenant-about")


def test_overdue_is_said_in_words_and_colour_and_the_dialog_refuses_a_past_due_date(browser, tenants):
    """Item 8: "Overdue: due Jan 31, 2001" in the alert colour, a future date as before; a past date in the create
    dialog is said under its field and nothing is created."""
    setup = several(browser, tenants)
    api(tenants, setup, "POST", "/api/tickets", {"recommendation": {"id": "MFARegistrationV2"}, "tenant": FABRIKAM.id,
                                                 "dueDate": "2999-01-31"})  # fmt: skip
    page = open_portal(browser, tenants.portal, bypass_csp=True)
    page.goto(f"{tenants.url}/api/portal#tenant={FABRIKAM.id}")
    page.wait_for_selector(f'body[data-ready=true][data-tenant="{FABRIKAM.id}"]')
    late = page.locator("#tickets .due.overdue")
    said = late.inner_text()  # the date in the browser's own locale
    assert late.count() == 1 and said.startswith("Overdue: due ") and "2001" in said, said
    future = page.locator("#tickets .due:not(.overdue)")
    assert future.inner_text().startswith("Due ") and "2999" in future.inner_text()
    colour = "(e) => getComputedStyle(e).color"
    assert late.evaluate(colour) != future.evaluate(colour)
    assert late.evaluate(colour) == page.locator("#overdue").evaluate(colour)  # the overdue count's colour

    records = len(tenants.portal.servicenow.records())
    page.check('input[data-id="BlockLegacyAuthentication"]')
    page.click("#create")
    assert page.get_attribute("#t-due", "min") is not None  # the picker offers no past day
    page.fill("#t-due", "2001-01-01")
    page.click("#submit")
    error = page.locator("#t-due-error")
    assert error.is_visible() and "is in the past" in error.inner_text()
    assert page.get_attribute("#t-due", "aria-invalid") == "true"
    assert "t-due-error" in (page.get_attribute("#t-due", "aria-describedby") or "")
    assert page.evaluate("document.activeElement.id") == "t-due"
    clean(page, "portal-past-due")
    assert len(tenants.portal.servicenow.records()) == records  # nothing was sent
    page.fill("#t-due", "2999-06-30")
    assert not error.is_visible()
    page.click("#submit")
    page.wait_for_selector("#dialog", state="hidden")
    assert len(tenants.portal.servicenow.records()) == records + 1


def test_back_with_unsaved_routes_asks_keeps_the_address_and_never_leaves_a_bare_hash(browser, portal):
    """Item 9: Back, then Cancel, leaves the address at #routes with the Routes view; the next Back asks the page's
    own question again (not the browser's); "Back to the page" goes to the page's own address."""
    page = open_portal(browser, portal, bypass_csp=True)
    asked: list[tuple[str, str]] = []
    answers = ["dismiss", "accept", "accept"]

    def answer(dialog: Any) -> None:
        asked.append((dialog.type, dialog.message))
        getattr(dialog, answers[len(asked) - 1])()

    page.on("dialog", answer)
    page.click("#routes-link")
    page.wait_for_selector("body[data-view=routes]")

    def change() -> None:
        page.click("#route-add")
        page.wait_for_selector("#rule-dialog[open]")
        page.fill("#r-name", "Everything")
        page.click("#rule-apply")
        page.wait_for_selector("#rule-dialog", state="hidden")

    change()
    page.go_back()
    expect(page).to_have_url(re.compile(r"#routes$"))
    assert page.get_attribute("body", "data-view") == "routes" and page.is_visible("#routes")
    clean(page, "portal-routes-unsaved")
    page.go_back()  # asks again, this time answered Leave
    page.wait_for_selector("body[data-view=single]")
    assert page.url == f"{portal.url}/api/portal"
    assert [kind for kind, _ in asked] == ["confirm", "confirm"]  # the page's own question, twice
    assert asked[1][1] == "Leave the routes without saving? Your changes are lost."

    page.click("#routes-link")
    page.wait_for_selector("body[data-view=routes]")
    assert page.get_attribute("#routes-back", "href") == "/api/portal"
    change()
    page.click("#routes-back")
    page.wait_for_selector("body[data-view=single]")
    assert page.url == f"{portal.url}/api/portal" and len(asked) == 3  # no bare "#"
    assert page.is_visible("#actions")


def test_the_small_things_the_name_field_the_refresh_and_the_counts(browser, tenants):
    """Item 11: the create dialog's Name opens at its start; a refresh says which tickets it resolved; the count of
    shown actions is out of those listed (the scored ones), as the README says."""
    setup = several(browser, tenants)
    tenants.portal.graph.tenant(FABRIKAM.id).complete("AdminMFAV2")  # Fabrikam's ticketed control is done
    page = open_portal(browser, tenants.portal, bypass_csp=True)
    page.click("#refresh-all")
    page.wait_for_selector("#notice:has-text('Secure Score is read')")
    assert "1 ticket resolved" in page.inner_text("#notice"), page.inner_text("#notice")
    expect(page.locator("#refresh-all")).to_be_enabled()  # the notice comes first; the table is read again after
    clean(page, "portal-refreshed")

    page.goto(f"{tenants.url}/api/portal#tenant=home")
    page.wait_for_selector("body[data-ready=true][data-tenant=home]")
    listed = api(tenants, setup, "GET", "/api/recommendations?status=all")["recommendations"]
    scored = [r for r in listed if r.get("scored") is not False]
    to_address = [r for r in scored if not r["completed"] and not r["deprecated"]]
    assert page.inner_text("#shown") == f"{len(to_address)} of {len(scored)} shown"
    assert page.inner_text("#unscored") == f"Show {len(listed) - len(scored)} not scored for this tenant"
    page.check('input[data-id="AdminMFAV2"]')
    page.click("#create")
    position = page.evaluate("[document.activeElement.id, document.activeElement.selectionStart, "
                             "document.activeElement.scrollLeft]")  # fmt: skip
    assert position == ["t-name", 0, 0]
    clean(page, "portal-dialog-name")
    page.keyboard.press("Escape")
    page.click("#refresh")  # the first refresh's notice stays until this one's: wait for this one's words
    page.wait_for_selector("#notice:has-text('no ticket changed')")
    assert page.inner_text("#notice").startswith("Secure Score is read")


def test_a_tenant_confirming_consent_turns_active_on_the_open_overview_with_no_reload(browser, tenants):
    """Found walking the README (issue 29): "Fabrikam is confirming and then active" on the page the admin has open,
    without pressing anything, once the connector's own check confirms it."""
    setup = open_portal(browser, tenants.portal)
    api(tenants, setup, "POST", "/api/recommendations/refresh")
    link = api(tenants, setup, "POST", "/api/tenants", {"tenant": FABRIKAM.domain, "name": FABRIKAM.name})["consentUrl"]
    tenants.entra.simulator.consent_delay = 3600  # not applied yet
    customer = browser.new_context(ignore_https_errors=True).new_page()
    customer.goto(link)
    customer.click("#accept")
    customer.wait_for_selector("h1:text-is('Consent received')")
    page = open_portal(browser, tenants.portal, bypass_csp=True)
    status = f'#tenant-table tr[data-tenant="{FABRIKAM.id}"] .status'
    assert page.inner_text(status) == "Confirming consent"
    tenants.entra.simulator.consent_delay = 0  # Microsoft has applied it; the connector confirms it elsewhere
    api(tenants, setup, "POST", "/api/recommendations/refresh")  # (its timer does when the next check is due)
    page.wait_for_selector(f'{status}:text-is("Active")', timeout=25_000)
    assert "1 confirming" not in page.inner_text("#tenants-summary")
    clean(page, "portal-tenant-confirmed")
