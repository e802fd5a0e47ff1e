"""The status sync and records of the connector's own that the store does not track yet (docs/status-sync.md):
a pending create's record is linked to it, never adopted beside it; of two open records of the connector's own for
one recommendation the older is kept and the newer cancelled, naming it; a record a person made is never cancelled."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest

from dev.servicenow import Fault
from dev.servicenow.state import ADMIN_SYS_ID, INTEGRATION_USER_SYS_ID, Grant
from shared import services as services_module
from shared.tickets import Ticket
from status_sync.sync import StatusSync
from tests.conftest import CLIENT_ID, INSTANCE, Harness, build_services
from tests.create_ticket.test_exactly_once import HOLD_WAIT, INCIDENTS, Crash, CrashAfterCommit, body_for
from tests.create_ticket.test_tickets import post
from tests.status_sync.test_poison import _failed_items


def tickets(harness: Harness) -> list[Ticket]:
    return [t for t, _ in harness.services.store.list_tickets()]


def sync(harness: Harness) -> Any:
    harness.clock.advance(minutes=5)
    result = StatusSync(harness.services).run()
    assert result.status == "ok", result
    return result


def record_by(harness: Harness, user_sys_id: str, recommendation_id: str) -> dict[str, Any]:
    """A record with the connector's correlation id, posted to the Table API by another user (a person, or the
    integration user through something other than this store)."""
    token = f"token-of-{user_sys_id}"
    harness.simulator.access_tokens[token] = Grant(user_sys_id, CLIENT_ID, harness.clock.epoch() + 3600)
    with httpx.Client(transport=harness.transport, base_url=INSTANCE) as client:
        body = {"short_description": "Made elsewhere", "correlation_id": f"m365sec:{recommendation_id}"}
        answer = client.post("/api/now/table/incident", headers={"Authorization": f"Bearer {token}"}, json=body)
    assert answer.status_code == 201, answer.text
    return dict(answer.json()["result"])


def test_a_sync_while_a_create_waits_for_its_answer_links_that_record_and_adopts_nothing(connected):
    """The issue's reproduction without any crash: the POST commits at once and its answer comes late; a status sync
    runs meanwhile. The record is the pending create's own: linked to it, one record, one ticket, nothing marked."""
    late = Fault("commit_then_hold", method="POST", path_prefix=INCIDENTS)
    connected.simulator.inject(late)
    with ThreadPoolExecutor(1) as pool:
        creating = pool.submit(post, connected)
        try:
            assert late.arrived.wait(HOLD_WAIT), "the create's POST never reached ServiceNow"
            connected.clock.advance(seconds=6)  # the answer is 6 s late; the create's lease holds: no resume
            result = StatusSync(connected.services).run()
        finally:
            late.release.set()
        status, ticket = creating.result(timeout=HOLD_WAIT)
    (record,) = connected.simulator.records()
    assert status == 201 and ticket["sysId"] == record["sys_id"], ticket
    assert result.adopted == 0 and result.errors == []
    (only,) = tickets(connected)
    assert only.id == ticket["id"] and only.sys_id == record["sys_id"] and only.status == "new"
    assert only.duplicate_of is None and only.error is None
    assert _failed_items(connected)["ok"]
    sync(connected)
    assert len(tickets(connected)) == 1 and len(connected.simulator.records()) == 1


def test_a_pending_tickets_record_found_by_the_sync_after_a_crash_is_linked(connected):
    """A crash inside the lease (the record committed, the process gone before its link): the sync links the
    record to the pending ticket at once, lease or not, and a repeat of the request answers with it."""
    crashing = build_services(connected.tmp, CrashAfterCommit(connected.simulator), connected.clock, connected.sleeps)
    services_module.install(crashing)
    with pytest.raises(Crash):  # the worker's process dies after ServiceNow committed
        post(connected, body_for("Crashed"))
    services_module.install(connected.services)
    (pending,) = tickets(connected)
    assert pending.status == "pending" and pending.lease_until is not None
    result = StatusSync(connected.services).run()  # within the lease: the create is not resumed, its record is linked
    (linked,) = tickets(connected)
    assert result.adopted == 0 and linked.id == pending.id and linked.status == "new" and linked.lease_until is None
    status, ticket = post(connected, body_for("Crashed"))
    assert status == 200 and ticket["id"] == pending.id and len(connected.simulator.records()) == 1


