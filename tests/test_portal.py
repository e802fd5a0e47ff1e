"""The security center page in a real browser: Playwright driving Debian's chromium against the local host
(App Service Authentication emulated) and both simulators on loopback. Screenshots go to tests/artifacts/."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from dev.easyauth import LocalUser
from dev.graph import GraphSimulator, ManagedIdentity
from dev.host import LocalHost
from dev.simulator import ServiceNowSimulator, serve
from shared import services as services_module
from tests.conftest import CLIENT_ID, CLIENT_SECRET, ROOT, free_port, require_service

CHROMIUM = Path("/usr/bin/chromium")
AXE = ROOT / "tools" / "node_modules" / "axe-core" / "axe.min.js"
ARTIFACTS = ROOT / "tests" / "artifacts"
HOSTILE = '<img src=x onerror="window.__xss = 1">Designate more than one global admin'
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic"]  # fmt: skip


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not CHROMIUM.exists():
        require_service("chromium", "install Debian's chromium (make test does, as root)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        require_service("playwright", "pip install -r requirements-dev.txt")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        yield launched
        launched.close()


@dataclass
class Portal:
    url: str
    servicenow: ServiceNowSimulator
    graph: GraphSimulator


@pytest.fixture
def portal(
    indexed_functions, identity: ManagedIdentity, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Portal]:
    servicenow = ServiceNowSimulator()
    sn_server, instance = serve(servicenow)
    graph = GraphSimulator(identity)
    graph.profiles["OneAdmin"]["title"] = HOSTILE  # text from Graph is input: it must show as text
    graph_server, graph_url = serve(graph)
    port = free_port()
    redirect = f"http://localhost:{port}/api/oauth/callback"
    servicenow.register_client(CLIENT_ID, CLIENT_SECRET, [redirect])
    for name, value in {
        "SERVICENOW_INSTANCE": instance, "SERVICENOW_CLIENT_ID": CLIENT_ID, "SERVICENOW_CLIENT_SECRET": CLIENT_SECRET,
        "OAUTH_REDIRECT_URI": redirect, "LOCAL_DATA_DIR": str(tmp_path), "TICKET_STORE": "sqlite",
        "STATUS_SYNC_SCHEDULE": "0 */5 * * * *", "SECURE_SCORE_SCHEDULE": "0 0 */4 * * *", "GRAPH_URL": graph_url,
        "WEBSITE_AUTH_ENABLED": "True",
    }.items():  # fmt: skip
        monkeypatch.setenv(name, value)
    services_module.install(None)
    admin = LocalUser.parse("admin@contoso.com", "Connector.Admin Tickets.Create")
    reader = LocalUser.parse("reader@contoso.com", "")
    host = LocalHost(indexed_functions.values(), "127.0.0.1", port, user=admin, other_users=(reader,))
    host.start()
    yield Portal(f"http://localhost:{port}", servicenow, graph)
    host.stop()
    for server in (sn_server, graph_server):
        server.shutdown()
        server.server_close()
    services_module.install(None)


def open_portal(browser: Any, portal: Portal, *, user: str | None = None, width: int = 1280, **context: Any) -> Any:
    page = browser.new_context(viewport={"width": width, "height": 900}, **context).new_page()
    hint = f"login_hint={user}&" if user else ""
    page.goto(f"{portal.url}/.auth/login/aad?{hint}post_login_redirect_uri=/api/portal")
    page.wait_for_selector("body[data-ready=true]")
    return page


def shoot(page: Any, name: str) -> Path:
    """The view as a person sees it (the viewport), and the whole page (`-full`), as test artifacts."""
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}-full.png"), full_page=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path))
    return path


def row(page: Any, control_id: str) -> Any:
    return page.locator(f'#recommendations tbody tr:has(input[data-id="{control_id}"])')


def test_an_admin_connects_creates_tickets_and_sees_their_status_come_back(browser, portal):
    page = open_portal(browser, portal)
    assert "Not connected" in page.inner_text("#connection-state")
    assert page.is_visible("#connect") and not page.is_visible("#disconnect")
    assert page.inner_text("#who").startswith("Signed in as admin@contoso.com")

    # Connect through the simulator's consent page, as an admin does.
    page.click("#connect")
    page.wait_for_selector("#allow")
    page.click("#allow")
    page.wait_for_selector("text=Connected to ServiceNow")
    page.goto(f"{portal.url}/api/portal")
    page.wait_for_selector("body[data-ready=true]")
    assert page.inner_text("#connection-state").startswith("Connected")

    # Secure Score, read on demand by the admin.
    page.click("#refresh")
    page.locator("#recommendations tbody tr").nth(60).wait_for()  # no eval: the page's CSP forbids it
    assert page.inner_text("#score-value").replace(".", "").isdigit()
    assert page.locator("#trend polyline").count() == 1

    # A hostile title from Graph shows as text and runs nothing.
    page.select_option("#f-status", "all")
    assert HOSTILE in row(page, "OneAdmin").inner_text()
    assert page.evaluate("window.__xss") is None
    assert page.locator("#recommendations img").count() == 0

    # One ticket, through the dialog (priority, due date, editable name).
    page.check('input[data-id="AdminMFAV2"]')
    page.click("#create")
    assert page.is_visible("#dialog") and page.input_value("#t-name").startswith("Ensure multifactor")
    page.fill("#t-name", "MFA for admins, now")
    page.select_option("#t-priority", "high")
    page.fill("#t-due", "2026-12-31")
    page.click("#submit")
    page.wait_for_selector("#dialog", state="hidden")
    page.locator("#tickets tbody tr").first.wait_for()
    first = row(page, "AdminMFAV2")
    assert "INC" in first.inner_text()
    (record,) = portal.servicenow.records()
    assert record["short_description"] == "MFA for admins, now" and record["urgency"] == "2"
    assert record["due_date"] == "2026-12-31 23:59:59"

    # Two more, from a multi-select.
    page.check('input[data-id="MFARegistrationV2"]')
    page.check('input[data-id="BlockLegacyAuthentication"]')
    assert page.inner_text("#create") == "Create 2 tickets"
    page.click("#create")
    assert not page.is_visible("#single-fields")
    page.click("#submit")
    page.wait_for_selector("#dialog", state="hidden")
    page.locator("#tickets tbody tr").nth(2).wait_for()
    assert "3New" in page.inner_text("#counts").replace(" ", "").replace("\n", "")
    shoot(page, "portal-admin-1280")

    # An agent changes the state in ServiceNow; the status sync is fired by hand; the page shows it.
    link = first.locator("a").get_attribute("href")
    agent = page.context.new_page()
    agent.goto(link)
    agent.select_option("#state", "2")
    agent.click("#update")
    agent.wait_for_load_state()
    assert page.request.post(f"{portal.url}/admin/functions/status_sync").status == 202
    page.reload()
    page.wait_for_selector("body[data-ready=true]")
    assert "In progress" in row(page, "AdminMFAV2").inner_text()
    assert "In progress" in page.inner_text("#counts")


def test_a_reader_sees_no_create_or_admin_controls_and_is_refused_if_forced(browser, portal):
    page = open_portal(browser, portal, user="reader@contoso.com")
    assert "read only" in page.inner_text("#who")
    for control in ("#create", "#connect", "#disconnect", "#refresh"):
        assert not page.is_visible(control), control
    assert page.locator('#recommendations input[type="checkbox"]').count() == 0
    forced = page.evaluate("""async () => {
        const r = await fetch('/api/tickets', {method: 'POST', headers: {'Content-Type': 'application/json',
            'X-Requested-With': 'XMLHttpRequest'}, body: JSON.stringify({recommendation: {id: 'AdminMFAV2'}})});
        return [r.status, (await r.json()).code];
    }""")
    assert forced == [403, "forbidden"]
    disconnect = page.evaluate("""async () => (await fetch('/api/disconnect', {method: 'POST',
        headers: {'X-Requested-With': 'XMLHttpRequest'}})).status""")
    assert disconnect == 403
    assert portal.servicenow.records() == []


def test_errors_from_the_api_show_their_detail_and_remediation(browser, portal):
    page = open_portal(browser, portal)
    text = page.inner_text("#connection")
    assert "Not connected" in text and "What to do: Open /api/connect" in text  # the failing check's remediation


@pytest.mark.parametrize("width", [1280, 390])
def test_no_serious_accessibility_violation_and_readable_at_both_widths(browser, portal, width):
    if not AXE.exists():
        require_service("axe-core", "npm ci --prefix tools")
    setup = open_portal(browser, portal)
    assert setup.request.post(f"{portal.url}/api/recommendations/refresh").status == 200
    page = open_portal(browser, portal, width=width, bypass_csp=True)  # only so axe can be injected
    page.add_script_tag(path=str(AXE))
    results = page.evaluate("async () => await axe.run(document, {resultTypes: ['violations']})")
    found = [(v["id"], v["impact"], [n["target"] for n in v["nodes"]]) for v in results["violations"]]
    assert found == [], found  # none of any impact (the bar is none serious or critical)
    # Readable: nothing wider than the viewport except inside the scrollable table regions.
    overflow = page.evaluate("document.documentElement.scrollWidth - document.documentElement.clientWidth")
    assert overflow <= 0, overflow
    shoot(page, f"portal-{width}")
    page.check('input[data-id="AdminMFAV2"]')
    page.click("#create")
    page.keyboard.press("Tab")  # keyboard only: focus stays in the dialog, Escape closes it
    assert page.evaluate("document.activeElement.closest('dialog') !== null")
    shoot(page, f"portal-dialog-{width}")
    page.keyboard.press("Escape")
    assert not page.is_visible("#dialog")
    assert page.evaluate("document.activeElement.id") == "create"


def test_the_page_is_served_under_a_strict_content_security_policy(browser, portal):
    page = open_portal(browser, portal)
    response = page.request.get(f"{portal.url}/api/portal")
    policy = response.headers["content-security-policy"]
    assert "script-src 'self'" in policy and "unsafe-inline" not in policy and "frame-ancestors 'none'" in policy
    assert page.request.get(f"{portal.url}/api/portal/static/../../function_app.py").status == 404
    assert (
        page.request.get(f"{portal.url}/api/portal/static/app.js").headers["content-type"].startswith("text/javascript")
    )
