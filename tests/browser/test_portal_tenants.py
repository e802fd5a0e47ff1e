"""The page's tenant overview (docs/design.md#several-microsoft-tenants) in Chromium: the local host with App Service
Authentication emulated, the ServiceNow and Graph simulators, and the Entra ID simulator over TLS whose consent page a
browser opens and accepts, as a customer's admin does. Screenshots go to tests/artifacts/."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import expect

from dev.entra import FABRIKAM, NORTHWIND, READER_APP_ID, ca_bundle
from shared import services as services_module
from shared.tickets import correlation_id
from tests.browser.test_portal import HOSTILE, Portal, axe_violations, browser, connect, open_portal, portal, shoot
from tests.entra_support import ServedEntra, served_entra

__all__ = ["browser", "portal"]  # fixtures, used by name

FABRIKAM_CONTROL = "AdminMFAV2"  # ticketed in Fabrikam, overdue
HOME_CONTROL = "MFARegistrationV2"  # ticketed in the home tenant only
OTHER_ID = "d4e6a8b0-5e7f-4a91-8c2d-3e4f5a6b7c8d"  # a third tenant: added by id, never consented
NONE = "\N{EN DASH}"  # what the page shows for no value
OVERFLOW = "document.documentElement.scrollWidth - document.documentElement.clientWidth"


@dataclass
class Tenants:
    portal: Portal
    entra: ServedEntra

    @property
    def url(self) -> str:
        return self.portal.url


@pytest.fixture
def tenants(portal: Portal, identity: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Tenants]:
    """The portal with the reader app configured (as make run sets it): consent redirects to this local host."""
    folder = tmp_path / "entra"
    folder.mkdir()
    with served_entra(identity, folder, portal.graph, f"{portal.url}/api/tenants/consent") as entra:
        bundle = ca_bundle(entra.ca, folder)  # the process trusts the simulator's CA, as make run sets it
        for name, value in {"READER_APP_CLIENT_ID": READER_APP_ID, "ENTRA_AUTHORITY": entra.url, "APP_URL": portal.url,
                            "REQUESTS_CA_BUNDLE": str(bundle), "SSL_CERT_FILE": str(bundle)}.items():  # fmt: skip
            monkeypatch.setenv(name, value)
        services_module.install(None)
        yield Tenants(portal, entra)
    services_module.install(None)


def api(tenants: Tenants, page: Any, method: str, path: str, data: Any = None) -> Any:
    """The connector's API as the signed-in user of `page`."""
    response = page.request.fetch(f"{tenants.url}{path}", method=method, data=data)
    assert response.ok, (path, response.status, response.text())
    return response.json()


def consent(browser: Any, link: str) -> None:
    """The customer's Global Administrator opens the link and accepts (the simulator's own CA: no warning here)."""
    context = browser.new_context(ignore_https_errors=True)
    page = context.new_page()
    page.goto(link)
    page.click("#accept")
    page.wait_for_selector("text=Tenant added")
    context.close()


def several(browser: Any, tenants: Tenants) -> Any:
    """Connected; the home tenant read; Fabrikam added and consented, with an overdue ticket; Northwind pending;
    a ticket of the home tenant's own. The admin's page (not opened yet) does the setup through the API."""
    setup = open_portal(browser, tenants.portal)
    connect(setup, tenants.portal)
    api(tenants, setup, "POST", "/api/recommendations/refresh")
    added = api(tenants, setup, "POST", "/api/tenants", {"tenant": FABRIKAM.domain, "name": FABRIKAM.name})
    consent(browser, added["consentUrl"])
    api(tenants, setup, "POST", "/api/tenants", {"tenant": NORTHWIND.domain, "name": NORTHWIND.name})
    api(tenants, setup, "POST", "/api/tickets", {"recommendation": {"id": FABRIKAM_CONTROL}, "tenant": FABRIKAM.id,
                                        "dueDate": "2001-01-31"})  # fmt: skip
    api(tenants, setup, "POST", "/api/tickets", {"recommendation": {"id": HOME_CONTROL}})
    return setup


def rows(page: Any) -> list[str]:
    return [r.inner_text() for r in page.locator("#tenant-table tbody tr").all()]


def tenant_row(page: Any, key: str) -> Any:
    return page.locator(f'#tenant-table tbody tr[data-tenant="{key}"]')


