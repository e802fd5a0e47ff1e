"""Status sync: incremental, paged without skips or repeats, resumable, idempotent, adopting, reconciling."""

from __future__ import annotations

import json
import math
import threading
from datetime import timedelta
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

import httpx
import pytest

from dev.servicenow import Fault, SimulatorTransport
from dev.wire import SimRequest
from shared import services as services_module
from shared.problems import ServiceNowUnavailable
from shared.services import Services
from status_sync.reader import SyncResult
from status_sync.sync import StatusSync
from tests.conftest import Harness, build_services
from tests.create_ticket.test_exactly_once import body_for
from tests.create_ticket.test_tickets import post

INCIDENTS = "/api/now/v2/table/incident"
STATUS = {"1": "new", "2": "in_progress", "3": "on_hold", "6": "resolved", "7": "closed", "8": "canceled"}


def create_tickets(harness: Harness, count: int) -> dict[str, dict[str, Any]]:
    tickets = {}
    for i in range(count):
        status, ticket = post(harness, body_for(f"Sync{i}"))
        assert status == 201
        tickets[ticket["sysId"]] = ticket
    return tickets


def sync(harness: Harness, services: Services | None = None, **kwargs: Any) -> SyncResult:
    return StatusSync(services or harness.services, **kwargs).run()


def sync_queries(harness: Harness) -> list[dict[str, str]]:
    return [
        dict(parse_qsl(urlsplit(r.url).query))
        for r in harness.simulator.requests
        if r.method == "GET" and r.path == INCIDENTS
    ]


def assert_store_equals_servicenow(harness: Harness) -> None:
    """Both ways: every record the integration user sees is one ticket in the record's state, and every linked
    ticket is a record it sees (or is marked missing, as the reconcile leaves a deleted or hidden one)."""
    records = {r["sys_id"]: r for r in harness.simulator.records() if r["sys_id"] not in harness.simulator.hidden}
    linked = [t for t, _ in harness.services.store.list_tickets() if t.sys_id]
    tickets = {t.sys_id: t for t in linked}
    assert len(tickets) == len(linked), "two tickets name one record"
    for sys_id, record in records.items():
        assert sys_id in tickets, f"lost: {record['number']}"
        assert tickets[sys_id].servicenow_state == record["state"], record["number"]
        assert tickets[sys_id].status == STATUS[record["state"]]
    for sys_id, ticket in tickets.items():
        assert sys_id in records or ticket.status == "missing", f"ticket {ticket.id} names no record: {sys_id}"


def agent_changes(harness: Harness, sys_ids: list[str], state: str = "2") -> None:
    for sys_id in sys_ids:
        harness.clock.advance(seconds=1)
        harness.simulator.update("incident", sys_id, state=state)


@pytest.fixture
def synced(connected: Harness) -> Harness:
    """Connected, three tickets, one sync done (so the watermark and the reconcile time are set)."""
    create_tickets(connected, 3)
    sync(connected)
    connected.simulator.requests.clear()
    return connected


def test_a_state_change_comes_back_with_one_query(synced):
    sys_ids = [t.sys_id for t, _ in synced.services.store.list_tickets()]
    synced.clock.advance(minutes=5)
    agent_changes(synced, sys_ids[:2], state="6")
    result = sync(synced)
    assert (result.changed, result.requests, result.status) == (2, 1, "ok")
    assert_store_equals_servicenow(synced)
    (query,) = sync_queries(synced)
    assert query["sysparm_query"].startswith("correlation_idSTARTSWITHm365sec:^sys_updated_on>=")
    assert query["sysparm_query"].endswith("^ORDERBYsys_updated_on^ORDERBYsys_id")
    assert query["sysparm_exclude_reference_link"] == "true"
    assert set(query["sysparm_fields"].split(",")) == {
        "sys_id", "number", "state", "sys_updated_on", "correlation_id", "short_description", "priority",
        "sys_mod_count", "assigned_to.email", "resolved_at", "closed_at",
    }  # fmt: skip


