"""Creation follows the first matching route (docs/design.md#connections-and-routes): each rule field as ServiceNow's
record shows it, first match wins, no match goes as before routes, a preview is what creation then does, a second
connection (another simulated instance with its own OAuth client), a ticket that waits pending on a connection not yet
authorized, a resumed creation posting the same record, and exactly once per (tenant, control) whatever the routes."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from create_ticket.creation import creator_for
from dev.servicenow import ServiceNowSimulator
from dev.servicenow.directory import CLOUD_TEAM, FABRIKAM, IDENTITY_TEAM, NORTHWIND, SERVICE_DESK_EMEA
from dev.wire import Fault
from shared.tenant_records import DOCUMENT as TENANTS
from status_sync.sync import StatusSync
from tests.conftest import INSTANCE, Clock, Harness
from tests.routes_support import (
    SECOND,
    SECOND_INSTANCE,
    add_second,
    body,
    connect_second,
    create,
    preview,
    saved,
    two_instances,
)

TENANT = "b2e4f6a8-3c5d-4e7f-8a9b-0c1d2e3f4a5b"
OWN = {"name": "Review admin roles", "recommendation": {"id": "CustomReview", "source": "user", "category": "Data"}}


@pytest.fixture
def second(clock: Clock) -> ServiceNowSimulator:
    return ServiceNowSimulator(SECOND_INSTANCE, clock=clock.epoch)


@pytest.fixture
def transport(simulator, second):  # the harness talks to both instances, each answering for its own host
    return two_instances(simulator, second)


@pytest.fixture
def scored(connected: Harness) -> Harness:
    response = connected.call("refresh_recommendations", "POST", "/recommendations/refresh")
    assert response.status_code == 200, response.get_body()
    return connected


def rec(control: str, category: str = "Identity", **extra: Any) -> dict[str, Any]:
    return {"name": f"Fix {control}", "recommendation": {"id": control, "source": "microsoft", "category": category},
            **extra}  # fmt: skip


def record_of(simulator: ServiceNowSimulator, ticket: dict[str, Any], table: str = "incident") -> dict[str, Any]:
    return simulator.tables[table][ticket["sysId"]]


def ref(value: Any) -> str:
    return str(value.get("value")) if isinstance(value, dict) else str(value)


# -- each rule field --------------------------------------------------------------------------------------


def test_assignment_group_company_and_extra_fields_are_on_the_record(connected):
    rules = saved(
        connected,
        [
            {
                "name": "IAM",
                "set": {
                    "assignmentGroup": "Identity and Access Management",
                    "company": NORTHWIND,
                    "fields": {"subcategory": "security"},
                },
            }
        ],
    )
    status, ticket = create(connected, rec("AdminMFAV2"))
    assert status == 201, ticket
    record = record_of(connected.simulator, ticket)
    assert ref(record["assignment_group"]) == IDENTITY_TEAM and ref(record["company"]) == NORTHWIND
    assert record["subcategory"] == "security"
    assert ticket["route"] == {
        "rule": rules[0]["id"],
        "name": "IAM",
        "index": 0,
        "set": {
            "connection": "default",
            "assignmentGroup": {"sysId": IDENTITY_TEAM, "name": "Identity and Access Management"},
            "company": {"sysId": NORTHWIND, "name": "Northwind Traders"},
            "fields": {"subcategory": "security"},
        },
    }
    assert ticket["connection"] == "default"
    # what was looked up at save time is not looked up again: the create is one POST
    posts = [r for r in connected.simulator.requests if r.path.startswith("/api/now/")]
    assert [r.path for r in posts if "sys_user_group" in r.path or "core_company" in r.path] == [
        "/api/now/v2/table/sys_user_group", "/api/now/v2/table/core_company"]  # fmt: skip


def test_priority_from_the_rule_only_when_the_request_names_none(connected):
    saved(connected, [{"set": {"priority": "critical"}}])
    _, unnamed = create(connected, rec("AdminMFAV2"))
    record = record_of(connected.simulator, unnamed)
    assert (record["impact"], record["urgency"], unnamed["priority"]) == ("1", "1", "critical")
    assert unnamed["route"]["set"]["priority"] == "critical"
    _, named = create(connected, rec("MFARegistrationV2", priority="low"))
    assert named["priority"] == "low" and record_of(connected.simulator, named)["impact"] == "2"
    assert "priority" not in named["route"]["set"]  # the rule set nothing it did not decide


def test_due_in_days_from_the_rule_only_when_the_request_names_no_due_date(connected):
    saved(connected, [{"set": {"dueInDays": 14}}])
    due = (connected.clock.now + timedelta(days=14)).replace(microsecond=0)
    _, ruled = create(connected, rec("AdminMFAV2"))
    assert ruled["dueDate"] == due.isoformat().replace("+00:00", "Z")
    assert ruled["route"]["set"]["dueInDays"] == 14  # a due date from a rule shows as such
    assert record_of(connected.simulator, ruled)["due_date"] == due.strftime("%Y-%m-%d %H:%M:%S")
    _, own = create(connected, rec("MFARegistrationV2", dueDate="2030-01-31"))
    assert own["dueDate"] == "2030-01-31T23:59:59Z" and "dueInDays" not in own["route"]["set"]


def test_a_ruled_due_date_makes_the_ticket_overdue_when_it_passes(connected):
    saved(connected, [{"set": {"dueInDays": 1}}])
    _, ticket = create(connected, rec("AdminMFAV2"))
    connected.clock.advance(days=2)
    card = body(connected.call("list_tickets", path="/tickets", params={"status": "overdue"}))
    assert [t["id"] for t in card["tickets"]] == [ticket["id"]] and card["summary"]["overdue"] == 1


def test_each_ticket_of_the_card_says_whether_it_is_overdue_now(connected):
    """Issue 29, item 8: the page marks an overdue ticket by what the connector counts, not by its own clock."""
    _, past = create(connected, rec("AdminMFAV2", dueDate="2001-01-31"))
    _, future = create(connected, rec("MFARegistrationV2", dueDate="2999-01-31"))
    _, undated = create(connected, rec("BlockLegacyAuthentication"))
    card = body(connected.call("list_tickets", path="/tickets", params={"status": "all"}))
    overdue = {t["id"]: t["overdue"] for t in card["tickets"]}
    assert overdue == {past["id"]: True, future["id"]: False, undated["id"]: False}


def test_a_table_of_the_rule(connected):
    connected.simulator.add_table("sn_si_task", {"short_description", "description", "state", "correlation_id",
                                                 "correlation_display", "due_date", "impact", "urgency"})  # fmt: skip
    saved(connected, [{"set": {"table": "sn_si_task"}}])
    _, ticket = create(connected, rec("AdminMFAV2"))
    assert ticket["table"] == "sn_si_task" and record_of(connected.simulator, ticket, "sn_si_task")
    assert "sn_si_task.do" in ticket["url"]


def test_categories_and_control_patterns(connected):
    saved(
        connected,
        [
            {"match": {"categories": ["Data"]}, "set": {"assignmentGroup": CLOUD_TEAM}},
            {"match": {"controls": ["aad_.*", "(?i)mfa.*"]}, "set": {"assignmentGroup": IDENTITY_TEAM}},
        ],
    )
    assert create(connected, OWN)[1]["route"]["index"] == 0
    assert create(connected, rec("aad_password_protection"))[1]["route"]["index"] == 1
    assert create(connected, rec("MFARegistrationV2"))[1]["route"]["index"] == 1  # (?i): case-insensitive
    assert create(connected, rec("AdminMFAV2"))[1]["route"] is None  # fullmatch: "AdminMFAV2" is no "mfa.*"


def test_services_and_points_match_on_the_control_even_when_the_caller_named_everything(scored):
    saved(scored, [{"match": {"services": ["MDO"]}, "set": {"dueInDays": 7}},
                   {"match": {"categories": ["Identity"], "minPoints": 9}, "set": {"dueInDays": 14}}])  # fmt: skip
    # complete requests: no control was needed to fill them, so routing reads it (service, maxScore)
    assert create(scored, rec("mdo_zapspam", "Apps"))[1]["route"]["index"] == 0
    assert create(scored, rec("AdminMFAV2"))[1]["route"]["index"] == 1  # 10 points
    assert create(scored, rec("MFARegistrationV2"))[1]["route"]["index"] == 1  # 9 points: "or more"
    assert create(scored, rec("BlockLegacyAuthentication"))[1]["route"] is None  # 8 points
    assert create(scored, OWN)[1]["route"] is None  # not a Secure Score control: no service, no points


def test_tenants(connected):
    connected.services.store.put_document(TENANTS, {"tenants": {TENANT: {"id": TENANT, "state": "active"}}}, None)
    saved(connected, [{"match": {"tenants": [TENANT]}, "set": {"company": FABRIKAM}},
                      {"match": {"tenants": ["home"]}, "set": {"company": NORTHWIND}}])  # fmt: skip
    _, theirs = create(connected, rec("AdminMFAV2", tenant=TENANT))
    _, ours = create(connected, rec("AdminMFAV2"))
    assert ref(record_of(connected.simulator, theirs)["company"]) == FABRIKAM
    assert ref(record_of(connected.simulator, ours)["company"]) == NORTHWIND


# -- order, no match, preview ---------------------------------------------------------------------------


def test_the_first_matching_rule_wins(connected):
    saved(connected, [{"match": {"controls": ["Admin.*"]}, "set": {"assignmentGroup": SERVICE_DESK_EMEA}},
                      {"match": {"categories": ["Identity"]}, "set": {"assignmentGroup": IDENTITY_TEAM}},
                      {"set": {"assignmentGroup": CLOUD_TEAM}}])  # fmt: skip
    groups = {c: ref(record_of(connected.simulator, create(connected, rec(c))[1])["assignment_group"])
              for c in ("AdminMFAV2", "MFARegistrationV2")}  # fmt: skip
    groups["CustomReview"] = ref(record_of(connected.simulator, create(connected, OWN)[1])["assignment_group"])
    assert groups == {"AdminMFAV2": SERVICE_DESK_EMEA, "MFARegistrationV2": IDENTITY_TEAM, "CustomReview": CLOUD_TEAM}


def test_with_no_rule_matching_a_ticket_goes_as_before_routes(connected):
    saved(connected, [{"match": {"categories": ["Device"]}, "set": {"dueInDays": 3, "company": FABRIKAM}}])
    status, ticket = create(connected, rec("AdminMFAV2"))
    assert status == 201 and ticket["route"] is None and ticket["dueDate"] is None
    assert ticket["connection"] == "default" and ticket["table"] == "incident" and ticket["priority"] == "medium"
    record = record_of(connected.simulator, ticket)
    assert not ref(record["company"]) and not ref(record["assignment_group"]) and record["due_date"] == ""


def test_preview_is_what_creation_then_does(scored):
    routes = [
        {
            "name": "Identity, 8+",
            "match": {"categories": ["Identity"], "minPoints": 8},
            "set": {"assignmentGroup": "Identity and Access Management", "dueInDays": 14, "priority": "high"},
        },
        {
            "name": "Mail and Teams",
            "match": {"services": ["MDO", "EXO", "Microsoft Teams"]},
            "set": {"company": "Fabrikam", "dueInDays": 30, "fields": {"subcategory": "email"}},
        },
        {"name": "the rest", "set": {"dueInDays": 90, "priority": "low"}},
    ]
    saved_rules = saved(scored, routes)
    items = body(preview(scored, saved_rules))["recommendations"]
    firsts: dict[int, dict[str, Any]] = {}
    for item in items:  # the first open recommendation each rule takes
        firsts.setdefault(item["rule"]["index"], item)
    chosen = list(firsts.values())
    assert set(firsts) == {0, 1, 2}
    for item in chosen:
        status, ticket = create(scored, {"recommendation": {"id": item["id"]}})  # as the portal's create does
        assert status == 201, ticket
        target = item["target"]
        record = record_of(scored.simulator, ticket, target["table"])
        assert ticket["connection"] == target["connection"] and ticket["table"] == target["table"]
        assert ticket["priority"] == target["priority"] and ticket["dueDate"] == target["dueDate"]
        assert ref(record["assignment_group"]) == ((target["assignmentGroup"] or {}).get("sysId") or "")
        assert ref(record["company"]) == ((target["company"] or {}).get("sysId") or "")
        assert all(record[k] == v for k, v in target["fields"].items())
        assert (ticket["route"] or {}).get("index") == (item["rule"] or {}).get("index")
        assert (ticket["route"] or {}).get("rule") == (item["rule"] or {}).get("id")


# -- a second connection --------------------------------------------------------------------------------


def test_a_rule_sends_the_ticket_to_another_connection_and_nowhere_else(connected, second):
    add_second(connected, second)
    connect_second(connected)
    second.tables["sys_user_group"]["f" * 32] = {"sys_id": "f" * 32, "name": "Fabrikam SOC"}  # only there
    saved(
        connected,
        [{"match": {"categories": ["Identity"]}, "set": {"connection": SECOND, "assignmentGroup": "Fabrikam SOC"}}],
    )
    status, ticket = create(connected, rec("AdminMFAV2"))
    assert status == 201, ticket
    assert connected.simulator.records() == []
    (record,) = second.records()
    assert ref(record["assignment_group"]) == "f" * 32 and record["correlation_id"] == "m365sec:AdminMFAV2"
    assert ticket["connection"] == SECOND and ticket["url"].startswith(SECOND_INSTANCE)
    stored = connected.services.store.get_ticket(ticket["id"])[0]
    assert (stored.connection, stored.instance) == (SECOND, SECOND_INSTANCE)
    _, other = create(connected, OWN)  # no rule: the default connection, as before
    assert other["connection"] == "default" and other["url"].startswith(INSTANCE)
    assert len(connected.simulator.records()) == 1 and len(second.records()) == 1


def test_a_group_name_is_resolved_in_the_rules_own_connection(connected, second):
    add_second(connected, second)
    connect_second(connected)
    second.tables["sys_user_group"]["f" * 32] = {"sys_id": "f" * 32, "name": "Fabrikam SOC"}
    assert "routes[0].set.assignmentGroup" in {
        e["field"] for e in body(preview(connected, [{"set": {"assignmentGroup": "Fabrikam SOC"}}]))["errors"]
    }  # not on the default instance
    assert saved(connected, [{"set": {"connection": SECOND, "assignmentGroup": "Fabrikam SOC"}}])


def test_a_connection_not_yet_authorized_keeps_the_ticket_pending_there_with_the_fix(connected, second):
    add_second(connected, second)
    saved(connected, [{"set": {"connection": SECOND, "dueInDays": 5, "fields": {"subcategory": "mfa"}}}])
    status, problem = create(connected, rec("AdminMFAV2", requestedBy="m365.integration@example.com"))
    assert status == 503 and problem["code"] == "not_connected"
    assert f"/api/connect?connection={SECOND}" in problem["remediation"]
    assert "never on another instance" in problem["detail"]
    assert problem["detail"].startswith("The connector has no ServiceNow tokens yet.")  # what is wrong, then where
    ticket = connected.services.store.get_ticket(problem["ticketId"])[0]
    assert ticket.status == "pending" and ticket.connection == SECOND and ticket.lease_until is None
    assert ticket.error["code"] == "not_connected" and SECOND in ticket.error["remediation"]
    assert ticket.post_attempts == 0  # nothing was posted, so nothing to look for first
    assert connected.simulator.records() == [] and second.records() == []
    shown = body(connected.call("get_ticket", path=f"/tickets/{ticket.id}", route_params={"id": ticket.id}))
    assert shown["status"] == "pending" and shown["error"]["remediation"] == ticket.error["remediation"]
    # authorized later: that connection's status sync creates it there, with what the rule set then
    connect_second(connected)
    saved(connected, [])  # a route change meanwhile never moves it
    connected.clock.advance(minutes=1)
    result = StatusSync(connected.services.for_connection(connected.services.connection_named(SECOND))).run()
    assert result.resumed == 1, result
    (record,) = second.records()
    assert record["subcategory"] == "mfa" and record["due_date"] and connected.simulator.records() == []
    done = connected.services.store.get_ticket(ticket.id)[0]
    assert done.sys_id == record["sys_id"] and done.error is None and done.route["set"]["dueInDays"] == 5


def test_a_resumed_pending_creation_posts_the_same_record(connected):
    saved(connected, [{"set": {"assignmentGroup": IDENTITY_TEAM, "company": FABRIKAM, "dueInDays": 10,
                               "priority": "high", "fields": {"subcategory": "identity"}}}])  # fmt: skip
    connected.simulator.inject(Fault("status", 503, method="POST", times=50))
    status, problem = create(connected, rec("AdminMFAV2"))
    assert status == 503 and problem["code"] == "servicenow_unavailable"
    pending = connected.services.store.get_ticket(problem["ticketId"])[0]
    connected.simulator.faults.clear()
    saved(connected, [{"set": {"assignmentGroup": CLOUD_TEAM, "dueInDays": 90}}])  # changed before the resume
    connected.clock.advance(minutes=5)
    resumed = creator_for(connected.services).resume(pending.id)
    (record,) = connected.simulator.records()
    payload = pending.extra["payload"]
    assert {k: ref(record[k]) for k in payload} == payload  # every field the first attempt would have posted
    assert ref(record["assignment_group"]) == IDENTITY_TEAM and record["subcategory"] == "identity"
    assert resumed.route == pending.route and resumed.due_date == pending.due_date


# -- exactly once, whatever the routes ---------------------------------------------------------------------


def test_exactly_once_per_recommendation_whatever_the_routes(connected, second):
    add_second(connected, second)
    connect_second(connected)
    first_status, first = create(connected, rec("AdminMFAV2"), **{"Idempotency-Key": "k1"})
    assert first_status == 201 and first["connection"] == "default"
    saved(connected, [{"set": {"connection": SECOND}}])
    again_status, again = create(connected, rec("AdminMFAV2"))
    assert again_status == 200 and again["id"] == first["id"] and again["connection"] == "default"
    retry_status, retry = create(connected, rec("AdminMFAV2"), **{"Idempotency-Key": "k1"})
    assert retry_status == 200 and retry["id"] == first["id"]
    assert len(connected.simulator.records()) == 1 and second.records() == []  # never moved, never doubled


def test_a_connection_removed_after_the_routes_were_saved_makes_nothing_anywhere(connected, second):
    add_second(connected, second)
    connect_second(connected)
    saved(connected, [{"set": {"connection": SECOND}}])
    found = connected.services.store.get_document("connections")
    connected.services.store.put_document("connections", {"connections": {}}, found[1])
    status, problem = create(connected, rec("AdminMFAV2"))
    assert status == 503 and problem["code"] == "not_configured" and f"'{SECOND}'" in problem["detail"]
    assert connected.services.store.list_tickets() == []
    assert connected.simulator.records() == [] and second.records() == []


def test_a_pending_ticket_stays_on_its_connection_when_the_routes_change(connected, second):
    add_second(connected, second)
    saved(connected, [{"set": {"connection": SECOND}}])
    status, problem = create(connected, rec("AdminMFAV2"))
    assert status == 503 and problem["code"] == "not_connected"
    saved(connected, [])  # now everything would go to the default connection
    again_status, again = create(connected, rec("AdminMFAV2"))
    assert again_status == 503 and again["ticketId"] == problem["ticketId"]  # the same ticket, still waiting there
    assert connected.simulator.records() == [] and second.records() == []
    connect_second(connected)
    done_status, done = create(connected, rec("AdminMFAV2"))
    assert done_status == 200 and done["id"] == problem["ticketId"] and done["connection"] == SECOND
    assert connected.simulator.records() == [] and len(second.records()) == 1
