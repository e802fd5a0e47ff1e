"""The page's Alerts view (docs/alerts.md, docs/portal.md#alerts-a-falling-score-becomes-a-ticket) in Chromium: the
local host with App Service Authentication emulated and both simulators on loopback. An admin adds, edits and
removes an alert on the page (each a PUT of the list with If-Match) and it is what GET /api/alerts answers; a bad
value shows under its field; a save over someone else's change is refused and offers to reload; an alert's open
ticket shows with its tenant; a reader sees the list only. Keyboard-usable; axe-clean at 1280 and 390 pixels."""

from __future__ import annotations

from typing import Any

import pytest

from alerts.api import FIX
from dev.entra import FABRIKAM
from dev.servicenow import Fault
from shared import services as services_module
from tests.browser.test_portal import Portal, answering, axe_violations, browser, connect, open_portal, portal, shoot
from tests.browser.test_portal_tenants import several, tenants

__all__ = ["browser", "portal", "tenants"]  # fixtures, used by name

OVERFLOW = "document.documentElement.scrollWidth - document.documentElement.clientWidth"


def listed(page: Any, portal: Portal) -> dict[str, Any]:
    return dict(page.request.get(f"{portal.url}/api/alerts").json())


def saved(setup: Any, portal: Portal, alerts: list[dict[str, Any]]) -> dict[str, Any]:
    """The list saved through the API, as another admin would (If-Match: the version they read)."""
    version = listed(setup, portal)["version"]
    response = setup.request.put(f"{portal.url}/api/alerts", data={"alerts": alerts},
                                 headers={"If-Match": f'"{version}"'})  # fmt: skip
    assert response.status == 200, response.text()
    return dict(response.json())


def open_alerts(page: Any) -> None:
    page.click("#alerts-link")
    page.wait_for_selector("#alerts-summary:not(:empty)")


def cells(page: Any, n: int = 0) -> list[str]:
    return [c.strip() for c in page.locator("#alert-table tbody tr").nth(n).locator("th, td").all_inner_texts()]


def test_an_admin_adds_edits_and_removes_an_alert_and_a_bad_value_shows_under_its_field(browser, portal):
    page = open_portal(browser, portal)
    open_alerts(page)
    assert page.title().startswith("Alerts") and page.evaluate("location.hash") == "#alerts"
    assert page.evaluate("document.activeElement.id") == "alerts-title"
    assert page.inner_text("#alerts-summary") == "No alerts yet. New alert makes one."
    assert page.is_hidden("#connection") and page.is_hidden("#actions")
    page.click("#alert-new")
    assert page.evaluate("document.activeElement.id") == "alert-form-title"
    assert page.is_checked("#al-reach-all")
    page.fill("#al-name", "Score under 60 %")
    page.fill("#al-below", "150")
    page.click("#alert-save")
    page.wait_for_selector("#al-below-error:not([hidden])")
    assert page.inner_text("#al-below-error") == "Below must be a percent of the maximum score, 0-100."
    assert page.get_attribute("#al-below", "aria-invalid") == "true"
    assert page.evaluate("document.activeElement.id") == "al-below" and page.is_hidden("#alert-form-error")
    assert listed(page, portal)["alerts"] == []

    page.fill("#al-below", "60")
    page.click("#alert-save")
    page.wait_for_selector("#alerts-result:has-text('is saved')")
    assert page.is_hidden("#alert-part")
    assert listed(page, portal)["alerts"] == [
        {"id": "score-under-60", "name": "Score under 60 %", "tenants": "all", "below": 60, "within": 7}
    ]
    assert cells(page)[:4] == ["Score under 60 %\nscore-under-60", "All", "below 60 %", "None open"]
    assert "by admin@contoso.com" in page.inner_text("#alerts-saved")

    page.click("#alert-table button[data-edit='0']")
    assert page.input_value("#al-below") == "60" and page.get_attribute("#al-id", "readonly") is not None
    assert page.inner_text("#alerts-result") == ""  # the last save's words go: the next wait is for this save's
    page.fill("#al-below", "")
    page.fill("#al-dropOf", "20")
    page.click("#alert-save")
    page.wait_for_selector("#alerts-result:has-text('is saved')")
    (alert,) = listed(page, portal)["alerts"]
    assert (alert["id"], alert["dropOf"], alert["within"], "below" in alert) == ("score-under-60", 20, 7, False)
    assert cells(page)[2] == "drops 20 points within 7 days"

    asked: list[str] = []

    def answer(dialog: Any) -> None:
        asked.append(dialog.message)
        dialog.accept()

    page.once("dialog", answer)
    page.click("#alert-table button[data-remove='0']")
    page.wait_for_selector("#alerts-result:has-text('is removed')")
    assert asked == ['Remove the alert "Score under 60 %"? Its open tickets stay as they are.']
    assert listed(page, portal)["alerts"] == []


