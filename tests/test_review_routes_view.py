"""The Routes view (DESIGN 13) in Chromium, where a review found it wrong: a rule opened and applied unchanged, a
pattern typed twice."""

from __future__ import annotations

from typing import Any

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
