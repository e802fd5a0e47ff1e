"""The page's Templates view (docs/templates.md, docs/portal.md#templates-one-decision-for-many-tenants) in Chromium:
the local host with App Service Authentication emulated and the Graph simulator on loopback. An admin makes a
template on the page (controls chosen by title and service), previews it, applies it and sees the counts and Graph's
states change; a control changed back in the simulator shows as drift; problems the connector names show under their
field; a save over someone else's change is refused and shows theirs; a reader sees it read-only. Axe-clean at 1280
and 390 pixels."""

from __future__ import annotations

from typing import Any

import pytest

from dev.entra import FABRIKAM, NORTHWIND
from tests.browser.test_portal import Portal, answering, axe_violations, browser, open_portal, portal, shoot
from tests.browser.test_portal_tenants import several, tenants

__all__ = ["browser", "portal", "tenants"]  # fixtures, used by name

DLP = ["DLPEnabled", "InformationProtectionPolicies", "mip_DLP_policies"]  # dev/graph/catalogue.py
OVERFLOW = "document.documentElement.scrollWidth - document.documentElement.clientWidth"


def refreshed(browser: Any, portal: Portal) -> Any:
    """Secure Score read once, so the editor offers its controls by title and service."""
    setup = open_portal(browser, portal)
    assert setup.request.post(f"{portal.url}/api/recommendations/refresh").status == 200
    return setup


def saved(setup: Any, portal: Portal, **overrides: Any) -> dict[str, Any]:
    """A template saved through the API, as another admin would."""
    payload = {"name": "Mail filter", "controls": DLP, "state": "ThirdParty", "comment": "Covered by the mail filter",
               "tenants": "all", **overrides}  # fmt: skip
    response = setup.request.post(f"{portal.url}/api/templates", data=payload)
    assert response.status == 201, response.text()
    return dict(response.json())


def one_template(page: Any, template_id: str) -> None:
    page.goto(f"{page.url.split('#')[0]}#templates/{template_id}")
    page.wait_for_selector("#template-part:not([hidden])")
    page.wait_for_selector("#template-title:not(:text('Template'))")


def problems(page: Any) -> list[str]:
    return [t.strip() for t in page.locator("#template-problems tbody tr").all_inner_texts()]