def test_the_window_starts_at_the_watermark_minus_the_overlap(synced):
    found = synced.services.store.get_sync_state()
    assert found is not None
    watermark = found[0]["watermark"]
    sync(synced)
    literal = sync_queries(synced)[0]["sysparm_query"].split("sys_updated_on>=")[1].split("^")[0]
    from datetime import datetime

    gap = datetime.strptime(watermark, "%Y-%m-%d %H:%M:%S") - datetime.strptime(literal, "%Y-%m-%d %H:%M:%S")
    assert gap == timedelta(minutes=2)


def test_nothing_changed_costs_one_request_and_writes_nothing(synced):
    before = {t.id: etag for t, etag in synced.services.store.list_tickets()}
    result = sync(synced)
    assert (result.changed, result.requests) == (0, 1)
    assert {t.id: etag for t, etag in synced.services.store.list_tickets()} == before


@pytest.mark.parametrize(("changed", "page"), [(250, 100), (200, 100), (7, 3)])
def test_pages_cost_at_most_changed_over_page_size_plus_one(connected, changed, page):
    create_tickets(connected, changed)
    sync(connected, page_size=page)
    connected.clock.advance(minutes=10)
    agent_changes(connected, [t.sys_id for t, _ in connected.services.store.list_tickets() if t.sys_id])
    connected.simulator.requests.clear()
    result = sync(connected, page_size=page)
    assert result.changed == changed
    assert result.requests <= math.ceil(changed / page) + 1
    assert_store_equals_servicenow(connected)


def test_records_changing_mid_scan_are_neither_skipped_nor_repeated(connected):
    create_tickets(connected, 30)
    sync(connected, page_size=10)
    sys_ids = sorted(t.sys_id for t, _ in connected.services.store.list_tickets() if t.sys_id)
    connected.clock.advance(minutes=10)
    agent_changes(connected, sys_ids, state="2")
    pages = {"seen": 0}

    def meanwhile(request: SimRequest) -> None:
        if request.method == "GET" and request.path == INCIDENTS:
            pages["seen"] += 1
            if pages["seen"] == 2:  # between pages 1 and 2, agents touch records already read and not yet read
                agent_changes(connected, [sys_ids[0], sys_ids[15], sys_ids[29]], state="3")

    connected.simulator.before_request = meanwhile
    result = sync(connected, page_size=10)
    connected.simulator.before_request = None
    assert_store_equals_servicenow(connected)
    # Thirty first changes, plus the second change of the one record already read (it moved behind the
    # cursor and was read again); the two not yet read arrive once, with their latest state.
    assert result.changed == 31


@pytest.mark.parametrize(
    "fault",
    [
        Fault("drop", method="GET", path_prefix=INCIDENTS, times=5),
        Fault("status", status=429, method="GET", path_prefix=INCIDENTS, times=5),
        Fault("status", status=503, method="GET", path_prefix=INCIDENTS, times=5),
    ],
    ids=["reset", "429", "503"],
)
def test_a_fault_mid_page_loses_nothing_and_repeats_nothing(connected, fault):
    create_tickets(connected, 25)
    sync(connected, page_size=10)
    connected.clock.advance(minutes=10)
    agent_changes(connected, [t.sys_id for t, _ in connected.services.store.list_tickets() if t.sys_id])
    calls = {"n": 0}

    def second_page_fails(request: SimRequest) -> None:
        if request.method == "GET" and request.path == INCIDENTS:
            calls["n"] += 1
            if calls["n"] == 2:
                connected.simulator.inject(fault)

    connected.simulator.before_request = second_page_fails
    with pytest.raises(ServiceNowUnavailable):
        sync(connected, page_size=10)
    connected.simulator.before_request = None
    first = connected.services.store.get_sync_state()
    assert first is not None and first[0]["last"]["status"] == "failed" and first[0]["last"]["changed"] == 10
    status = json.loads(connected.call("provisioning").get_body())
    check = next(c for c in status["checks"] if c["name"] == "status_sync")
    assert status["state"] == "degraded" and not check["ok"] and "servicenow_unavailable" in check["detail"]
    second = sync(connected, page_size=10)
    assert second.changed == 15  # the first page's ten are not applied again
    assert_store_equals_servicenow(connected)


class Crash(BaseException):
    pass