def test_one_tenant_only_is_todays_page_with_no_overview(browser, tenants):
    requested: list[str] = []
    page = browser.new_context(viewport={"width": 1280, "height": 900}).new_page()
    page.on("request", lambda request: requested.append(request.url))
    page.goto(f"{tenants.url}/.auth/login/aad?login_hint=reader@contoso.com&post_login_redirect_uri=/api/portal")
    page.wait_for_selector("body[data-ready=true]")
    assert page.get_attribute("body", "data-view") == "single"
    assert not page.is_visible("#tenants") and not page.is_visible("#tenant-bar") and not page.is_visible("#add-first")
    assert page.is_visible("#actions") and page.is_visible("#score") and page.is_visible("#servicenow")
    assert page.title().startswith("Security center")
    assert not [url for url in requested if "tenant=" in url]  # the requests of the page before tenants
    page.goto(f"{tenants.url}/api/portal#tenant={FABRIKAM.id}")  # an address from elsewhere changes nothing
    page.reload()
    page.wait_for_selector("body[data-ready=true]")
    assert page.get_attribute("body", "data-view") == "single"
    admin = open_portal(browser, tenants.portal)
    assert admin.is_visible("#add-first")  # the way to a second tenant, for admins only

    # The home tenant paused, alone: the overview, where it is resumed; then today's page again.
    api(tenants, admin, "POST", "/api/recommendations/refresh")  # its id is known once read
    home_id = api(tenants, admin, "GET", "/api/tenants")["tenants"][0]["id"]
    api(tenants, admin, "DELETE", f"/api/tenants/{home_id}")
    admin.reload()
    admin.wait_for_selector("body[data-ready=true][data-view=overview]")
    assert "Paused" in tenant_row(admin, "home").inner_text()
    tenant_row(admin, "home").locator("button", has_text="Resume").click()
    admin.wait_for_selector("body[data-view=single]")
    assert "read again" in admin.inner_text("#notice") and admin.is_visible("#actions")