def test_an_alert_needs_a_line_and_a_tenant_is_chosen_from_the_tenants(browser, tenants):
    several(browser, tenants)
    page = open_portal(browser, tenants.portal)
    open_alerts(page)
    page.click("#alert-new")
    boxes = {b.strip() for b in page.locator("#al-tenants-options label").all_inner_texts()}
    assert {"Fabrikam", "Northwind Traders"} <= boxes, boxes
    assert page.is_disabled(f"#al-tenants-options input[value='{FABRIKAM.id}']")  # every tenant: none to choose
    page.fill("#al-name", "Fabrikam falls")
    page.check("#al-reach-some")
    page.check(f"#al-tenants-options input[value='{FABRIKAM.id}']")
    page.click("#alert-save")  # neither below nor dropOf: said under Below
    page.wait_for_selector("#al-below-error:not([hidden])")
    assert page.inner_text("#al-below-error") == "Needs below (percent) or dropOf (points), or both."
    page.fill("#al-dropOf", "10")
    page.fill("#al-within", "30")
    page.click("#alert-save")
    page.wait_for_selector("#alerts-result:has-text('is saved')")
    (alert,) = listed(page, tenants.portal)["alerts"]
    assert (alert["tenants"], alert["dropOf"], alert["within"]) == ([FABRIKAM.id], 10, 30)
    assert cells(page)[1:3] == ["Fabrikam", "drops 10 points within 30 days"]


def test_an_alert_s_open_ticket_shows_with_its_tenant(browser, portal):
    setup = open_portal(browser, portal)
    connect(setup, portal)
    saved(setup, portal, [{"id": "low", "name": "Score low", "tenants": ["home"], "below": 100}])
    assert setup.request.post(f"{portal.url}/api/recommendations/refresh").status == 200  # crossed: a ticket
    page = open_portal(browser, portal)
    open_alerts(page)
    (ticket,) = [t for t in page.request.get(f"{portal.url}/api/tickets?status=open&tenant=all").json()["tickets"]
                 if t["recommendation"]["id"] == "alert/low"]  # fmt: skip
    assert cells(page)[3] == f"Open: {ticket['number']} (This organization)"
    assert page.get_attribute("#alert-table tbody a", "href") == ticket["url"]
    shoot(page, "portal-alerts-ticket-1280")  # docs/images/portal-alerts-ticket-1280.png is this view


def test_a_failing_alert_shows_its_failure_and_what_to_do_to_a_reader_too(browser, portal):
    """ServiceNow refuses the alert's ticket: the view says the alert failed for the tenant, the connector's words
    and the fix provisioning's score_alerts check gives (docs/alerts.md#episodes-on-the-alerts-view)."""
    setup = open_portal(browser, portal)
    connect(setup, portal)
    saved(setup, portal, [{"id": "low", "name": "Score low", "tenants": ["home"], "below": 100}])
    portal.servicenow.inject(Fault("status", status=400, path_prefix="/api/now/v2/table/incident", method="POST",
                                   times=100))  # fmt: skip
    assert setup.request.post(f"{portal.url}/api/recommendations/refresh").status == 200  # crossed: the create fails
    (episode,) = listed(setup, portal)["episodes"]
    assert episode["error"]["code"] == "servicenow_rejected"
    page = open_portal(browser, portal, user="reader@contoso.com", bypass_csp=True)  # only so axe can be injected
    open_alerts(page)
    problem = page.wait_for_selector("#alert-table tbody tr[data-id='low'] .problem")
    detail = episode["error"]["detail"].rstrip(". ")
    assert problem.inner_text() == f"Failed for This organization: {detail}.\nWhat to do: {FIX}"
    assert cells(page)[3] == problem.inner_text()  # no ticket: none was made
    assert axe_violations(page) == []
    shoot(page, "portal-alerts-failed-1280")  # docs/images/portal-alerts-failed-1280.png is this view
    page.set_viewport_size({"width": 390, "height": 900})  # on a phone: the problem wraps inside its row
    assert page.evaluate(OVERFLOW) <= 0 and axe_violations(page) == []


