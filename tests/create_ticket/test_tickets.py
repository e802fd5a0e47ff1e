"""POST /api/tickets and GET /api/tickets/{id}: validation, the ServiceNow record, the response."""

from __future__ import annotations

import json
from typing import Any

import pytest

from dev.servicenow import INTEGRATION_USER_SYS_ID
from tests.conftest import INSTANCE, Harness, build_services

BODY: dict[str, Any] = {
    "name": "Require MFA for administrative roles",
    "description": "Why and how ...",
    "priority": "high",
    "dueDate": "2026-12-31",
    "recommendation": {
        "id": "AdminMFAV2",
        "source": "microsoft",
        "category": "Identity",
        "url": "https://security.microsoft.com/securescore?viewid=actions",
    },
    "requestedBy": "m365.integration@example.com",
}


def post(harness: Harness, body: Any = None, headers: dict[str, str] | None = None) -> tuple[int, dict[str, Any]]:
    raw = body if isinstance(body, bytes) else json.dumps(BODY if body is None else body).encode()
    response = harness.call("create_ticket", "POST", "/tickets", body=raw, headers=headers)
    return response.status_code, json.loads(response.get_body() or b"{}")


def test_a_ticket_is_created_with_every_field_mapped(connected):
    status, ticket = post(connected)
    assert status == 201
    (record,) = connected.simulator.records()
    assert record["short_description"] == BODY["name"]
    assert record["impact"] == "1" and record["urgency"] == "2" and record["priority"] == "2"
    assert record["due_date"] == "2026-12-31 23:59:59"
    assert record["caller_id"] == {
        "link": f"{INSTANCE}/api/now/table/sys_user/{INTEGRATION_USER_SYS_ID}",
        "value": INTEGRATION_USER_SYS_ID,
    }
    assert record["correlation_id"] == "m365sec:AdminMFAV2"
    assert record["correlation_display"] == "Microsoft 365 security"
    description = record["description"]
    assert description.startswith("Why and how ...")
    for line in [
        "Recommendation: AdminMFAV2",
        "Category: Identity",
        "Source: Microsoft recommendation",
        "Portal: https://security.microsoft.com/securescore?viewid=actions",
        "Requested by: m365.integration@example.com",
        f"Connector reference: {ticket['id']}",
    ]:
        assert line in description
    assert ticket["number"] == record["number"] and ticket["sysId"] == record["sys_id"]
    assert ticket["status"] == "new" and ticket["serviceNowState"] == "1"
    assert ticket["url"] == f"{INSTANCE}/nav_to.do?uri=incident.do%3Fsys_id%3D{record['sys_id']}"
    assert ticket["priority"] == "high" and ticket["dueDate"] == "2026-12-31T23:59:59Z"
    assert ticket["recommendation"]["category"] == "Identity" and ticket["table"] == "incident"
    assert set(ticket) == {
        "id", "number", "sysId", "table", "url", "status", "serviceNowState", "priority", "dueDate", "name",
        "recommendation", "requestedBy", "createdAt", "updatedAt", "syncedAt", "assignedTo", "secureScore", "error",
        "duplicateOf", "tenant", "connection", "route", "resolvedAt",
    }  # fmt: skip
    assert ticket["error"] is None and ticket["assignedTo"] is None and ticket["secureScore"] is None


def test_the_response_carries_location_and_get_returns_the_same_ticket(connected):
    response = connected.call("create_ticket", "POST", "/tickets", body=json.dumps(BODY).encode())
    created = json.loads(response.get_body())
    assert response.headers["Location"] == f"/api/tickets/{created['id']}"
    fetched = connected.call("get_ticket", route_params={"id": created["id"]})
    assert fetched.status_code == 200
    assert json.loads(fetched.get_body()) == created


@pytest.mark.parametrize("ticket_id", ["0" * 32, "nope", "../../etc", "A" * 32])
def test_an_unknown_ticket_is_not_found(connected, ticket_id):
    response = connected.call("get_ticket", route_params={"id": ticket_id})
    assert response.status_code == 404
    assert json.loads(response.get_body())["code"] == "not_found"


