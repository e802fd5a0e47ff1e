"""GET /api/tenants/{id}/review (docs/api.md#a-tenants-review): against the Graph, Entra and ServiceNow simulators, its
numbers equal what GET /api/tenants, GET /api/recommendations and GET /api/tickets say for the same tenant and period;
another tenant's tickets never count; bad periods and unknown tenants are refused; a tenant never read is empty."""

from __future__ import annotations

import json
from datetime import date, timedelta
from typing import Any

import pytest

from dev.entra import FABRIKAM
from shared.fieldmap import FieldMap
from shared.tickets import Ticket
from status_sync.every import sync_every_connection
from tests.conftest import Harness
from tests.secure_score.test_tenants import add, added, body, overview, refresh
from tests.status_sync.test_backfill import stored_by_an_older_version

CONTROL = "AdminMFAV2"  # scored 0 in every simulated tenant


def review(harness: Harness, tenant: str, **params: str) -> tuple[int, dict[str, Any]]:
    response = harness.call("tenant_review", path=f"/tenants/{tenant}/review", params=params or None,
                            route_params={"id": tenant})  # fmt: skip
    return response.status_code, json.loads(response.get_body())


def ticket(harness: Harness, control: str, tenant: str | None = None, due: str = "2030-01-01") -> dict[str, Any]:
    payload = {"recommendation": {"id": control}, "dueDate": due, **({"tenant": tenant} if tenant else {})}
    response = harness.call("create_ticket", "POST", "/tickets", body=json.dumps(payload).encode())
    assert response.status_code == 201, response.get_body()
    return dict(body(response))


def resolve(harness: Harness, made: dict[str, Any], state: str = "6") -> None:
    """A person resolves (6) or closes (7) the record in ServiceNow; the status sync sees it."""
    harness.clock.advance(seconds=1)
    harness.simulator.update("incident", made["sysId"], state=state)
    harness.clock.advance(minutes=5)
    sync_every_connection(harness.services)


def open_controls(harness: Harness, tenant: str) -> list[dict[str, Any]]:
    listed = body(harness.call("recommendations", path="/recommendations", params={"tenant": tenant}))
    return list(listed["recommendations"])


def in_period(value: str | None, start: str, end: str) -> bool:
    return value is not None and start <= value[:10] <= end


def test_the_review_says_what_the_tenants_recommendations_and_tickets_say(msp, entra):
    fabrikam = added(msp, entra, FABRIKAM)
    home_made = [ticket(msp, CONTROL), ticket(msp, "MFARegistrationV2", due="2026-01-01")]
    theirs = [c["id"] for c in open_controls(msp, FABRIKAM.id)][:3]
    made = [ticket(msp, theirs[0], FABRIKAM.id, due="2026-01-01"), ticket(msp, theirs[1], FABRIKAM.id),
            ticket(msp, theirs[2], FABRIKAM.id)]  # fmt: skip
    resolve(msp, made[1])
    resolve(msp, made[2], "7")
    resolve(msp, home_made[0])
    status, shown = review(msp, FABRIKAM.id)
    assert status == 200, shown
    row = overview(msp)[FABRIKAM.id]
    today = msp.clock().date()
    assert shown["tenant"] == {"id": FABRIKAM.id, "name": fabrikam["name"], "home": False}
    assert (shown["from"], shown["to"]) == ((today - timedelta(days=89)).isoformat(), today.isoformat())
    newest = shown["score"][-1]
    assert newest["date"] == today.isoformat() and len(shown["score"]) == 90
    assert (newest["current"], newest["max"], newest["percent"]) == (
        row["score"]["current"], row["score"]["max"], row["score"]["percent"])  # fmt: skip
    # Tickets: this tenant's alone, as GET /api/tickets?tenant= lists them.
    card = body(msp.call("list_tickets", path="/tickets", params={"tenant": FABRIKAM.id, "status": "all"}))
    listed = card["tickets"]
    assert {t["id"] for t in listed} == {t["id"] for t in made}
    start, end = shown["from"], shown["to"]
    assert shown["tickets"]["opened"] == sum(1 for t in listed if in_period(t["createdAt"], start, end)) == 3
    assert shown["tickets"]["resolved"] == sum(1 for t in listed if in_period(t["resolvedAt"], start, end)) == 2
    assert shown["tickets"]["overdue"] == row["overdueTickets"] == card["summary"]["overdue"] == 1
    assert shown["tickets"]["medianDaysToResolve"] == 0.0
    # Top open: GET /api/recommendations' open actions with the most points left, each with its ticket.
    still_open = {c["id"]: c for c in open_controls(msp, FABRIKAM.id)}
    assert len(shown["topOpen"]) == min(10, row["openRecommendations"], len(still_open))
    left = sorted((c["maxScore"] - c["score"] for c in still_open.values()), reverse=True)
    assert [t["pointsLeft"] for t in shown["topOpen"]] == left[: len(shown["topOpen"])]
    for item in shown["topOpen"]:
        control = still_open[item["id"]]
        assert (item["title"], item["score"], item["maxScore"]) == (control["title"], control["score"],
                                                                    control["maxScore"])  # fmt: skip
        expected = control["ticket"]["id"] if control["ticket"] else None
        assert (item["ticket"] or {}).get("id") == expected
    # The home tenant's review counts the home tenant's tickets alone.
    status, home = review(msp, "home")
    assert status == 200 and home["tenant"]["home"] is True
    assert (home["tickets"]["opened"], home["tickets"]["resolved"], home["tickets"]["overdue"]) == (2, 1, 1)
    assert review(msp, home["tenant"]["id"])[1]["tickets"] == home["tickets"]  # the home tenant by its id