def test_an_admin_makes_previews_and_applies_a_template_and_sees_drift(browser, portal):
    refreshed(browser, portal)
    page = open_portal(browser, portal)
    page.click("#templates-link")
    page.wait_for_selector("#templates-summary:not(:empty)")
    assert page.title().startswith("Templates")
    assert page.evaluate("document.activeElement.id") == "templates-title"
    assert page.inner_text("#templates-summary").startswith("No templates yet.")
    page.click("#template-new")
    page.wait_for_selector("#tp-controls-options label")
    assert page.inner_text("#template-title") == "New template"
    assert page.is_checked("#tp-reach-all") and page.is_hidden("#template-apply")

    # Controls by title and service; a problem the connector names shows under its field, nothing saved.
    label = page.locator("#tp-controls-options label", has=page.locator("input[value=DLPEnabled]"))
    assert label.inner_text().strip() == "Turn on data loss prevention policies (SCC)"
    page.fill("#tp-controls-filter", "data loss")
    assert page.locator("#tp-controls-options label:visible").count() == 3
    for control in DLP:
        page.check(f"#tp-controls-options input[value={control}]")
    page.fill("#tp-comment", "Covered by the mail filter")
    assert page.inner_text("#tp-comment-count") == "26 of 1000 characters"
    page.fill("#tp-expiresInDays", "0")
    page.click("#template-save")
    page.wait_for_selector("#tp-name-error:not([hidden])")
    assert page.inner_text("#tp-name-error").startswith("The name must be text on one line")
    assert page.inner_text("#tp-expiresInDays-error").startswith("Ends after must be a whole number of days")
    assert page.get_attribute("#tp-name", "aria-invalid") == "true"
    assert page.evaluate("document.activeElement.id") == "tp-name"
    assert page.request.get(f"{portal.url}/api/templates").json()["templates"] == []

    page.fill("#tp-name", "Mail filter")
    page.fill("#tp-expiresInDays", "")
    page.click("#template-save")
    page.wait_for_selector("#templates-result:has-text('is saved')")
    assert page.is_hidden("#tp-name-error")
    (stored,) = page.request.get(f"{portal.url}/api/templates").json()["templates"]
    assert sorted(stored["controls"]) == sorted(DLP) and stored["tenants"] == "all" and stored["state"] == "ThirdParty"
    assert page.evaluate("location.hash") == f"#templates/{stored['id']}"
    assert page.inner_text("#template-drift-none") == "No drift: every control is as the template set it."

    # The preview: each control's state now and after, in each tenant; nothing written.
    page.click("#template-preview")
    page.wait_for_selector("#template-preview-part:not([hidden])")
    assert "Save first" not in page.inner_text("#templates-result")
    rows = page.locator("#template-changes tbody tr").all_inner_texts()
    assert len(rows) == 3 and all("→ Third party" in r for r in rows), rows
    assert "Turn on data loss prevention policies (SCC)" in " ".join(rows)
    assert portal.graph.state_of("DLPEnabled")["state"] != "ThirdParty"
    page.evaluate("document.getElementById('template-tools').scrollIntoView()")
    shoot(page, "portal-templates-preview-1280")  # docs/images/portal-templates-preview-1280.png is this view

    # Applied: three PATCHes, their counts on the page, Graph's states changed.
    page.fill("#tp-comment", "Covered by the mail filter, and more")  # not saved: the preview says whose it is
    page.click("#template-preview")
    page.wait_for_selector("#templates-result:has-text('Save first to preview your changes')")
    page.fill("#tp-comment", "Covered by the mail filter")
    page.click("#template-apply")
    page.wait_for_selector("#template-outcome-title:text('Applied')")
    counts = page.locator("#template-counts li").all_inner_texts()
    assert [c.strip() for c in counts] == ["3 applied", "0 unchanged", "0 failed", "0 drifted"], counts
    assert page.inner_text("#templates-result") == "Applied: 3 changed, 0 unchanged, 0 failed, 0 drifted."
    for control in DLP:
        written = portal.graph.state_of(control)
        assert written["state"] == "ThirdParty" and "[template: Mail filter]" in written["comment"]
    assert "Last applied" in page.inner_text("#template-about")

    # Someone sets one back in the Secure Score portal: the next apply does not set it back, and says so.
    portal.graph.set_state("DLPEnabled", "Default", by="alex@contoso.com")
    page.click("#template-apply")
    page.wait_for_selector("#templates-result:has-text('1 drifted')")
    assert page.inner_text("#templates-result") == "Applied: 0 changed, 2 unchanged, 0 failed, 1 drifted."
    assert any("Drifted: Default by alex@contoso.com" in r for r in problems(page)), problems(page)
    drift = page.locator("#template-drift tbody tr").all_inner_texts()
    assert len(drift) == 1 and "alex@contoso.com" in drift[0] and "Default" in drift[0]
    assert portal.graph.state_of("DLPEnabled")["state"] == "Default"
    # The admin decides to set it back: the box under Apply sends overwriteDrift.
    page.check("#template-overwrite")
    page.click("#template-apply")
    page.wait_for_selector("#templates-result:has-text('1 changed')")
    assert page.inner_text("#templates-result") == "Applied: 1 changed, 2 unchanged, 0 failed, 0 drifted."
    assert portal.graph.state_of("DLPEnabled")["state"] == "ThirdParty"
    assert not page.is_checked("#template-overwrite")  # each apply decides again
    assert page.inner_text("#template-drift-none") == "No drift: every control is as the template set it."

    # The list: controls, tenants, who applied it, the drift.
    page.click("#template-part .back")
    page.wait_for_selector("#templates-list-part:not([hidden]) #template-table tbody tr")
    cells = page.locator("#template-table tbody tr").first.locator("th, td").all_inner_texts()
    assert cells[0] == "Mail filter" and cells[1] == "Third party" and cells[2] == "3" and cells[3] == "All"
    assert "by admin@contoso.com" in cells[4] and cells[5] == "0" and len(cells) == 6  # none drifted at the last apply


def test_a_save_over_someone_elses_change_is_refused_and_delete_asks(browser, portal):
    setup = refreshed(browser, portal)
    made = saved(setup, portal)
    page = open_portal(browser, portal)
    one_template(page, made["id"])
    assert page.is_checked("#tp-reach-all")
    # Another admin renames it meanwhile (their PUT names the version they read).
    theirs = {k: made[k] for k in ("controls", "state", "comment", "tenants")} | {"name": "Mail filter (theirs)"}
    put = setup.request.put(f"{portal.url}/api/templates/{made['id']}", data=theirs,
                            headers={"If-Match": f'"{made["version"]}"'})  # fmt: skip
    assert put.status == 200, put.text()
    page.fill("#tp-name", "Mine")
    page.click("#template-save")
    page.wait_for_selector("#templates-result:has-text('Someone else changed')")
    assert page.input_value("#tp-name") == "Mail filter (theirs)"
    assert page.inner_text("#template-title") == "Mail filter (theirs)"

    asked: list[str] = []

    def answer(dialog: Any) -> None:
        asked.append(dialog.message)
        dialog.accept()

    page.once("dialog", answer)
    page.click("#template-delete")
    page.wait_for_selector("#templates-result:has-text('is deleted')")
    assert asked and asked[0].startswith('Delete the template "Mail filter (theirs)"?')
    assert page.evaluate("location.hash") == "#templates"
    assert page.request.get(f"{portal.url}/api/templates").json()["templates"] == []


