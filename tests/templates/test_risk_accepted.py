"""A risk accepted in ServiceNow (docs/templates.md#risk-accepted-in-servicenow): a ticket closed with a close code
of SERVICENOW_FIELD_MAP.risk_accepted_codes sets its control to Ignored with the close notes, once, only where its
route said `onRiskAccepted: "ignore"`; against the ServiceNow and Graph simulators, the status sync as it runs."""

from __future__ import annotations

import json

import pytest

from dev.wire import Fault
from shared.config import load_settings
from tests.conftest import Harness, settings_env
from tests.create_ticket.test_tickets import post
from tests.routes_support import body, put_routes
from tests.routes_support import saved as saved_routes
from tests.secure_score.test_secure_score import refresh, sync
from tests.shared.test_signin import use
from tests.templates_support import patches, states

CONTROL = "AdminMFAV2"
PROFILES = "/v1.0/security/secureScoreControlProfiles"
CODES = {"risk_accepted_codes": ["Risk Accepted"]}


@pytest.fixture
def accepting(connected: Harness) -> Harness:
    use(connected, SERVICENOW_FIELD_MAP=json.dumps(CODES))
    assert refresh(connected)[0] == 200
    return connected


def closed(harness: Harness, code: str, notes: str = "The customer accepts this risk until the audit.") -> str:
    """A ticket for CONTROL, closed in ServiceNow by an agent with `code` and `notes`, and the sync after it."""
    status, ticket = post(harness, {"recommendation": {"id": CONTROL}})
    assert status == 201, ticket
    harness.clock.advance(seconds=1)
    harness.simulator.update("incident", ticket["sysId"], state="7", close_code=code, close_notes=notes)
    sync(harness)
    return str(ticket["id"])


def test_a_close_code_of_risk_accepted_sets_the_control_ignored_once(accepting):
    saved_routes(accepting, [{"match": {"controls": [CONTROL]}, "set": {"onRiskAccepted": "ignore"}}])
    sent = len(patches(accepting))
    ticket_id = closed(accepting, "Risk Accepted")
    assert states(accepting, [CONTROL]) == {CONTROL: "Ignored"}
    comment = accepting.graph.home.state_of(CONTROL)["comment"]
    assert comment.startswith("The customer accepts this risk until the audit.") and "Risk Accepted" in comment
    ignoring = [p for p in patches(accepting)[sent:] if json.loads(p.body).get("state") == "Ignored"]
    assert len(ignoring) == 1
    stored = accepting.services.store.get_ticket(ticket_id)
    assert stored is not None and stored[0].extra["riskAccepted"]["written"] is True
    after = len(patches(accepting))
    accepting.clock.advance(seconds=1)
    accepting.simulator.update("incident", stored[0].sys_id or "", close_notes="Edited later")
    sync(accepting)  # the same closed ticket again: nothing written
    assert len(patches(accepting)) == after


def test_other_close_codes_or_a_route_that_does_not_say_so_set_nothing(accepting):
    saved_routes(accepting, [{"match": {"controls": [CONTROL]}, "set": {"priority": "high"}}])
    closed(accepting, "Risk Accepted")
    assert states(accepting, [CONTROL]) == {CONTROL: "Default"}
    saved_routes(accepting, [{"match": {"controls": [CONTROL]}, "set": {"onRiskAccepted": "ignore"}}])
    closed(accepting, "Solved (Permanently)")
    assert states(accepting, [CONTROL]) == {CONTROL: "Default"}
    closed(accepting, "Risk Accepted")  # both: the route says so, and the close code is one the admin maps
    assert states(accepting, [CONTROL]) == {CONTROL: "Ignored"}


def test_on_risk_accepted_takes_only_ignore(connected):
    assert put_routes(connected, [{"set": {"onRiskAccepted": "ignore"}}]).status_code == 200
    response = put_routes(connected, [{"set": {"onRiskAccepted": "ThirdParty"}}])
    assert response.status_code == 400
    assert [e["field"] for e in body(response)["errors"]] == ["routes[0].set.onRiskAccepted"]


@pytest.mark.parametrize("codes", [[], "Risk Accepted", [""], ["a^b"], [1], ["x" * 81], ["c"] * 21])
def test_risk_accepted_codes_are_a_short_list_of_short_strings(codes):
    settings = load_settings(settings_env(SERVICENOW_FIELD_MAP=json.dumps({"risk_accepted_codes": codes})))
    assert [i.setting for i in settings.issues] == ["SERVICENOW_FIELD_MAP"]
    assert "'risk_accepted_codes' must be a list of 1 to 20 close codes" in settings.issues[0].message


def test_the_code_the_connector_resolves_with_is_no_risk_accepted_code():
    both = {"resolution_code": {"field": "close_code", "value": "Risk Accepted"}, **CODES}
    settings = load_settings(settings_env(SERVICENOW_FIELD_MAP=json.dumps(both)))
    assert "must not hold the code 'resolution_code' writes" in settings.issues[0].message


def test_a_write_graph_refused_is_written_by_the_next_refresh(accepting):
    saved_routes(accepting, [{"match": {"controls": [CONTROL]}, "set": {"onRiskAccepted": "ignore"}}])
    accepting.graph.inject(Fault("status", status=503, method="PATCH", path_prefix=PROFILES, times=100))
    ticket_id = closed(accepting, "Risk Accepted")
    stored = accepting.services.store.get_ticket(ticket_id)
    assert stored is not None and stored[0].extra["riskAccepted"]["written"] is False
    assert states(accepting, [CONTROL]) == {CONTROL: "Default"}
    accepting.graph.faults.clear()
    assert refresh(accepting)[0] == 200
    assert states(accepting, [CONTROL]) == {CONTROL: "Ignored"}


def test_a_patch_whose_answer_was_lost_is_not_sent_again(accepting):
    """With the notes' write-back off, too: the PATCH is the risk's alone, and its answer is lost."""
    use(accepting, SERVICENOW_FIELD_MAP=json.dumps(CODES), SECURE_SCORE_WRITE_BACK="off")
    saved_routes(accepting, [{"match": {"controls": [CONTROL]}, "set": {"onRiskAccepted": "ignore"}}])
    accepting.graph.inject(Fault("commit_then_drop", method="PATCH", path_prefix=PROFILES, times=1))
    closed(accepting, "Risk Accepted")
    assert states(accepting, [CONTROL]) == {CONTROL: "Ignored"}
    assert refresh(accepting)[0] == 200  # tries again whatever the sync did not mark written: reads first
    sent = [p for p in patches(accepting) if json.loads(p.body).get("state") == "Ignored"]
    assert len(sent) == 1