def test_a_period_counts_only_the_tickets_of_that_period(msp, entra):
    added(msp, entra, FABRIKAM)
    control = next(c["id"] for c in open_controls(msp, FABRIKAM.id))
    made = ticket(msp, control, FABRIKAM.id, due=(msp.clock().date() + timedelta(days=3)).isoformat())
    today = msp.clock().date()
    earlier = {"from": (today - timedelta(days=40)).isoformat(), "to": (today - timedelta(days=1)).isoformat()}
    status, before = review(msp, FABRIKAM.id, **earlier)
    assert status == 200 and before["tickets"] == {"opened": 0, "resolved": 0, "overdue": 0,
                                                   "medianDaysToResolve": None}  # fmt: skip
    assert [d["date"] for d in before["score"]] == [
        (today - timedelta(days=40 - i)).isoformat() for i in range(40)]  # fmt: skip
    msp.clock.advance(days=5)  # past its due date, then resolved: overdue in a period that ends before it was done
    resolve(msp, made)
    status, now = review(msp, FABRIKAM.id)
    assert now["tickets"]["resolved"] == 1 and now["tickets"]["overdue"] == 0
    assert now["tickets"]["medianDaysToResolve"] == 5.0
    until_due = {"from": today.isoformat(), "to": (today + timedelta(days=4)).isoformat()}
    assert review(msp, FABRIKAM.id, **until_due)[1]["tickets"] == {"opened": 1, "resolved": 0, "overdue": 1,
                                                                   "medianDaysToResolve": None}  # fmt: skip


def test_actions_completed_and_regressed_and_the_comparative_averages_are_graphs(msp, entra):
    added(msp, entra, FABRIKAM)
    simulated = msp.graph.tenant(FABRIKAM.id)
    before = review(msp, FABRIKAM.id)[1]
    # The simulator's history: controls done over the quarter, and one done long ago undone for a week and redone.
    assert (
        before["actions"]["completed"] and len(before["actions"]["regressed"]) == 1 and not before["actions"]["omitted"]
    )
    undone = before["actions"]["regressed"][0]
    assert undone["points"] < 0 and undone["maxScore"] > 0 and undone["title"]
    assert any(c["id"] == undone["id"] and c["date"] > undone["date"] for c in before["actions"]["completed"])
    days = simulated.all_scores()
    graph_days = {d["createdDateTime"][:10]: d for d in days}
    for change in before["actions"]["completed"]:
        that_day, day_before = (
            graph_days[change["date"]],
            graph_days[(date.fromisoformat(change["date"]) - timedelta(days=1)).isoformat()],
        )
        score = {c["controlName"]: c["score"] for c in that_day["controlScores"]}[change["id"]]
        was = {c["controlName"]: c["score"] for c in day_before["controlScores"]}[change["id"]]
        assert score >= change["maxScore"] > was and change["points"] == round(score - was, 2)
    newest = days[0]["averageComparativeScores"]
    assert before["comparative"] == [{"basis": c["basis"], "averageScore": c["averageScore"]} for c in newest]
    assert {c["basis"] for c in before["comparative"]} == {"AllTenants", "TotalSeats", "IndustryTypes"}
    # Today: one open control done, one done control undone; the next refresh finds both.
    done = next(c for c in open_controls(msp, FABRIKAM.id) if c["score"] == 0)
    regressed = next(c["controlName"] for c in days[0]["controlScores"]
                     if c["score"] >= simulated.profiles[c["controlName"]]["maxScore"] > 0)  # fmt: skip
    simulated.complete(done["id"])
    simulated.regress(regressed)
    assert refresh(msp)[0] == 200
    today = msp.clock().date().isoformat()
    after = review(msp, FABRIKAM.id, **{"from": today, "to": today})[1]
    assert [(c["id"], c["points"], c["date"]) for c in after["actions"]["completed"]] == [
        (done["id"], done["maxScore"], today)]  # fmt: skip
    assert [c["id"] for c in after["actions"]["regressed"]] == [regressed]
    assert done["id"] not in {t["id"] for t in after["topOpen"]}


