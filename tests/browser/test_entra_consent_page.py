"""The Entra simulator's consent page in a real browser (Chromium through Playwright), as a customer's admin meets
it from the connector's link: the stable ids the connector's browser tests use (#accept, #cancel, #role, #switch,
#back) and the redirects they lead to. The page is served over TLS with the project's own CA, which the browser
does not know: like a person on `make run`, it goes past the warning (`ignore_https_errors`)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest

from dev.entra import FABRIKAM, NORTHWIND, READER_APP_ID
from dev.graph import ManagedIdentity
from tests.browser.test_portal import browser as browser  # the module's Chromium
from tests.entra_support import CONSENT_REDIRECT, ServedEntra, served_entra

GRAPH = "https://graph.microsoft.com"


@pytest.fixture
def entra(identity: ManagedIdentity, tmp_path: Path) -> Iterator[ServedEntra]:
    with served_entra(identity, tmp_path) as served:
        yield served


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(ignore_https_errors=True)
    opened = context.new_page()
    # The connector is not running here: its consent callback answers a blank page, and the test reads the URL.
    opened.route(f"{CONSENT_REDIRECT}*", lambda route: route.fulfill(status=200, body="back at the connector"))
    yield opened
    context.close()


def _link(entra: ServedEntra, tenant: str) -> str:
    return f"{entra.url}/{tenant}/v2.0/adminconsent?" + urlencode(
        {"client_id": READER_APP_ID, "scope": f"{GRAPH}/.default", "redirect_uri": CONSENT_REDIRECT, "state": "st"}
    )


def _returned(page: Any) -> dict[str, list[str]]:
    page.wait_for_url(f"{CONSENT_REDIRECT}?*")
    return parse_qs(urlsplit(page.url).query)


def test_an_admin_accepts_in_the_browser(entra, page):
    page.goto(_link(entra, FABRIKAM.domain))
    assert "SecurityEvents.ReadWrite.All" in page.inner_text("main")
    page.click("#accept")
    assert _returned(page) == {"admin_consent": ["True"], "tenant": [FABRIKAM.id], "scope": [f"{GRAPH}/.default"],
                               "state": ["st"]}  # fmt: skip
    assert entra.simulator.consent_of(FABRIKAM.id, READER_APP_ID) is not None


def test_cancel_in_the_browser(entra, page):
    page.goto(_link(entra, FABRIKAM.id))
    page.click("#cancel")
    assert _returned(page)["error"] == ["access_denied"]
    assert entra.simulator.consent_of(FABRIKAM.id, READER_APP_ID) is None


def test_a_user_without_the_role_needs_admin_approval_and_can_switch_account(entra, page):
    page.goto(_link(entra, NORTHWIND.id))
    page.select_option("#role", "Cloud Application Administrator")
    page.click("#switch")
    assert "Need admin approval" in page.inner_text("main") and page.locator("#accept").count() == 0
    page.select_option("#role", "Privileged Role Administrator")
    page.click("#switch")
    page.click("#accept")
    assert _returned(page)["tenant"] == [NORTHWIND.id]
    entra.simulator.principals.clear()
    entra.simulator.signed_in_role = "User"
    page.goto(_link(entra, NORTHWIND.id))
    page.click("#back")
    assert _returned(page)["error"] == ["access_denied"] and entra.simulator.principals == {}
