"""Score alerts after a refresh (docs/alerts.md#what-happens), against the ServiceNow and Graph simulators: a crossing
opens one ticket, a changed score notes it, a recovery resolves it, the next crossing is a new episode and ticket; a
failure is recorded and shown, never fails the refresh."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from alerts.api import after_refresh
from alerts.engine import decide
from alerts.model import Alert
from dev.servicenow import Fault
from secure_score.controls import newest_tickets
from secure_score.risk import accept_risks
from secure_score.writeback import WriteBack
from shared import deadlines
from shared.graph import RequestCount
from shared.runs import Failures
from shared.store import change_ticket
from shared.tickets import HOME, claim_key, parse_correlation
from status_sync.api import StatusSync
from tests.alerts.alerts_support import INCIDENTS, alert_records, body, episode, posts, put_alerts, refresh, saved
from tests.conftest import Harness
from tests.routes_support import saved as routes_saved


def summary(harness: Harness) -> dict[str, Any]:
    found = harness.services.store.get_secure_score_summary(HOME)
    assert found is not None
    return found


def record_of(harness: Harness, sys_id: str) -> dict[str, Any]:
    return next(r for r in harness.simulator.records() if r["sys_id"] == sys_id)


def journal(harness: Harness, sys_id: str) -> list[str]:
    return [text for s, kind, text in harness.simulator.journal if s == sys_id and kind == "work_notes"]


@pytest.fixture
def scored(connected: Harness) -> Harness:
    """Connected, the home tenant read once (90 days of history stored); its score is then set by day."""
    refresh(connected)
    connected.simulator.requests.clear()
    return connected


def below_now(harness: Harness, alert_id: str = "low", margin: float = 1.0) -> dict[str, Any]:
    """An alert whose line is just above the home tenant's percent now: crossed."""
    percent = summary(harness)["secureScore"]["percent"]
    return {"id": alert_id, "name": "Score low", "tenants": ["home"], "below": min(100.0, percent + margin)}


def set_percent(harness: Harness, percent: float) -> None:
    maximum = summary(harness)["secureScore"]["max"]
    harness.graph.home.set_score(round(maximum * percent / 100, 2))


def test_a_crossing_opens_one_ticket_through_the_routes_with_the_alert_s_correlation_id(scored):
    saved(scored, [below_now(scored)])
    refresh(scored)
    (record,) = alert_records(scored)
    assert record["correlation_id"] == "m365sec:alert/low"
    assert parse_correlation(record["correlation_id"]) == (HOME, "alert/low")
    assert record["short_description"] == "Secure Score alert: Score low"
    assert "Source: Secure Score alert\n" in record["description"] and "the alert's line is" in record["description"]
    ticket = scored.services.store.get_ticket(episode(scored, "low")["ticket"])
    assert ticket is not None and ticket[0].sys_id == record["sys_id"]
    assert ticket[0].recommendation["category"] == "Infrastructure" and ticket[0].connection in ("", "default")
    assert episode(scored, "low")["state"] == "open" and episode(scored, "low")["episode"] == 1
    refresh(scored)  # the same refresh again: nothing more
    assert len(alert_records(scored)) == 1 and posts(scored) == 1 and journal(scored, record["sys_id"]) == []


def test_while_it_lasts_a_changed_score_is_noted_once_per_refresh(scored):
    saved(scored, [below_now(scored, margin=20)])
    refresh(scored)
    (record,) = alert_records(scored)
    percent = summary(scored)["secureScore"]["percent"]
    set_percent(scored, percent - 5)
    refresh(scored)
    notes = journal(scored, record["sys_id"])
    assert (
        len(notes) == 1
        and "Still crossed" in notes[0]
        and f"{summary(scored)['secureScore']['percent']:g}%" in notes[0]
    )
    refresh(scored)  # unchanged since the note
    assert len(journal(scored, record["sys_id"])) == 1 and len(alert_records(scored)) == 1


