"""GET /api/connect, GET /api/oauth/callback, POST /api/disconnect against the in-process simulator."""

from __future__ import annotations

import html
import json
import logging
import re
import threading
from urllib.parse import parse_qsl, urlsplit

import httpx

from dev.servicenow import INTEGRATION_USER_SYS_ID
from shared.auth import code_challenge
from shared.secrets import TOKEN_BUNDLE
from tests.conftest import CLIENT_ID, INSTANCE, REDIRECT_URI, Harness


def _start(harness: Harness) -> dict[str, str]:
    response = harness.call("connect", path="/connect")
    assert response.status_code == 302
    location = urlsplit(response.headers["Location"])
    assert f"{location.scheme}://{location.netloc}{location.path}" == f"{INSTANCE}/oauth_auth.do"
    return dict(parse_qsl(location.query))


def _token_requests(harness: Harness) -> list[dict[str, str]]:
    return [r.form() for r in harness.simulator.requests if r.path == "/oauth_token.do"]


def _stored(harness: Harness) -> str | None:
    return harness.services.secrets.get(TOKEN_BUNDLE)


def test_connect_redirects_to_the_authorize_endpoint_with_state_and_pkce(harness):
    params = _start(harness)
    assert params["response_type"] == "code"
    assert params["client_id"] == CLIENT_ID
    assert params["redirect_uri"] == REDIRECT_URI
    assert params["code_challenge_method"] == "S256"
    assert len(params["state"]) >= 43  # >= 256 bits, base64url
    assert len(params["code_challenge"]) == 43
    assert harness.transport.sent == []  # connect itself never calls ServiceNow


def test_each_connect_mints_a_new_state(harness):
    states = {_start(harness)["state"] for _ in range(20)}
    assert len(states) == 20


def test_the_full_flow_stores_the_token_bundle_and_names_the_user(harness):
    page = harness.connect()
    body = page.get_body().decode()
    assert page.status_code == 200
    assert "Connected to ServiceNow" in body
    assert INSTANCE in body
    assert "m365.integration" in body
    bundle = json.loads(_stored(harness) or "{}")
    assert set(bundle) >= {
        "access_token",
        "refresh_token",
        "expires_at",
        "refresh_expires_at",
        "instance",
        "connected_at",
        "connected_as",
    }
    assert bundle["instance"] == INSTANCE
    assert bundle["connected_as"] == "m365.integration"


def test_the_pkce_verifier_is_sent_and_verified(harness):
    params = _start(harness)
    with httpx.Client(transport=harness.transport) as browser:
        redirect = browser.get(f"{INSTANCE}/oauth_auth.do", params=params).headers["Location"]
    harness.callback(dict(parse_qsl(urlsplit(redirect).query)))
    (exchange,) = _token_requests(harness)
    assert exchange["grant_type"] == "authorization_code"
    assert exchange["redirect_uri"] == REDIRECT_URI
    assert code_challenge(exchange["code_verifier"]) == params["code_challenge"]
    assert _stored(harness) is not None


def test_a_wrong_verifier_is_refused_by_the_simulator(harness):
    """The simulator really checks PKCE, so the test above can fail."""
    params = _start(harness)
    params["code_challenge"] = code_challenge("another-verifier-" + "x" * 40)
    with httpx.Client(transport=harness.transport) as browser:
        redirect = browser.get(f"{INSTANCE}/oauth_auth.do", params=params).headers["Location"]
    page = harness.callback(dict(parse_qsl(urlsplit(redirect).query)))
    assert page.status_code == 502
    assert _stored(harness) is None


def test_denied_consent_shows_the_reason_and_never_calls_the_token_endpoint(harness):
    params = _start(harness)
    denied = {"error": "access_denied", "error_description": "User denied access", "state": params["state"]}
    page = harness.callback(denied)
    body = page.get_body().decode()
    assert page.status_code == 400
    assert "declined" in body and "User denied access" not in body  # the connector's own words only
    assert "Not you?" in body
    assert _token_requests(harness) == []
    assert _stored(harness) is None


def test_denial_through_the_consent_page(harness):
    harness.simulator.auto_approve = False
    params = _start(harness)
    with httpx.Client(transport=harness.transport) as browser:
        consent = browser.get(f"{INSTANCE}/oauth_auth.do", params=params)
        assert "Allow" in consent.text and "Not you?" in consent.text
        denied = browser.post(f"{INSTANCE}/oauth_auth.do", data={**params, "action": "deny"})
    page = harness.callback(dict(parse_qsl(urlsplit(denied.headers["Location"]).query)))
    assert page.status_code == 400
    assert _token_requests(harness) == []
    assert _stored(harness) is None


