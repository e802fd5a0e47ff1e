"""A tenant's review page (docs/portal.md#a-tenants-review-the-page-for-a-quarterly-review) in Chromium against the
local host and the simulators: its numbers are GET /api/tenants/{id}/review's, it is axe-clean and usable by keyboard
at 1280 and 390 pixels, a tenant's row leads to it, the period is chosen (and refused in the connector's words), and
it prints to one A4 and one Letter page (Chromium's own print to PDF, its pages counted, the PDF and a picture of it
kept in tests/artifacts/)."""

from __future__ import annotations

import re
import time
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import expect

from dev.entra import FABRIKAM
from tests.browser.test_portal import (
    ARTIFACTS,
    IMAGES,
    LONG_TITLE,
    Portal,
    axe_violations,
    browser,
    connect,
    open_portal,
    portal,
    shoot,
)
from tests.browser.test_portal_tenants import api, several, tenant_row, tenants
from tests.conftest import PICTURES, docs_pictures

__all__ = ["browser", "portal", "tenants"]  # fixtures, used by name

NONE = "\N{EN DASH}"
STATUS = {"new": "New", "in_progress": "In progress", "on_hold": "On hold", "resolved": "Resolved", "closed": "Closed"}
OVERFLOW = "document.documentElement.scrollWidth - document.documentElement.clientWidth"
_PAGE = re.compile(rb"/Type\s*/Page(?![A-Za-z])")  # a page object (not the /Pages tree) of a PDF
PAPER = {"A4": (794, 1123), "Letter": (816, 1056)}  # CSS pixels at 96 per inch, for the picture of a printed page


def number(value: Any) -> str:
    """A number as the page writes it: at most two decimals, no trailing zeros; none as a dash."""
    return NONE if value is None else f"{round(value, 2):g}"


def signed(value: Any) -> str:
    return f"+{number(value)}" if isinstance(value, int | float) and value > 0 else number(value)


def percent(value: Any) -> str:
    return NONE if value is None else f"{value:g}%"


def cells(page: Any, table: str) -> list[list[str]]:
    """A table's body, row by row, each cell's text (th and td; its parts a line each), shown or not."""
    found: list[list[str]] = page.locator(f"#{table} tbody tr").evaluate_all(
        "(rows) => rows.map((r) => [...r.cells].map((c) => [...c.childNodes].map((n) => n.textContent.trim())"
        '.filter(Boolean).join("\\n")))'
    )
    return found


def ready(page: Any) -> None:
    page.wait_for_selector("body[data-view=review] #review-body:not([hidden]):not([aria-busy])")


def reviewed(portal: Portal, browser: Any) -> Any:
    """Connected, Secure Score read, three tickets of the home tenant: one resolved by an agent in ServiceNow (and
    brought back by the status sync), one overdue. Answers the setup's page (its requests are the admin's)."""
    setup = open_portal(browser, portal)
    connect(setup, portal)
    assert setup.request.post(f"{portal.url}/api/recommendations/refresh").ok
    made = (("AdminMFAV2", None), ("MFARegistrationV2", "2001-01-31"), ("BlockLegacyAuthentication", None))
    for control, due in made:
        body: dict[str, Any] = {"recommendation": {"id": control}, **({"dueDate": due} if due else {})}
        assert setup.request.post(f"{portal.url}/api/tickets", data=body).ok, control
    made = setup.request.get(f"{portal.url}/api/tickets").json()["tickets"]
    link = next(t["url"] for t in made if t["recommendation"]["id"] == "AdminMFAV2")
    agent = setup.context.new_page()
    agent.goto(link)
    agent.select_option("#state", "6")  # Resolved
    agent.click("#update")
    agent.wait_for_load_state()
    assert setup.request.post(f"{portal.url}/admin/functions/status_sync").status == 202
    return setup


