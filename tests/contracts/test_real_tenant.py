"""A real tenant and a real instance, as the public documentation says they answer (issue 15): controls that do not
apply, people's decisions in Secure Score, partial answers, failed writes, slow and empty answers, strange numbers
and duplicates a person made. Each test runs against the simulators, which answer as strictly as the docs read."""

from __future__ import annotations

import json
from typing import Any

import pytest

from dev.graph.identity import WRITE_ROLE, ManagedIdentity
from dev.graph.simulator import PROFILES
from dev.servicenow import Fault
from shared import services as services_module
from shared.retries import RetryPolicy
from shared.runs import MAX_ITEM_ATTEMPTS
from shared.store import DIGEST, controls_digest
from status_sync.sync import StatusSync
from tests.conftest import Harness, build_services
from tests.create_ticket.test_tickets import post
from tests.secure_score.test_secure_score import (
    CONTROL,
    patches,
    recommendations,
    record,
    refresh,
    scored,
    sync,
    ticket_json,
    ticketed,
)

__all__ = ["scored", "ticketed"]  # fixtures, used by name

ANALYST = "analyst@contoso.com"


def _check(harness: Harness, name: str) -> dict[str, Any]:
    body = json.loads(harness.call("provisioning", path="/provisioning").get_body())
    return dict(next(c for c in body["checks"] if c["name"] == name))


def _with(harness: Harness, **env: str) -> None:
    services_module.install(build_services(harness.tmp, harness.transport, harness.clock, harness.sleeps,
                                           harness.graph, **env))  # fmt: skip
    harness.services = services_module.get_services()


# -- 1. controls that do not apply ----------------------------------------------------------------


def test_a_tenant_with_300_profiles_and_120_scored_shows_only_scored_actions(scored):
    opened = recommendations(scored)
    assert len(opened["recommendations"]) <= 120 and all(r["scored"] for r in opened["recommendations"])
    assert opened["notScored"] == 180
    hidden = recommendations(scored, scored="false")["recommendations"]
    assert len(hidden) == 180 and not any(r["scored"] or r["completed"] for r in hidden)
    assert len(recommendations(scored, status="all")["recommendations"]) == 300


def test_controls_that_are_not_scored_are_never_auto_resolved_but_can_be_ticketed_on_purpose(scored):
    unscored = [r["id"] for r in recommendations(scored, scored="false")["recommendations"]][:3]
    tickets = [post(scored, {"recommendation": {"id": control}}) for control in unscored]
    assert all(status == 201 for status, _ in tickets)  # a ticket made on purpose for one that does not apply
    for control in unscored:
        scored.graph.complete(control)  # the switch makes it scored and completed...
        scored.graph.scores.pop(control)  # ...and then Secure Score stops scoring it again
    result = refresh(scored)[1]
    assert result["resolved"] == 0
    assert all(record(scored, t["sysId"])["state"] == "1" for _, t in tickets)


# -- 2. the write-back never undoes a person's decision -------------------------------------------


def test_an_ignored_state_and_an_analyst_set_in_secure_score_survive_the_write_back(ticketed):
    harness, ticket = ticketed
    sync(harness)  # the first note
    harness.graph.set_state(CONTROL, "Ignored", ANALYST)  # an admin, between two refreshes
    harness.clock.advance(seconds=1)
    harness.simulator.update("incident", ticket["sysId"], state="2")
    sync(harness)  # the status changed: the write-back runs
    newest = harness.graph.state_of(CONTROL)
    assert newest["state"] == "Ignored" and newest["assignedTo"] == ANALYST
    assert newest["comment"].startswith(f"ServiceNow {ticket['number']}: In progress")
    reads = [r for r in harness.graph.requests if r.method == "GET" and r.path == f"{PROFILES}/{CONTROL}"]
    assert len(reads) == len(patches(harness)) == 2  # each write read the control just before it


def test_servicenows_assignee_is_the_analyst_but_the_state_is_still_what_the_admin_chose(ticketed):
    harness, ticket = ticketed
    harness.graph.set_state(CONTROL, "thirdParty", ANALYST)  # any case: Graph compares case-insensitively
    harness.clock.advance(seconds=1)
    harness.simulator.update("incident", ticket["sysId"], assigned_to="6816f79cc0a8016401c5a33be04be441")
    sync(harness)
    newest = harness.graph.state_of(CONTROL)
    assert newest["state"] == "thirdParty" and newest["assignedTo"] == "admin@example.com"


# -- 3. a partial answer --------------------------------------------------------------------------


