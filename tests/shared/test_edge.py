"""The edge (docs/design.md#robustness): what every route refuses before its logic runs, and that nothing is stored."""

from __future__ import annotations

import json
from typing import Any

import pytest

from create_ticket.request import NAME
from shared.edge import MAX_DEPTH, too_deep
from shared.text import ascii_int, multi_line_ok, one_line_ok
from status_sync.sync import StatusSync
from tests.conftest import Harness
from tests.create_ticket.test_tickets import BODY, post


def _problem(response: Any) -> dict[str, Any]:
    assert response.headers["Content-Type"] == "application/problem+json"
    return dict(json.loads(response.get_body()))


def _nothing_happened(harness: Harness) -> None:
    assert harness.services.store.list_tickets() == []
    assert [r for r in harness.simulator.requests if r.path.startswith("/api/now/v2/table/incident")] == []


@pytest.mark.parametrize("member", ["name", "description"])
def test_a_lone_surrogate_is_refused_and_nothing_is_stored(connected, member):
    """Finding 1: this request once left a pending ticket that stopped the status sync for everyone."""
    raw = json.dumps({**BODY, member: "\ud800 x"}).encode()  # json.dumps writes the JSON escape \ud800
    assert b"\\ud800" in raw
    status, problem = post(connected, raw)
    assert (status, problem["code"]) == (400, "validation_failed")
    assert problem["errors"] == [{"field": member, "message": "must be valid Unicode text without NUL characters"}]
    _nothing_happened(connected)
    assert StatusSync(connected.services).run().status == "ok"


@pytest.mark.parametrize(
    "raw",
    [b"[" * 20000 + b"]" * 20000, b'{"a":' * 2000 + b"1" + b"}" * 2000, b"[" * 33 + b"]" * 33],
    ids=["20000-arrays", "2000-objects", "33-levels"],
)
def test_deep_nesting_is_refused_before_parsing(connected, raw):
    status, problem = post(connected, raw)
    assert (status, problem["code"]) == (400, "validation_failed")
    assert f"deeper than {MAX_DEPTH} levels" in problem["errors"][0]["message"]
    _nothing_happened(connected)


def test_nesting_at_the_limit_is_parsed():
    assert not too_deep("[" * MAX_DEPTH + "]" * MAX_DEPTH, MAX_DEPTH)
    assert too_deep("[" * (MAX_DEPTH + 1), MAX_DEPTH)
    assert not too_deep('"' + "[" * 100 + '"', MAX_DEPTH)  # brackets inside strings do not count
    assert not too_deep('["\\"' + "[" * 100 + '"]', MAX_DEPTH)  # nor after an escaped quote
    assert too_deep('["\\\\"' + "[" * 40, MAX_DEPTH)  # an escaped backslash ends the string


@pytest.mark.parametrize(
    "raw",
    [b"1" * 5000, b'{"name": ' + b"9" * 4400 + b"}", b'{"priority": NaN}', b'{"priority": Infinity}',
     b'{"priority": 1e999999}', b"\xff\xfe{}", b'\xef\xbb\xbf{"name": "x"}', "{\"name\": \"é\"}".encode("utf-16")],
    ids=["5000-digits", "4400-digit-member", "NaN", "Infinity", "huge-float", "bad-utf8", "bom", "utf-16"],
)  # fmt: skip
def test_numbers_and_encodings_json_does_not_allow_are_refused(connected, raw):
    status, problem = post(connected, raw)
    assert (status, problem["code"]) == (400, "validation_failed")
    _nothing_happened(connected)


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data",
                                          "application/json; charset=latin-1", None])  # fmt: skip
def test_a_body_that_is_not_json_is_unsupported_media_type(connected, content_type):
    """Finding 6: `text/plain` created tickets. A cross-site form cannot send application/json."""
    response = connected.call(
        "create_ticket", "POST", "/tickets", body=json.dumps(BODY).encode(), content_type=content_type
    )
    assert response.status_code == 415
    assert _problem(response)["code"] == "unsupported_media_type"
    _nothing_happened(connected)


def test_json_with_its_charset_parameter_is_json(connected):
    response = connected.call(
        "create_ticket",
        "POST",
        "/tickets",
        body=json.dumps(BODY).encode(),
        content_type="Application/JSON; charset=UTF-8",
    )
    assert response.status_code == 201


def test_a_problem_names_the_path_never_the_host(connected):
    """Finding 6: `Host: evil.example` was copied into a problem's `instance`."""
    request_url = "https://evil.example/api/tickets?x=1"
    import azure.functions as func

    request = func.HttpRequest(
        "POST", request_url, headers={"Host": "evil.example", "X-Forwarded-Host": "evil.example"}, body=b"{}"
    )
    response = connected.functions["create_ticket"].get_user_function()(request)
    body = response.get_body().decode()
    assert json.loads(body)["instance"] == "/api/tickets"
    assert "evil" not in body