def test_a_ticket_a_person_closed_while_the_score_is_across_is_said_on_the_view(browser, portal):
    setup = open_portal(browser, portal)
    connect(setup, portal)
    saved(setup, portal, [{"id": "low", "name": "Score low", "tenants": ["home"], "below": 100}])
    assert setup.request.post(f"{portal.url}/api/recommendations/refresh").status == 200  # crossed: a ticket
    (record,) = [r for r in portal.servicenow.records() if r.get("correlation_id") == "m365sec:alert/low"]
    portal.servicenow.update("incident", record["sys_id"], state="7")
    assert setup.request.post(f"{portal.url}/admin/functions/status_sync").status == 202
    closed = setup.request.get(f"{portal.url}/api/tickets?status=closed&tenant=all").json()["tickets"]
    assert [t["recommendation"]["id"] for t in closed] == ["alert/low"]  # the sync ran before its 202
    page = open_portal(browser, portal)
    open_alerts(page)
    page.wait_for_selector("#alert-table tbody tr[data-id='low'] .ticket")
    assert cells(page)[3] == "Ticket closed by a person; the score is still under the line (This organization)"


def test_a_ticket_deleted_in_servicenow_is_said_so_not_taken_as_closed_by_a_person(browser, portal):
    """Its ticket `missing` (ServiceNow no longer shows the record): the view names it so, not as a person's close."""
    setup = open_portal(browser, portal)
    connect(setup, portal)
    saved(setup, portal, [{"id": "low", "name": "Score low", "tenants": ["home"], "below": 100}])
    assert setup.request.post(f"{portal.url}/api/recommendations/refresh").status == 200  # crossed: a ticket
    (record,) = [r for r in portal.servicenow.records() if r.get("correlation_id") == "m365sec:alert/low"]
    portal.servicenow.delete("incident", record["sys_id"])
    portal.graph.home.set_score(1.0)  # the score moved: the note's read of the record finds it gone
    assert setup.request.post(f"{portal.url}/api/recommendations/refresh").status == 200
    tickets = setup.request.get(f"{portal.url}/api/tickets?status=all&tenant=all").json()["tickets"]
    assert [t["status"] for t in tickets if t["recommendation"]["id"] == "alert/low"] == ["missing"]
    page = open_portal(browser, portal)
    open_alerts(page)
    page.wait_for_selector("#alert-table tbody tr[data-id='low'] .ticket")
    assert cells(page)[3] == (f"Ticket {record['number']} is no longer in ServiceNow (deleted, or hidden from the "
                              "connector); the score is still under the line (This organization)")  # fmt: skip


def test_an_episode_naming_another_tenant_s_ticket_never_shows_that_ticket(browser, portal):
    """As the engine never takes another tenant's ticket for an episode's (alerts/tickets.py ticket_of), the view
    never shows one tenant's ticket under another, whatever an episode document names (written in the store)."""
    setup = open_portal(browser, portal)
    connect(setup, portal)
    saved(setup, portal, [{"id": "low", "name": "Score low", "tenants": "all", "below": 100}])
    assert setup.request.post(f"{portal.url}/api/recommendations/refresh").status == 200  # crossed: a ticket
    (home,) = listed(setup, portal)["episodes"]
    other = "7d0c7b7e-5f0a-4c55-9d7e-2f1b1f4e8a01"
    services_module.get_services().store.put_document(f"alert-episode:{other}:low", {
        "alert": "low", "tenant": other, "state": "open", "episode": 1, "since": home["since"],
        "ticket": home["ticket"]}, None)  # fmt: skip
    page = open_portal(browser, portal)
    open_alerts(page)
    page.wait_for_selector("#alert-table tbody tr[data-id='low'] .ticket a")
    assert page.locator("#alert-table tbody tr[data-id='low'] .ticket a").count() == 1
    assert f"Open ({other})" in cells(page)[3]


def test_episodes_over_the_1000_shown_are_said_to_be_left_out_not_none_open(browser, portal):
    """GET /api/alerts shows at most 1000 episodes (docs/alerts.md#episodes-on-the-alerts-view): an alert whose
    episodes are all among those left out is not said to have none open (documents as the engine writes them)."""
    setup = open_portal(browser, portal)
    saved(setup, portal, [{"id": "low", "tenants": "all", "below": 50}, {"id": "late", "tenants": "all", "below": 50}])
    store = services_module.get_services().store
    for n in range(1002):
        alert, since = ("low", "2026-12-02T00:00:00+00:00") if n < 1000 else ("late", "2026-12-01T00:00:00+00:00")
        store.put_document(f"alert-episode:t{n:04d}:{alert}", {"alert": alert, "tenant": f"t{n:04d}", "state": "open",
                           "episode": 1, "since": since, "ticket": None}, None)  # fmt: skip
    assert listed(setup, portal)["episodesLeftOut"] == 2
    page = open_portal(browser, portal)
    open_alerts(page)
    assert page.inner_text("#alerts-summary") == ("2 alerts. 2 more episodes are not shown: the Alerts view shows "
                                                  "1000, the failing first, then the newest.")  # fmt: skip
    assert cells(page, 1)[3] == "None among those shown"


