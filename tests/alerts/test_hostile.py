"""A hostile read of score alerts (issue 33): each test names a defect found, and failed before its fix."""

from __future__ import annotations

from typing import Any

import pytest

from tests.alerts.alerts_support import alert_records, posts, refresh, saved
from tests.conftest import Harness
from tests.create_ticket.test_tickets import BODY, post


def with_id(recommendation_id: str) -> dict[str, Any]:
    return {**BODY, "recommendation": {**BODY["recommendation"], "id": recommendation_id}}


@pytest.mark.parametrize("recommendation_id", ["alert/low", "alert/x", "alert/" + "x" * 58])
def test_a_caller_cannot_post_an_alert_s_recommendation_id(connected, recommendation_id):
    """Else a caller makes an alert-shaped ticket, and the alert's next episode adopts it as its own."""
    status, problem = post(connected, with_id(recommendation_id))
    assert status == 400 and problem["code"] == "validation_failed", problem
    assert [e["field"] for e in problem["errors"]] == ["recommendation.id"]
    assert connected.simulator.records() == []


def test_a_caller_s_alert_shaped_ticket_is_never_an_alert_s_ticket(connected: Harness):
    """The whole path: a caller's POST refused, the alert's crossing makes its own ticket."""
    refresh(connected)
    post(connected, {**with_id("alert/low"), "name": "Not the alert's"})
    saved(connected, [{"id": "low", "name": "Score low", "tenants": ["home"], "below": 100}])
    refresh(connected)
    (record,) = alert_records(connected)
    assert record["short_description"] == "Secure Score alert: Score low" and posts(connected) == 1
