"""One bad record never stops the others (docs/design.md#robustness): a failing item is recorded on the ticket and in
provisioning, skipped, retried a bounded number of times; the run goes on."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest

from dev.servicenow import Fault
from shared.problems import ServiceNowUnavailable
from shared.tickets import Ticket
from status_sync.sync import MAX_ITEM_ATTEMPTS, StatusSync
from tests.conftest import Harness
from tests.create_ticket.test_exactly_once import body_for
from tests.create_ticket.test_tickets import post
from tests.status_sync.test_sync import assert_store_equals_servicenow, create_tickets


def _provisioning(harness: Harness) -> dict[str, Any]:
    return dict(json.loads(harness.call("provisioning", path="/provisioning").get_body()))


def _failed_items(harness: Harness) -> dict[str, Any]:
    return next(c for c in _provisioning(harness)["checks"] if c["name"] == "failed_items")


def _ticket_json(harness: Harness, ticket_id: str) -> dict[str, Any]:
    return dict(json.loads(harness.call("get_ticket", route_params={"id": ticket_id}).get_body()))


def _run(harness: Harness) -> Any:
    harness.clock.advance(minutes=5)
    return StatusSync(harness.services).run()


def _retries_of(harness: Harness, sys_id: str) -> int:
    """The runs that asked ServiceNow for this record again by its sys_id."""
    return sum(1 for r in harness.simulator.requests if r.method == "GET" and sys_id in r.url)


def test_a_record_with_a_correlation_id_edited_by_hand_is_listed_not_fatal(connected):
    """A connector-looking record the store does not know, with a correlation id the pattern refuses."""
    good = create_tickets(connected, 3)
    StatusSync(connected.services).run()
    template = connected.simulator.tables["incident"][next(iter(good))]
    edited = {**template, "sys_id": "f" * 32, "number": "INC0099999", "correlation_id": "m365sec:edited by hand^NQ"}
    connected.simulator.tables["incident"]["f" * 32] = edited
    for sys_id in list(good)[1:]:
        connected.clock.advance(seconds=1)
        connected.simulator.update("incident", sys_id, state="2")
    result = _run(connected)
    assert result.status == "ok"
    assert result.changed >= 2  # the others synced
    assert any("INC0099999" in e and "record_refused" in e for e in result.errors)
    check = _failed_items(connected)
    assert not check["ok"] and "INC0099999" in check["detail"] and "correlation_id" in check["detail"]
    assert _provisioning(connected)["state"] == "degraded"
    for sys_id in list(good)[1:]:
        assert connected.services.store.find_ticket_by_sys_id(sys_id)[0].status == "in_progress"

    # Retried by later runs, a bounded number of times, then only listed.
    connected.simulator.requests.clear()
    tried = []
    for _ in range(MAX_ITEM_ATTEMPTS + 3):
        result = _run(connected)
        assert result.status == "ok"
        tried.append(sum("INC0099999" in e for e in result.errors))
    assert tried == [1] * (MAX_ITEM_ATTEMPTS - 1) + [0] * 4  # once a run (the first attempt was the run above)
    assert _retries_of(connected, "f" * 32) == MAX_ITEM_ATTEMPTS - 1
    assert f"(attempts: {MAX_ITEM_ATTEMPTS})" in _failed_items(connected)["detail"]
    assert "INC0099999" in _failed_items(connected)["detail"]

    # Fixed in ServiceNow: the record leaves the list once a run reads it.
    connected.simulator.tables["incident"]["f" * 32]["correlation_id"] = "m365sec:Restored"
    connected.simulator.update("incident", "f" * 32, state="2")
    _run(connected)
    assert _failed_items(connected)["ok"]


def _legacy_poisoned_row(harness: Harness) -> Ticket:
    """A pending row written before the edge refused lone surrogates: its payload cannot be encoded."""
    now = harness.clock().isoformat()
    ticket = Ticket(
        id=uuid.uuid4().hex, recommendation_id="Poisoned", name="\ud800 x", priority=3, due_date=None,
        recommendation={"id": "Poisoned", "source": "user", "category": "Data", "url": None}, requested_by=None,
        table="incident", fingerprint="", created_at=now, updated_at=now,
        extra={"payload": {"short_description": "\ud800 x", "correlation_id": "m365sec:Poisoned"}},
    )  # fmt: skip
    harness.services.store.add_ticket(ticket)
    harness.services.store.claim_recommendation("Poisoned", ticket.id)
    return ticket


def test_a_poisoned_pending_row_is_skipped_and_the_sync_goes_on(connected):
    """Finding 1's leftovers: every run used to raise on this row and sync nothing."""
    tickets = create_tickets(connected, 2)
    poisoned = _legacy_poisoned_row(connected)
    StatusSync(connected.services).run()
    for sys_id in tickets:
        connected.clock.advance(seconds=1)
        connected.simulator.update("incident", sys_id, state="7")
    result = _run(connected)
    assert result.status == "ok" and result.changed == 2
    assert_store_equals_servicenow(connected)
    error = _ticket_json(connected, poisoned.id)["error"]
    assert error["code"] == "internal_error" and "UnicodeEncodeError" in error["detail"] and error["attempts"] == 2
    assert poisoned.id in _failed_items(connected)["detail"]
    for _ in range(MAX_ITEM_ATTEMPTS):
        _run(connected)
    assert _ticket_json(connected, poisoned.id)["error"]["attempts"] == MAX_ITEM_ATTEMPTS  # then no more tries
    assert _provisioning(connected)["lastSync"]["status"] == "ok"