def test_a_tenant_never_read_has_an_empty_review(msp, entra):
    assert add(msp, FABRIKAM.id).status_code == 201  # pending: never refreshed
    status, shown = review(msp, FABRIKAM.id)
    assert status == 200, shown
    assert shown["score"] == [] and shown["comparative"] == [] and shown["topOpen"] == []
    assert shown["actions"] == {"completed": [], "regressed": [], "omitted": 0}
    assert shown["tickets"] == {"opened": 0, "resolved": 0, "overdue": 0, "medianDaysToResolve": None}


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"from": "2026-13-01"}, "from"),
        ({"to": "yesterday"}, "to"),
        ({"from": "1999-12-31", "to": "2000-01-01"}, "from"),
        ({"from": "2026-10-02", "to": "2026-10-01"}, "from"),
        ({"from": "2026-01-01", "to": "2026-04-01"}, "to"),  # 91 days
        ({"from": "\uff12\uff10\uff12\uff16-01-01"}, "from"),  # fullwidth digits
    ],
)
def test_a_bad_period_is_validation_failed_by_field(connected, params, field):
    status, problem = review(connected, "home", **params)
    assert status == 400 and problem["code"] == "validation_failed"  # validation_failed is 400 (docs/api.md)
    assert [e["field"] for e in problem["errors"]] == [field]


def test_a_period_of_exactly_90_days_is_accepted(connected):
    status, shown = review(connected, "home", **{"from": "2026-01-01", "to": "2026-03-31"})
    assert status == 200 and (shown["from"], shown["to"]) == ("2026-01-01", "2026-03-31")


@pytest.mark.parametrize(
    ("params", "status", "period"),
    [
        ({"from": "9999-12-01", "to": "9999-12-31"}, 200, ("9999-12-01", "9999-12-31")),  # the last day of all
        ({"from": "9999-12-31"}, 400, None),  # after today
        ({"to": "2000-01-01"}, 200, ("1999-10-04", "2000-01-01")),
    ],
)
def test_the_ends_of_the_calendar_are_answers_not_errors(connected, params, status, period):
    answer, shown = review(connected, "home", **params)
    assert answer == status, shown
    if period:
        assert (shown["from"], shown["to"]) == period


@pytest.mark.parametrize("tenant", ["0b1c2d3e-4f50-6172-8394-a5b6c7d8e9f0", "not-a-tenant", "all"])
def test_a_tenant_the_connector_does_not_read_is_not_found(msp, tenant):
    status, problem = review(msp, tenant)
    assert status == 404 and problem["code"] == "not_found"


def test_a_removed_tenant_is_not_found(msp, entra):
    added(msp, entra, FABRIKAM)
    assert msp.call("remove_tenant", "DELETE", f"/tenants/{FABRIKAM.id}",
                    route_params={"id": FABRIKAM.id}).status_code == 200  # fmt: skip
    assert review(msp, FABRIKAM.id)[0] == 404


def test_the_review_never_calls_graph(msp, entra):
    added(msp, entra, FABRIKAM)
    before = len(msp.graph.requests)
    msp.graph.home.forbidden = True
    assert review(msp, FABRIKAM.id)[0] == 200 and review(msp, "home")[0] == 200
    assert len(msp.graph.requests) == before


def test_a_tickets_resolution_time_is_kept_when_closed_and_cleared_when_reopened(connected):
    assert refresh(connected)[0] == 200
    made = ticket(connected, CONTROL)

    seen: list[str] = []

    def resolved_at() -> str | None:
        shown = body(connected.call("get_ticket", path=f"/tickets/{made['id']}", route_params={"id": made["id"]}))
        seen.append(shown["status"])
        return None if shown["resolvedAt"] is None else str(shown["resolvedAt"])

    assert resolved_at() is None
    resolve(connected, made)  # resolved
    first = resolved_at()
    assert first == (connected.clock() - timedelta(minutes=5)).isoformat()  # when ServiceNow says it was resolved
    resolve(connected, made, "7")  # then closed: still resolved when it was first seen done
    assert resolved_at() == first
    resolve(connected, made, "2")  # reopened: not done any more
    assert resolved_at() is None
    resolve(connected, made, "8")  # canceled: a decision, not a resolution
    assert resolved_at() is None
    assert seen == ["new", "resolved", "closed", "in_progress", "canceled"]


