"""A template's apply queued per tenant, on the page (docs/templates.md,
docs/portal.md#templates-one-decision-for-many-tenants), in Chromium: the local host runs the `template-apply` queue
trigger against Azurite's Queue service (as the Functions host does), FANOUT_THRESHOLD=2, the Graph and Entra ID
simulators. The apply answers 202; the page reads its progress until every tenant's message has run, then shows what
the apply did across them."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import expect

from dev.entra import FABRIKAM
from dev.graph import ManagedIdentity
from templates.fanout import QUEUE
from tests.browser.test_portal import Portal, axe_violations, browser, open_portal
from tests.browser.test_portal_refresh import queued_portal
from tests.browser.test_portal_templates import problems, saved
from tests.browser.test_portal_tenants import Tenants, several, tenants

__all__ = ["browser", "tenants"]  # fixtures, used by name


@pytest.fixture
def portal(
    indexed_functions: Any,
    identity: ManagedIdentity,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    azurite_queues: str,
) -> Iterator[Portal]:
    """The portal on Azurite's queues, an apply fanning out from two tenants (the tenants fixture builds on it)."""
    with queued_portal(indexed_functions, identity, tmp_path, monkeypatch, azurite_queues, QUEUE) as served:
        yield served


def test_an_apply_on_the_queue_shows_its_progress_and_then_what_it_did(browser: Any, tenants: Tenants) -> None:
    setup = several(browser, tenants)  # this organization and Fabrikam are read; Northwind waits for consent
    made = saved(setup, tenants.portal)
    page = open_portal(browser, tenants.portal, bypass_csp=True)  # only so axe can be injected
    page.goto(f"{page.url.split('#')[0]}#templates/{made['id']}")
    page.wait_for_selector("#template-part:not([hidden]) #template-apply")
    page.click("#template-apply")
    # Three tenants, one message each: the page follows GET /api/templates/{id}/applies/{run} until it is finished.
    expect(page.locator("#templates-result")).to_have_text(
        "Applied: 6 changed, 0 unchanged, 1 failed, 0 drifted.", timeout=60_000
    )
    assert [p for p in problems(page) if "tenant_not_consented" in p], problems(page)
    assert tenants.portal.graph.tenant(FABRIKAM.id).state_of("DLPEnabled")["state"] == "ThirdParty"
    assert tenants.portal.graph.state_of("DLPEnabled")["state"] == "ThirdParty"
    found = axe_violations(page)
    assert found == [], found