def test_a_ticket_whose_creation_always_fails_is_listed_and_resumes_on_request(connected):
    sim = connected.simulator
    # Answered, but ambiguous: a 502 may come after the record was stored, so the row is kept and looked up.
    sim.inject(Fault("status", status=502, method="POST", path_prefix="/api/now/v2/table/incident"))
    sim.mandatory["incident"] = {"close_code": "Resolution code"}  # then every POST is refused
    status, problem = post(connected, body_for("AlwaysFails"))
    assert (status, problem["code"]) == (502, "servicenow_rejected")
    (pending,) = [t for t, _ in connected.services.store.list_pending_tickets()]
    other = create_tickets_after_policy(connected)
    for _ in range(MAX_ITEM_ATTEMPTS + 2):
        assert _run(connected).status == "ok"
    ticket = _ticket_json(connected, pending.id)
    assert ticket["status"] == "pending"
    assert ticket["error"]["code"] == "servicenow_rejected" and "Resolution code" in ticket["error"]["detail"]
    assert ticket["error"]["attempts"] == MAX_ITEM_ATTEMPTS
    posts = [r for r in sim.requests if r.method == "POST" and r.path.endswith("/incident")]
    # The request's two (the failed one and its refused retry), one per run for five runs, the others': no more.
    assert len(posts) == 2 + MAX_ITEM_ATTEMPTS + len(other)
    check = _failed_items(connected)
    assert not check["ok"] and pending.id in check["detail"] and "Resolution code" in check["detail"]

    # The admin fixes the data policy and asks again: the same ticket is finished, the error and the listing go.
    sim.mandatory.clear()
    status, created = post(connected, body_for("AlwaysFails"))
    assert status == 200 and created["id"] == pending.id and created["error"] is None and created["sysId"]
    _run(connected)
    assert _failed_items(connected)["ok"]
    assert len([r for r in sim.records() if r["correlation_id"] == "m365sec:AlwaysFails"]) == 1


def create_tickets_after_policy(harness: Harness) -> list[dict[str, Any]]:
    """Tickets for other recommendations while the policy is fixed for them: they are unaffected."""
    sim = harness.simulator
    mandatory = dict(sim.mandatory["incident"])
    sim.mandatory["incident"] = {}
    created = [post(harness, body_for(f"Fine{i}"))[1] for i in range(2)]
    sim.mandatory["incident"] = mandatory
    assert all(t["status"] == "new" for t in created)
    return created