def test_one_cached_user_lookup_then_one_request_per_create(connected):
    post(connected)
    assert [r.path for r in connected.simulator.requests if r.path.startswith("/api/")] == [
        "/api/now/v2/table/sys_user",
        "/api/now/v2/table/incident",
    ]
    connected.simulator.requests.clear()
    body = {**BODY, "recommendation": {**BODY["recommendation"], "id": "Other"}}
    post(connected, body)
    assert [r.method for r in connected.simulator.requests] == ["POST"]


def test_an_unknown_requester_goes_only_in_the_footer(connected):
    status, _ = post(connected, {**BODY, "requestedBy": "nobody@contoso.com"})
    (record,) = connected.simulator.records()
    assert status == 201
    assert record["caller_id"] == ""
    assert "Requested by: nobody@contoso.com (no ServiceNow user)" in record["description"]


@pytest.mark.parametrize(
    ("priority", "impact", "urgency"), [("critical", "1", "1"), (2, "1", "2"), ("medium", "2", "2"), (4, "2", "3"),
                                        ("planning", "3", "3"), (None, "2", "2")]
)  # fmt: skip
def test_priority_maps_to_impact_and_urgency(connected, priority, impact, urgency):
    body = {k: v for k, v in BODY.items() if k != "priority"}
    if priority is not None:
        body["priority"] = priority
    post(connected, body)
    (record,) = connected.simulator.records()
    assert (record["impact"], record["urgency"]) == (impact, urgency)


@pytest.mark.parametrize(
    ("due", "expected"),
    [("2026-12-31T17:00:00+02:00", "2026-12-31 15:00:00"), ("2026-12-31T17:00:00Z", "2026-12-31 17:00:00"),
     ("2026-12-31T17:00:00", "2026-12-31 17:00:00")],
)  # fmt: skip
def test_due_dates_are_sent_in_utc(connected, due, expected):
    post(connected, {**BODY, "dueDate": due})
    assert connected.simulator.records()[0]["due_date"] == expected


def test_every_bad_field_is_listed_in_one_problem(connected):
    bad = {
        "name": "",
        "description": "x" * 4001,
        "priority": "urgent",
        "dueDate": "31/12/2026",
        "recommendation": {"id": "a^b", "source": "vendor", "category": "Network", "url": "http://x"},
        "requestedBy": "a,b@c^d",
    }
    response = connected.call("create_ticket", "POST", "/tickets", body=json.dumps(bad).encode())
    problem = json.loads(response.get_body())
    assert response.status_code == 400
    assert response.headers["Content-Type"] == "application/problem+json"
    assert problem["code"] == "validation_failed"
    assert {e["field"] for e in problem["errors"]} == {
        "name", "description", "priority", "dueDate", "recommendation.id", "recommendation.source",
        "recommendation.category", "recommendation.url", "requestedBy",
    }  # fmt: skip
    assert connected.simulator.requests == []


@pytest.mark.parametrize(
    "raw", [b"", b"not json", b"[]", b'"x"', b"\xff\xfe", b"null", b'{"name": 1}', b'{"x": "' + b"a" * 70000 + b'"}']
)
def test_malformed_bodies_are_validation_failures(connected, raw):
    status, problem = post(connected, raw)
    assert status == 400 and problem["code"] == "validation_failed"


def test_a_name_with_a_line_break_is_refused(connected):
    status, problem = post(connected, {**BODY, "name": "a\r\nb"})
    assert status == 400 and problem["errors"][0]["field"] == "name"


def test_a_long_description_is_shortened_so_the_footer_survives(connected):
    status, ticket = post(connected, {**BODY, "description": "d" * 4000})
    description = connected.simulator.records()[0]["description"]
    assert status == 201
    assert len(description) <= 4000
    assert description.endswith(f"Connector reference: {ticket['id']}")


def test_not_connected_answers_the_problem_and_stores_nothing(harness):
    status, problem = post(harness)
    assert status == 503 and problem["code"] == "not_connected"
    assert "/api/connect" in problem["remediation"]
    assert harness.services.store.claim_recommendation("AdminMFAV2", "probe") is None


def test_a_rejected_refresh_token_answers_reauthorization_required(connected):
    connected.simulator.revoke_all()
    connected.clock.advance(minutes=31)
    for _ in range(2):
        status, problem = post(connected)
        assert status == 503 and problem["code"] == "reauthorization_required"
    assert connected.simulator.records() == []