def test_a_save_on_the_page_keeps_each_control_s_until(browser, portal):
    """The page does not edit `until` (docs/portal.md): a save sends back what it read, so no end is dropped."""
    setup = refreshed(browser, portal)
    last = setup.evaluate("new Date(Date.now() + 30 * 86400000).toISOString().slice(0, 10)")
    made = saved(setup, portal, until={DLP[0]: last})
    page = open_portal(browser, portal)
    one_template(page, made["id"])
    page.fill("#tp-name", "Mail filter, renamed")
    page.click("#template-save")
    page.wait_for_selector("#templates-result:has-text('is saved')")
    kept = page.request.get(f"{portal.url}/api/templates/{made['id']}").json()
    assert (kept["name"], kept["until"]) == ("Mail filter, renamed", {DLP[0]: last})


def test_a_control_another_template_sets_is_named_under_the_controls(browser, portal):
    setup = refreshed(browser, portal)
    saved(setup, portal)
    page = open_portal(browser, portal)
    page.goto(f"{portal.url}/api/portal#templates/new")
    page.wait_for_selector("#tp-controls-options label")
    page.fill("#tp-name", "Accepted risk")
    page.select_option("#tp-state", "Ignored")
    page.check("#tp-reach-some")
    page.check("#tp-tenants-options input[value=home]")
    page.check("#tp-controls-options input[value=DLPEnabled]")
    page.click("#template-save")
    page.wait_for_selector("#tp-controls-error:not([hidden])")
    assert "already belong to the template 'Mail filter'" in page.inner_text("#tp-controls-error")
    assert page.is_hidden("#tp-name-error") and page.is_hidden("#template-form-error")
    assert len(page.request.get(f"{portal.url}/api/templates").json()["templates"]) == 1
    # Leaving the unsaved form asks first; staying keeps it as it was.
    asked: list[str] = []

    page.once("dialog", answering(asked, False))
    with page.expect_event("dialog"):
        page.click("#template-part .back")
    page.wait_for_url("**#templates/new")
    assert asked == ["Leave the template without saving? Your changes are lost."]
    assert page.evaluate("location.hash") == "#templates/new" and page.input_value("#tp-name") == "Accepted risk"
    page.once("dialog", answering(asked, True))
    with page.expect_event("dialog"):
        page.click("#template-part .back")
    page.wait_for_selector("#templates-list-part:not([hidden]) #template-table tbody tr")
    assert len(asked) == 2 and page.evaluate("location.hash") == "#templates"


def test_a_reader_sees_the_templates_read_only(browser, portal):
    setup = refreshed(browser, portal)
    made = saved(setup, portal, tenants=["home"], expiresInDays=10)
    assert setup.request.post(f"{portal.url}/api/templates/{made['id']}/apply").json()["applied"] == 3
    page = open_portal(browser, portal, user="reader@contoso.com", bypass_csp=True)  # only so axe can be injected
    page.click("#templates-link")
    page.wait_for_selector("#template-table tbody tr")
    assert page.is_hidden("#template-new")
    assert page.locator("#template-table tbody td").last.inner_text() == "0"  # none drifted at its last apply
    assert "Only an admin of the connector" in page.inner_text("#templates-who")
    assert page.locator("#template-table tbody tr th").inner_text() == "Mail filter"
    page.click("#template-table tbody tr th a")
    page.wait_for_selector("#template-part:not([hidden]) #tp-controls-options input:checked")
    assert page.input_value("#tp-name") == "Mail filter" and page.input_value("#tp-expiresInDays") == "10"
    ending = page.locator("#template-expiring tbody tr").all_inner_texts()
    assert len(ending) == 3 and all(r.startswith("This organization") for r in ending), ending
    assert page.inner_text("#template-expiring-none") == ""

    assert page.is_hidden("#template-tools") and page.is_hidden("#template-overwrite-field")
    assert page.is_disabled("#tp-name") and page.is_disabled("#tp-controls-options input[value=DLPEnabled]")
    assert page.locator("#tp-controls-options input:checked").count() == 3
    assert page.locator("#tp-controls-options input").count() == 3 and page.is_hidden("#tp-controls-filter")
    assert page.locator("#template-part button:visible").count() == 0
    assert axe_violations(page) == []
    shoot(page, "portal-template-reader-1280")
    page.goto(f"{portal.url}/api/portal#templates/new")  # a reader cannot make one: the list instead
    page.wait_for_selector("#templates-list-part:not([hidden]) #template-table tbody tr")
    assert page.evaluate("location.hash") == "#templates" and page.is_hidden("#template-part")
    forced = page.request.post(f"{portal.url}/api/templates/{made['id']}/apply")
    assert forced.status == 403 and forced.json()["code"] == "forbidden"