def test_a_recovery_resolves_the_ticket_and_the_next_crossing_is_a_new_episode_and_ticket(scored):
    percent = summary(scored)["secureScore"]["percent"]
    saved(scored, [below_now(scored)])
    refresh(scored)
    (first,) = alert_records(scored)
    set_percent(scored, percent + 10)
    refresh(scored)
    resolved = record_of(scored, first["sys_id"])
    assert resolved["state"] == "6" and "recovered" in resolved["close_notes"]
    assert episode(scored, "low")["state"] == "over"
    refresh(scored)  # recovered still: nothing more
    assert record_of(scored, first["sys_id"])["state"] == "6"
    set_percent(scored, percent - 1)
    refresh(scored)
    records = alert_records(scored)
    assert len(records) == 2 and posts(scored) == 2
    second = next(r for r in records if r["sys_id"] != first["sys_id"])
    assert second["state"] == "1" and episode(scored, "low")["episode"] == 2
    assert scored.services.store.claim_holder(claim_key(HOME, "alert/low")) == episode(scored, "low")["ticket"]


def test_a_drop_within_the_window_crosses_and_a_drop_outside_it_does_not(connected):
    """Secure Score reports one total a day: the days before today come from the first read of the history."""
    for ago in range(1, 10):
        connected.graph.home.set_score(385.0, days_ago=ago)
    connected.graph.home.set_score(500.0, days_ago=10)  # the top, 10 days back
    connected.graph.home.set_score(370.0)  # today: 130 under the top, 15 under last week
    saved(connected, [{"id": "week", "tenants": ["home"], "dropOf": 20, "within": 7},
                      {"id": "fortnight", "tenants": ["home"], "dropOf": 20, "within": 14}])  # fmt: skip
    refresh(connected)
    (record,) = alert_records(connected)
    assert record["correlation_id"] == "m365sec:alert/fortnight"
    assert "fell 130 points within 14 days (from 500 on" in record["description"]
    assert episode(connected, "week") == {}


def test_a_failing_alert_is_recorded_and_shown_never_failing_the_refresh_and_the_next_refresh_makes_it(scored):
    saved(scored, [below_now(scored)])
    scored.simulator.inject(Fault("status", status=400, path_prefix=INCIDENTS, method="POST", times=100))
    answer = refresh(scored)
    assert answer["status"] == "ok" and alert_records(scored) == []
    error = episode(scored, "low")["error"]
    assert error["code"] == "servicenow_rejected" and error["attempts"] == 1
    checks = body(scored.call("provisioning", path="/provisioning"))["checks"]
    (check,) = [c for c in checks if c["name"] == "score_alerts"]
    assert not check["ok"] and "low" in check["detail"] and check["code"] == "servicenow_rejected"
    scored.simulator.faults.clear()
    refresh(scored)
    assert len(alert_records(scored)) == 1 and episode(scored, "low").get("error") is None
    checks = body(scored.call("provisioning", path="/provisioning"))["checks"]
    assert [c["ok"] for c in checks if c["name"] == "score_alerts"] == [True]


def test_an_alert_taken_out_leaves_its_open_ticket_as_it_is(scored):
    percent = summary(scored)["secureScore"]["percent"]
    saved(scored, [below_now(scored)])
    refresh(scored)
    (record,) = alert_records(scored)
    assert put_alerts(scored, []).status_code == 200
    set_percent(scored, percent + 10)
    refresh(scored)
    assert record_of(scored, record["sys_id"])["state"] == "1"
    assert journal(scored, record["sys_id"]) == []


def test_a_ticket_a_person_resolved_while_crossed_gets_no_notes_and_no_second_ticket(scored):
    percent = summary(scored)["secureScore"]["percent"]
    saved(scored, [below_now(scored, margin=20)])
    refresh(scored)
    (record,) = alert_records(scored)
    scored.simulator.update("incident", record["sys_id"], state="6")
    StatusSync(scored.services).run()
    set_percent(scored, percent - 5)
    refresh(scored)
    assert journal(scored, record["sys_id"]) == [] and len(alert_records(scored)) == 1


def test_an_alert_ticket_has_no_control_edges_write_back_nor_risk_acceptance_act_on_it(scored):
    saved(scored, [below_now(scored)])
    refresh(scored)
    ticket = scored.services.store.get_ticket(episode(scored, "low")["ticket"])
    assert ticket is not None
    alert_ticket = ticket[0]
    assert "alert/low" not in newest_tickets([alert_ticket], HOME)
    assert not WriteBack(scored.services, Failures.unread("now"), RequestCount()).due(alert_ticket)
    scored.graph.requests.clear()
    refresh(scored)
    StatusSync(scored.services).run()
    assert not [r for r in scored.graph.requests if "alert" in r.path]
    # a risk accepted on it in ServiceNow (a close code that means it) sets no control Ignored
    change_ticket(scored.services.store, alert_ticket.id,
                  lambda t: replace(t, extra={**t.extra, "riskAccepted": {"code": "Risk Accepted"}}))  # fmt: skip
    scored.graph.requests.clear()
    assert accept_risks(scored.services, [alert_ticket.id]) == 0
    assert scored.graph.requests == []  # not even a read of a control it does not have
    after = scored.services.store.get_ticket(alert_ticket.id)
    assert after is not None and after[0].extra["riskAccepted"] == {"code": "Risk Accepted"}  # no error, not written


