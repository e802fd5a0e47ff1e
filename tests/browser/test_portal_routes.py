"""The page's Routes view (docs/design.md#connections-and-routes) in Chromium: the local host with App Service
Authentication emulated, the ServiceNow simulator (its groups and companies, two groups sharing a name) and the Graph
simulator on loopback. An admin builds a list on the page, previews it and saves it, and the next ticket follows it;
problems the connector names show on their rule and under their field; a save over someone else's is refused and offers
theirs; moving and deleting keep the focus; a reader sees the list read-only. Screenshots go to tests/artifacts/."""

from __future__ import annotations

from typing import Any

import pytest
from playwright.sync_api import expect

from create_ticket.routing.document import load
from create_ticket.routing.saving import save as save_routes
from create_ticket.routing.saving import version_of
from shared import services as services_module
from tests.browser.test_portal import Portal, answering, axe_violations, browser, connect, open_portal, portal, shoot

__all__ = ["browser", "portal"]  # fixtures, used by name

IAM = "Identity and Access Management"
OVERFLOW = "document.documentElement.scrollWidth - document.documentElement.clientWidth"


def saved_routes(routes: list[dict[str, Any]], by: str = "someone@contoso.example") -> None:
    """A list saved through the connector's own save (as another admin's PUT would), over whatever is there."""
    services = services_module.get_services()
    save_routes(services, {"routes": routes}, f'"{version_of(load(services.store).etag)}"', by)


def routes_view(browser: Any, portal: Portal, **options: Any) -> Any:
    page = open_portal(browser, portal, **options)
    page.click("#routes-link")
    page.wait_for_selector("#routes:not([hidden])")
    page.wait_for_selector("#routes-saved:not(:empty)")
    return page


def names(page: Any) -> list[str]:
    return [n.strip() for n in page.locator("#rule-list .rule-name").all_inner_texts()]


def rule(page: Any, number: int) -> Any:
    return page.locator("#rule-list > li").nth(number - 1)


def focused(page: Any) -> str:
    return str(page.evaluate("document.activeElement.getAttribute('aria-label') || document.activeElement.id"))


def refreshed(browser: Any, portal: Portal) -> Any:
    setup = open_portal(browser, portal)
    connect(setup, portal)
    assert setup.request.post(f"{portal.url}/api/recommendations/refresh").status == 200
    return setup