def test_an_episode_of_a_tenant_the_alert_no_longer_checks_is_said_to_wait_not_to_be_under_way(browser, portal):
    """A tenant removed (not in GET /api/tenants) or taken out of the alert: nothing steps its episode again
    (docs/alerts.md#removing-an-alert), so its ticket is not said to be being made (a document as the engine writes
    one, in the store)."""
    setup = open_portal(browser, portal)
    saved(setup, portal, [{"id": "low", "name": "Score low", "tenants": "all", "below": 50}])
    other = "7d0c7b7e-5f0a-4c55-9d7e-2f1b1f4e8a01"
    services_module.get_services().store.put_document(f"alert-episode:{other}:low", {
        "alert": "low", "tenant": other, "state": "opening", "episode": 1, "since": "2026-12-01T00:00:00+00:00",
        "ticket": None}, None)  # fmt: skip
    page = open_portal(browser, portal)
    open_alerts(page)
    assert cells(page)[3] == f"Waiting: the alert no longer checks {other}, so its ticket is not being made"


def test_a_save_over_someone_elses_change_is_refused_and_offers_to_reload(browser, portal):
    page = open_portal(browser, portal)
    open_alerts(page)
    saved(page, portal, [{"id": "theirs", "tenants": "all", "below": 50}])  # another admin, meanwhile
    page.click("#alert-new")
    page.fill("#al-name", "Mine")
    page.fill("#al-below", "70")
    page.click("#alert-save")
    page.wait_for_selector("#alert-form-error:has-text('Someone else changed the alerts')")
    assert page.evaluate("document.activeElement.id") == "alert-form-error"
    assert [a["id"] for a in listed(page, portal)["alerts"]] == ["theirs"]
    page.click("#alerts-reload")
    page.wait_for_selector("#alerts-result:has-text('These are the alerts now')")
    assert page.is_hidden("#alert-part") and cells(page)[:3] == ["theirs", "All", "below 50 %"]


def test_a_reader_sees_the_list_only(browser, portal):
    setup = open_portal(browser, portal)
    saved(setup, portal, [{"id": "below-60", "name": "Score under 60 %", "tenants": ["home"], "below": 60}])
    page = open_portal(browser, portal, user="reader@contoso.com", bypass_csp=True)  # only so axe can be injected
    open_alerts(page)
    assert cells(page) == ["Score under 60 %\nbelow-60", "This organization", "below 60 %", "None open"]
    assert page.is_hidden("#alert-new") and page.is_hidden("#alert-manage-head") and page.is_hidden("#alert-part")
    assert page.locator("#alerts button:visible").count() == 0
    assert "Only an admin of the connector" in page.inner_text("#alerts-who")
    assert axe_violations(page) == []
    forced = page.request.put(f"{portal.url}/api/alerts", data={"alerts": []}, headers={"If-Match": "*"})
    assert forced.status == 403


def tab_to(page: Any, element_id: str, limit: int = 80) -> None:
    for _ in range(limit):
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.id") == element_id:
            return
    raise AssertionError(f"#{element_id} is not reached with Tab")


def test_an_admin_adds_an_alert_with_the_keyboard_alone(browser, portal):
    page = open_portal(browser, portal)
    tab_to(page, "alerts-link")
    page.keyboard.press("Enter")
    page.wait_for_selector("#alerts-summary:not(:empty)")
    tab_to(page, "alert-new")
    page.keyboard.press("Enter")
    assert page.evaluate("document.activeElement.id") == "alert-form-title"
    tab_to(page, "al-name", 3)
    page.keyboard.type("Keyboard")
    tab_to(page, "al-below", 8)
    page.keyboard.type("55")
    tab_to(page, "alert-save", 6)
    page.keyboard.press("Enter")
    page.wait_for_selector("#alerts-result:has-text('is saved')")
    assert [(a["id"], a["below"]) for a in listed(page, portal)["alerts"]] == [("keyboard", 55)]
    assert page.evaluate("document.activeElement.id") == "alerts-result"


