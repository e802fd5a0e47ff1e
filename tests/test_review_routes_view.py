"""The Routes view (docs/design.md#connections-and-routes) in Chromium, where a review found it wrong: a rule opened and
applied unchanged, a pattern typed twice, a preview outliving the list it showed,
the routes unreadable, and extra fields named twice or not at all."""

from __future__ import annotations

from typing import Any

from create_ticket.routing.document import load
from shared import services as services_module
from tests.test_portal import browser, portal
from tests.test_portal_routes import names, refreshed, routes_view, rule, saved_routes

__all__ = ["browser", "portal"]  # fixtures, used by name


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
    page.click("#routes-link")
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
