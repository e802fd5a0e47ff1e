"""POST /api/servicenow/events: a signed change notice from a ServiceNow business rule."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from shared.events import sign
from shared.secrets import WEBHOOK_SECRET
from tests.conftest import Harness
from tests.test_tickets import post

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


def test_a_signed_notice_updates_the_ticket_at_once(connected, ticket):
    assert notify(connected, notice_for(ticket, "6")) == (200, {"result": "updated"})
    assert _status(connected, ticket) == "resolved"
    assert notify(connected, notice_for(ticket, "6")) == (200, {"result": "unchanged"})  # a replay changes nothing
    assert [r for r in connected.simulator.requests if r.method == "GET"] == []  # no ServiceNow call needed


def test_an_older_notice_never_moves_the_ticket_back(connected, ticket):
    notify(connected, notice_for(ticket, "7", "2030-01-01 10:00:05"))
    assert notify(connected, notice_for(ticket, "2", "2030-01-01 10:00:01")) == (200, {"result": "unchanged"})
    assert _status(connected, ticket) == "closed"


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
    [{"sys_id": "x", "state": "2", "sys_updated_on": "2030-01-01 10:00:00"},
     {"sys_id": "a" * 32, "state": 2, "sys_updated_on": "2030-01-01 10:00:00"},
     {"sys_id": "a" * 32, "state": "2", "sys_updated_on": "yesterday"}, ["not", "an", "object"]],
)  # fmt: skip
def test_malformed_notices_are_validation_failures(connected, ticket, notice):
    status, problem = notify(connected, notice)
    assert (status, problem["code"]) == (400, "validation_failed")


def test_without_a_webhook_secret_notices_are_not_configured(connected):
    status, problem = notify(connected, {"sys_id": "a" * 32, "state": "2", "sys_updated_on": "2030-01-01 10:00:00"})
    assert (status, problem["code"]) == (503, "not_configured")
    assert WEBHOOK_SECRET in problem["remediation"]
