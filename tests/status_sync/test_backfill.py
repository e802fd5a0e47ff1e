"""Tickets resolved or closed before `resolvedAt` existed get ServiceNow's own resolution time from the status sync
(status_sync/backfill.py, docs/status-sync.md#older-resolution-times): asked once each by `sys_idIN`, a few requests
per run, only `resolvedAt` written, each connection asked only for its own tickets; against the simulators."""

from __future__ import annotations

import uuid
from dataclasses import replace
from typing import Any

import pytest

from dev.servicenow import Fault
from dev.wire import SimRequest
from shared.problems import ServiceNowUnavailable
from shared.records import record_fields
from shared.runs import SyncState, sync_state, update_sync_state
from shared.services import Services
from shared.store import change_ticket
from shared.tickets import Ticket
from status_sync.backfill import CHUNK, MAX_REQUESTS
from status_sync.every import sync_every_connection
from tests.conftest import Clock, Harness
from tests.isolation_support import SECOND_ID, SECOND_URL, plant
from tests.isolation_support import two_instance_world as world_in
from tests.status_sync.test_sync import INCIDENTS, create_tickets, sync, sync_queries


def stored_by_an_older_version(services: Services, only: set[str] | None = None) -> None:
    """The store as a version before `resolvedAt` left it: done tickets (those of `only`, by id) without one, a
    sync state without the backfill's place (every connection's)."""
    for ticket, etag in services.store.list_tickets():
        if ticket.resolved_at is not None and (only is None or ticket.id in only):
            services.store.update_ticket(replace(ticket, resolved_at=None), etag)
    for connection in services.connections():

        def older(state: SyncState) -> None:
            state.backfill = None

        update_sync_state(services.for_connection(connection).store, older)


def backfill_queries(harness: Harness) -> list[set[str]]:
    """The sys_ids each `sys_idIN` request asked for (the sweep's would be open records; none is due here)."""
    return [set(q["sysparm_query"].removeprefix("sys_idIN").split(",")) for q in sync_queries(harness)
            if q["sysparm_query"].startswith("sys_idIN")]  # fmt: skip


def resolved_at(services: Services) -> dict[str, str | None]:
    return {str(t.sys_id): t.resolved_at for t, _ in services.store.list_tickets()}


def test_tickets_done_before_resolved_at_get_servicenows_stamp_and_are_asked_once(connected):
    sys_ids = list(create_tickets(connected, 4))
    connected.clock.advance(minutes=10)
    connected.simulator.update("incident", sys_ids[0], state="6")
    resolved = connected.clock().isoformat()
    connected.clock.advance(minutes=10)
    connected.simulator.update("incident", sys_ids[1], state="7")
    closed = connected.clock().isoformat()
    connected.simulator.update("incident", sys_ids[2], state="8")  # canceled: a decision, not a resolution
    connected.clock.advance(minutes=5)
    sync(connected)
    stored_by_an_older_version(connected.services)
    before = {t.id: t for t, _ in connected.services.store.list_tickets()}
    connected.clock.advance(minutes=5)
    connected.simulator.requests.clear()

    result = sync(connected)
    assert resolved_at(connected.services) == {sys_ids[0]: resolved, sys_ids[1]: closed, sys_ids[2]: None,
                                               sys_ids[3]: None}  # fmt: skip
    assert result.backfilled == 2 and result.status == "ok"
    assert backfill_queries(connected) == [{sys_ids[0], sys_ids[1]}]
    (query,) = [q for q in sync_queries(connected) if q["sysparm_query"].startswith("sys_idIN")]
    assert query["sysparm_fields"] == record_fields(connected.services)  # the sync's own fields, nothing more
    for ticket, _ in connected.services.store.list_tickets():  # only resolvedAt was written
        assert replace(ticket, resolved_at=before[ticket.id].resolved_at) == before[ticket.id]
    assert "done" in (sync_state(connected.services.store).backfill or {})

    connected.simulator.requests.clear()
    again = sync(connected)
    assert backfill_queries(connected) == [] and again.backfilled == 0


