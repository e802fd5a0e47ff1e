"""A template saying `onRiskAccepted: "ignore"` (docs/templates.md#risk-accepted-in-servicenow): a ticket of one of its
controls, in one of its tenants, closed with a mapped close code sets the control Ignored with the close notes, once,
as a route saying so does; against the ServiceNow and Graph simulators, the status sync as it runs."""

from __future__ import annotations

import json
from typing import Any

import pytest

from shared.secrets import WEBHOOK_SECRET
from tests.conftest import Harness
from tests.create_ticket.test_tickets import post
from tests.secure_score.test_secure_score import refresh, sync
from tests.status_sync.test_events import SECRET, notice_for, notify
from tests.templates.test_risk_accepted import CONTROL, accepting, closed
from tests.templates_support import body, create, created, delete, patches, states, template

__all__ = ["accepting"]


def ignoring(harness: Harness) -> list[Any]:
    return [p for p in patches(harness) if json.loads(p.body).get("state") == "Ignored"]


@pytest.mark.parametrize("tenants", [["home"], "all"])
def test_a_template_that_accepts_risks_sets_the_control_ignored_once(accepting, tenants):
    saved = created(accepting, template(controls=[CONTROL], state="Reviewed", tenants=tenants, onRiskAccepted="ignore"))
    assert saved["onRiskAccepted"] == "ignore"
    ticket_id = closed(accepting, "Risk Accepted")  # made without a route: the default route says nothing of risks
    assert states(accepting, [CONTROL]) == {CONTROL: "Ignored"}
    comment = accepting.graph.home.state_of(CONTROL)["comment"]
    assert comment.startswith("The customer accepts this risk until the audit.") and "Risk Accepted" in comment
    assert len(ignoring(accepting)) == 1
    stored = accepting.services.store.get_ticket(ticket_id)
    assert stored is not None and stored[0].extra["riskAccepted"]["written"] is True
    accepting.clock.advance(seconds=1)
    accepting.simulator.update("incident", stored[0].sys_id or "", close_notes="Edited later")
    sync(accepting)  # the same closed ticket again: nothing written
    assert len(ignoring(accepting)) == 1


def test_a_template_without_it_or_of_other_controls_sets_nothing(accepting):
    created(accepting, template(controls=[CONTROL], state="Reviewed"))
    closed(accepting, "Risk Accepted")
    assert states(accepting, [CONTROL]) == {CONTROL: "Default"}
    other = created(accepting, template(name="Other", controls=["DLPEnabled"], onRiskAccepted="ignore"))
    closed(accepting, "Risk Accepted")  # a template accepting another control's risks
    assert states(accepting, [CONTROL]) == {CONTROL: "Default"}
    assert ignoring(accepting) == [] and other["onRiskAccepted"] == "ignore"


def test_a_template_taken_away_before_the_close_accepts_nothing(accepting):
    saved = created(accepting, template(controls=[CONTROL], state="Reviewed", onRiskAccepted="ignore"))
    status, ticket = post(accepting, {"recommendation": {"id": CONTROL}})
    assert status == 201, ticket
    assert delete(accepting, saved["id"]).status_code == 204
    accepting.clock.advance(seconds=1)
    accepting.simulator.update("incident", ticket["sysId"], state="7", close_code="Risk Accepted", close_notes="n")
    sync(accepting)
    assert states(accepting, [CONTROL]) == {CONTROL: "Default"} and ignoring(accepting) == []


@pytest.mark.parametrize("wrong", ["ThirdParty", "Ignore", True, 1, ["ignore"], ""])
def test_on_risk_accepted_is_ignore_or_nothing(harness, wrong):
    response = create(harness, template(onRiskAccepted=wrong))
    problem = body(response)
    assert (response.status_code, problem["code"]) == (400, "validation_failed")
    assert [e["field"] for e in problem["errors"]] == ["onRiskAccepted"]
    assert created(harness, template(onRiskAccepted=None))["onRiskAccepted"] is None


def test_a_servicenow_event_records_the_templates_acceptance_too(accepting):
    """The notice path asks the templates as the sync does; the next refresh writes what it recorded."""
    accepting.services.secrets.set(WEBHOOK_SECRET, SECRET)
    created(accepting, template(controls=[CONTROL], state="Reviewed", onRiskAccepted="ignore"))
    status, ticket = post(accepting, {"recommendation": {"id": CONTROL}})
    assert status == 201, ticket
    accepting.clock.advance(seconds=1)
    accepting.simulator.update("incident", ticket["sysId"], state="7", close_code="Risk Accepted", close_notes="n")
    assert notify(accepting, notice_for(ticket, "7")) == (200, {"result": "updated"})
    stored = accepting.services.store.get_ticket(ticket["id"])
    assert stored is not None and stored[0].extra["riskAccepted"]["written"] is False
    assert refresh(accepting)[0] == 200
    assert states(accepting, [CONTROL]) == {CONTROL: "Ignored"} and len(ignoring(accepting)) == 1