def test_the_overview_lists_each_tenant_with_its_numbers_and_opens_one(browser, tenants):
    setup = several(browser, tenants)
    expected = {row["id"]: row for row in api(tenants, setup, "GET", "/api/tenants")["tenants"]}
    page = open_portal(browser, tenants.portal)
    assert page.get_attribute("body", "data-view") == "overview"
    assert page.is_visible("#tenants") and not page.is_visible("#actions") and not page.is_visible("#score")
    names = [r.split("\n")[0] for r in rows(page)]
    assert names == ["This organization", FABRIKAM.name, NORTHWIND.name]  # the home tenant first, then by name

    fabrikam = expected[FABRIKAM.id]
    shown = tenant_row(page, FABRIKAM.id).inner_text()
    score = fabrikam["score"]
    assert f"{score['current']:g} of {score['max']:g} ({score['percent']}%)" in shown
    assert f"+{fabrikam['change7']:g} in 7 days\n+{fabrikam['change30']:g} in 30 days" in shown
    assert str(fabrikam["openRecommendations"]) in tenant_row(page, FABRIKAM.id).locator(".open-actions").inner_text()
    assert "1 open" in shown and "1 overdue" in shown and "Active" in shown and "Read " in shown
    home = tenant_row(page, "home").inner_text()
    assert "1 open" in home and "none overdue" in home and "This deployment's own tenant" in home
    northwind = tenant_row(page, NORTHWIND.id)
    assert "Waiting for consent" in northwind.inner_text() and "Not read yet" in northwind.inner_text()
    link = northwind.locator(".link")
    assert link.inner_text() == expected[NORTHWIND.id]["consentUrl"]  # shown to select by hand
    assert northwind.locator("button.copy").get_attribute("aria-label") == f"Copy consent link for {NORTHWIND.name}"
    assert "1 overdue ticket in all" in page.inner_text("#tenants-summary")

    # Fabrikam's own page: its score, its actions and its tickets only; the address keeps the view on reload.
    page.click(f'#tenant-table a:text-is("{FABRIKAM.name}")')
    page.wait_for_selector(f'body[data-view=tenant][data-tenant="{FABRIKAM.id}"]')
    assert page.evaluate("document.activeElement.id") == "tenant-title"
    assert page.inner_text("#tenant-title") == FABRIKAM.name and "fabrikam.example · Active" in page.inner_text(
        "#tenant-about"
    )
    assert page.title().startswith(f"{FABRIKAM.name} \N{EN DASH} Security center")
    page.select_option("#f-status", "all")
    assert page.inner_text("#score-value") == f"{score['current']:g}"
    theirs = api(tenants, setup, "GET", f"/api/recommendations?status=all&tenant={FABRIKAM.id}")["recommendations"]
    ids = page.locator("#recommendations input[data-id]").evaluate_all("(boxes) => boxes.map((b) => b.dataset.id)")
    assert sorted(ids) == sorted(r["id"] for r in theirs)
    ticketed = page.locator(f'#recommendations tr:has(input[data-id="{FABRIKAM_CONTROL}"]) td.ticket')
    assert "INC" in ticketed.inner_text()
    assert page.locator(f'#recommendations tr:has(input[data-id="{HOME_CONTROL}"]) td.ticket').inner_text() == NONE
    assert page.locator("#tickets tbody tr").count() == 1  # Fabrikam's ticket, not the home tenant's
    page.reload()
    page.wait_for_selector(f'body[data-ready=true][data-view=tenant][data-tenant="{FABRIKAM.id}"]')

    # A ticket created on Fabrikam's page is Fabrikam's (its own correlation id in ServiceNow).
    page.check('input[data-id="BlockLegacyAuthentication"]')
    page.click("#create")
    page.click("#submit")
    page.wait_for_selector("#dialog", state="hidden")
    page.locator("#tickets tbody tr").nth(1).wait_for()
    created = next(r for r in tenants.portal.servicenow.records() if r["correlation_id"].endswith(
        "BlockLegacyAuthentication"))  # fmt: skip
    assert created["correlation_id"] == correlation_id("BlockLegacyAuthentication", FABRIKAM.id)  # not the home's

    # Back to the overview, by the link and by the browser's Back.
    page.click("#back")
    page.wait_for_selector("body[data-view=overview]")
    assert page.evaluate("document.activeElement.id") == "tenants-title"
    assert "2 open" in tenant_row(page, FABRIKAM.id).inner_text()
    page.click('#tenant-table a:text-is("This organization")')
    page.wait_for_selector("body[data-view=tenant][data-tenant=home]")
    assert page.locator("#tickets tbody tr").count() == 1  # the home tenant's own
    page.go_back()
    page.wait_for_selector("body[data-view=overview]")

    # A tenant waiting for consent has a page with nothing read yet; an unknown one leads to the overview.
    page.click(f'#tenant-table a:text-is("{NORTHWIND.name}")')
    page.wait_for_selector(f'body[data-view=tenant][data-tenant="{NORTHWIND.id}"]')
    assert page.inner_text("#score-max") == "not read yet" and "Waiting for consent" in page.inner_text("#tenant-about")
    assert page.locator("#recommendations tbody tr").count() == 0 and page.is_hidden("#error")
    page.goto(f"{tenants.url}/api/portal#tenant=nobody")
    page.wait_for_selector("body[data-view=overview]")
    assert 'The connector reads no tenant "nobody"' in page.inner_text("#notice")