def test_a_206_refresh_stores_the_data_and_shows_the_warning(scored):
    scored.graph.failed_providers[("Microsoft", "MDATP")] = 503
    status, result = refresh(scored)
    assert status == 200 and result["status"] == "partial"
    (warning,) = result["warnings"]
    assert warning["provider"] == "Microsoft/MDATP" and warning["status"] == 503
    assert warning["code"] == "secure_score_unavailable" and "MDATP" in warning["detail"]
    every = recommendations(scored, status="all")["recommendations"]
    assert len(every) == 300  # the failed provider's controls are kept as the last snapshot had them
    check = _check(scored, "secure_score")
    assert not check["ok"] and "MDATP" in check["detail"]


def test_a_providers_403_is_secure_score_forbidden_naming_the_provider(scored):
    scored.graph.failed_providers[("Microsoft", "MDA_Okta")] = 403
    result = refresh(scored)[1]
    (warning,) = result["warnings"]
    assert warning["code"] == "secure_score_forbidden" and "MDA_Okta" in warning["detail"]
    assert "SecurityEvents.ReadWrite.All" in warning["remediation"]
    assert "SecurityEvents.ReadWrite.All" in (_check(scored, "secure_score")["remediation"] or "")


# -- 4. failed writes are retried, bounded, and never silent ----------------------------------------


def test_a_400_without_a_clear_refusal_is_retried_by_later_runs_and_then_shown(ticketed):
    harness, ticket = ticketed
    harness.graph.inject(Fault("status", status=400, method="PATCH", path_prefix=PROFILES, times=1))
    sync(harness)
    data = ticket_json(harness, ticket["id"])["secureScore"]
    assert data["ok"] is False and data["refused"] is None and data["attempts"] == 1
    refresh(harness)  # the next run writes it
    assert ticket_json(harness, ticket["id"])["secureScore"]["ok"] is True


def test_a_write_that_keeps_failing_stops_after_the_bounded_attempts_visibly(ticketed):
    harness, ticket = ticketed
    harness.graph.inject(Fault("status", status=503, method="PATCH", path_prefix=PROFILES, times=10_000))
    harness.services.graph.retry = RetryPolicy(attempts=1)
    for _ in range(MAX_ITEM_ATTEMPTS + 3):
        refresh(harness)
    assert len(patches(harness)) == MAX_ITEM_ATTEMPTS
    data = ticket_json(harness, ticket["id"])["secureScore"]
    assert data["ok"] is False and data["attempts"] == MAX_ITEM_ATTEMPTS
    failed = _check(harness, "secure_score_notes")  # the tenant's own check: not the ServiceNow connection's
    assert not failed["ok"] and CONTROL in failed["detail"] and failed["group"] == "tenant"


def test_a_403_stops_writes_until_a_refresh_finds_the_permission_in_place(scored):
    identity: ManagedIdentity = scored.graph.identity
    identity.roles = {"SecurityEvents.Read.All"}  # granted read only
    identity.lifetime = 60  # short-lived tokens: every call asks for one, so a new grant shows at once
    _with(scored)  # a fresh credential: no token issued before the change is cached
    try:
        _, ticket = post(scored, {"recommendation": {"id": CONTROL}})
        refresh(scored)
        data = ticket_json(scored, ticket["id"])["secureScore"]
        assert data["forbidden"] is True and data["ok"] is False
        assert CONTROL in _check(scored, "secure_score_notes")["detail"]
        before = len(patches(scored))
        refresh(scored)
        assert len(patches(scored)) == before  # stopped: no write while the token lacks the permission
        identity.roles = {WRITE_ROLE}  # a directory admin granted SecurityEvents.ReadWrite.All
        refresh(scored)
        data = ticket_json(scored, ticket["id"])["secureScore"]
        assert data["forbidden"] is False and data["ok"] is True
    finally:
        identity.roles, identity.lifetime = {WRITE_ROLE}, 3600


# -- 5. smaller: what Graph's data really looks like ----------------------------------------------


def test_numbers_sent_as_strings_are_numbers_and_completion_has_a_tolerance(connected):
    graph = connected.graph
    graph.profiles["DLPEnabled"]["maxScore"] = "10"
    graph.scores["DLPEnabled"] = 10 - 1e-9  # a double a hair under the maximum
    refresh(connected)
    (item,) = [r for r in recommendations(connected, status="all")["recommendations"] if r["id"] == "DLPEnabled"]
    assert item["maxScore"] == 10.0 and item["completed"] is True