def test_missing_unknown_expired_and_replayed_states_are_refused(harness):
    cases = {}
    cases["missing"] = harness.callback({"code": "abc"})
    cases["unknown"] = harness.callback({"code": "abc", "state": "x" * 43})
    expired = _start(harness)["state"]
    harness.clock.advance(minutes=10, seconds=1)
    cases["expired"] = harness.callback({"code": "abc", "state": expired})
    for name, page in cases.items():
        assert page.status_code == 400, name
    assert "expired" in cases["expired"].get_body().decode()
    assert _token_requests(harness) == []
    assert _stored(harness) is None

    harness.simulator.requests.clear()
    params = _start(harness)
    with httpx.Client(transport=harness.transport) as browser:
        redirect = browser.get(f"{INSTANCE}/oauth_auth.do", params=params).headers["Location"]
    query = dict(parse_qsl(urlsplit(redirect).query))
    assert harness.callback(query).status_code == 200
    harness.services.tokens.forget()
    replay = harness.callback(query)
    assert replay.status_code == 400
    assert "already used" in replay.get_body().decode()
    assert len(_token_requests(harness)) == 1
    assert _stored(harness) is None


def test_a_state_is_single_use_under_concurrency(harness):
    params = _start(harness)
    with httpx.Client(transport=harness.transport) as browser:
        redirect = browser.get(f"{INSTANCE}/oauth_auth.do", params=params).headers["Location"]
    query = dict(parse_qsl(urlsplit(redirect).query))
    cookie = {"Cookie": "; ".join(f"{k}={v}" for k, (v, _) in harness.cookies.items())}
    statuses: list[int] = []

    def finish() -> None:
        page = harness.call("oauth_callback", path="/oauth/callback", params=query, headers=cookie)
        statuses.append(page.status_code)

    threads = [threading.Thread(target=finish) for _ in range(10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(statuses) == [200] + [400] * 9
    assert len(_token_requests(harness)) == 1


def test_a_failed_exchange_stores_nothing_and_says_what_to_check(harness):
    harness.simulator.clients[CLIENT_ID].client_secret = "rotated-in-servicenow"
    page = harness.connect()
    body = page.get_body().decode()
    assert page.status_code == 502
    assert "client secret" in body and REDIRECT_URI in body
    assert _stored(harness) is None


def test_an_unreachable_instance_during_the_exchange_stores_nothing(harness):
    from dev.servicenow import Fault

    harness.simulator.inject(Fault("drop", path_prefix="/oauth_token.do"))
    page = harness.connect()
    assert page.status_code == 503
    assert len(_token_requests(harness)) == 1  # a code is single use: never exchanged twice
    assert _stored(harness) is None


def test_connect_without_a_client_secret_is_not_configured(harness, tmp_path):
    from shared import services as services_module
    from tests.conftest import build_services

    services_module.install(
        build_services(tmp_path, harness.transport, harness.clock, harness.sleeps, SERVICENOW_CLIENT_SECRET="")
    )
    response = harness.call("connect", path="/connect")
    problem = json.loads(response.get_body())
    assert response.status_code == 503
    assert response.headers["Content-Type"] == "application/problem+json"
    assert problem["code"] == "not_configured"
    assert "servicenow-client-secret" in problem["remediation"]


def test_disconnect_revokes_both_tokens_and_forgets_them(harness, caplog):
    harness.connect()
    bundle = json.loads(_stored(harness) or "{}")
    with caplog.at_level(logging.DEBUG):
        response = harness.call("disconnect", "POST", "/disconnect")
    assert response.status_code == 204
    assert _stored(harness) is None
    assert harness.simulator.refresh_tokens[bundle["refresh_token"]].revoked
    assert harness.simulator.access_tokens[bundle["access_token"]].revoked
    revokes = [r for r in harness.simulator.requests if r.path == "/oauth_revoke_token.do"]
    # The documented form (t_RevokeOAuthToken): the token appended as `?token=`; httpx's own log line cuts it out.
    assert len(revokes) == 2 and all(r.method == "GET" and r.query.get("token") for r in revokes)
    logged = caplog.text
    assert "token=[redacted]" in logged
    assert bundle["refresh_token"] not in logged and bundle["access_token"] not in logged


def test_disconnect_keeps_the_tokens_when_revocation_fails_unless_forced(harness):
    from dev.servicenow import Fault

    harness.connect()
    harness.simulator.inject(Fault("status", status=503, path_prefix="/oauth_revoke_token.do", times=100))
    failed = harness.call("disconnect", "POST", "/disconnect")
    assert failed.status_code == 503
    assert json.loads(failed.get_body())["code"] == "servicenow_unavailable"
    assert failed.headers["Retry-After"]
    assert _stored(harness) is not None
    forced = harness.call("disconnect", "POST", "/disconnect", params={"force": "true"})
    assert forced.status_code == 204
    assert _stored(harness) is None


def test_the_callback_page_escapes_what_servicenow_sends(harness):
    page = harness.call(
        "oauth_callback", params={"error": "<script>alert(1)</script>", "error_description": "<img src=x>"}
    )
    body = page.get_body().decode()
    assert "<script>" not in body and "<img" not in body
    assert "default-src 'none'" in page.headers["Content-Security-Policy"]


def test_the_connected_user_is_the_one_who_consented(harness):
    page = harness.connect()
    assert page.status_code == 200
    user = harness.simulator.tables["sys_user"][INTEGRATION_USER_SYS_ID]["user_name"]
    assert json.loads(_stored(harness) or "{}")["connected_as"] == user


def test_not_you_signs_in_as_another_user_before_consenting(harness):
    """The original connector's advice: connect as the integration user, using 'Not you?' if needed."""
    from dev.servicenow import ADMIN_SYS_ID

    harness.simulator.auto_approve = False
    harness.simulator.signed_in_user = ADMIN_SYS_ID  # the admin is signed in personally
    params = _start(harness)
    with httpx.Client(transport=harness.transport, base_url=INSTANCE) as browser:
        consent = browser.get("/oauth_auth.do", params=params)
        assert "System Administrator" in consent.text
        link = re.search(r'id="not-you" href="([^"]+)"', consent.text)
        assert link is not None
        login = browser.get(html.unescape(link.group(1)))
        target = re.search(r'name="next" value="([^"]+)"', login.text)
        assert target is not None
        back = browser.post("/login.do", data={"user": INTEGRATION_USER_SYS_ID, "next": html.unescape(target.group(1))})
        consent = browser.get(back.headers["Location"])
        assert "M365 Integration" in consent.text
        allowed = browser.post("/oauth_auth.do", data={**params, "action": "allow"})
    page = harness.callback(dict(parse_qsl(urlsplit(allowed.headers["Location"]).query)))
    assert page.status_code == 200 and "m365.integration" in page.get_body().decode()


def _authorized_callback(harness: Harness) -> dict[str, str]:
    """Start in this harness's 'browser' and have ServiceNow approve: the callback's query, not yet sent."""
    params = _start(harness)
    with httpx.Client(transport=harness.transport) as browser:
        redirect = browser.get(f"{INSTANCE}/oauth_auth.do", params=params).headers["Location"]
    return dict(parse_qsl(urlsplit(redirect).query))


def test_connect_sets_an_httponly_samesite_cookie_limited_to_the_callback(harness):
    response = harness.call("connect", path="/connect")
    cookie = response.headers["Set-Cookie"]
    assert cookie.startswith("m365_connector_oauth=")
    assert {"HttpOnly", "SameSite=Lax", "Secure", "Path=/api/oauth/callback", "Max-Age=600"} <= {
        part.strip() for part in cookie.split(";")
    }


def test_login_csrf_a_callback_from_another_browser_is_refused_and_nothing_is_exchanged(harness):
    """RFC 9700 section 4.7: the attacker's authorization completed in the victim's browser."""
    query = _authorized_callback(harness)
    harness.cookies.clear()  # a fresh browser B
    page = harness.callback(query)
    assert page.status_code == 400
    assert "another browser" in page.get_body().decode()
    assert _token_requests(harness) == []
    assert _stored(harness) is None


def test_a_callback_with_another_flows_cookie_is_refused(harness):
    first = _authorized_callback(harness)  # browser A
    harness.cookies.clear()
    _authorized_callback(harness)  # browser B, its own flow and cookie
    page = harness.callback(first)  # A's callback arrives with B's cookie
    assert page.status_code == 400
    assert _token_requests(harness) == []
    assert _stored(harness) is None


def test_a_replayed_state_is_refused_even_with_its_cookie(harness):
    query = _authorized_callback(harness)
    cookie = {"Cookie": "; ".join(f"{k}={v}" for k, (v, _) in harness.cookies.items())}
    assert harness.call("oauth_callback", path="/oauth/callback", params=query, headers=cookie).status_code == 200
    replay = harness.call("oauth_callback", path="/oauth/callback", params=query, headers=cookie)
    assert replay.status_code == 400
    assert len(_token_requests(harness)) == 1


def test_the_callback_clears_its_cookie(harness):
    assert harness.connect().status_code == 200
    assert harness.cookies == {}


def test_a_callback_from_another_browser_neither_uses_up_the_flow_nor_clears_the_admins_cookie(harness):
    """The admin's callback URL leaks (a referrer, a screenshot), or an attacker opens their own in the admin's
    browser: each is refused, and the admin's flow and cookie stay as they were, so the admin still connects."""
    admin = _authorized_callback(harness)  # the admin's browser: its cookie is in the jar
    admins_jar = dict(harness.cookies)
    harness.cookies.clear()  # the attacker's browser, with no cookie
    refused = [harness.callback(admin)]
    attacker = _authorized_callback(harness)  # the attacker's own flow and cookie
    refused.append(harness.callback(admin))  # the admin's state with the attacker's cookie
    harness.cookies = dict(admins_jar)  # back in the admin's browser: the attacker's callback, opened there
    refused.append(harness.callback(attacker))
    for page in refused:
        assert page.status_code == 400
        assert "Set-Cookie" not in page.headers  # nothing cleared
    assert harness.cookies == admins_jar and _token_requests(harness) == []
    done = harness.callback(admin)  # the admin's own callback still works: the flow was never used up
    assert done.status_code == 200, done.get_body()
    assert len(_token_requests(harness)) == 1 and _stored(harness) is not None
    assert harness.cookies == {}  # cleared now that it has done its work


def test_callback_pages_cannot_be_framed(harness):
    pages = [harness.connect(), harness.callback({"code": "abc", "state": "x" * 43})]
    pages.append(harness.call("oauth_callback", path="/oauth/callback", params={"state": "x\u0000"}))  # the edge's
    for page in pages:
        assert page.headers["X-Frame-Options"] == "DENY"
        assert "frame-ancestors 'none'" in page.headers["Content-Security-Policy"]
        assert page.headers["Content-Type"].startswith("text/html")
    assert [p.status_code for p in pages] == [200, 400, 400]


def test_an_error_page_says_only_the_connectors_words(harness):
    """Finding 5: `error_description` (any text, no state) was shown on the connector's own origin."""
    phishing = "Your session expired. Call +1-555-0100 and read out your password"
    for params in ({"error": "access_denied", "error_description": phishing},
                   {"error": phishing, "error_description": phishing, "state": "x" * 43},
                   {"code": phishing, "state": phishing}):  # fmt: skip
        page = harness.callback(params)
        body = page.get_body().decode()
        assert page.status_code == 400
        assert "555" not in body and "password" not in body


def test_reconnecting_revokes_the_replaced_tokens_after_storing_the_new_ones(harness):
    assert harness.connect().status_code == 200
    old = json.loads(_stored(harness) or "{}")
    assert harness.connect().status_code == 200
    new = json.loads(_stored(harness) or "{}")
    assert new["refresh_token"] != old["refresh_token"]
    assert harness.simulator.refresh_tokens[old["refresh_token"]].revoked
    assert harness.simulator.access_tokens[old["access_token"]].revoked
    assert not harness.simulator.refresh_tokens[new["refresh_token"]].revoked
    from tests.create_ticket.test_tickets import post

    assert post(harness)[0] == 201  # the new connection works


def test_a_refresh_token_servicenow_hands_back_again_is_not_revoked(harness):
    """A new grant may return the current refresh token (ServiceNow's docs): revoking it would disconnect."""
    assert harness.connect().status_code == 200
    harness.simulator.reuse_refresh_token = True
    old = json.loads(_stored(harness) or "{}")
    assert harness.connect().status_code == 200
    new = json.loads(_stored(harness) or "{}")
    assert new["refresh_token"] == old["refresh_token"]
    assert not harness.simulator.refresh_tokens[new["refresh_token"]].revoked


def test_a_failed_revocation_of_the_replaced_tokens_keeps_the_new_connection_and_says_so(harness):
    from dev.servicenow import Fault

    assert harness.connect().status_code == 200
    harness.simulator.inject(Fault("status", status=503, path_prefix="/oauth_revoke_token.do", times=100))
    page = harness.connect()
    assert page.status_code == 200
    assert "could not be revoked" in page.get_body().decode()
    assert _stored(harness) is not None