def test_an_admin_adds_a_tenant_by_domain_copies_its_link_and_its_admin_consents(browser, tenants):
    setup = open_portal(browser, tenants.portal)
    api(tenants, setup, "POST", "/api/recommendations/refresh")
    page = open_portal(browser, tenants.portal, permissions=["clipboard-read", "clipboard-write"])
    assert page.get_attribute("body", "data-view") == "single"
    page.click("#add-first")
    assert page.is_visible("#tenant-dialog") and page.evaluate("document.activeElement.id") == "n-tenant"

    page.click("#tenant-submit")  # nothing typed: said by the page, nothing sent
    assert page.inner_text("#n-tenant-error") == "Give the tenant's id or one of its domains."
    for typed, said in [("unknown.example", "Microsoft Entra ID knows no tenant for the domain unknown.example."),
                        ("not a tenant", "The tenant must be a tenant id (a GUID) or a domain such as "
                                         "contoso.onmicrosoft.com.")]:  # fmt: skip
        page.fill("#n-tenant", typed)
        page.click("#tenant-submit")
        page.wait_for_selector(f'#n-tenant-error:text-is("{said}")')
        assert page.get_attribute("#n-tenant", "aria-invalid") == "true"
        assert page.evaluate("document.activeElement.id") == "n-tenant"
    page.fill("#n-tenant", FABRIKAM.domain)
    page.fill("#n-name", "Fabrikam\u202e")  # a bidirectional override: the name is refused, by its field
    page.click("#tenant-submit")
    page.wait_for_selector("#n-name-error:visible")
    assert page.inner_text("#n-name-error") == "The name must be one line of 1-100 characters."
    assert page.is_hidden("#n-tenant-error")
    page.fill("#n-name", FABRIKAM.name)
    page.click("#tenant-submit")

    # The new row, pending, its copy button focused; the link copied is the one the connector gave.
    page.wait_for_selector("body[data-view=overview]")
    assert page.is_hidden("#tenant-dialog")
    row = tenant_row(page, FABRIKAM.id)
    assert "Waiting for consent" in row.inner_text()
    focused = page.evaluate("document.activeElement.getAttribute('aria-label')")
    assert focused == f"Copy consent link for {FABRIKAM.name}"
    assert "Fabrikam is added and waits for consent" in page.inner_text("#notice")
    shoot(page, "portal-tenant-added-1280")
    page.keyboard.press("Enter")
    page.wait_for_selector("#notice:has-text('is copied')")
    link = row.locator(".link").inner_text()
    assert page.evaluate("navigator.clipboard.readText()") == link
    assert link.startswith(f"{tenants.entra.url}/{FABRIKAM.id}/v2.0/adminconsent?client_id={READER_APP_ID}")

    # Fabrikam's Global Administrator accepts; the row is active with its score.
    consent(browser, link)
    page.reload()
    page.wait_for_selector("body[data-ready=true][data-view=overview]")
    shown = tenant_row(page, FABRIKAM.id).inner_text()
    assert "Active" in shown and " of " in shown and "Waiting" not in shown
    assert tenant_row(page, FABRIKAM.id).locator(".link").count() == 0

    page.click("#add-tenant")  # added again: refused by its field, in the connector's words
    page.fill("#n-tenant", FABRIKAM.id)
    page.click("#tenant-submit")
    page.wait_for_selector("#n-tenant-error:has-text('The tenant is registered already (active).')")
    page.keyboard.press("Escape")
    assert page.evaluate("document.activeElement.id") == "add-tenant"


def test_without_the_reader_app_adding_says_what_to_set(browser, tenants, monkeypatch):
    monkeypatch.setenv("READER_APP_CLIENT_ID", "")
    services_module.install(None)
    page = open_portal(browser, tenants.portal)
    page.click("#add-first")
    page.fill("#n-tenant", FABRIKAM.domain)
    page.click("#tenant-submit")
    page.wait_for_selector("#tenant-dialog-error:visible")
    said = page.inner_text("#tenant-dialog-error")
    assert "READER_APP_CLIENT_ID is not set" in said and "What to do: Deploy with the Bicep" in said
    assert page.is_hidden("#n-tenant-error")


def test_an_admin_removes_a_tenant_and_pauses_and_resumes_the_home_tenant(browser, tenants):
    several(browser, tenants)
    page = open_portal(browser, tenants.portal)
    asked: list[str] = []

    def answer(dialog: Any) -> None:
        asked.append(dialog.message)
        if len(asked) == 1:
            dialog.dismiss()  # the first question is answered No
        else:
            dialog.accept()

    page.on("dialog", answer)
    removing = tenant_row(page, NORTHWIND.id).locator("button.danger")
    assert removing.get_attribute("aria-label") == f"Remove {NORTHWIND.name}"
    removing.click()
    assert asked and "Stop reading Northwind Traders?" in asked[0]
    assert tenant_row(page, NORTHWIND.id).count() == 1  # declined: nothing happened
    removing.click()
    page.wait_for_selector(f'#tenant-table tbody tr[data-tenant="{NORTHWIND.id}"]', state="detached")
    notice = page.inner_text("#notice")
    assert "Northwind Traders is no longer read." in notice and "its tickets stay" in notice
    assert f"Enterprise applications > (filter: Application ID {READER_APP_ID})" in notice  # how its admin removes it
    expect(page.locator("#notice")).to_be_focused()  # after its render

    tenant_row(page, "home").locator("button", has_text="Pause").click()
    page.wait_for_selector('#tenant-table tr[data-tenant="home"] button:text-is("Resume")')
    home = tenant_row(page, "home").inner_text()
    assert "Paused" in home and "Not read while paused" in home
    assert api(tenants, page, "GET", "/api/tenants")["tenants"][0]["state"] == "paused"
    tenant_row(page, "home").locator("button", has_text="Resume").click()
    page.wait_for_selector('#tenant-table tr[data-tenant="home"] button:text-is("Pause")')
    assert api(tenants, page, "GET", "/api/tenants")["tenants"][0]["state"] == "active"
    assert "read again" in page.inner_text("#notice")

    tenant_row(page, FABRIKAM.id).locator("button.danger").click()  # the last other one: today's page again
    page.wait_for_selector("body[data-view=single]")
    assert "Fabrikam is no longer read." in page.inner_text("#notice") and page.is_visible("#actions")