@pytest.mark.parametrize("origin", ["https://evil.example", "null", "https://connector.example.net.evil.example"])
def test_a_cross_site_origin_is_refused_on_state_changing_routes(connected, origin):
    status, problem = post(connected, headers={"Origin": origin})
    assert (status, problem["code"]) == (403, "forbidden")
    disconnect = connected.call("disconnect", "POST", "/disconnect", headers={"Origin": origin})
    assert disconnect.status_code == 403
    _nothing_happened(connected)
    assert connected.services.tokens.load() is not None  # still connected


def test_the_apps_own_origin_and_no_origin_are_accepted(connected):
    assert post(connected, headers={"Origin": "https://connector.example.net"})[0] == 201
    other = {**BODY, "recommendation": {**BODY["recommendation"], "id": "Other"}}
    assert post(connected, other)[0] == 201


@pytest.mark.parametrize(
    "name",
    ["line\u2028separator", "paragraph\u2029separator", "next\u0085line", "right\u202eto-left", "zero\u200bwidth",
     "joiner\u200d", "bom\ufeff", "isolate\u2066x", "tab\tinside", "c1\u0090control"],
)  # fmt: skip
def test_a_name_is_one_line_without_invisible_or_reordering_characters(connected, name):
    """Finding 6: U+2028, U+0085, U+202E and zero-width characters were accepted in a one-line name."""
    status, problem = post(connected, {**BODY, "name": name})
    assert (status, problem["errors"][0]["field"]) == (400, "name")
    assert not one_line_ok(name) and not NAME.fullmatch(name)
    _nothing_happened(connected)


def test_a_description_keeps_lines_and_tabs_but_refuses_other_controls(connected):
    assert multi_line_ok("line one\nline two\r\n\ttabbed")
    for bad in ["bell\x07", "escape\x1b[31m", "nel\u0085", "nul\x00"]:
        assert post(connected, {**BODY, "description": bad})[0] == 400, bad
    status, _ = post(connected, {**BODY, "description": "line one\nline two\r\n\ttabbed"})
    assert status == 201


@pytest.mark.parametrize(
    ("due", "expected"),
    [("2000-01-01T00:00:00+23:59", "2000-01-01 00:00:00"), ("9999-12-31T23:59:59-23:59", "9999-12-31 23:59:59"),
     ("2000-01-01", "2000-01-01 23:59:59")],
)  # fmt: skip
def test_due_dates_stay_within_the_years_2000_to_9999(connected, due, expected):
    """Finding 6: `1000-01-01T00:00:00+23:59` reached ServiceNow as year 999."""
    assert post(connected, {**BODY, "dueDate": due})[0] == 201
    (record,) = connected.simulator.records()
    assert record["due_date"] == expected


@pytest.mark.parametrize("due", ["1000-01-01T00:00:00+23:59", "1999-12-31", "0999-01-01", "10000-01-01"])
def test_due_dates_written_outside_the_years_are_refused(connected, due):
    status, problem = post(connected, {**BODY, "dueDate": due})
    assert (status, problem["errors"][0]["field"]) == (400, "dueDate")


def test_unknown_members_are_refused_not_ignored(connected):
    recommendation = {**BODY["recommendation"], "catgory": "Data"}
    status, problem = post(connected, {**BODY, "dueData": "2026-12-31", "recommendation": recommendation})
    assert status == 400
    assert {e["field"] for e in problem["errors"]} == {"dueData", "recommendation.catgory"}


@pytest.mark.parametrize("value", ["\u00b2", "\u00b9\u00b2\u00b3", "\u0661", "9" * 19, "-1", "+1", "1.0", "", " "])
def test_header_numbers_are_ascii_digits_only(value):
    assert ascii_int(value) is None
    assert ascii_int(" 42 ") == 42


def test_query_values_are_one_bounded_line(connected):
    for params in ({"status": "open\u2028"}, {"status": "x" * 3000}, {"st\u202eatus": "open"}):
        response = connected.call("list_tickets", params=params)
        assert (response.status_code, _problem(response)["code"]) == (400, "validation_failed")


def test_every_problem_carries_nosniff_like_every_other_response(connected):
    """A problem+json body quotes input back (field names, a path): browsers must not sniff it as anything else."""
    from tests.shared.test_signin import use

    responses = [
        connected.call("create_ticket", "POST", "/tickets", body=b"{", headers={}),  # 400 validation_failed
        connected.call("list_tickets", path="/tickets", params={"status": "<b>"}),  # 400 on a query
        connected.call("create_ticket", "POST", "/tickets", body=b"x", content_type="text/plain"),  # 415
    ]
    use(connected, WEBSITE_AUTH_ENABLED="True")
    responses.append(connected.call("me", path="/me"))  # 401, with WWW-Authenticate
    use(connected, WEBSITE_SITE_NAME="func-connector")
    responses.append(connected.call("me", path="/me"))  # 503 not_configured
    statuses = []
    for response in responses:
        _problem(response)
        statuses.append(response.status_code)
        assert response.headers["X-Content-Type-Options"] == "nosniff", response.status_code
        assert response.headers["Cache-Control"] == "no-store"
    assert statuses == [400, 400, 415, 401, 503]