def test_a_failed_run_shows_in_provisioning_at_once(connected):
    create_tickets(connected, 1)
    connected.simulator.inject(Fault("status", status=500, method="GET", times=1000))
    with pytest.raises(ServiceNowUnavailable):
        _run(connected)
    body = _provisioning(connected)
    assert body["lastSync"]["status"] == "failed"
    assert body["state"] == "degraded"
    assert not next(c for c in body["checks"] if c["name"] == "status_sync")["ok"]


def test_a_reopened_ticket_whose_recommendation_has_a_new_open_ticket_records_the_conflict(connected):
    """A closed record reopened by a human after a new ticket was made for the same recommendation: the
    connector cannot undo the human's change, so it says so, and never makes a third."""
    status, first = post(connected, body_for("Reopened"))
    connected.clock.advance(seconds=1)
    connected.simulator.update("incident", first["sysId"], state="7")
    _run(connected)
    status, second = post(connected, body_for("Reopened"))
    assert status == 201 and second["id"] != first["id"]
    connected.clock.advance(seconds=1)
    connected.simulator.update("incident", first["sysId"], state="2")  # a human reopens the old one
    _run(connected)
    reopened = _ticket_json(connected, first["id"])
    assert reopened["status"] == "in_progress"
    assert reopened["error"]["code"] == "duplicate_open_record" and second["number"] in reopened["error"]["detail"]
    assert first["number"] in _failed_items(connected)["detail"]
    status, again = post(connected, body_for("Reopened"))
    assert (status, again["id"]) == (200, second["id"])  # the claim holder, never a third record
    assert len(connected.simulator.records()) == 2
    connected.clock.advance(seconds=1)
    connected.simulator.update("incident", first["sysId"], state="7")  # closed again: the conflict is over
    _run(connected)
    assert _ticket_json(connected, first["id"])["error"] is None
    assert _failed_items(connected)["ok"]


def test_a_reopened_ticket_takes_its_recommendations_claim_back(connected):
    status, first = post(connected, body_for("TakeBack"))
    connected.clock.advance(seconds=1)
    connected.simulator.update("incident", first["sysId"], state="6")
    _run(connected)
    connected.clock.advance(seconds=1)
    connected.simulator.update("incident", first["sysId"], state="2")
    _run(connected)
    assert _ticket_json(connected, first["id"])["error"] is None
    status, again = post(connected, body_for("TakeBack"))
    assert (status, again["id"]) == (200, first["id"])
    assert len(connected.simulator.records()) == 1


def test_many_bad_records_keep_the_run_state_small_and_every_good_one_syncs(connected, azurite):
    """150 hand-edited records in one run, on Table Storage: the run state lists the first 50 errors and how
    many more, provisioning lists the 100 newest failures, and the good tickets still sync."""
    from azure.data.tables import TableServiceClient

    from tests.create_ticket.test_exactly_once import _on_table_storage

    services = _on_table_storage(connected, TableServiceClient.from_connection_string(azurite))
    good = create_tickets(connected, 3)
    StatusSync(services).run()
    template = connected.simulator.tables["incident"][next(iter(good))]
    for i in range(150):
        sys_id = f"{i:032x}"
        connected.simulator.tables["incident"][sys_id] = {**template, "sys_id": sys_id, "number": f"INC9{i:06d}",
                                                          "correlation_id": f"m365sec:bad {i}"}  # fmt: skip
    for sys_id in good:
        connected.clock.advance(seconds=1)
        connected.simulator.update("incident", sys_id, state="2")
    connected.clock.advance(minutes=5)
    result = StatusSync(services).run()
    assert result.status == "ok" and result.changed == 3
    last = _provisioning(connected)["lastSync"]
    assert len(last["errors"]) == 51 and last["errors"][-1] == "... and 100 more"
    check = _failed_items(connected)
    assert not check["ok"] and check["detail"].startswith("100 item(s) failed")
    for sys_id in good:
        found = services.store.find_ticket_by_sys_id(sys_id)
        assert found is not None and found[0].status == "in_progress"