def test_a_reader_sees_the_overview_read_only(browser, tenants):
    setup = several(browser, tenants)
    tenants.entra.simulator.add_tenant("other.example", "Other", OTHER_ID)  # a tenant Entra ID knows, never consented
    api(tenants, setup, "POST", "/api/tenants", {"tenant": OTHER_ID, "name": HOSTILE})
    page = open_portal(browser, tenants.portal, user="reader@contoso.com")
    assert page.get_attribute("body", "data-view") == "overview"
    for control in ("#add-tenant", "#refresh-all", "#manage-head", "#add-first"):
        assert not page.is_visible(control), control
    assert page.locator("#tenant-table button, #tenant-table input").count() == 0
    assert "An admin of the connector has its consent link." in tenant_row(page, NORTHWIND.id).inner_text()
    assert "adminconsent" not in page.content()
    assert len(rows(page)) == 4
    assert tenant_row(page, OTHER_ID).locator("a.title").inner_text() == HOSTILE  # a name is text, never markup
    assert page.evaluate("window.__xss") is None and page.locator("#tenant-table img").count() == 0
    page.click(f'a[href="#tenant={OTHER_ID}"]')
    page.wait_for_selector(f'body[data-view=tenant][data-tenant="{OTHER_ID}"]')
    assert page.inner_text("#tenant-title") == HOSTILE and page.evaluate("window.__xss") is None


@pytest.mark.parametrize("width", [1280, 390])
def test_the_overview_is_accessible_and_fits_at_both_widths(browser, tenants, width):
    several(browser, tenants)
    page = open_portal(browser, tenants.portal, width=width, bypass_csp=True)  # bypass only so axe can be injected
    assert page.get_attribute("body", "data-view") == "overview"
    found = axe_violations(page)
    assert found == [], found
    assert page.evaluate(OVERFLOW) <= 0
    for key in ("home", FABRIKAM.id, NORTHWIND.id):  # each row's numbers on screen, no sideways scrolling
        for cell in ("score", "tickets", "health"):
            box = tenant_row(page, key).locator(f"td.{cell}").bounding_box()
            assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= width, (key, cell, box)
    shoot(page, f"portal-tenants-{width}")  # docs/images/ has these two

    # Keyboard only: the skip link, the add form, a tenant's page.
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.textContent") == "Skip to the tenants"

    # The add form with a problem by its field, in the connector's words.
    page.click("#add-tenant")
    page.fill("#n-tenant", "unknown.example")
    page.click("#tenant-submit")
    page.wait_for_selector("#n-tenant-error:visible")
    found = axe_violations(page)
    assert found == [], found
    shoot(page, f"portal-tenant-add-{width}")
    page.keyboard.press("Escape")
    page.focus(f'#tenant-table a[href="#tenant={FABRIKAM.id}"]')
    page.keyboard.press("Enter")
    page.wait_for_selector(f'body[data-view=tenant][data-tenant="{FABRIKAM.id}"]')
    found = axe_violations(page)
    assert found == [], found
    assert page.evaluate(OVERFLOW) <= 0
    shoot(page, f"portal-tenant-view-{width}")


def test_a_link_that_expired_unused_is_renewed_from_its_row(browser, tenants):
    several(browser, tenants)
    old = next(r for r in api(tenants, open_portal(browser, tenants.portal), "GET", "/api/tenants")["tenants"]
               if r["id"] == NORTHWIND.id)["consentUrl"]  # fmt: skip
    store = services_module.get_services().store
    document, etag = store.get_document("tenants") or ({}, None)
    document["tenants"][NORTHWIND.id]["consent"]["expiresAt"] = "2001-01-01T00:00:00+00:00"  # 14 days went by
    store.put_document("tenants", document, etag)
    page = open_portal(browser, tenants.portal)
    row = tenant_row(page, NORTHWIND.id)
    assert "consent link expired unused" in row.inner_text() and row.locator(".copy").count() == 0
    row.locator("button", has_text="New consent link").click()
    page.wait_for_selector(f'#tenant-table tr[data-tenant="{NORTHWIND.id}"] .copy')
    assert "has a new consent link" in page.inner_text("#notice")
    expect(page.locator(f'#tenant-table tr[data-tenant="{NORTHWIND.id}"] button.copy')).to_be_focused()
    fresh = tenant_row(page, NORTHWIND.id).locator(".link").inner_text()
    assert fresh != old and fresh.startswith(f"{tenants.entra.url}/{NORTHWIND.id}/v2.0/adminconsent")