def test_a_tickets_resolution_time_is_servicenows_when_the_record_says_it(connected):
    """An incident's `resolved_at` is when a person resolved it: a sync that first sees it days later (the
    connector was stopped) must not move the resolution into the next period or lengthen the days to resolve."""
    assert refresh(connected)[0] == 200
    made = ticket(connected, CONTROL)
    connected.clock.advance(hours=2)
    connected.simulator.update("incident", made["sysId"], state="6")
    done = connected.clock().isoformat()
    connected.clock.advance(days=3)
    sync_every_connection(connected.services)
    shown = body(connected.call("get_ticket", path=f"/tickets/{made['id']}", route_params={"id": made["id"]}))
    assert shown["status"] == "resolved" and shown["resolvedAt"] == done
    resolve(connected, made, "7")  # closed later: still resolved when the person resolved it
    shown = body(connected.call("get_ticket", path=f"/tickets/{made['id']}", route_params={"id": made["id"]}))
    assert shown["status"] == "closed" and shown["resolvedAt"] == done

    # Reopened, then closed without a new resolution: the old stamp is not this resolution, the closing is.
    resolve(connected, made, "2")
    connected.clock.advance(days=1)
    connected.simulator.update("incident", made["sysId"], state="7")
    closed = connected.clock().isoformat()
    sync_every_connection(connected.services)
    shown = body(connected.call("get_ticket", path=f"/tickets/{made['id']}", route_params={"id": made["id"]}))
    assert shown["status"] == "closed" and shown["resolvedAt"] == closed

    # A table without `resolved_at`/`closed_at` (or a value that is not a time): the first time seen done.
    mine = Ticket(id="t1", recommendation_id=CONTROL, recommendation={}, name="MFA", priority=3, due_date=None,
                    requested_by=None, table="incident", fingerprint="", created_at="2026-01-01T00:00:00+00:00",
                    updated_at="2026-01-01T00:00:00+00:00", status="in_progress")  # fmt: skip
    record = {"sys_id": "a" * 32, "number": "INC0010001", "state": "6", "resolved_at": "yesterday", "closed_at": ""}
    first = mine.with_link(record, FieldMap(), "2026-02-01T10:00:00+00:00")
    assert first.resolved_at == "2026-02-01T10:00:00+00:00"
    later = first.with_link({**record, "state": "7", "resolved_at": ""}, FieldMap(), "2026-02-03T10:00:00+00:00")
    assert later.resolved_at == "2026-02-01T10:00:00+00:00"
    ahead = mine.with_link({**record, "resolved_at": "2026-02-09 00:00:00"}, FieldMap(), "2026-02-01T10:00:00+00:00")
    assert ahead.resolved_at == "2026-02-01T10:00:00+00:00"  # never after the connector saw it


def test_tickets_resolved_before_resolved_at_existed_count_once_the_sync_asked_servicenow(connected):
    """An admin upgrading: tickets done under an older version had no `resolvedAt`, so the review counted them
    resolved in no period; the status sync's backfill (docs/status-sync.md#older-resolution-times) gives them
    ServiceNow's, and the review of the period counts them, its median with them."""
    assert refresh(connected)[0] == 200
    older, closed, newer = (
        ticket(connected, CONTROL),
        ticket(connected, "MFARegistrationV2"),
        ticket(connected, "BlockLegacyAuthentication"),
    )
    for made, days, state in ((newer, 1, "6"), (older, 1, "6"), (closed, 4, "7")):
        connected.clock.advance(days=days)
        connected.simulator.update("incident", made["sysId"], state=state)
    connected.clock.advance(minutes=5)
    sync_every_connection(connected.services)
    stored_by_an_older_version(connected.services, only={older["id"], closed["id"]})
    assert review(connected, "home")[1]["tickets"] == {"opened": 3, "resolved": 1, "overdue": 0,
                                                      "medianDaysToResolve": 1.0}  # fmt: skip
    connected.clock.advance(minutes=5)
    sync_every_connection(connected.services)
    assert review(connected, "home")[1]["tickets"] == {"opened": 3, "resolved": 3, "overdue": 0,
                                                      "medianDaysToResolve": 2.0}  # fmt: skip
