"""The page and sign-in without the token store (docs/design.md#portal-and-sign-in): on 401 the page sends the browser
once to App Service Authentication's sign-in (`/.auth/login/aad?post_login_redirect_uri=/api/portal`) and never loops.

In a real browser against the local host, whose emulation of App Service Authentication answers an API call
without a session with 401, as the platform does for `X-Requested-With: XMLHttpRequest`."""

from __future__ import annotations

import json
from typing import Any

from tests.browser.test_portal import Portal, browser, open_portal, portal  # noqa: F401  (fixtures)

SIGN_IN = "/.auth/login/aad?post_login_redirect_uri=/api/portal"


def sign_ins(page: Any) -> list[str]:
    seen: list[str] = []
    page.on("request", lambda request: seen.append(request.url) if "/.auth/login/aad" in request.url else None)
    return seen


def test_a_lost_session_sends_the_browser_to_sign_in_once_and_back(browser, portal):  # noqa: F811
    page = open_portal(browser, portal)
    seen = sign_ins(page)
    for round_trip in (1, 2):  # a success in between clears the marker: the next expiry may redirect again
        page.context.clear_cookies()  # the session ended (expired, or signed out elsewhere)
        with page.expect_navigation(url=f"{portal.url}/api/portal"):  # the new page, not the one still shown
            page.click("#refresh")  # an API call: 401 from App Service Authentication, sign-in, and back
        page.wait_for_selector("body[data-ready=true]")
        assert [url.removeprefix(portal.url) for url in seen] == [SIGN_IN] * round_trip
        assert page.inner_text("#who").startswith("Signed in as admin@contoso.com")


def test_a_second_401_after_signing_in_shows_the_error_instead_of_looping(browser, portal: Portal):  # noqa: F811
    """The platform signs the user in, but the app still refuses them (say, an ID token naming someone else)."""
    context = browser.new_context()
    page = context.new_page()
    refusal = {"status": 401, "code": "unauthorized", "title": "Authentication required",
               "detail": "The sign-in's principal and its ID token name different users."}  # fmt: skip
    page.route("**/api/me", lambda route: route.fulfill(status=401, content_type="application/problem+json",
                                                        body=json.dumps(refusal)))  # fmt: skip
    seen = sign_ins(page)
    page.goto(f"{portal.url}{SIGN_IN}")  # the first sign-in, as a bookmark would start it
    page.wait_for_selector("#error:not([hidden]) a")
    assert [url.removeprefix(portal.url) for url in seen] == [SIGN_IN, SIGN_IN]  # the bookmark's, then the page's
    assert page.url == f"{portal.url}/api/portal"
    assert "name different users" in page.inner_text("#error")
    assert page.get_attribute("#error a", "href") == SIGN_IN  # the way out is the person's choice, not a loop
    context.close()