def assert_numbers_are_the_api_s(page: Any, answer: dict[str, Any]) -> None:
    """Every number of the JSON, in its table on the page."""
    assert page.inner_text("#review-title") == f"Review: {answer['tenant']['name']}"
    assert page.inner_text("#review-period-shown") == f"{answer['from']} to {answer['to']}"
    score = answer["score"]
    assert score, "the simulator's history fills the period"
    assert cells(page, "rv-score-table") == [
        [s["date"], number(s["current"]), number(s["max"]), percent(s["percent"])] for s in score
    ]
    last = score[-1]
    compared = cells(page, "rv-compare")
    of = f"{number(last['current'])} of {number(last['max'])}"
    assert compared[0] == [f"This tenant on {last['date']}", percent(last["percent"]), of]
    # Secure Score's averages are percents (docs/api.md#a-tenants-review): beside the tenant's percent, not its points
    assert [row[1:] for row in compared[1:]] == [[f"{number(c['averageScore'])}%", NONE] for c in answer["comparative"]]
    assert len(answer["comparative"]) >= 2  # the simulator's days carry Secure Score's averages
    changes = [(item, "Regressed") for item in answer["actions"]["regressed"]] + sorted(
        ((item, "Completed") for item in answer["actions"]["completed"]), key=lambda change: -change[0]["points"]
    )  # the regressions first, then the completed by points (a stable sort: by date within the same points)
    shown = [row for row in cells(page, "rv-actions") if len(row) == 4]  # without the printed page's "and N more"
    assert shown == [[item["title"], what, signed(item["points"]), item["date"]] for item, what in changes]
    tickets = answer["tickets"]
    assert cells(page, "rv-tickets") == [
        ["Opened", str(tickets["opened"])], ["Resolved", str(tickets["resolved"])],
        ["Overdue", str(tickets["overdue"])], ["Median days to resolve", number(tickets["medianDaysToResolve"])],
    ]  # fmt: skip
    top = answer["topOpen"]
    assert top, "open actions are left in the simulator"
    rows = cells(page, "rv-top")
    assert [r[:4] for r in rows] == [
        [str(i + 1), item["title"], number(item["pointsLeft"]), number(item["maxScore"])] for i, item in enumerate(top)
    ]
    for row, item in zip(rows, top, strict=True):
        assert row[4] == (f"{item['ticket']['number']}\n{STATUS[item['ticket']['status']]}" if item["ticket"] else NONE)
    # The charts say the same in words (role="img" with a title and a description).
    said = f"to {percent(last['percent'])} on {last['date']} ({number(last['current'])} of {number(last['max'])} points"
    assert f"{said})" in page.text_content("#rv-score-chart-d")
    assert f"{tickets['opened']} ticket" in page.text_content("#rv-tickets-chart-d")
    assert page.locator("#rv-top-chart rect.bar").count() == len(top)


@pytest.mark.parametrize("width", [1280, 390])
def test_the_review_shows_the_api_s_numbers_axe_clean_and_by_keyboard(browser, portal, width):
    setup = reviewed(portal, browser)
    answer = setup.request.get(f"{portal.url}/api/tenants/home/review").json()  # the last 90 days, as the page
    assert answer["tickets"]["opened"] == 3 and answer["tickets"]["resolved"] == 1 and answer["tickets"]["overdue"] == 1
    assert answer["actions"]["completed"] and answer["actions"]["regressed"]  # the simulator's quarter has both
    page = open_portal(browser, portal, width=width, bypass_csp=True)  # only so axe can be injected
    page.click("#review-link")  # the one-tenant page: its Secure Score card leads to the review
    ready(page)
    assert page.url.endswith("#review/home") and page.evaluate("document.activeElement.id") == "review-title"
    assert page.title().startswith(f"Review of {answer['tenant']['name']} \N{EN DASH} Security center")
    assert not page.is_visible("#actions") and not page.is_visible("#score") and not page.is_visible("#connection")
    assert_numbers_are_the_api_s(page, answer)
    assert page.evaluate("window.__xss") is None and page.locator("#review img").count() == 0  # Graph's titles: text
    assert page.locator("#rv-score-table").is_hidden()  # the table by day is behind its summary
    for chart in ("Secure Score over the period", "ServiceNow tickets in the period",
                  "Improvement actions completed and regressed", "Top open improvement actions by points"):  # fmt: skip
        assert page.get_by_role("img", name=chart, exact=True).count() == 1, chart  # each chart, named for a reader
    for caption in ("Tickets opened and resolved in the period, overdue at its end",
                    "Each improvement action completed or regressed in the period"):  # fmt: skip
        assert page.get_by_role("table", name=caption).is_visible()
    found = axe_violations(page)
    assert found == [], found
    assert page.evaluate(OVERFLOW) <= 0
    shoot(page, f"portal-review-{width}")
    chart = page.locator("#rv-score-chart")
    drawn = int(chart.get_attribute("viewBox").split()[2])
    assert (drawn == 640) if width == 1280 else (320 <= drawn < 360), drawn  # as wide as shown (at most 640 units)
    page.set_viewport_size({"width": 1670 - width, "height": 900})  # the other width: drawn again for it
    expect(chart).not_to_have_attribute("viewBox", chart.get_attribute("viewBox"))
    page.set_viewport_size({"width": width, "height": 900})
    expect(chart).to_have_attribute("viewBox", f"0 0 {drawn} 240")

    # By keyboard: the period, Show and Print, the table by day (opened with Enter), back to the page.
    reached = []
    for _ in range(14):
        page.keyboard.press("Tab")
        reached.append(page.evaluate("document.activeElement.id || document.activeElement.tagName"))
    for wanted in ("rv-span", "review-print", "SUMMARY"):
        assert wanted in reached, reached
    page.focus(".by-day summary")
    page.keyboard.press("Enter")
    assert page.locator("#rv-score-table").is_visible()
    assert page.locator("#rv-score-table caption").inner_text() == "Secure Score by day in the period"
    page.focus("#review-back")
    page.keyboard.press("Enter")
    page.wait_for_selector("body[data-view=single]")