class CrashOnRequest(SimulatorTransport):
    def __init__(self, simulator: Any, after: int) -> None:
        super().__init__(simulator)
        self.after = after

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if request.method == "GET" and request.url.path == INCIDENTS:
            self.after -= 1
            if self.after < 0:
                raise Crash()
        return super().handle_request(request)


@pytest.mark.parametrize("crash_after", [0, 1, 2, 3])
def test_a_run_killed_anywhere_resumes_with_nothing_lost(connected, crash_after):
    create_tickets(connected, 35)
    sync(connected, page_size=10)
    connected.clock.advance(minutes=10)
    agent_changes(connected, [t.sys_id for t, _ in connected.services.store.list_tickets() if t.sys_id], "7")
    doomed = build_services(connected.tmp, CrashOnRequest(connected.simulator, crash_after), connected.clock,
                            connected.sleeps)  # fmt: skip
    with pytest.raises(Crash):
        sync(connected, doomed, page_size=10)
    sync(connected, page_size=10)
    assert_store_equals_servicenow(connected)


def test_two_overlapping_runs_end_where_one_would(connected):
    create_tickets(connected, 40)
    sync(connected, page_size=10)
    connected.clock.advance(minutes=10)
    agent_changes(connected, [t.sys_id for t, _ in connected.services.store.list_tickets() if t.sys_id], "2")
    results: list[SyncResult] = []
    threads = [threading.Thread(target=lambda: results.append(sync(connected, page_size=10))) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert_store_equals_servicenow(connected)
    assert sum(r.changed for r in results) == 40  # each change applied once between the two runs


def test_a_lost_store_adopts_the_connectors_records_only(connected, tmp_path):
    created = create_tickets(connected, 5)
    connected.simulator.update("incident", next(iter(created)), state="7")
    connected.simulator.tables["incident"]["f" * 32] = {
        **connected.simulator.records()[0], "sys_id": "f" * 32, "correlation_id": "other-tool:1", "number": "INC9"
    }  # fmt: skip
    fresh = build_services(tmp_path / "new", connected.transport, connected.clock, connected.sleeps)
    bundle = connected.services.tokens.load()
    assert bundle is not None
    fresh.tokens.save(bundle)
    result = sync(connected, fresh)
    adopted = {t.sys_id: t for t, _ in fresh.store.list_tickets()}
    assert result.adopted == 5 and set(adopted) == set(created)
    assert {t.recommendation_id for t in adopted.values()} == {f"Sync{i}" for i in range(5)}
    assert adopted[next(iter(created))].status == "closed"
    # The open ones hold their recommendation again: no duplicate for a repeated request.
    services_module.install(fresh)
    status, ticket = post(connected, body_for("Sync1"))
    assert status == 200 and ticket["sysId"] in created


def test_vanished_and_hidden_records_are_marked_missing_not_dropped(synced):
    sys_ids = [t.sys_id for t, _ in synced.services.store.list_tickets()]
    synced.simulator.delete("incident", sys_ids[0])
    synced.simulator.hidden.add(sys_ids[1])
    synced.clock.advance(hours=23)  # a whole sweep cycle
    result = sync(synced)
    assert result.reconciled and result.missing == 2
    statuses = {t.sys_id: t.status for t, _ in synced.services.store.list_tickets()}
    assert statuses == {sys_ids[0]: "missing", sys_ids[1]: "missing", sys_ids[2]: "new"}
    swept = [q for q in sync_queries(synced) if q["sysparm_query"].startswith("sys_idIN")]
    assert len(swept) == 1 and all(s in swept[0]["sysparm_query"] for s in sys_ids)
    synced.simulator.hidden.clear()  # the ACL is fixed: the ticket comes back
    synced.clock.advance(hours=23)
    sync(synced)
    assert {t.sys_id: t.status for t, _ in synced.services.store.list_tickets()}[sys_ids[1]] == "new"


def test_every_open_record_is_verified_at_least_once_a_day_at_a_few_requests(connected):
    """The rolling sweep over two days of runs every 5 minutes: no record goes more than a day unverified."""
    create_tickets(connected, 600)
    first = connected.clock()
    checked: dict[str, list[Any]] = {}
    runs = 0
    connected.simulator.requests.clear()
    while connected.clock() - first < timedelta(hours=48):
        before = len(connected.simulator.requests)
        sync(connected)
        runs += 1
        for request in connected.simulator.requests[before:]:
            query = dict(parse_qsl(urlsplit(request.url).query)).get("sysparm_query", "")
            for sys_id in query.removeprefix("sys_idIN").split(",") if query.startswith("sys_idIN") else []:
                checked.setdefault(sys_id, []).append(connected.clock())
        connected.clock.advance(minutes=5)
    tracked = {t.sys_id for t, _ in connected.services.store.list_tickets()}
    assert set(checked) == tracked
    gaps = [b - a for times in checked.values() for a, b in zip([first, *times], times, strict=False)]
    assert max(gaps) <= timedelta(hours=24)
    assert all(len(times) >= 2 for times in checked.values())  # each record more than once in two days
    sweeps = [r for r in connected.simulator.requests if "sys_idIN" in r.url]
    assert len(sweeps) <= 2 * 30  # a day of a few hundred records: a chunk about hourly at most
    assert len(connected.simulator.requests) <= 2 * runs  # the incremental pass plus about one sweep request


def test_a_deletion_is_seen_within_minutes_where_the_audit_table_is_readable(connected):
    connected.simulator.deny.pop("sys_audit_delete")  # the integration user was granted the audit role
    created = create_tickets(connected, 3)
    sync(connected)
    sys_ids = list(created)
    connected.clock.advance(minutes=5)
    connected.simulator.delete("incident", sys_ids[0])
    connected.clock.advance(seconds=30)
    connected.simulator.requests.clear()
    result = sync(connected)
    assert result.missing == 1 and not result.reconciled
    assert {t.sys_id: t.status for t, _ in connected.services.store.list_tickets()}[sys_ids[0]] == "missing"
    audit = [r for r in connected.simulator.requests if r.path.endswith("/sys_audit_delete")]
    (query,) = [dict(parse_qsl(urlsplit(r.url).query)) for r in audit]
    assert query["sysparm_query"].startswith("tablename=incident^sys_created_on>=")


def test_an_unreadable_audit_table_is_asked_again_only_a_day_later(synced):
    def audits() -> int:
        return sum(1 for r in synced.simulator.requests if r.path.endswith("/sys_audit_delete"))

    assert audits() == 0  # the fixture's first run asked and was refused; that is remembered
    for _ in range(3):
        synced.clock.advance(minutes=5)
        sync(synced)
    assert audits() == 0
    synced.clock.advance(days=1)
    sync(synced)
    assert audits() == 1


def twelve_changed_in_pages_of_five(connected: Harness) -> list[str]:
    """Twelve tickets synced once, then each changed by an agent: their sys_ids, oldest first."""
    create_tickets(connected, 12)
    sync(connected, page_size=5)
    connected.clock.advance(minutes=10)
    records = sorted(connected.services.store.list_tickets(), key=lambda pair: pair[0].created_at)
    sys_ids = [t.sys_id for t, _ in records if t.sys_id]
    agent_changes(connected, sys_ids, state="2")
    return sys_ids


def test_a_short_page_with_more_behind_it_does_not_end_the_scan(connected):
    """ServiceNow limits before ACLs: hidden rows make a page short while more follow (the Link header says so)."""
    sys_ids = twelve_changed_in_pages_of_five(connected)
    connected.simulator.hidden.update(sys_ids[2:5])  # the first page shows two of its five rows
    result = sync(connected, page_size=5)
    assert result.changed == 9 and result.errors == []
    assert all(connected.services.store.find_ticket_by_sys_id(s)[0].status == "in_progress" for s in sys_ids[5:])


def test_an_all_hidden_page_is_stepped_over_and_the_watermark_moves_past_it(connected):
    sys_ids = twelve_changed_in_pages_of_five(connected)
    connected.simulator.hidden.update(sys_ids[:5])  # a whole page nobody may see, and more behind it
    result = sync(connected, page_size=5)
    assert result.changed == 7 and result.errors == []
    # Every changed record hidden: the scan pages over them once, and the watermark still moves past them, so
    # later runs do not read them again and again.
    agent_changes(connected, sys_ids, state="3")
    connected.simulator.hidden.update(sys_ids)
    connected.clock.advance(minutes=3)
    connected.simulator.requests.clear()
    assert sync(connected, page_size=5).requests == 3
    connected.clock.advance(minutes=5)
    connected.simulator.requests.clear()
    assert sync(connected, page_size=5).requests == 1


def test_the_sync_finishes_creations_left_pending(connected):
    connected.simulator.inject(Fault("status", status=503, path_prefix=INCIDENTS, times=5))
    status, problem = post(connected)
    assert status == 503
    result = sync(connected)
    assert result.resumed == 1
    found = connected.services.store.get_ticket(problem["ticketId"])
    assert found is not None and found[0].sys_id and found[0].status == "new"
    assert len(connected.simulator.records()) == 1


def test_not_connected_is_a_skipped_run_not_an_error(harness):
    result = sync(harness)
    assert result.status == "skipped" and "not_connected" in result.errors[0]
    assert harness.transport.sent == []


def test_the_timer_function_runs_the_sync_and_raises_for_its_retry_policy(synced):
    from azure.functions.timer import TimerRequest

    timer = synced.functions["status_sync"].get_user_function()
    synced.clock.advance(minutes=5)
    agent_changes(synced, [t.sys_id for t, _ in synced.services.store.list_tickets()][:1], "6")
    timer(TimerRequest(past_due=True))
    assert_store_equals_servicenow(synced)
    synced.simulator.inject(Fault("status", status=503, times=100))
    with pytest.raises(ServiceNowUnavailable):
        timer(TimerRequest(past_due=False))


def test_the_card_and_provisioning_show_the_last_sync(synced):
    sys_ids = [t.sys_id for t, _ in synced.services.store.list_tickets()]
    synced.clock.advance(minutes=5)
    agent_changes(synced, sys_ids[:1], "7")
    sync(synced)
    card = json.loads(synced.call("list_tickets", params={"status": "all"}).get_body())
    assert card["summary"]["new"] == 2 and card["summary"]["closed"] == 1
    assert len(card["tickets"]) == 3 and card["lastSync"]["changed"] == 1
    open_only = json.loads(synced.call("list_tickets").get_body())
    assert {t["status"] for t in open_only["tickets"]} == {"new"} and len(open_only["tickets"]) == 2
    closed = json.loads(synced.call("list_tickets", params={"status": "closed"}).get_body())
    assert [t["sysId"] for t in closed["tickets"]] == sys_ids[:1]
    by_category = json.loads(synced.call("list_tickets", params={"category": "Data"}).get_body())
    assert by_category["tickets"] == [] and by_category["summary"]["new"] == 0
    for bad in ({"status": "pending"}, {"category": "identity"}):
        response = synced.call("list_tickets", params=bad)
        assert response.status_code == 400
    provisioning = json.loads(synced.call("provisioning").get_body())
    assert provisioning["lastSync"]["status"] == "ok" and provisioning["lastSync"]["changed"] == 1
    assert any(c["name"] == "status_sync" and c["ok"] for c in provisioning["checks"])


def test_an_instance_ignoring_the_cursor_cannot_make_the_sync_loop(connected):
    create_tickets(connected, 25)
    sync(connected, page_size=10)
    connected.clock.advance(minutes=10)
    agent_changes(connected, [t.sys_id for t, _ in connected.services.store.list_tickets() if t.sys_id])

    def drop_cursor(request: SimRequest) -> None:  # as if the instance ignored everything after ^NQ
        if "NQ" in request.url:
            first_page = {
                **dict(parse_qsl(urlsplit(request.url).query)),
                "sysparm_query": "correlation_idSTARTSWITHm365sec:^ORDERBYsys_updated_on^ORDERBYsys_id",
            }
            request.url = urlsplit(request.url)._replace(query=urlencode(first_page)).geturl()

    connected.simulator.before_request = drop_cursor
    result = sync(connected, page_size=10)
    connected.simulator.before_request = None
    assert result.requests == 2 and "did not advance" in result.errors[0]