def test_the_newest_state_is_chosen_by_its_parsed_time(connected):
    # Compared as text, each of the others would look newer: "00Z" > "00.5Z" ('Z' after '.'), "11:30:00+02:00" >
    # "10:00", a seven-digit fraction is longer; and the newest is not the last entry either.
    connected.graph.profiles["OneAdmin"]["controlStateUpdates"] = [
        {"state": "Ignored", "updatedDateTime": "2026-03-01T10:00:00.5Z"},
        {"state": "ThirdParty", "updatedDateTime": "2026-03-01T10:00:00Z"},
        {"state": "Reviewed", "updatedDateTime": "2026-03-01T11:30:00+02:00"},  # 09:30 UTC
        {"state": "ThirdParty", "updatedDateTime": "2026-03-01T10:00:00.1234567Z"},
        {"state": "Reviewed", "updatedDateTime": None},
    ]
    refresh(connected)
    (item,) = [r for r in recommendations(connected, status="all")["recommendations"] if r["id"] == "OneAdmin"]
    assert item["state"] == "Ignored"


@pytest.mark.parametrize("updates", [5, True, 2.5, "Ignored", {"state": "Ignored"}])
def test_state_updates_that_are_not_a_list_are_no_state_and_stop_nothing(connected, updates):
    # Graph documents controlStateUpdates as a collection; anything else is read as no update (the Default state),
    # the control and every other one still stored.
    connected.graph.profiles["OneAdmin"]["controlStateUpdates"] = updates
    status, result = refresh(connected)
    assert status == 200 and result["status"] == "ok", result
    items = {r["id"]: r for r in recommendations(connected, status="all")["recommendations"]}
    assert items["OneAdmin"]["state"] == "Default" and len(items) == 300


def test_a_category_outside_the_five_is_kept_and_a_ticket_can_be_made_from_it(connected):
    connected.graph.profiles["OneAdmin"]["controlCategory"] = "Compliance"
    refresh(connected)
    listed = recommendations(connected, status="all", category="Compliance")["recommendations"]
    assert [r["id"] for r in listed] == ["OneAdmin"]
    status, ticket = post(connected, {"recommendation": {"id": "OneAdmin"}})
    assert status == 201 and ticket["recommendation"]["category"] == "Compliance"
    assert "Category: Compliance" in record(connected, ticket["sysId"])["description"]


def test_threats_that_are_not_a_list_are_ignored_and_invisible_characters_never_reach_servicenow(connected):
    profile = connected.graph.profiles["OneAdmin"]
    profile["threats"] = "Account Breach"
    profile["remediation"] = "<p>Open\u202e the admin\u200b center\u2028and add a second admin.</p>"
    refresh(connected)
    (item,) = [r for r in recommendations(connected, status="all")["recommendations"] if r["id"] == "OneAdmin"]
    assert item["threats"] == []
    _, ticket = post(connected, {"recommendation": {"id": "OneAdmin"}})
    description = record(connected, ticket["sysId"])["description"]
    assert "Open the admin center\nand add a second admin." in description
    assert not any(ch in description for ch in "\u202e\u200b\u2028")


def test_a_retry_after_from_servicenow_reaches_the_client_at_most_an_hour(connected):
    connected.simulator.inject(Fault("status", status=429, headers={"Retry-After": "86400"}, times=10))
    response = connected.call("create_ticket", "POST", "/tickets", body=json.dumps(
        {"name": "x", "recommendation": {"id": "Mine", "source": "user", "category": "Data"}}).encode())  # fmt: skip
    assert response.status_code == 503 and response.headers["Retry-After"] == "3600"


# -- 6. slow answers ------------------------------------------------------------------------------


def test_the_drip_switch_ends_a_refresh_within_its_deadline(connected):
    connected.services.graph.retry = RetryPolicy(attempts=2, deadline=0.3)
    connected.graph.drip = 0.05  # headers at once, then one byte every 50 ms: minutes for one page
    status, problem = refresh(connected)
    assert (status, problem["code"]) == (503, "secure_score_unavailable") and "timed out" in problem["detail"]
    assert len(connected.graph.requests) == 4  # both reads (side by side), each attempt cut at its deadline
    last = json.loads(connected.call("provisioning", path="/provisioning").get_body())
    check = next(c for c in last["checks"] if c["name"] == "secure_score")
    assert not check["ok"] and "timed out" in check["detail"]


def test_a_refresh_that_reaches_its_run_deadline_stops_and_keeps_the_old_snapshot(scored):
    before = recommendations(scored, status="all")["recommendations"]
    _with(scored)
    scored.services.run_deadline = 0.2
    scored.graph.latency = 0.15  # every Graph answer takes 150 ms: the listing needs more than the run has
    try:
        status, problem = refresh(scored)
    finally:
        scored.graph.latency = 0.0
    assert (status, problem["code"]) == (503, "secure_score_unavailable") and "deadline" in problem["detail"]
    assert recommendations(scored, status="all")["recommendations"] == before