def pages(pdf: bytes) -> int:
    """How many pages a PDF has: its page objects (Chromium writes them uncompressed), as its page tree counts them."""
    counted = re.findall(rb"/Type\s*/Pages\b[^>]*?/Count\s+(\d+)", pdf, re.S) or re.findall(rb"/Count\s+(\d+)", pdf)
    found = len(_PAGE.findall(pdf))
    assert counted and max(int(c) for c in counted) == found, (counted, found)
    return found


def picture_of(browser: Any, pdf: Path, paper: str) -> Path:
    """The printed page as Chromium's own PDF viewer shows it (no toolbar, the page fit), as a PNG beside the PDF;
    taken once two shots in a row are the same (the viewer draws the page after it loads)."""
    width, height = PAPER[paper]
    context = browser.new_context(viewport={"width": width, "height": height})
    viewer = context.new_page()
    viewer.goto(f"{pdf.resolve().as_uri()}#toolbar=0&navpanes=0&view=Fit")
    shot, deadline = b"", time.monotonic() + 20
    while time.monotonic() < deadline:
        viewer.wait_for_timeout(400)
        again = viewer.screenshot()
        if again == shot and len(shot) > 20000:  # the same twice, and more than an empty page
            break
        shot = again
    else:
        pytest.fail(f"Chromium's PDF viewer did not settle on {pdf.name}")
    context.close()
    path = pdf.with_name(f"{pdf.stem.replace('portal-review-', 'portal-review-print-')}.png")
    path.write_bytes(shot)
    if PICTURES and path.stem in docs_pictures():
        (IMAGES / path.name).write_bytes(shot)
    return path


def print_both(browser: Any, page: Any, name: str) -> None:
    """The review printed to PDF in A4 and Letter: one page each; the PDFs and their pictures kept as artifacts."""
    ARTIFACTS.mkdir(exist_ok=True)
    for paper in ("A4", "Letter"):
        pdf = ARTIFACTS / f"{name}-{paper.lower()}.pdf"
        assert pages(page.pdf(path=str(pdf), format=paper)) == 1, paper
        assert picture_of(browser, pdf, paper).stat().st_size > 20000


def test_the_review_prints_to_one_page_a4_and_letter(browser, portal):
    setup = reviewed(portal, browser)
    answer = setup.request.get(f"{portal.url}/api/tenants/home/review").json()
    page = open_portal(browser, portal)
    # The counter counts: today's page with its improvement actions prints to several pages.
    assert pages(page.pdf(format="A4")) > 1
    page.goto(f"{portal.url}/api/portal#review/home")
    ready(page)
    chart = page.locator("#rv-score-chart")
    page.evaluate("window.dispatchEvent(new Event('beforeprint'))")  # as the browser does before it prints
    assert chart.get_attribute("viewBox") == "0 0 400 240"  # drawn for the paper: its words print larger
    page.evaluate("window.dispatchEvent(new Event('afterprint'))")
    expect(chart).to_have_attribute("viewBox", "0 0 640 240")  # and for the screen again
    print_both(browser, page, "portal-review")
    reader = open_portal(browser, portal, user="reader@contoso.com")  # a reader reviews too (GET only)
    reader.click("#review-link")
    ready(reader)
    assert_numbers_are_the_api_s(reader, answer)

    # What the print shows: no header, navigation, period form or buttons; the charts and tables; the actions
    # beyond the first eight said in one line.
    page.emulate_media(media="print")
    for hidden in (".top", "#review-back", "#review-period", "#review-print", ".by-day", ".foot"):
        assert page.locator(hidden).is_hidden(), hidden
    for shown in ("#review-title", "#rv-score-chart", "#rv-compare", "#rv-tickets", "#rv-actions", "#rv-top"):
        assert page.locator(shown).is_visible(), shown
    listed = len(answer["actions"]["completed"]) + len(answer["actions"]["regressed"])
    assert page.locator("#rv-actions tbody tr:visible").count() == min(listed, 8) + (listed > 8)
    if listed > 8:
        assert page.inner_text("#rv-actions tr.more") == f"and {listed - 8} more (the portal's review lists each)"
    assert page.inner_text("#review-print-date").startswith("Printed ")