@pytest.mark.parametrize("width", [1280, 390])
def test_the_alerts_view_is_accessible_and_fits_at_both_widths(browser, portal, width):
    setup = open_portal(browser, portal)
    saved(setup, portal, [{"id": "below-60", "name": "Score under 60 %", "tenants": "all", "below": 60},
                          {"id": "fell-20", "tenants": ["home"],
                           "name": "A drop of twenty points in a week, whatever the score was (an early warning)",
                           "dropOf": 20, "within": 7, "below": 40}])  # fmt: skip
    page = open_portal(browser, portal, width=width, bypass_csp=True)  # only so axe can be injected
    open_alerts(page)
    assert cells(page, 1)[2] == "below 40 % or drops 20 points within 7 days"
    assert axe_violations(page) == []
    assert page.evaluate(OVERFLOW) <= 0
    shoot(page, f"portal-alerts-{width}")  # docs/images/portal-alerts-1280.png is this view
    page.click("#alert-table button[data-edit='1']")
    page.fill("#al-within", "0")
    page.click("#alert-save")
    page.wait_for_selector("#al-within-error:not([hidden])")
    assert axe_violations(page) == []
    assert page.evaluate(OVERFLOW) <= 0
    page.evaluate("document.getElementById('alert-form-title').scrollIntoView()")
    shoot(page, f"portal-alert-form-{width}")  # docs/images/portal-alert-form-1280.png is this view


def test_leaving_the_form_with_unsaved_changes_asks_first(browser, portal):
    page = open_portal(browser, portal)
    open_alerts(page)
    page.click("#alert-new")
    page.fill("#al-name", "Half done")
    asked: list[str] = []

    page.once("dialog", answering(asked, False))
    with page.expect_event("dialog"):
        page.click("#alerts-back")
    assert asked == ["Leave the alert without saving? Your changes are lost."]
    assert page.evaluate("location.hash") == "#alerts" and page.input_value("#al-name") == "Half done"
    page.once("dialog", answering(asked, True))
    with page.expect_event("dialog"):
        page.go_back()  # the page before the view: the browser's Back asks too
    page.wait_for_selector("#alerts[hidden]", state="attached")
    assert len(asked) == 2 and page.is_visible("#connection")
    page.goto(f"{portal.url}/api/portal#alerts")  # opened again: the list, the form closed
    page.wait_for_selector("#alerts-summary:not(:empty)")
    assert page.is_hidden("#alert-part")


def test_another_alert_s_problem_shows_in_the_banner_under_its_name(browser, tenants):
    """A tenant removed since an alert named it (docs/alerts.md#a-rule): a save of another alert is refused on that
    alert's field, which the form has not; the banner names the alert and the tenant."""
    setup = several(browser, tenants)
    saved(setup, tenants.portal, [{"id": "fab", "name": "Fabrikam low", "tenants": [FABRIKAM.id], "below": 50}])
    gone = setup.request.delete(f"{tenants.url}/api/tenants/{FABRIKAM.id}")
    assert gone.status in (200, 202, 204), gone.text()
    page = open_portal(browser, tenants.portal)
    open_alerts(page)
    page.click("#alert-new")
    page.fill("#al-name", "Home low")
    page.fill("#al-below", "40")
    page.click("#alert-save")
    page.wait_for_selector("#alert-form-error:not([hidden]) li")
    (said,) = page.locator("#alert-form-error li").all_inner_texts()
    assert said.startswith(f'The alert "Fabrikam low": {FABRIKAM.id}: ') and "is not" in said, said
    assert page.evaluate("document.activeElement.id") == "alert-form-error" and page.is_hidden("#al-below-error")
    assert [a["id"] for a in listed(page, tenants.portal)["alerts"]] == ["fab"]


def test_a_remove_over_someone_elses_change_is_refused_and_offers_to_reload(browser, portal):
    page = open_portal(browser, portal)
    saved(page, portal, [{"id": "mine", "tenants": "all", "below": 50}])
    open_alerts(page)
    saved(page, portal, [{"id": "mine", "tenants": "all", "below": 45}])  # another admin, meanwhile
    page.once("dialog", lambda dialog: dialog.accept())
    page.click("#alert-table button[data-remove='0']")
    page.wait_for_selector("#alerts-error:has-text('Someone else changed the alerts')")
    assert [a["below"] for a in listed(page, portal)["alerts"]] == [45]
    page.click("#alerts-reload")
    page.wait_for_selector("#alerts-result:has-text('These are the alerts now')")
    assert page.is_hidden("#alerts-error") and cells(page)[2] == "below 45 %"