def test_a_consent_still_being_applied_shows_confirming_with_its_meaning_and_then_active(browser, tenants):
    """Issue 27: Microsoft applies a consent to tokens after a while; the consent page and the tenant's row say so
    ("confirming", what it means, when the next check is), and the next refresh makes it active."""
    setup = open_portal(browser, tenants.portal)
    api(tenants, setup, "POST", "/api/recommendations/refresh")
    link = api(tenants, setup, "POST", "/api/tenants", {"tenant": FABRIKAM.domain, "name": FABRIKAM.name})["consentUrl"]
    tenants.entra.simulator.consent_delay = 3600  # not applied while the test looks
    context = browser.new_context(ignore_https_errors=True)
    admin_of_fabrikam = context.new_page()
    admin_of_fabrikam.goto(link)
    admin_of_fabrikam.click("#accept")
    admin_of_fabrikam.wait_for_selector("h1:text-is('Consent received')")
    said = admin_of_fabrikam.inner_text("main")
    assert "is applying it" in said and "Nothing more to do here" in said and "not added" not in said
    context.close()

    page = open_portal(browser, tenants.portal, bypass_csp=True)  # bypass only so axe can be injected
    assert page.get_attribute("body", "data-view") == "overview"
    row = tenant_row(page, FABRIKAM.id)
    shown = row.inner_text()
    assert "Confirming consent" in shown and "Consent received" in shown and "Microsoft is applying it" in shown
    assert "next check" in shown and "Not read:" not in shown and row.locator(".link").count() == 0
    assert "1 confirming consent" in page.inner_text("#tenants-summary")
    found = axe_violations(page)
    assert found == [], found
    shoot(page, "portal-tenant-confirming-1280")

    tenants.entra.simulator.consent_delay = 0  # Microsoft has applied it
    page.click("#refresh-all")
    page.wait_for_selector(f'#tenant-table tr[data-tenant="{FABRIKAM.id}"] .status:text-is("Active")')
    assert " of " in tenant_row(page, FABRIKAM.id).inner_text()


def test_an_admin_renames_a_tenant_added_by_its_domain(browser, tenants):
    setup = open_portal(browser, tenants.portal)
    api(tenants, setup, "POST", "/api/recommendations/refresh")
    api(tenants, setup, "POST", "/api/tenants", {"tenant": NORTHWIND.domain})
    page = open_portal(browser, tenants.portal)
    row = tenant_row(page, NORTHWIND.id)
    assert row.locator("a.title").inner_text() == NORTHWIND.domain  # named by its domain until renamed
    row.locator("button", has_text="Rename").click()
    assert page.is_visible("#rename-dialog") and page.input_value("#rn-name") == NORTHWIND.domain
    page.fill("#rn-name", "Northwind\u202e")
    page.click("#rename-submit")
    page.wait_for_selector("#rn-name-error:visible")
    assert page.inner_text("#rn-name-error") == "The name must be one line of 1-100 characters."
    page.fill("#rn-name", NORTHWIND.name)
    page.click("#rename-submit")
    page.wait_for_selector(f'#tenant-table tr[data-tenant="{NORTHWIND.id}"] a.title:text-is("{NORTHWIND.name}")')
    assert f"is now named {NORTHWIND.name}" in page.inner_text("#notice")
    # the focus moves once the connections are read again too, after the table is drawn: wait for it
    expect(page.locator(f'button[aria-label="Rename {NORTHWIND.name}"]')).to_be_focused()


def test_every_id_on_the_page_is_unique():
    """Two elements with one id break labels and every lookup by id (the rename dialog once reused the Routes
    view's `r-name`)."""
    import re
    from collections import Counter

    from tests.conftest import ROOT

    ids = Counter(re.findall(r'\bid="([^"]+)"', (ROOT / "portal" / "static" / "index.html").read_text()))
    assert [i for i, n in ids.items() if n > 1] == []