def test_a_tenant_s_row_leads_to_its_review_and_the_period_is_chosen(browser, tenants):
    setup = several(browser, tenants)
    page = open_portal(browser, tenants.portal)
    link = tenant_row(page, FABRIKAM.id).locator("a.review")
    assert link.inner_text() == "Review" and link.get_attribute("aria-label") == f"Review of {FABRIKAM.name}"
    link.click()
    ready(page)
    assert page.url.endswith(f"#review/{FABRIKAM.id}")
    answer = api(tenants, setup, "GET", f"/api/tenants/{FABRIKAM.id}/review")
    assert answer["tickets"]["opened"] == 1 and answer["tickets"]["overdue"] == 1  # Fabrikam's own, not the home's
    assert_numbers_are_the_api_s(page, answer)

    # The last 30 days: the address keeps it (a reload shows it again), the numbers are the API's for them.
    end = date.fromisoformat(answer["to"])
    page.select_option("#rv-span", "30")
    page.click("#review-period button[type=submit]")
    thirty = f"{(end - timedelta(days=29)).isoformat()} to {end.isoformat()}"
    expect(page.locator("#review-period-shown")).to_have_text(thirty)
    assert page.url.endswith(f"#review/{FABRIKAM.id}?days=30") and thirty in page.inner_text("#review-status")
    page.reload()
    page.wait_for_selector("body[data-ready=true]")
    ready(page)
    assert page.input_value("#rv-span") == "30"
    start = (end - timedelta(days=29)).isoformat()
    assert_numbers_are_the_api_s(page, api(tenants, setup, "GET", f"/api/tenants/{FABRIKAM.id}/review?from={start}"
                                            f"&to={end.isoformat()}"))  # fmt: skip

    # Dates the connector refuses are said under their field, in its words.
    page.select_option("#rv-span", "dates")
    page.fill("#rv-from", end.isoformat())
    page.fill("#rv-to", (end - timedelta(days=3)).isoformat())
    page.click("#review-period button[type=submit]")
    expect(page.locator("#rv-from-error")).to_have_text("From must not be after to.")
    assert page.get_attribute("#rv-from", "aria-invalid") == "true"
    page.fill("#rv-from", (end - timedelta(days=90)).isoformat())
    page.fill("#rv-to", end.isoformat())
    page.click("#review-period button[type=submit]")
    expect(page.locator("#rv-to-error")).to_have_text("The period holds at most 90 days, from and to included.")
    assert page.is_hidden("#rv-from-error") and page.is_hidden("#review-body")
    start = (end - timedelta(days=89)).isoformat()
    page.fill("#rv-from", start)
    page.click("#review-period button[type=submit]")
    expect(page.locator("#review-period-shown")).to_have_text(f"{start} to {end.isoformat()}")
    assert page.url.endswith(f"#review/{FABRIKAM.id}?from={start}&to={end.isoformat()}")
    assert page.is_hidden("#rv-to-error") and page.get_attribute("#rv-to", "aria-invalid") is None

    # Back leads to the overview; a tenant's own page leads to its review too; a tenant the connector does not read
    # is said as the API says it.
    page.click("#review-back")
    page.wait_for_selector("body[data-view=overview]")
    page.click(f'#tenant-table a:text-is("{FABRIKAM.name}")')
    page.wait_for_selector(f'body[data-view=tenant][data-tenant="{FABRIKAM.id}"]')
    page.click("#review-link")
    ready(page)
    assert (
        page.url.endswith(f"#review/{FABRIKAM.id}") and page.inner_text("#review-title") == f"Review: {FABRIKAM.name}"
    )
    page.go_back()
    page.wait_for_selector(f'body[data-view=tenant][data-tenant="{FABRIKAM.id}"]')
    page.goto(f"{tenants.url}/api/portal#review/nobody")
    page.wait_for_selector("body[data-ready=true]")
    expect(page.locator("#review-error")).to_contain_text("The connector reads no tenant 'nobody'")
    assert page.is_hidden("#review-body")
    page.goto(f"{tenants.url}/api/portal#review/home?from=2026-01-01%26tenant%3Dx&to=2026-01-31")  # one value, whole
    page.wait_for_selector("body[data-ready=true]")
    expect(page.locator("#rv-from-error")).to_have_text("From must be a date YYYY-MM-DD (years 2000-9999).")


def test_long_titles_wrap_on_screen_and_keep_the_printed_review_to_one_page(browser, portal):
    for profile in portal.graph.profiles.values():  # every action's title long, one without a place to break
        profile["title"] = f"{profile['title']}: " + "and then some more words of a long title " * 6
    portal.graph.profiles["AdminMFAV2"]["title"] = LONG_TITLE
    reviewed(portal, browser)
    page = open_portal(browser, portal, width=390)
    page.goto(f"{portal.url}/api/portal#review/home")
    ready(page)
    assert page.evaluate(OVERFLOW) <= 0
    assert LONG_TITLE in page.inner_text("#rv-top")
    page.set_viewport_size({"width": 1280, "height": 900})
    page.reload()
    ready(page)
    print_both(browser, page, "portal-review-long")