def test_an_admin_builds_previews_and_saves_routes_and_the_next_ticket_follows_them(browser, portal):
    refreshed(browser, portal)
    page = open_portal(browser, portal)
    assert page.inner_text("#routes-link") == "Routes: none yet"
    # Without routes the create dialog is as before: medium, and nothing said about routes.
    page.check('#recommendations input[data-id="AdminMFAV2"]')
    page.click("#create")
    assert page.input_value("#t-priority") == "medium" and not page.is_visible("#t-priority-hint")
    assert page.get_attribute("#t-priority", "aria-describedby") is None
    page.click("#cancel")
    page.click("#routes-link")
    page.wait_for_selector("#routes-saved:not(:empty)")
    assert page.evaluate("document.activeElement.id") == "routes-title"
    assert page.title().startswith("Routes")
    assert not page.is_visible("#actions") and not page.is_visible("#connection")
    assert page.inner_text("#routes-saved") == "Never saved."
    assert page.inner_text("#rules-rest").startswith("No rules: every ticket goes as before routes")
    assert page.is_disabled("#routes-save")

    # A rule in the editor: identity actions to the IAM team, due in 14 days.
    page.click("#route-add")
    page.wait_for_selector("#rule-dialog[open]")  # after the connections and services it offers are read
    assert page.evaluate("document.activeElement.id") == "r-name"
    assert page.inner_text("#rule-dialog-title") == "Add rule 1"
    page.fill("#r-name", "Identity to IAM")
    page.check("#r-categories-options input[value=Identity]")
    page.fill("#r-assignmentGroup", IAM)
    page.fill("#r-dueInDays", "14")
    page.click("#rule-apply")
    page.wait_for_selector("#rule-dialog", state="hidden")
    assert names(page) == ["1. Identity to IAMNew"]
    line = rule(page, 1).locator(".rule-line").inner_text()
    assert line.startswith("Identity") and f"group {IAM}" in line and "due in 14 days" in line
    assert focused(page) == "Edit rule 1 (Identity to IAM)"
    assert "not saved yet" in page.inner_text("#notice")
    assert page.is_visible("#routes-dirty") and not page.is_disabled("#routes-save")
    assert page.inner_text("#rules-rest").startswith("Everything else goes as before routes")

    # The preview: every open action, the rule it takes and where its ticket would go; nothing saved.
    page.click("#routes-preview-button")
    page.wait_for_selector("#routes-preview:not([hidden])")
    assert page.evaluate("document.activeElement.id") == "preview-title"
    assert "Nothing is saved yet" in page.inner_text("#preview-saved")
    identity = page.locator('#preview-table tbody tr[data-rule="0"]')
    others = page.locator('#preview-table tbody tr[data-rule="none"]')
    assert identity.count() > 0 and others.count() > 0
    first = identity.first.inner_text()
    assert IAM in first and "in 14 days" in first and "medium" in first
    assert "None: as before routes" in others.first.inner_text()
    page.select_option("#p-rule", "0")
    assert page.inner_text("#preview-shown") == f"{identity.count()} of {identity.count() + others.count()} shown"
    assert load(services_module.get_services().store).routes == []  # nothing saved by a preview
    shoot(page, "portal-routes-preview-1280")

    # Saved: the group found in ServiceNow by its name, kept as its sys_id.
    page.click("#routes-save")
    page.wait_for_selector("#routes-dirty", state="hidden")
    assert "The routes are saved: 1 rule" in page.inner_text("#notice")
    assert page.inner_text("#routes-saved").startswith("Saved ")
    # Issue 29, item 11: the preview still shown is of the list now saved, and says so (not "nothing is saved").
    assert page.is_visible("#routes-preview") and "Nothing is saved" not in page.inner_text("#routes-preview")
    assert "This is where tickets go now" in page.inner_text("#preview-saved")
    assert names(page) == ["1. Identity to IAM"]  # no longer new
    stored = load(services_module.get_services().store).routes
    group = stored[0]["set"]["assignmentGroup"]
    assert group["name"] == IAM and len(group["sysId"]) == 32
    assert page.inner_text("#routes-link") == "Routes: 1 rule"

    # Back to the page: the create dialog leaves priority to the routes; the ticket lands in the team's queue and
    # its due date says it came from the rule.
    page.click("#routes-back")
    page.wait_for_selector("#actions:not([hidden])")
    page.check('#recommendations input[data-id="AdminMFAV2"]')
    page.click("#create")
    assert page.input_value("#t-priority") == "" and page.is_visible("#t-priority-hint")
    assert page.get_attribute("#t-priority", "aria-describedby") == "t-priority-hint"
    page.click("#submit")
    page.wait_for_selector("#tickets tbody tr")
    due = page.locator("#tickets tbody tr .sub.due").inner_text()
    assert due.startswith("Due ") and due.endswith("(by rule: Identity to IAM)")
    record = portal.servicenow.records()[-1]
    assert record["assignment_group"]["value"] == group["sysId"]
    assert record["due_date"]  # 14 days after creation, as the rule says