def test_not_configured_answers_the_problem(harness, tmp_path):
    from shared import services as services_module

    services_module.install(
        build_services(tmp_path, harness.transport, harness.clock, harness.sleeps, SERVICENOW_INSTANCE="bad.name")
    )
    status, problem = post(harness)
    assert status == 503 and problem["code"] == "not_configured"


@pytest.mark.parametrize(
    ("deny", "message", "advice"),
    [
        ({"insert"}, "ACL Exception Insert Failed", "itil"),
        ({"cross_scope"}, "cross-scope access policy", "All application scopes"),
    ],
)
def test_servicenow_refusals_say_what_to_fix_and_leave_nothing(connected, deny, message, advice):
    connected.simulator.deny["incident"] = deny
    status, problem = post(connected)
    assert status == 502
    assert problem["code"] == "servicenow_rejected"
    assert message in problem["detail"] and advice in problem["remediation"]
    assert problem["serviceNow"]["status"] == 403
    connected.simulator.deny.clear()
    assert post(connected)[0] == 201  # nothing was left half-written: the claim was released


def test_a_data_policy_refusal_names_the_mandatory_fields(connected):
    connected.simulator.mandatory["incident"] = {"assignment_group": "Assignment group"}
    status, problem = post(connected)
    assert status == 502
    assert "Assignment group" in problem["detail"] and "SERVICENOW_FIELD_MAP" in problem["remediation"]


def test_an_unknown_table_is_a_clear_refusal(connected, tmp_path):
    from shared import services as services_module

    services = build_services(
        connected.tmp, connected.transport, connected.clock, connected.sleeps, SERVICENOW_TABLE="u_missing"
    )
    services_module.install(services)
    status, problem = post(connected)
    assert status == 502 and "SERVICENOW_TABLE" in problem["remediation"]


def test_a_custom_table_and_field_map(connected):
    from shared import services as services_module

    connected.simulator.add_table(
        "u_security_task",
        {"u_title", "u_details", "u_state", "u_source", "u_category", "correlation_id", "u_due"},
    )
    field_map = {
        "name": "u_title", "description": "u_details", "state": "u_state", "due_date": "u_due", "impact": "",
        "urgency": "", "caller": "", "correlation_display": "", "recommendation_source": "u_source",
        "recommendation_category": "u_category", "states": {"": "new", "10": "new", "20": "closed"},
    }  # fmt: skip
    services = build_services(
        connected.tmp,
        connected.transport,
        connected.clock,
        connected.sleeps,
        SERVICENOW_TABLE="u_security_task",
        SERVICENOW_FIELD_MAP=json.dumps(field_map),
    )
    services_module.install(services)
    status, ticket = post(connected)
    (record,) = connected.simulator.records("u_security_task")
    assert status == 201 and ticket["table"] == "u_security_task" and ticket["status"] == "new"
    assert (
        record["u_title"] == BODY["name"] and record["u_source"] == "microsoft" and record["u_category"] == "Identity"
    )
    assert record["u_due"] == "2026-12-31 23:59:59" and "Recommendation: AdminMFAV2" in record["u_details"]
    assert "u_security_task.do" in ticket["url"]


def test_a_tickets_error_is_stored_as_it_always_was():
    """`TicketError` is the one way a ticket's `error` is made: a failure of named work carries its source and fix
    (null when there is none); a conflict between two records names neither. Read back, it is the same."""
    from shared.tickets import TicketError

    failed = TicketError("2026-01-02T03:04:05+00:00", "not_connected", "No token.", 2, "create", None)
    assert json.dumps(failed.to_json()) == json.dumps({"at": "2026-01-02T03:04:05+00:00", "code": "not_connected",
                                                       "detail": "No token.", "attempts": 2, "source": "create",
                                                       "remediation": None})  # fmt: skip
    conflict = TicketError("2026-01-02T03:04:05+00:00", "duplicate_open_record", "Two open.")
    assert list(conflict.to_json()) == ["at", "code", "detail", "attempts"] and conflict.attempts == 1
    assert TicketError.from_json(failed.to_json()) == failed and TicketError.from_json(conflict.to_json()) == conflict
    assert TicketError.from_json(None) is None and TicketError.from_json({}) is None