# -- 7. an empty or shrunken listing ---------------------------------------------------------------


def test_an_empty_listing_keeps_the_previous_snapshot_with_a_warning(scored):
    before = recommendations(scored, status="all")["recommendations"]
    scored.graph.empty = True
    status, result = refresh(scored)
    assert status == 200 and result["status"] == "partial" and "no control profiles" in result["warnings"][0]["detail"]
    assert recommendations(scored, status="all")["recommendations"] == before
    assert not _check(scored, "secure_score")["ok"]


def test_a_drop_of_more_than_half_is_kept_out_once_and_taken_when_seen_again(scored):
    for control in [c for c in scored.graph.profiles if c.startswith(("1", "scid_"))]:
        scored.graph.profiles.pop(control)  # Microsoft removes most of the catalogue
    assert len(scored.graph.profiles) < 150
    first = refresh(scored)[1]
    assert first["status"] == "partial" and "fewer than half" in first["warnings"][0]["detail"]
    assert len(recommendations(scored, status="all")["recommendations"]) == 300
    second = refresh(scored)[1]
    assert second["status"] == "ok"
    assert len(recommendations(scored, status="all")["recommendations"]) == len(scored.graph.profiles)


def test_a_snapshot_an_earlier_version_stored_without_its_digest_is_read_whole_and_a_drop_still_kept_out(scored):
    store = scored.services.store
    summary, controls = store.get_secure_score()
    assert summary.pop(DIGEST) == controls_digest(controls)  # a refresh stores the digest of what it stored
    summary.pop("controls")  # an earlier version's summary: neither the digest nor the count
    store.put_secure_score(summary, controls)
    for control in [c for c in scored.graph.profiles if c.startswith(("1", "scid_"))]:
        scored.graph.profiles.pop(control)
    first = refresh(scored)[1]
    assert first["status"] == "partial" and "fewer than half" in first["warnings"][0]["detail"]
    assert len(recommendations(scored, status="all")["recommendations"]) == 300
    assert refresh(scored)[1]["status"] == "ok"
    summary, controls = store.get_secure_score()
    assert summary[DIGEST] == controls_digest(controls) and len(controls) == len(scored.graph.profiles)


# -- ServiceNow --------------------------------------------------------------------------------------


def test_a_record_number_that_is_not_one_line_of_printable_text_is_the_records_failure(ticketed):
    harness, ticket = ticketed
    sync(harness)
    notes_before = len(patches(harness))
    harness.clock.advance(seconds=1)
    harness.simulator.update("incident", ticket["sysId"], state="2")
    harness.simulator.tables["incident"][ticket["sysId"]]["number"] = "INC001\nInjected: yes"
    harness.clock.advance(minutes=5)
    result = StatusSync(harness.services).run()
    assert any("record_refused" in e for e in result.errors)
    assert ticket_json(harness, ticket["id"])["number"] == ticket["number"]  # the bad number went nowhere
    assert len(patches(harness)) == notes_before
    assert "Injected" not in (harness.graph.state_of(CONTROL)["comment"] or "")
    assert "record_refused" in _check(harness, "failed_items")["detail"]


def test_a_duplicate_a_person_opened_by_hand_never_takes_over(ticketed):
    """A person (admin) copied the connector's record by hand, correlation id and all."""
    harness, ticket = ticketed
    sync(harness)
    copy = {**harness.simulator.tables["incident"][ticket["sysId"]], "sys_id": "d" * 32, "number": "INC0099001",
            "sys_mod_count": "0", "sys_created_by": "admin"}  # fmt: skip
    harness.simulator.tables["incident"]["d" * 32] = copy
    harness.clock.advance(seconds=1)
    harness.simulator.update("incident", "d" * 32, short_description="copied by hand")
    sync(harness)
    # The recommendation has a ticket: the copy is refused, listed with where it was found, and never a ticket.
    assert [t.id for t, _ in harness.services.store.list_tickets()] == [ticket["id"]]
    failed = _check(harness, "failed_items")["detail"]
    assert "INC0099001" in failed and "record_refused" in failed and "connection 'default'" in failed
    (row,) = [r for r in recommendations(harness, ticket="with")["recommendations"] if r["id"] == CONTROL]
    assert row["ticket"]["id"] == ticket["id"]  # the connector's own ticket stays the recommendation's
    harness.graph.complete(CONTROL)
    assert refresh(harness)[1]["resolved"] == 1
    assert record(harness, ticket["sysId"])["state"] == "6" and record(harness, "d" * 32)["state"] == "1"
    assert harness.graph.state_of(CONTROL)["comment"].startswith(f"ServiceNow {ticket['number']}:")