def test_problems_show_on_their_rule_and_under_their_field_and_nothing_is_saved(browser, portal):
    refreshed(browser, portal)
    page = routes_view(browser, portal)
    page.click("#route-add")
    page.wait_for_selector("#rule-dialog[open]")
    page.fill("#r-name", "Everything to the desk")
    page.fill("#r-assignmentGroup", "Service Desk")  # two groups share this name on the instance
    page.fill("#r-dueInDays", "400")
    page.click("#rule-apply")
    page.wait_for_selector("#rule-dialog", state="hidden")

    # Every problem at once (issue 29, item 4): the shape and ServiceNow's answer about the name, in one round; the
    # rule and its fields named, focus on the banner, the draft kept.
    page.click("#routes-save")
    page.wait_for_selector("#routes-error:not([hidden])")
    banner = page.inner_text("#routes-error")
    assert banner.startswith("Nothing is saved: the connector found 2 problems."), banner
    assert "Due in days must be a whole number of days from 1 to 365." in banner
    assert "records in sys_user_group of ServiceNow connection 'default' are named 'Service Desk'" in banner
    assert page.evaluate("document.activeElement.id") == "routes-error"
    problems = rule(page, 1).locator(".rule-errors").inner_text()
    assert "Due in days must be" in problems and "named 'Service Desk'" in problems
    assert page.is_visible("#routes-dirty")

    # "Rule 1" in the banner opens its editor at the first field named, each problem under its own field.
    page.locator("#routes-error button.linkish").first.click()
    page.wait_for_selector("#rule-dialog[open]")
    assert page.evaluate("document.activeElement.id") == "r-dueInDays"
    assert page.get_attribute("#r-dueInDays", "aria-invalid") == "true"
    assert page.inner_text("#r-dueInDays-error").startswith("Due in days must be a whole number")
    assert page.inner_text("#r-assignmentGroup-error").startswith("The assignment group: 2 records in sys_user_group")
    assert page.get_attribute("#r-assignmentGroup", "aria-invalid") == "true"
    shoot(page, "portal-routes-errors-1280")
    page.fill("#r-dueInDays", "30")
    page.click("#rule-apply")
    page.wait_for_selector("#rule-dialog", state="hidden")
    assert rule(page, 1).locator(".rule-errors").count() == 0  # changed: its old problems are gone
    assert load(services_module.get_services().store).routes == []  # nothing saved by the refusal


def test_the_editor_suggests_the_instances_names_and_a_missing_one_comes_with_names_like_it(browser, portal):
    """Issue 29, item 4: typing part of a name offers the rule's connection's active names (GET
    /api/connections/{id}/lookup), two records of one name by sys_id; a name found nowhere is refused with the names
    like it; the editor is axe-clean at 1280 and 390 pixels with suggestions shown."""
    refreshed(browser, portal)
    page = routes_view(browser, portal, bypass_csp=True)
    page.click("#route-add")
    page.wait_for_selector("#rule-dialog[open]")
    options = "(id) => [...document.querySelectorAll(`#${id} option`)].map((o) => [o.value, o.label])"

    def offered(field: str, text: str, count: int) -> list[list[str]]:
        page.fill(f"#r-{field}", text)
        expect(page.locator(f"#r-{field}-list option")).to_have_count(count)
        return list(page.evaluate(options, f"r-{field}-list"))

    assert [value for value, _ in offered("assignmentGroup", "ident", 1)] == [IAM]
    desks = offered("assignmentGroup", "desk", 2)
    assert all(len(value) == 32 and label == f"Service Desk (sys_id {value})" for value, label in desks), desks
    assert [value for value, _ in offered("company", "fab", 1)] == ["Fabrikam"]
    for width in (1280, 390):
        page.set_viewport_size({"width": width, "height": 900})
        assert page.evaluate(OVERFLOW) <= 0
        found = axe_violations(page)
        assert found == [], (width, found)
    page.set_viewport_size({"width": 1280, "height": 900})
    page.fill("#r-company", "")
    page.fill("#r-assignmentGroup", "identity management")
    page.click("#rule-apply")
    page.wait_for_selector("#rule-dialog", state="hidden")
    page.click("#routes-save")
    page.wait_for_selector("#routes-error:not([hidden])")
    banner = page.inner_text("#routes-error")
    assert "no group is named 'identity management'" in banner and f"names like it there: '{IAM}'" in banner, banner


def test_a_save_over_someone_elses_is_refused_and_offers_theirs(browser, portal):
    saved_routes([{"name": "Devices", "match": {"categories": ["Device"]}, "set": {"priority": "high"}}])
    page = routes_view(browser, portal)
    assert names(page) == ["1. Devices"]
    assert page.inner_text("#routes-saved").endswith("by someone@contoso.example.")
    rule(page, 1).locator("button[data-action=delete]").click()
    assert names(page) == [] and page.is_visible("#routes-dirty")
    theirs = [{"name": "Apps", "match": {"categories": ["Apps"]}, "set": {"dueInDays": 7}}]
    saved_routes(theirs, by="other@contoso.example")  # another admin, meanwhile

    page.click("#routes-save")
    page.wait_for_selector("#routes-theirs")
    banner = page.inner_text("#routes-error")
    assert banner.startswith("Someone else saved the routes since you loaded them.")
    assert "by other@contoso.example" in banner and "nothing of yours is saved" in banner
    assert page.evaluate("document.activeElement.id") == "routes-error"
    assert names(page) == []  # the draft is still the admin's own until they choose
    page.click("#routes-theirs")
    page.wait_for_selector("#routes-error", state="hidden")
    assert names(page) == ["1. Apps"] and not page.is_visible("#routes-dirty")
    assert "Make your change again on top of them" in page.inner_text("#notice")
    assert [r["name"] for r in load(services_module.get_services().store).routes] == ["Apps"]


