"""POST /api/servicenow/events: a signed change notice from a ServiceNow business rule."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from shared.records import apply_record
from shared.secrets import WEBHOOK_SECRET
from status_sync.events import sign
from tests.conftest import Harness
from tests.create_ticket.test_tickets import post

SECRET = base64.b64encode(b"0123456789abcdef0123456789abcdef").decode()


@pytest.fixture
def ticket(connected: Harness) -> dict[str, Any]:
    connected.services.secrets.set(WEBHOOK_SECRET, SECRET)
    status, created = post(connected)
    assert status == 201
    connected.simulator.requests.clear()
    return created


def notify(harness: Harness, notice: dict[str, Any], *, secret: str = SECRET, skew: int = 0, signature: str = ""):
    body = json.dumps(notice).encode()
    timestamp = str(int(harness.clock.epoch()) + skew)
    headers = {
        "X-ServiceNow-Timestamp": timestamp,
        "X-ServiceNow-Signature": signature or sign(secret, timestamp, body),
        "Content-Type": "application/json",
    }
    response = harness.call("servicenow_events", "POST", "/servicenow/events", body=body, headers=headers)
    return response.status_code, json.loads(response.get_body())


def notice_for(ticket: dict[str, Any], state: str, updated: str = "2030-01-01 10:00:00") -> dict[str, Any]:
    return {"sys_id": ticket["sysId"], "table": "incident", "number": ticket["number"], "state": state,
            "sys_updated_on": updated, "correlation_id": "m365sec:AdminMFAV2"}  # fmt: skip


def _status(harness: Harness, ticket: dict[str, Any]) -> str:
    return str(json.loads(harness.call("get_ticket", route_params={"id": ticket["id"]}).get_body())["status"])


def _gets(harness: Harness) -> list[str]:
    return [r.url for r in harness.simulator.requests if r.method == "GET"]


def test_a_notice_is_a_hint_the_connector_reads_the_record_once_and_applies_it(connected, ticket):
    connected.clock.advance(seconds=1)
    connected.simulator.update("incident", ticket["sysId"], state="6")
    assert notify(connected, notice_for(ticket, "6")) == (200, {"result": "updated"})
    assert _status(connected, ticket) == "resolved"
    (get,) = _gets(connected)
    assert f"/api/now/v2/table/incident/{ticket['sysId']}?" in get and "sysparm_fields=" in get
    assert notify(connected, notice_for(ticket, "6")) == (200, {"result": "unchanged"})  # a replay changes nothing


def test_what_a_notice_claims_is_never_applied(connected, ticket):
    """The notice says closed at a forged future time; ServiceNow says new: the ticket stays new, and real
    changes after it still apply (nothing is frozen)."""
    assert notify(connected, notice_for(ticket, "7", "2099-01-01 00:00:00")) == (200, {"result": "unchanged"})
    assert _status(connected, ticket) == "new"
    connected.clock.advance(seconds=1)
    connected.simulator.update("incident", ticket["sysId"], state="2")
    assert notify(connected, notice_for(ticket, "2")) == (200, {"result": "updated"})
    assert _status(connected, ticket) == "in_progress"


def test_two_changes_in_one_second_delivered_out_of_order_end_at_the_newer(connected, ticket):
    sim = connected.simulator
    sim.update("incident", ticket["sysId"], state="2")
    early = dict(sim.tables["incident"][ticket["sysId"]])
    sim.update("incident", ticket["sysId"], state="7")  # the same second: only sys_mod_count tells them apart
    assert early["sys_updated_on"] == sim.tables["incident"][ticket["sysId"]]["sys_updated_on"]
    assert notify(connected, notice_for(ticket, "7")) == (200, {"result": "updated"})
    # The older version arriving late (a slow GET racing a newer one) is refused by the version, not the clock.
    assert not apply_record(connected.services, ticket["id"], early)
    assert _status(connected, ticket) == "closed"


def test_a_notice_for_a_record_servicenow_no_longer_shows_marks_it_missing(connected, ticket):
    connected.simulator.hidden.add(ticket["sysId"])
    assert notify(connected, notice_for(ticket, "2")) == (200, {"result": "updated"})
    assert _status(connected, ticket) == "missing"


@pytest.mark.parametrize(
    ("kwargs", "code"),
    [
        ({"secret": base64.b64encode(b"x" * 32).decode()}, "unauthorized"),
        ({"signature": "bm90IGEgc2lnbmF0dXJl"}, "unauthorized"),
        ({"skew": -301}, "unauthorized"),
        ({"skew": 301}, "unauthorized"),
    ],
    ids=["wrong-key", "forged", "stale", "future"],
)
def test_bad_signatures_and_stale_timestamps_are_refused(connected, ticket, kwargs, code):
    status, problem = notify(connected, notice_for(ticket, "7"), **kwargs)
    assert (status, problem["code"]) == (401, code)
    assert _status(connected, ticket) == "new"


def test_a_tampered_body_is_refused(connected, ticket):
    body = json.dumps(notice_for(ticket, "2")).encode()
    timestamp = str(int(connected.clock.epoch()))
    headers = {"X-ServiceNow-Timestamp": timestamp, "X-ServiceNow-Signature": sign(SECRET, timestamp, body)}
    tampered = body.replace(b'"state": "2"', b'"state": "8"')
    response = connected.call("servicenow_events", "POST", body=tampered, headers=headers)
    assert response.status_code == 401


def test_an_unknown_record_is_accepted_for_the_next_sync(connected, ticket):
    status, body = notify(connected, {**notice_for(ticket, "2"), "sys_id": "e" * 32})
    assert (status, body) == (202, {"result": "unknown"})


@pytest.mark.parametrize(
    "notice",
    [{"sys_id": "x", "state": "2"}, {"sys_id": "A" * 32}, {"state": "2"}, {"sys_id": ["a" * 32]},
     ["not", "an", "object"], "x"],
)  # fmt: skip
def test_malformed_notices_are_validation_failures(connected, ticket, notice):
    status, problem = notify(connected, notice)
    assert (status, problem["code"]) == (400, "validation_failed")


@pytest.mark.parametrize(
    "timestamp", ["\u00b2", "\u00b9\u00b2\u00b3", "\u0661\u0662", "9" * 4300, "9" * 5000, "-1", " ", ""]
)
def test_a_timestamp_that_is_not_ascii_digits_is_unauthorized(connected, ticket, timestamp):
    body = json.dumps(notice_for(ticket, "2")).encode()
    headers = {"X-ServiceNow-Timestamp": timestamp, "X-ServiceNow-Signature": sign(SECRET, timestamp, body)}
    response = connected.call("servicenow_events", "POST", "/servicenow/events", body=body, headers=headers)
    assert (response.status_code, json.loads(response.get_body())["code"]) == (401, "unauthorized")


def test_a_signed_notice_nested_5000_deep_is_refused_without_a_recursion_error(connected, ticket):
    body = ("[" * 5000 + "]" * 5000).encode()
    timestamp = str(int(connected.clock.epoch()))
    headers = {"X-ServiceNow-Timestamp": timestamp, "X-ServiceNow-Signature": sign(SECRET, timestamp, body)}
    response = connected.call("servicenow_events", "POST", "/servicenow/events", body=body, headers=headers)
    problem = json.loads(response.get_body())
    assert (response.status_code, problem["code"]) == (400, "validation_failed")
    assert "32 levels" in problem["errors"][0]["message"]


def test_without_a_webhook_secret_notices_are_not_configured(connected):
    status, problem = notify(connected, {"sys_id": "a" * 32, "state": "2", "sys_updated_on": "2030-01-01 10:00:00"})
    assert (status, problem["code"]) == (503, "not_configured")
    assert WEBHOOK_SECRET in problem["remediation"]