def test_of_two_open_records_of_the_connectors_own_the_older_is_kept_and_the_newer_cancelled(connected):
    """The connector's own second record (the integration user made it, with its correlation id) that the store does
    not track: cancelled, with a work note naming the kept one, and tracked as a copy of the kept ticket."""
    status, kept = post(connected, body_for("Twice"))
    assert status == 201
    sync(connected)
    connected.clock.advance(seconds=5)
    second = record_by(connected, INTEGRATION_USER_SYS_ID, "Twice")
    sync(connected)
    records = {r["sys_id"]: r for r in connected.simulator.records()}
    assert records[kept["sysId"]]["state"] == "1" and records[second["sys_id"]]["state"] == "8"
    notes = [text for sys_id, kind, text in connected.simulator.journal if sys_id == second["sys_id"]]
    assert len(notes) == 1 and kept["number"] in notes[0]
    by_record = {t.sys_id: t for t in tickets(connected)}
    assert by_record[kept["sysId"]].id == kept["id"] and by_record[kept["sysId"]].status == "new"
    copy = by_record[second["sys_id"]]
    assert copy.status == "canceled" and copy.duplicate_of == kept["id"]
    assert post(connected, body_for("Twice"))[1]["id"] == kept["id"]  # the kept one answers a repeat
    sync(connected)
    assert len(tickets(connected)) == 2  # nothing more to settle: no second note, no third ticket
    assert [n for s, _, n in connected.simulator.journal if s == second["sys_id"]] == notes


def test_when_the_tracked_record_is_the_newer_it_is_cancelled_and_the_older_kept(connected, tmp_path):
    """A store that lost its newest writes: the connector made the record again. The older (the one the store
    forgot) is kept and adopted, the newer (the store's) cancelled, naming the older."""
    status, lost = post(connected, body_for("Lost"))
    assert status == 201
    store = connected.services.store
    store.release_claim("Lost", lost["id"])
    store.delete_ticket(lost["id"])  # what an emulator that lost its acknowledged writes leaves
    connected.clock.advance(seconds=5)
    status, again = post(connected, body_for("Lost"))
    assert status == 201 and again["sysId"] != lost["sysId"]
    sync(connected)
    records = {r["sys_id"]: r for r in connected.simulator.records()}
    assert records[lost["sysId"]]["state"] == "1" and records[again["sysId"]]["state"] == "8"
    notes = [text for sys_id, _, text in connected.simulator.journal if sys_id == again["sysId"]]
    assert len(notes) == 1 and lost["number"] in notes[0]
    by_record = {t.sys_id: t for t in tickets(connected)}
    assert by_record[again["sysId"]].status == "canceled"
    kept = by_record[lost["sysId"]]
    assert kept.status == "new" and kept.duplicate_of is None
    assert post(connected, body_for("Lost"))[1]["id"] == kept.id  # the kept record's ticket holds the claim


def test_a_record_a_person_made_is_never_cancelled(connected):
    status, kept = post(connected, body_for("ByHand"))
    assert status == 201
    sync(connected)
    connected.clock.advance(seconds=5)
    by_hand = record_by(connected, ADMIN_SYS_ID, "ByHand")
    sync(connected)
    assert connected.simulator.tables["incident"][by_hand["sys_id"]]["state"] == "1"
    assert not [r for r in connected.simulator.requests if r.method == "PATCH"]
    assert [t.status for t in tickets(connected) if t.sys_id == kept["sysId"]] == ["new"]


def test_the_connectors_record_is_refused_for_a_pending_ticket_that_is_not_its_create(connected):
    """A record naming a recommendation whose ticket is pending, without that create's reference, is neither linked
    nor adopted: it waits (listed) until the create is done."""
    connected.simulator.inject(Fault("drop", method="POST", path_prefix=INCIDENTS))
    status, problem = post(connected, body_for("Waiting"))
    assert status == 503
    record_by(connected, INTEGRATION_USER_SYS_ID, "Waiting")
    result = StatusSync(connected.services).run()  # within the create's in-doubt window: it stays pending
    assert result.adopted == 0 and any("record_refused" in e for e in result.errors), result.errors
    (pending,) = tickets(connected)
    assert pending.id == problem["ticketId"] and pending.status == "pending"
    assert json.dumps(_failed_items(connected)).count("Waiting") >= 1