def test_a_record_without_stamps_or_not_returned_is_asked_once_and_keeps_null(connected):
    sys_ids = list(create_tickets(connected, 3))
    connected.clock.advance(minutes=10)
    connected.simulator.update("incident", sys_ids[0], state="6")
    connected.simulator.update("incident", sys_ids[0], resolved_at="")  # a table or a rule that keeps no stamp
    connected.simulator.update("incident", sys_ids[1], state="7")
    connected.clock.advance(minutes=5)
    sync(connected)
    stored_by_an_older_version(connected.services)
    connected.simulator.hidden.add(sys_ids[1])  # ACLs hide it from the integration user now
    connected.clock.advance(minutes=5)
    connected.simulator.requests.clear()

    first = sync(connected)
    assert backfill_queries(connected) == [{sys_ids[0], sys_ids[1]}] and first.backfilled == 0
    assert resolved_at(connected.services) == {sys_ids[0]: None, sys_ids[1]: None, sys_ids[2]: None}
    for _ in range(3):
        connected.clock.advance(minutes=5)
        connected.simulator.requests.clear()
        sync(connected)
        assert backfill_queries(connected) == []


def test_a_failing_request_is_the_runs_failure_and_is_asked_again_next_run(connected):
    sys_ids = list(create_tickets(connected, 2))
    connected.clock.advance(minutes=10)
    connected.simulator.update("incident", sys_ids[0], state="6")
    resolved = connected.clock().isoformat()
    connected.clock.advance(minutes=5)
    sync(connected)
    stored_by_an_older_version(connected.services)
    connected.clock.advance(minutes=5)

    def backfill_fails(request: SimRequest) -> None:
        if request.method == "GET" and request.path == INCIDENTS and "sys_idIN" in request.query["sysparm_query"]:
            connected.simulator.inject(Fault("status", status=503, method="GET", path_prefix=INCIDENTS, times=1))

    connected.simulator.before_request = backfill_fails
    with pytest.raises(ServiceNowUnavailable):
        sync(connected)
    connected.simulator.before_request = None
    last = sync_state(connected.services.store).last or {}
    assert last["status"] == "failed" and "servicenow_unavailable" in " ".join(last["errors"])
    assert resolved_at(connected.services)[sys_ids[0]] is None
    connected.clock.advance(minutes=5)
    assert sync(connected).backfilled == 1
    assert resolved_at(connected.services)[sys_ids[0]] == resolved


def test_a_run_asks_a_few_chunks_at_most_and_the_next_goes_on(connected):
    count = CHUNK * MAX_REQUESTS + 1
    sys_ids = list(create_tickets(connected, count))
    connected.clock.advance(minutes=10)
    for sys_id in sys_ids:
        connected.simulator.update("incident", sys_id, state="7")
    connected.clock.advance(minutes=5)
    sync(connected)
    stored_by_an_older_version(connected.services)
    asked: list[set[str]] = []
    for runs in range(3):
        connected.clock.advance(minutes=5)
        connected.simulator.requests.clear()
        sync(connected)
        asked.append(set().union(*backfill_queries(connected)))
        assert len(backfill_queries(connected)) == [MAX_REQUESTS, 1, 0][runs]
    assert [len(a) for a in asked] == [CHUNK * MAX_REQUESTS, 1, 0] and set().union(*asked) == set(sys_ids)
    assert None not in resolved_at(connected.services).values()


def _done(services: Services, record: dict[str, Any], connection: str = "", instance: str = "") -> Ticket:
    """A ticket an older version stored for `record`, closed, on `connection` (made on `instance`)."""
    now = services.clock().isoformat()
    ticket = Ticket(id=uuid.uuid4().hex, recommendation_id="AdminMFAV2", recommendation={"id": "AdminMFAV2"},
                    name="MFA", priority=3, due_date=None, requested_by=None, table="incident", fingerprint="",
                    created_at=now, updated_at=now, status="closed", servicenow_state="7", sys_id=record["sys_id"],
                    number=record["number"], servicenow_mod_count=int(record["sys_mod_count"]), connection=connection,
                    servicenow_updated_on=record["sys_updated_on"], instance=instance)  # fmt: skip
    services.store.add_ticket(ticket)
    return ticket


