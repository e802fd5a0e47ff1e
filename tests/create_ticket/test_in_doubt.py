"""Creates in doubt (docs/architecture.md, exactly once): a POST that got no answer may still commit on
ServiceNow's side, so the connector looks the record up but never posts it again within
SERVICENOW_IN_DOUBT_SECONDS of that POST; a repeat meanwhile is 409 with Retry-After."""

from __future__ import annotations

import json
import time
from datetime import timedelta
from typing import Any

import azure.functions as func

from dev.servicenow import Fault
from status_sync.sync import StatusSync
from tests.conftest import Harness
from tests.create_ticket.test_exactly_once import INCIDENTS, body_for, posts
from tests.create_ticket.test_tickets import BODY


def create(harness: Harness, body: dict[str, Any] | None = None) -> tuple[func.HttpResponse, dict[str, Any]]:
    response = harness.call("create_ticket", "POST", "/tickets", body=json.dumps(body or BODY).encode())
    return response, json.loads(response.get_body() or b"{}")


def wait_for_records(harness: Harness, count: int) -> None:
    """The held transaction commits on the simulator's own thread once released (bounded wait)."""
    deadline = time.monotonic() + 10
    while len(harness.simulator.records()) < count:
        assert time.monotonic() < deadline, "the held transaction never committed"
        time.sleep(0.01)


def test_a_post_held_past_the_deadline_is_not_posted_again_and_its_late_record_is_linked(connected):
    """The issue's trial: ServiceNow holds the POST past the connector's deadline and commits it afterwards. The
    connector answers 503 (pending), a repeat within the window is 409 with Retry-After and posts nothing, and
    once the held transaction has committed, the repeat links its record: one record, one POST."""
    held = Fault("late_commit", method="POST", path_prefix=INCIDENTS)
    connected.simulator.inject(held)
    began = connected.clock.now
    first, problem = create(connected)
    assert first.status_code == 503 and problem["code"] == "servicenow_unavailable", problem
    assert int(first.headers["Retry-After"]) == 120  # SERVICENOW_IN_DOUBT_SECONDS, from when the POST began
    ticket_id = problem["ticketId"]

    for later in (1, 61, 119):  # a caller that repeats at once, a minute later, and just before the window ends
        connected.clock.now = began + timedelta(seconds=later)
        repeat, conflict = create(connected)
        assert repeat.status_code == 409 and conflict["code"] == "conflict", conflict
        assert conflict["ticketId"] == ticket_id and int(repeat.headers["Retry-After"]) == 120 - later
    assert posts(connected) == 1 and connected.simulator.records() == []

    held.release.set()  # ServiceNow's transaction ends: the record it was making is committed now
    wait_for_records(connected, 1)
    done, ticket = create(connected)
    assert done.status_code == 200 and ticket["id"] == ticket_id and ticket["status"] == "new", ticket
    (record,) = connected.simulator.records()
    assert ticket["sysId"] == record["sys_id"] and posts(connected) == 1


def test_after_the_window_a_record_that_never_appeared_is_posted_once(connected):
    """A connection cut before ServiceNow did anything looks the same to the connector as a held transaction: it
    waits out the window, then looks once more and posts, exactly once."""
    connected.simulator.inject(Fault("drop", method="POST", path_prefix=INCIDENTS))
    first, problem = create(connected, body_for("Dropped"))
    assert first.status_code == 503 and problem["code"] == "servicenow_unavailable", problem
    connected.clock.advance(seconds=119)
    assert create(connected, body_for("Dropped"))[0].status_code == 409
    connected.clock.advance(seconds=1)
    done, ticket = create(connected, body_for("Dropped"))
    assert done.status_code == 200 and ticket["id"] == problem["ticketId"] and ticket["sysId"], ticket
    assert posts(connected) == 2 and len(connected.simulator.records()) == 1


def test_an_answered_failure_is_not_in_doubt(connected):
    """A 503 is an answer: ServiceNow has finished with that request, so a lookup that finds nothing is the truth
    and the repeat posts at once."""
    connected.simulator.inject(Fault("status", status=503, path_prefix=INCIDENTS, times=5))
    first, problem = create(connected, body_for("Answered"))
    assert first.status_code == 503
    done, ticket = create(connected, body_for("Answered"))
    assert done.status_code == 200 and ticket["id"] == problem["ticketId"] and ticket["sysId"], ticket


def test_the_status_sync_leaves_a_create_in_doubt_pending_without_a_failure(connected):
    """The sync resumes pending creates, but not one in doubt: that is no failure of the ticket, and it is finished
    by the first run after the window."""
    connected.simulator.inject(Fault("drop", method="POST", path_prefix=INCIDENTS))
    assert create(connected, body_for("Resumed"))[0].status_code == 503
    connected.clock.advance(seconds=91)  # the lease has run out; the window has not
    run = StatusSync(connected.services).run()
    assert run.resumed == 0 and run.errors == [] and posts(connected) == 1
    connected.clock.advance(seconds=30)
    run = StatusSync(connected.services).run()
    assert run.resumed == 1 and posts(connected) == 2 and len(connected.simulator.records()) == 1