def test_moving_and_deleting_keep_the_focus_and_leaving_asks_before_dropping_changes(browser, portal):
    saved_routes([{"name": n, "match": {"categories": [c]}, "set": {}}
                  for n, c in (("First", "Identity"), ("Second", "Data"), ("Third", "Device"))])  # fmt: skip
    page = routes_view(browser, portal)
    assert names(page) == ["1. First", "2. Second", "3. Third"]
    assert rule(page, 1).locator("button[data-action=up]").get_attribute("aria-disabled") == "true"

    rule(page, 3).locator("button[data-action=up]").click()
    assert names(page) == ["1. First", "2. Third", "3. Second"]  # moved, not changed: no tag
    assert focused(page) == "Move up rule 2 (Third)"  # the focus follows the rule
    assert "is now number 2 of 3 (not saved yet)" in page.inner_text("#notice")
    page.keyboard.press("Enter")
    assert names(page)[0] == "1. Third" and focused(page) == "Move up rule 1 (Third)"
    page.keyboard.press("Enter")  # at the top: nothing moves, the focus stays
    assert names(page)[0] == "1. Third" and focused(page) == "Move up rule 1 (Third)"

    rule(page, 2).locator("button[data-action=delete]").click()  # First
    assert names(page) == ["1. Third", "2. Second"]
    assert focused(page) == "Edit rule 2 (Second)"  # the rule now in its place
    assert "is deleted from the list (not saved yet)" in page.inner_text("#notice")

    # Leaving with changes asks; staying keeps them, discarding brings back the saved list. Each confirmation is
    # answered by a handler, so a click is never left waiting on a dialog that opened before it returned.
    asked: list[str] = []

    page.once("dialog", answering(asked, False))
    with page.expect_event("dialog"):
        page.click("#routes-back")
    assert asked == ["Leave the routes without saving? Your changes are lost."]
    page.wait_for_url("**#routes")
    assert page.evaluate("location.hash") == "#routes"
    assert page.is_visible("#routes") and names(page) == ["1. Third", "2. Second"]
    page.once("dialog", answering(asked, True))
    page.click("#routes-discard")  # its confirmation is answered from within the click
    assert asked[1:] == ["Discard your changes to the routes? The saved list comes back."]
    page.locator("#rule-list > li").nth(2).wait_for()
    assert names(page) == ["1. First", "2. Second", "3. Third"] and page.is_disabled("#routes-save")
    assert [r["name"] for r in load(services_module.get_services().store).routes] == ["First", "Second", "Third"]


def test_a_reader_sees_the_routes_read_only_and_is_refused_if_forced(browser, portal):
    refreshed(browser, portal)  # connected: the group is found by its name when saved
    saved_routes([{"name": "Identity to IAM", "match": {"categories": ["Identity"]},
                   "set": {"assignmentGroup": IAM, "dueInDays": 14}}])  # fmt: skip
    page = routes_view(browser, portal, user="reader@contoso.com")
    assert names(page) == ["1. Identity to IAM"]
    assert f"group {IAM}" in rule(page, 1).inner_text()
    assert "Only an admin of the connector (app role Connector.Admin) can change them." in page.inner_text("#routes")
    for hidden in ("#routes-tools", "#route-add"):
        assert not page.is_visible(hidden)
    assert page.locator("#rule-list button").count() == 0
    version = page.request.get(f"{portal.url}/api/routes").json()["version"]
    forced = page.request.put(f"{portal.url}/api/routes", data={"routes": []}, headers={"If-Match": f'"{version}"'})
    assert forced.status == 403 and forced.json()["code"] == "forbidden"