def test_each_instance_is_asked_only_for_its_own_connections_tickets(tmp_path):
    clock = Clock()
    world = world_in(tmp_path, clock, SECURE_SCORE_WRITE_BACK="off")
    sync_every_connection(world.services)
    clock.advance(minutes=10)
    mine = _done(world.services, plant(world.default, "by hand", state="7"))
    closed_default = clock().isoformat()
    clock.advance(minutes=10)
    theirs = _done(world.services, plant(world.second, "by hand", state="7"), SECOND_ID, SECOND_URL)
    closed_second = clock().isoformat()
    # A ticket of an earlier connection of the same id, on another instance: never asked of this one.
    gone = _done(world.services, plant(world.second, "by hand", state="7"), SECOND_ID, "https://old.service-now.com")
    stored_by_an_older_version(world.services)
    clock.advance(minutes=5)
    world.default.requests.clear()
    world.second.requests.clear()

    sync_every_connection(world.services)
    for simulator, expected in ((world.default, {mine.sys_id}), (world.second, {theirs.sys_id})):
        asked = [r.query["sysparm_query"] for r in simulator.requests if "sys_idIN" in r.query.get("sysparm_query", "")]
        assert [set(q.removeprefix("sys_idIN").split(",")) for q in asked] == [expected]
    stamped = resolved_at(world.services)
    assert (stamped[str(mine.sys_id)], stamped[str(theirs.sys_id)]) == (closed_default, closed_second)
    assert stamped[str(gone.sys_id)] is None
    world.services.close()


def test_a_ticket_changed_while_servicenow_was_asked_keeps_what_changed_it(connected):
    """The write is conditional: the connector's own bookkeeping written meanwhile (a write-back's outcome) is kept
    and the ticket still stamped; a ticket the sync moved on meanwhile (reopened) is the sync's, never stamped."""
    sys_ids = list(create_tickets(connected, 2))
    connected.clock.advance(minutes=10)
    for sys_id in sys_ids:
        connected.simulator.update("incident", sys_id, state="7")
    closed = connected.clock().isoformat()
    connected.clock.advance(minutes=5)
    sync(connected)
    stored_by_an_older_version(connected.services)
    ids = {str(t.sys_id): t.id for t, _ in connected.services.store.list_tickets()}
    store = connected.services.store
    written_back = {"writtenAt": closed, "ok": True, "detail": "noted", "attempts": 1}

    def meanwhile(request: SimRequest) -> None:
        if "sys_idIN" not in request.query.get("sysparm_query", ""):
            return
        change_ticket(store, ids[sys_ids[0]], lambda t: replace(t, secure_score=written_back))
        change_ticket(store, ids[sys_ids[1]], reopened_by_the_sync)

    def reopened_by_the_sync(ticket: Ticket) -> Ticket:
        count = (ticket.servicenow_mod_count or 0) + 1
        return replace(ticket, status="in_progress", servicenow_state="2", servicenow_mod_count=count)

    connected.simulator.before_request = meanwhile
    connected.clock.advance(minutes=5)
    result = sync(connected)
    connected.simulator.before_request = None
    assert result.backfilled == 1
    kept, reopened = (store.get_ticket(ids[s])[0] for s in sys_ids)
    assert (kept.resolved_at, kept.secure_score, kept.status) == (closed, written_back, "closed")
    assert (reopened.resolved_at, reopened.status) == (None, "in_progress")


def test_a_stamp_after_the_records_last_update_is_held_to_it_not_to_the_run(connected):
    """An instance whose `resolved_at` says 2099 (a clock ahead, an import): the record was done by its last update,
    so that is its resolution time; the run's clock would put a ticket closed months ago in this quarter's review."""
    sys_ids = list(create_tickets(connected, 1))
    connected.clock.advance(minutes=10)
    connected.simulator.update("incident", sys_ids[0], state="6")
    connected.simulator.update("incident", sys_ids[0], resolved_at="2099-01-01 00:00:00")
    last_update = connected.clock().isoformat()
    connected.clock.advance(minutes=5)
    sync(connected)
    stored_by_an_older_version(connected.services)
    connected.clock.advance(days=20)  # within the refresh token's life

    assert sync(connected).backfilled == 1
    assert resolved_at(connected.services) == {sys_ids[0]: last_update}