def test_the_drop_is_measured_from_the_highest_day_in_the_window_not_the_earliest():
    alert = Alert("fell", "fell", None, drop_of=10, within=7)
    history = [{"date": "2026-12-01", "current": 50.0, "max": 100.0},
               {"date": "2026-12-03", "current": 70.0, "max": 100.0},
               {"date": "2026-12-07", "current": 58.0, "max": 100.0}]  # fmt: skip
    crossing = decide(alert, {"secureScore": {"current": 58.0, "max": 100.0, "percent": 58.0}, "history": history})
    assert crossing is not None and crossing.crossed and "from 70 on 2026-12-03" in crossing.why
    older = [{**history[1], "date": "2026-11-29"}, history[2]]  # the top is 8 days back: outside the window
    crossing = decide(alert, {"secureScore": {}, "history": older})
    assert crossing is not None and not crossing.crossed


def test_either_condition_crosses_and_a_snapshot_without_figures_decides_nothing():
    alert = Alert("both", "both", None, below=50, drop_of=10)
    flat = [{"date": "2026-12-07", "current": 40.0, "max": 100.0}]
    crossing = decide(alert, {"secureScore": {"current": 40.0, "max": 100.0, "percent": 40.0}, "history": flat})
    assert crossing is not None and crossing.crossed
    assert decide(Alert("b", "b", None, below=50), {"secureScore": {"percent": None}, "history": []}) is None


def test_a_refresh_out_of_time_leaves_the_alerts_to_the_next_one_and_records_no_failure(scored):
    saved(scored, [below_now(scored)])
    with deadlines.run_deadline(-1):
        outcome = after_refresh(scored.services, HOME, summary(scored))
    assert (outcome.done, outcome.failed) == ({}, []) and alert_records(scored) == [] and episode(scored, "low") == {}
    refresh(scored)
    assert len(alert_records(scored)) == 1


def test_the_routes_place_an_alert_s_ticket_by_its_category_and_none_matching_is_the_default(scored):
    routes_saved(scored, [{"name": "Identity", "match": {"categories": ["Identity"]}, "set": {"priority": "low"}},
                          {"name": "Alerts", "match": {"categories": ["Infrastructure"], "tenants": ["home"]},
                           "set": {"priority": "critical", "dueInDays": 3}}])  # fmt: skip
    saved(scored, [below_now(scored)])
    refresh(scored)
    (record,) = alert_records(scored)
    assert (record["impact"], record["urgency"]) == ("1", "1") and record["due_date"]
    ticket = scored.services.store.get_ticket(episode(scored, "low")["ticket"])
    assert ticket is not None and ticket[0].route is not None and ticket[0].route["name"] == "Alerts"


def test_where_no_route_matches_an_alert_s_ticket_goes_as_a_create_no_route_matches(scored):
    routes_saved(scored, [{"name": "Identity", "match": {"categories": ["Identity"]}, "set": {"priority": "low"}}])
    saved(scored, [below_now(scored)])
    refresh(scored)
    (record,) = alert_records(scored)
    assert (record["impact"], record["urgency"]) == ("2", "2")  # priority 3: no route decided it


def test_a_failing_alert_taken_out_is_no_longer_shown_failing(scored):
    saved(scored, [below_now(scored), {**below_now(scored, "other"), "tenants": "all"}])
    scored.simulator.inject(Fault("status", status=400, path_prefix=INCIDENTS, method="POST", times=100))
    refresh(scored)
    checks = body(scored.call("provisioning", path="/provisioning"))["checks"]
    assert sorted(c["detail"].split("'")[1] for c in checks if c["name"] == "score_alerts") == ["low", "other"]
    saved(scored, [{**below_now(scored, "other"), "tenants": "all"}])
    checks = body(scored.call("provisioning", path="/provisioning"))["checks"]
    assert [c["detail"].split("'")[1] for c in checks if c["name"] == "score_alerts"] == ["other"]