@pytest.mark.parametrize("width", [1280, 390])
def test_the_routes_view_is_accessible_and_fits_at_both_widths(browser, portal, width):
    refreshed(browser, portal)
    saved_routes([
        {"name": "Identity to IAM", "match": {"categories": ["Identity"]}, "set": {"assignmentGroup": IAM}},
        {"name": "Big points, soon", "match": {"minPoints": 8, "controls": ["mdo_.*", "DLPEnabled"]},
         "set": {"priority": "high", "dueInDays": 7, "fields": {"subcategory": "identity"}}},
        {"name": "Everything else", "set": {"table": "incident"}},
        {"name": "Devices", "match": {"categories": ["Device"]}, "set": {}},
    ])  # fmt: skip
    page = routes_view(browser, portal, width=width, bypass_csp=True)  # only so axe can be injected
    assert "Never used: rule 3 above matches everything." in rule(page, 4).inner_text()
    page.click("#routes-preview-button")
    page.wait_for_selector("#routes-preview:not([hidden])")
    assert axe_violations(page) == []
    assert page.evaluate(OVERFLOW) <= 0
    page.evaluate("window.scrollTo(0, 0)")  # the list, then the preview's first rows
    shoot(page, f"portal-routes-{width}")  # docs/images/portal-routes-{width}.png is this view
    rule(page, 2).locator("button[data-action=edit]").click()
    page.wait_for_selector("#rule-dialog[open]")
    assert page.input_value("#r-controls") == "mdo_.*\nDLPEnabled"
    assert page.input_value("#r-minPoints") == "8"
    assert axe_violations(page) == []
    shoot(page, f"portal-routes-editor-{width}")


# Editing rules: unchanged rules, repeated patterns, stale previews, unreadable routes and extra fields


def edit(page: Any, number: int) -> None:
    rule(page, number).locator("button[data-action=edit]").click()
    page.wait_for_selector("#rule-dialog[open]")


def apply(page: Any) -> None:
    page.click("#rule-apply")
    page.wait_for_selector("#rule-dialog", state="hidden")


def test_a_rule_opened_and_applied_unchanged_stays_unchanged_and_a_repeated_pattern_is_one(browser, portal):
    refreshed(browser, portal)
    # As an API client may save it: categories in another order than the editor's boxes.
    saved_routes([{"name": "Two", "match": {"categories": ["Device", "Identity"]}, "set": {}}])
    page = routes_view(browser, portal)
    edit(page, 1)
    apply(page)
    assert names(page) == ["1. Two"]  # not "Changed"
    assert not page.is_visible("#routes-dirty") and page.is_disabled("#routes-save")

    # A pattern typed twice is kept once, so the connector's problem with the next one names that one.
    edit(page, 1)
    page.fill("#r-controls", "aad_.*\naad_.*\nmdo_(")
    apply(page)
    page.click("#routes-save")
    page.wait_for_selector("#routes-error:not([hidden])")
    assert 'Control id pattern "mdo_("' in rule(page, 1).locator(".rule-errors").inner_text()


def test_a_preview_of_another_list_is_not_left_as_if_current(browser, portal):
    refreshed(browser, portal)
    saved_routes([{"name": "Devices", "match": {"categories": ["Device"]}, "set": {}}])
    page = routes_view(browser, portal)
    page.click("#routes-preview-button")
    page.wait_for_selector("#routes-preview:not([hidden])")
    rule(page, 1).locator("button[data-action=edit]").click()
    page.wait_for_selector("#rule-dialog[open]")
    page.check("#r-categories-options input[value=Data]")
    apply(page)
    assert page.is_visible("#preview-stale")
    page.click("#routes-preview-button")  # previewed, then saved: the preview is of the saved list
    page.wait_for_selector("#preview-stale", state="hidden")
    page.click("#routes-save")
    page.wait_for_selector("#routes-dirty", state="hidden")
    assert page.is_visible("#routes-preview") and not page.is_visible("#preview-stale")

    # A change after the save: the preview says it is of the list before it.
    rule(page, 1).locator("button[data-action=delete]").click()
    assert page.is_visible("#preview-stale")

    # Saved without a preview of it: the old preview is not shown as if it were of the saved list.
    page.click("#routes-save")
    page.wait_for_selector("#routes-dirty", state="hidden")
    assert not page.is_visible("#routes-preview") or page.is_visible("#preview-stale")


