"""GET and PUT /api/alerts (docs/alerts.md#the-api): the version as ETag, If-Match as PUT /api/routes (428 without,
412 with an older version and the current list), every bad field named by its place in the list."""

from __future__ import annotations

import json

import pytest

from alerts.model import MAX_ALERTS
from shared.tickets import correlation_id, tenant_tag
from tests.alerts.alerts_support import ADMIN, READER, body, errors_of, get_alerts, put_alerts, saved
from tests.shared.test_signin import use

NORTHWIND = "7d0c7b7e-5f0a-4c55-9d7e-2f1b1f4e8a01"
RULE = {"id": "below-60", "name": "Under 60 percent", "tenants": "all", "below": 60}


def test_no_alerts_yet_is_an_empty_list_with_a_version_that_is_the_etag(harness):
    response = get_alerts(harness)
    answer = body(response)
    assert response.status_code == 200 and answer["alerts"] == []
    assert response.headers["ETag"] == f'"{answer["version"]}"'


def test_a_saved_list_comes_back_with_within_defaulted_and_a_new_version(harness):
    before = body(get_alerts(harness))["version"]
    answer = saved(harness, [RULE, {"id": "fell", "tenants": ["home"], "dropOf": 10, "within": 30}])
    fell = {"id": "fell", "name": "fell", "tenants": ["home"], "dropOf": 10, "within": 30}
    assert answer["alerts"] == [{**RULE, "within": 7}, fell]
    assert answer["version"] != before and body(get_alerts(harness)) == {**answer, "episodes": [], "episodesLeftOut": 0}


def test_a_put_without_if_match_or_with_a_star_is_428_and_saves_nothing(harness):
    for if_match in (None, "*"):
        response = put_alerts(harness, [RULE], if_match=if_match)
        assert response.status_code == 428 and body(response)["code"] == "precondition_required"
    assert body(get_alerts(harness))["alerts"] == []


def test_two_admins_saving_from_one_version_one_wins_the_other_gets_412_with_the_current(harness):
    version = get_alerts(harness).headers["ETag"]
    assert put_alerts(harness, [RULE], if_match=version).status_code == 200
    response = put_alerts(harness, [{**RULE, "below": 50}], if_match=version)
    problem = body(response)
    assert response.status_code == 412 and problem["code"] == "precondition_failed"
    assert problem["alerts"][0]["below"] == 60 and problem["version"] == body(get_alerts(harness))["version"]


def test_readers_see_the_alerts_only_admins_change_them(harness):
    use(harness, WEBSITE_AUTH_ENABLED="True", WEBSITE_SITE_NAME="func-connector")
    assert put_alerts(harness, [RULE], **ADMIN).status_code == 200
    assert get_alerts(harness, READER).status_code == 200
    assert put_alerts(harness, [], **READER).status_code == 403
    assert put_alerts(harness, [], **ADMIN).status_code == 200
    assert body(get_alerts(harness, READER))["savedBy"] == "admin@contoso.com"


@pytest.mark.parametrize(
    ("alert", "field"),
    [
        ({**RULE, "below": 101}, "alerts[1].below"),
        ({**RULE, "below": -0.5}, "alerts[1].below"),
        ({**RULE, "below": True}, "alerts[1].below"),
        ({"id": "d", "tenants": "all", "dropOf": -3}, "alerts[1].dropOf"),
        ({"id": "d", "tenants": "all", "dropOf": 5, "within": 0}, "alerts[1].within"),
        ({"id": "d", "tenants": "all", "dropOf": 5, "within": 91}, "alerts[1].within"),
        ({"id": "d", "tenants": "all"}, "alerts[1]"),
        ({**RULE, "id": "a/b"}, "alerts[1].id"),
        ({**RULE, "id": "x" * 59}, "alerts[1].id"),
        ({**RULE, "id": "-leading"}, "alerts[1].id"),
        ({**RULE, "tenants": [NORTHWIND]}, "alerts[1].tenants[0]"),
        ({**RULE, "tenants": ["home", "contoso"]}, "alerts[1].tenants[1]"),
        ({**RULE, "tenants": []}, "alerts[1].tenants"),
        ({**RULE, "name": "two\nlines"}, "alerts[1].name"),
        ({**RULE, "colour": "red"}, "alerts[1].colour"),
        ("below 60", "alerts[1]"),
    ],
)
def test_each_bad_field_is_named_by_its_place_and_nothing_is_saved(harness, alert, field):
    ok = {**RULE, "id": "first"}
    assert field in errors_of(put_alerts(harness, [ok, alert]))
    assert body(get_alerts(harness))["alerts"] == []


def test_every_bad_field_of_every_alert_is_named_at_once(harness):
    errors = errors_of(put_alerts(harness, [{**RULE, "below": 200}, {"id": "ok", "tenants": "all", "dropOf": -1,
                                                                      "within": 100}]))  # fmt: skip
    assert {"alerts[0].below", "alerts[1].dropOf", "alerts[1].within"} <= set(errors)


def test_duplicate_ids_are_refused_whatever_their_case(harness):
    errors = errors_of(put_alerts(harness, [RULE, {**RULE, "id": "Below-60"}]))
    assert "alerts[1].id" in errors and "alerts[0]" in errors["alerts[1].id"]


def test_more_than_a_hundred_alerts_are_refused(harness):
    many = [{**RULE, "id": f"a{i}"} for i in range(MAX_ALERTS + 1)]
    assert "alerts" in errors_of(put_alerts(harness, many))
    assert put_alerts(harness, many[:MAX_ALERTS]).status_code == 200


@pytest.mark.parametrize("payload", [b"[]", b'{"alerts": {}}', b'{"rules": []}', b"{}"])
def test_a_body_that_is_not_a_list_of_alerts_is_refused(harness, payload):
    assert errors_of(put_alerts(harness, payload))


def test_the_longest_id_keeps_the_correlation_id_within_100_characters():
    longest = "x" * 58
    assert len(correlation_id(f"alert/{longest}", NORTHWIND)) <= 100
    assert correlation_id(f"alert/{longest}", NORTHWIND) == f"m365sec:{tenant_tag(NORTHWIND)}/alert/{longest}"


def test_a_body_is_json(harness):
    response = harness.call("put_alerts", "PUT", "/alerts", body=json.dumps({"alerts": []}).encode(),
                            headers={"If-Match": "*"}, content_type="text/plain")  # fmt: skip
    assert response.status_code in (415, 428)
