"""The page's ServiceNow connections card (docs/design.md#connections-and-routes) in Chromium: the local host with App
Service Authentication emulated and two simulated ServiceNow instances on loopback (the connector calls each over real
HTTP at its own URL). An admin adds the second instance from the page, connects it through its consent page, sees
both, sees each ticket's connection, is refused removing one in use with the reason; a reader sees it read-only.
Screenshots go to tests/artifacts/."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from create_ticket.creation import creator_for
from create_ticket.request import parse_ticket_request
from create_ticket.routing.document import load
from create_ticket.routing.saving import save as save_routes
from create_ticket.routing.saving import version_of
from dev.servicenow import ServiceNowSimulator, serve
from shared import services as services_module
from shared.auth import Caller
from tests.browser.test_portal import ARTIFACTS, Portal, axe_violations, browser, connect, open_portal, portal, shoot

__all__ = ["browser", "portal"]  # fixtures, used by name

SECOND_CLIENT = "5f1e2d3c4b5a69788796a5b4c3d2e1f0"
SECOND_SECRET = "second-client-secret-7a6b5c4d"
OVERFLOW = "document.documentElement.scrollWidth - document.documentElement.clientWidth"
DASH = "\N{EN DASH}"  # between a state and its instance


@pytest.fixture
def second(portal: Portal) -> Iterator[ServiceNowSimulator]:
    """A second instance, served on its own loopback port, with an OAuth client registered for the connector."""
    sim = ServiceNowSimulator()
    sim._number = 50000  # its own numbers (INC0050001), as two real instances' would differ
    server, _ = serve(sim)
    sim.register_client(SECOND_CLIENT, SECOND_SECRET, [f"{portal.url}/api/oauth/callback"])
    sim.portal_port = int(portal.url.rsplit(":", 1)[1])
    yield sim
    server.shutdown()
    server.server_close()


def entry(page: Any, connection: str) -> Any:
    return page.locator(f'#connection-list li[data-connection="{connection}"]')


def add_by_api(page: Any, portal: Portal, second: ServiceNowSimulator, **extra: Any) -> None:
    body = {"id": "fabrikam", "instance": second.instance_url, "clientId": SECOND_CLIENT,
            "clientSecret": SECOND_SECRET, **extra}  # fmt: skip
    added = page.request.post(f"{portal.url}/api/connections", data=body)
    assert added.status == 201, added.text()


def allow(page: Any) -> None:
    """The instance's consent page: Allow; the callback's page leads back to the portal."""
    page.wait_for_selector("#allow")
    page.click("#allow")
    page.wait_for_selector("text=Connected to ServiceNow")
    page.click("#back")
    page.wait_for_selector("body[data-ready=true]")


def ticket_on(connection: str, control: str, **fields: Any) -> dict[str, Any]:
    """A ticket created on a connection, as routes place one: a rule for its control names the connection (the rule
    is taken away again after, so nothing but the ticket ties the connection)."""
    services = services_module.get_services()
    route = [{"match": {"controls": [control]}, "set": {"connection": connection}}]
    save_routes(services, {"routes": route}, f'"{version_of(load(services.store).etag)}"', "test")
    body = {"name": f"Fix {control}", "recommendation": {"id": control, "source": "user", "category": "Identity"},
            **fields}  # fmt: skip
    ticket, created = creator_for(services).create(parse_ticket_request(body, initiating_user=None),
                                                   caller=Caller("test"), idempotency_key=None)  # fmt: skip
    assert created and (ticket.connection or "default") == connection
    save_routes(services, {"routes": []}, f'"{version_of(load(services.store).etag)}"', "test")
    return ticket.to_json(None)


def two_connected(browser: Any, portal: Portal, second: ServiceNowSimulator) -> Any:
    """The default connected, fabrikam added and connected, a ticket on each (the default's overdue). Returns the
    admin's page used for the setup."""
    setup = open_portal(browser, portal)
    connect(setup, portal)
    add_by_api(setup, portal, second)
    setup.goto(f"{portal.url}/api/connect?connection=fabrikam")
    setup.click("#allow")
    setup.wait_for_selector("#back")
    ticket_on("default", "AdminMFAV2", dueDate="2001-01-31")
    ticket_on("fabrikam", "BlockLegacyAuthentication")
    assert setup.request.post(f"{portal.url}/admin/functions/status_sync").status == 202
    return setup


def test_one_connection_looks_as_before_with_add_for_admins(browser, portal):
    page = open_portal(browser, portal)
    assert page.inner_text("#connection-title") == "ServiceNow connection"
    assert not page.is_visible("#default-name") and page.locator("#connection-list > li").count() == 1
    assert page.is_visible("#add-connection") and page.is_visible("#connect")
    assert page.inner_text("#connect") == "Connect to ServiceNow"
    assert page.get_attribute("#connect", "aria-label") is None  # alone, its name is today's
    assert page.inner_text("#connection-about") == "Table incident"  # its sync is on the tickets card, as before
    assert not page.is_visible("#where-head") and not page.is_visible("#overdue")


def test_an_admin_adds_an_instance_connects_it_and_sees_each_tickets_connection(browser, portal, second):
    page = open_portal(browser, portal)
    connect(page, portal)
    page.goto(f"{portal.url}/api/portal")
    page.wait_for_selector("body[data-ready=true]")

    # The form: the Redirect URL to register there, and the connector's own words for what is wrong.
    page.click("#add-connection")
    assert page.is_visible("#connection-dialog")
    assert page.evaluate("document.activeElement.id") == "c-id"
    assert page.input_value("#c-redirect") == f"{portal.url}/api/oauth/callback"
    assert page.get_attribute("#c-clientSecret", "type") == "password"
    page.fill("#c-id", "Bad_Id")
    page.fill("#c-instance", "ftp://fabrikam.example")
    page.fill("#c-clientId", SECOND_CLIENT)
    page.click("#connection-submit")
    page.wait_for_selector("#c-id-error:not([hidden])")
    assert page.inner_text("#c-id-error").startswith("The id must be 1-32 of a-z, 0-9 and '-'")
    instance = page.inner_text("#c-instance-error")
    assert instance == "The instance is not valid: the scheme 'ftp' is not allowed; use https://."
    secret = page.inner_text("#c-clientSecret-error")
    assert secret.startswith("The client secret must be the OAuth client's Client Secret")
    assert page.get_attribute("#c-id", "aria-invalid") == "true" and not page.is_visible("#c-clientId-error")
    assert page.evaluate("document.activeElement.id") == "c-id"
    shoot(page, "portal-connection-errors-1280")
    page.fill("#c-id", "fabrikam")
    page.fill("#c-instance", second.instance_url)
    page.fill("#c-clientSecret", SECOND_SECRET)
    page.click("#connection-submit")

    # Added: where to register the Redirect URL, and its Connect; the secret is gone from the page.
    page.wait_for_selector("#connection-added:not([hidden])")
    assert page.inner_text("#connection-added-title") == "fabrikam is added"
    assert second.instance_url in page.inner_text("#connection-added-what")
    assert page.input_value("#c-added-redirect") == f"{portal.url}/api/oauth/callback"
    assert page.evaluate("document.activeElement.id") == "connection-added-connect"
    assert page.input_value("#c-clientSecret") == "" and SECOND_SECRET not in page.content()
    assert "fabrikam" in page.inner_text("#notice")
    page.keyboard.press("Escape")  # closed: focus on the new entry's Connect
    page.locator('#connection-list a[aria-label="Connect fabrikam"]:focus').wait_for()
    assert page.inner_text("#connection-title") == "ServiceNow connections"
    assert "Not connected to ServiceNow" in entry(page, "fabrikam").inner_text()
    assert "Open /api/connect?connection=fabrikam" in entry(page, "fabrikam").inner_text()  # its own check, its fix
    assert "servicenow connection" not in entry(page, "default").inner_text()  # not said twice on the default's
    assert page.inner_text("#connection-state").startswith(f"Connected {DASH} ")  # the default stays connected

    # Connect it through its own consent page.
    entry(page, "fabrikam").locator("a", has_text="Connect").click()
    page.wait_for_url(f"{second.instance_url}/oauth_auth.do?**")  # its own instance's consent page
    allow(page)
    for connection in ("default", "fabrikam"):
        shown = entry(page, connection)
        assert shown.locator(".state").inner_text().startswith("Connected"), connection
        assert shown.locator("a", has_text="Reconnect").is_visible(), connection
        assert shown.locator("button", has_text="Disconnect").is_visible(), connection
    state = entry(page, "fabrikam").locator(".state").inner_text()
    assert state == f"Connected {DASH} {second.instance_url} as m365.integration"
    assert entry(page, "fabrikam").locator("button", has_text="Remove").is_visible()
    assert entry(page, "default").locator("button", has_text="Remove").count() == 0  # the settings' one stays

    # A ticket on each: each row says where its record lives; the overdue one is counted and can be listed alone.
    default_ticket = ticket_on("default", "AdminMFAV2", dueDate="2001-01-31")
    fabrikam_ticket = ticket_on("fabrikam", "BlockLegacyAuthentication")
    assert [r["number"] for r in second.records()] == [fabrikam_ticket["number"]]
    assert page.request.post(f"{portal.url}/admin/functions/status_sync").status == 202
    page.reload()
    page.wait_for_selector("body[data-ready=true]")
    assert page.is_visible("#where-head")
    rows = {r.locator("td.num").inner_text(): r.locator("td.where").inner_text()
            for r in page.locator("#tickets tbody tr").all()}  # fmt: skip
    assert rows == {default_ticket["number"]: "default", fabrikam_ticket["number"]: "fabrikam"}
    assert "each instance's own is on the connections card" in page.inner_text("#last-sync")
    assert "Status sync" in entry(page, "fabrikam").locator(".about").inner_text()
    overdue = page.locator("#overdue")
    assert overdue.inner_text().startswith("1 overdue") and overdue.get_attribute("aria-pressed") == "false"
    overdue.click()
    page.wait_for_selector("#overdue[aria-pressed=true]")
    assert [r.locator("td.num").inner_text() for r in page.locator("#tickets tbody tr").all()] == [
        default_ticket["number"]
    ]
    shoot(page, "portal-connections-admin-1280")
    overdue.click()
    page.wait_for_selector("#overdue[aria-pressed=false]")
    assert page.locator("#tickets tbody tr").count() == 2


def test_a_connection_in_use_two_ways_is_refused_once_with_every_reason_and_a_link_to_routes(browser, portal, second):
    """Issue 29, item 6: a rule and an open ticket: one refusal naming the rule, the ticket by number, and the way to
    the Routes view, axe-clean at 1280 and 390 pixels."""
    setup = two_connected(browser, portal, second)
    current = setup.request.get(f"{portal.url}/api/routes")
    rule = {"name": "Fabrikam's desk", "match": {"categories": ["Identity"]}, "set": {"connection": "fabrikam"}}
    routed = setup.request.put(f"{portal.url}/api/routes", data={"routes": [rule]},
                               headers={"If-Match": current.headers["etag"]})  # fmt: skip
    assert routed.ok, routed.text()
    page = open_portal(browser, portal, bypass_csp=True)
    asked: list[str] = []

    def confirm(dialog: Any) -> None:
        asked.append(dialog.message)
        dialog.accept()

    page.on("dialog", confirm)
    entry(page, "fabrikam").locator("button", has_text="Remove").click()
    page.wait_for_selector("#connections-error:not([hidden])")
    refusal = page.inner_text("#connections-error")
    (number,) = [r["number"] for r in second.records()]
    assert len(asked) == 1 and refusal.startswith("fabrikam is not removed."), refusal
    assert "'Fabrikam's desk'" in refusal and f"1 open ticket(s) live on it ({number})" in refusal, refusal
    assert "What to do: Change or remove those rules on the Routes view" in refusal
    for width in (1280, 390):
        page.set_viewport_size({"width": width, "height": 900})
        assert page.evaluate("document.documentElement.scrollWidth <= document.documentElement.clientWidth")
        found = axe_violations(page)
        assert found == [], (width, found)
        shoot(page, f"portal-connection-in-use-{width}")
    page.set_viewport_size({"width": 1280, "height": 900})
    page.click("#connections-routes-link")
    page.wait_for_selector("body[data-view=routes]")
    assert "Fabrikam's desk" in page.inner_text("#routes")


def test_removing_an_instance_in_use_is_refused_with_the_reason_then_done(browser, portal, second):
    two_connected(browser, portal, second)
    page = open_portal(browser, portal)
    page.on("dialog", lambda dialog: dialog.accept())  # the confirmation
    entry(page, "fabrikam").locator("button", has_text="Remove").click()
    page.wait_for_selector("#connections-error:not([hidden])")
    refusal = page.inner_text("#connections-error")
    assert refusal.startswith("fabrikam is not removed.")
    (number,) = [r["number"] for r in second.records()]
    assert f"1 open ticket(s) live on it ({number})" in refusal  # by number (issue 29, item 6)
    assert "What to do: Resolve or close those tickets in ServiceNow" in refusal
    assert not page.is_visible("#connections-routes-link")  # no rule to change
    assert page.evaluate("document.activeElement.id") == "connections-error"
    assert entry(page, "fabrikam").count() == 1
    shoot(page, "portal-connection-refused-1280")

    # Disconnect it: its Connect again, the default's connection untouched.
    entry(page, "fabrikam").locator("button", has_text="Disconnect").click()
    page.wait_for_selector('#connection-list li[data-connection="fabrikam"] .state:text-matches("Not connected")')
    assert "fabrikam is disconnected" in page.inner_text("#notice")
    page.locator('#connection-list a[aria-label="Connect fabrikam"]:focus').wait_for()
    assert page.inner_text("#connection-state").startswith("Connected")

    # Resolved in ServiceNow and synced: nothing lives on it any more, so it goes.
    page.goto(f"{portal.url}/api/connect?connection=fabrikam")
    allow(page)
    (record,) = second.records()
    second.update("incident", record["sys_id"], state="7")
    assert page.request.post(f"{portal.url}/admin/functions/status_sync").status == 202
    page.reload()
    page.wait_for_selector("body[data-ready=true]")
    entry(page, "fabrikam").locator("button", has_text="Remove").click()
    page.wait_for_selector("#notice:has-text('fabrikam is removed.')")
    removed = page.inner_text("#notice")
    assert "its tokens were revoked at ServiceNow" in removed and "every version of its secrets is gone" in removed
    entry(page, "fabrikam").wait_for(state="detached")
    assert page.inner_text("#connection-title") == "ServiceNow connection" and not page.is_visible("#connections-error")
    # Its closed ticket stays, and still says where it lives, though one connection is left.
    page.reload()
    page.wait_for_selector("body[data-ready=true]")
    assert page.locator("#connection-list > li").count() == 1
    assert [c.inner_text() for c in page.locator("#tickets td.where").all()] == ["fabrikam", "default"]


def test_a_reader_sees_every_connection_read_only(browser, portal, second):
    setup = two_connected(browser, portal, second)
    setup.request.post(f"{portal.url}/api/disconnect?connection=fabrikam")  # so its fix names /api/connect
    page = open_portal(browser, portal, user="reader@contoso.com")
    assert page.inner_text("#connection-title") == "ServiceNow connections"
    assert "Not connected" in entry(page, "fabrikam").inner_text()
    assert "Only an admin of the connector (app role Connector.Admin)" in entry(page, "fabrikam").inner_text()
    assert "/api/connect" not in page.inner_text("#connection")
    shown = page.locator("#connection a:visible, #connection button:visible")
    assert shown.all_inner_texts() == ["Routes: none yet", "Templates", "Alerts"]  # to read; none acts
    assert page.is_visible("#where-head") and page.locator("#tickets td.where").count() == 2
    assert SECOND_SECRET not in page.content()
    shoot(page, "portal-connections-reader-1280")
    forced = page.evaluate("""async () => {
        const headers = {'Content-Type': 'application/json', 'X-Requested-With': 'XMLHttpRequest'};
        const add = await fetch('/api/connections', {method: 'POST', headers, body: JSON.stringify({id: 'x',
            instance: 'x', clientId: 'x', clientSecret: 'x'})});
        const remove = await fetch('/api/connections/fabrikam', {method: 'DELETE', headers});
        return [add.status, remove.status];
    }""")
    assert forced == [403, 403]


@pytest.mark.parametrize("width", [1280, 390])
def test_the_connections_card_is_accessible_and_fits_at_both_widths(browser, portal, second, width):
    setup = two_connected(browser, portal, second)
    assert setup.request.post(f"{portal.url}/api/recommendations/refresh").status == 200
    add_by_api(setup, portal, second, id="northwind", table="sn_si_incident")  # added, not connected
    page = open_portal(browser, portal, width=width, bypass_csp=True)  # only so axe can be injected
    assert page.locator("#connection-list > li").count() == 3
    found = axe_violations(page)
    assert found == [], found
    assert page.evaluate(OVERFLOW) <= 0
    for selector in ("#connection-list > li", "#tickets tbody tr"):
        for box in [b.bounding_box() for b in page.locator(selector).all()]:
            assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= width, (selector, box)
    shoot(page, f"portal-connections-{width}")  # docs/images/portal-connections-{width}.png is this view
    page.locator("#servicenow").screenshot(path=str(ARTIFACTS / f"portal-connections-tickets-{width}.png"))

    # The form, with its errors, and its answer once added: keyboard-usable and clean too.
    page.click("#add-connection")
    page.click("#connection-submit")
    page.wait_for_selector("#c-id-error:not([hidden])")
    found = axe_violations(page)
    assert found == [], found
    shoot(page, f"portal-connection-dialog-{width}")
    page.fill("#c-id", "contoso-eu")
    page.fill("#c-instance", second.instance_url)
    page.fill("#c-clientId", SECOND_CLIENT)
    page.fill("#c-clientSecret", SECOND_SECRET)
    page.keyboard.press("Enter")
    page.wait_for_selector("#connection-added:not([hidden])")
    assert page.evaluate(OVERFLOW) <= 0
    found = axe_violations(page)
    assert found == [], found
    shoot(page, f"portal-connection-added-{width}")
    page.click("#connection-done")
    page.locator('#connection-list a[aria-label="Connect contoso-eu"]:focus').wait_for()  # the dialog's close event