def test_routes_that_cannot_be_read_are_not_shown_as_none_nor_edited_nor_overridden(browser, portal):
    refreshed(browser, portal)
    saved_routes([{"name": "Devices", "match": {"categories": ["Device"]}, "set": {}}])
    context = browser.new_context(viewport={"width": 1280, "height": 900})

    def unavailable(route: Any) -> None:
        if route.request.method != "GET":
            route.continue_()
            return
        problem = '{"title": "The store is unavailable", "detail": "Try again.", "code": "store_unavailable"}'
        route.fulfill(status=503, content_type="application/problem+json", body=problem)

    context.route("**/api/routes", unavailable)
    page = context.new_page()
    page.goto(f"{portal.url}/.auth/login/aad?post_login_redirect_uri=/api/portal")
    page.wait_for_selector("body[data-ready=true]")
    held: list[Any] = []  # the view's tenants answer comes late: nothing offers an edit before the list is read
    context.route("**/api/tenants", lambda route: held.append(route))
    page.click("#routes-link")
    page.wait_for_timeout(300)
    assert held and not page.is_visible("#route-add")
    context.unroute("**/api/tenants")
    for route in held:
        route.continue_()
    page.wait_for_selector("#routes-error:not([hidden])")
    assert page.inner_text("#routes-error").startswith("The store is unavailable")
    assert not page.is_visible("#rules-rest")  # not "No rules": there is one, unread
    assert not page.is_visible("#route-add")  # a list that could never be saved
    assert page.is_disabled("#routes-preview-button") and page.is_disabled("#routes-save")

    # Nor is a rule's priority overridden by the create dialog's "medium", as if there were no routes.
    page.click("#routes-back")
    page.wait_for_selector("#actions:not([hidden])")
    page.check('#recommendations input[data-id="AdminMFAV2"]')
    page.click("#create")
    assert page.input_value("#t-priority") == "" and page.is_visible("#t-priority-hint")


def test_extra_fields_named_twice_or_not_at_all_are_said_under_the_extra_fields(browser, portal):
    refreshed(browser, portal)
    page = routes_view(browser, portal)
    page.click("#route-add")
    page.wait_for_selector("#rule-dialog[open]")
    rows = page.locator("#r-fields-rows .field-row")
    for name, value in (("subcategory", "one"), ("subcategory", "two")):
        page.click("#r-field-add")
        rows.last.locator(".field-name").fill(name)
        rows.last.locator(".field-value").fill(value)
    page.click("#rule-apply")
    assert page.is_visible("#rule-dialog")  # not applied: one of the two would be lost
    assert page.inner_text("#r-fields-error") == 'Field "subcategory" is named twice: keep one row of it.'
    assert page.evaluate("document.activeElement === document.querySelectorAll('.field-name')[1]")

    rows.last.locator(".field-name").fill("")  # a value without a name: the connector's words, under the fields
    apply(page)
    page.click("#routes-save")
    page.wait_for_selector("#routes-error:not([hidden])")
    assert "A field without a name must be a ServiceNow field name" in page.inner_text("#routes-error")
    edit(page, 1)
    assert page.inner_text("#r-fields-error").startswith("A field without a name must be")
    assert not page.is_visible("#rule-dialog-error")
    assert load(services_module.get_services().store).routes == []


def test_before_secure_score_is_read_the_preview_and_the_services_say_why_they_are_empty(browser, portal):
    page = routes_view(browser, portal)  # nothing read from Secure Score yet
    page.click("#routes-preview-button")
    page.wait_for_selector("#routes-preview:not([hidden])")
    assert page.inner_text("#preview-summary").startswith("No open improvement action to preview")
    assert not page.is_visible("#preview-filters") and not page.is_visible("#preview-table")
    page.click("#route-add")
    page.wait_for_selector("#rule-dialog[open]")
    assert page.inner_text("#r-services-options").startswith("No services yet")
    page.keyboard.press("Escape")

    # Once Secure Score is read, the same page offers its services without a reload.
    assert page.request.post(f"{portal.url}/api/recommendations/refresh").status == 200
    page.click("#route-add")
    page.wait_for_selector("#rule-dialog[open]")
    assert page.locator("#r-services-options input[value=AzureAD]").count() == 1