@pytest.mark.parametrize("width", [1280, 390])
def test_the_templates_view_is_accessible_and_fits_at_both_widths(browser, portal, width):
    setup = refreshed(browser, portal)
    made = saved(setup, portal, comment="x" * 1000, name="A template with a long name " * 3)
    assert setup.request.post(f"{portal.url}/api/templates/{made['id']}/apply").status == 200
    portal.graph.set_state("mip_DLP_policies", "Default", by="alex@contoso.com")
    assert setup.request.post(f"{portal.url}/api/templates/{made['id']}/apply").status == 200  # finds the drift
    page = open_portal(browser, portal, width=width, bypass_csp=True)  # only so axe can be injected
    page.click("#templates-link")
    page.wait_for_selector("#template-table tbody tr")
    assert page.locator("#template-table tbody td").nth(4).inner_text() == "1"  # its last apply found one drifted
    assert axe_violations(page) == []
    assert page.evaluate(OVERFLOW) <= 0
    shoot(page, f"portal-templates-{width}")
    page.click("#template-table tbody tr th a")
    page.wait_for_selector("#template-drift tbody tr")
    assert page.inner_text("#tp-comment-count") == "1000 of 1000 characters"
    page.click("#template-preview")
    page.wait_for_selector("#template-preview-part:not([hidden])")
    assert "Drifted: Default by alex@contoso.com" in " ".join(problems(page))
    assert axe_violations(page) == []
    assert page.evaluate(OVERFLOW) <= 0
    page.evaluate("document.getElementById('template-title').scrollIntoView()")  # the template, its controls first
    shoot(page, f"portal-template-{width}")  # docs/images/portal-template-1280.png is this view


def test_a_template_for_every_tenant_is_previewed_and_applied_across_them(browser, tenants):
    """Fabrikam consented, Northwind not yet: the preview and the apply go across both readable tenants, and the
    one that cannot be written is named with its code, the others going on."""
    setup = several(browser, tenants)
    made = saved(setup, tenants.portal)
    page = open_portal(browser, tenants.portal)
    page.click("#templates-link")
    page.wait_for_selector("#template-table tbody tr")
    page.click("#template-table tbody tr th a")
    page.wait_for_selector("#template-part:not([hidden]) #tp-tenants-options input")
    boxes = page.locator("#tp-tenants-options label").all_inner_texts()
    assert {b.strip() for b in boxes} >= {"Fabrikam", "Northwind Traders"}, boxes
    assert page.is_disabled(f"#tp-tenants-options input[value='{FABRIKAM.id}']")  # every tenant: none to choose

    page.click("#template-preview")
    page.wait_for_selector("#template-preview-part:not([hidden])")
    changes = page.locator("#template-changes tbody tr").all_inner_texts()
    assert len(changes) == 6 and sum("Fabrikam" in c for c in changes) == 3, changes
    assert "in 2 tenants" in page.inner_text("#template-preview-summary")
    (pending,) = [p for p in problems(page) if "Northwind Traders" in p]
    assert "Failed: tenant_not_consented. The tenant's admin has not completed consent" in pending

    page.click("#template-apply")
    page.wait_for_selector("#template-outcome-title:text('Applied')")
    assert page.inner_text("#templates-result") == "Applied: 6 changed, 0 unchanged, 1 failed, 0 drifted."
    assert [p for p in problems(page) if "Northwind Traders" in p]
    page.evaluate("document.getElementById('template-tools').scrollIntoView()")
    shoot(page, "portal-template-applied-1280")
    assert tenants.portal.graph.tenant(FABRIKAM.id).state_of("DLPEnabled")["state"] == "ThirdParty"
    assert tenants.portal.graph.state_of("DLPEnabled")["state"] == "ThirdParty"
    listed = setup.request.get(f"{tenants.url}/api/templates/{made['id']}").json()
    assert listed["appliedBy"] == "admin@contoso.com" and NORTHWIND.id not in str(listed["drift"])


def test_a_save_from_the_portal_keeps_the_templates_on_risk_accepted(browser, portal):
    """The form has no field for it (docs/templates.md#risk-accepted-in-servicenow): a rename keeps it."""
    setup = refreshed(browser, portal)
    made = saved(setup, portal, onRiskAccepted="ignore")
    page = open_portal(browser, portal)
    one_template(page, made["id"])
    page.fill("#tp-name", "Renamed")
    page.click("#template-save")
    page.wait_for_selector("#template-title:text('Renamed')")
    again = page.request.get(f"{portal.url}/api/templates/{made['id']}").json()
    assert (again["name"], again["onRiskAccepted"]) == ("Renamed", "ignore")
