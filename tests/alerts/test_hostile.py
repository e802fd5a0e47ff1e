"""A hostile read of score alerts (issue 33): each test names a defect found, and failed before its fix."""

from __future__ import annotations

from typing import Any

import pytest

from dev.entra.tenants import FABRIKAM
from dev.servicenow import Fault
from shared.tickets import HOME
from status_sync.api import StatusSync
from tests.alerts.alerts_support import (
    INCIDENTS,
    alert_records,
    body,
    episode,
    errors_of,
    posts,
    put_alerts,
    refresh,
    saved,
)
from tests.conftest import Harness
from tests.create_ticket.test_tickets import BODY, post
from tests.secure_score.test_tenants import added, entra, msp  # noqa: F401  (fixtures)


def with_id(recommendation_id: str) -> dict[str, Any]:
    return {**BODY, "recommendation": {**BODY["recommendation"], "id": recommendation_id}}


@pytest.mark.parametrize("recommendation_id", ["alert/low", "alert/x", "alert/" + "x" * 58])
def test_a_caller_cannot_post_an_alert_s_recommendation_id(connected, recommendation_id):
    """Else a caller makes an alert-shaped ticket, and the alert's next episode adopts it as its own."""
    status, problem = post(connected, with_id(recommendation_id))
    assert status == 400 and problem["code"] == "validation_failed", problem
    assert [e["field"] for e in problem["errors"]] == ["recommendation.id"]
    assert connected.simulator.records() == []


def test_a_caller_s_alert_shaped_ticket_is_never_an_alert_s_ticket(connected: Harness):
    """The whole path: a caller's POST refused, the alert's crossing makes its own ticket."""
    refresh(connected)
    post(connected, {**with_id("alert/low"), "name": "Not the alert's"})
    saved(connected, [{"id": "low", "name": "Score low", "tenants": ["home"], "below": 100}])
    refresh(connected)
    (record,) = alert_records(connected)
    assert record["short_description"] == "Secure Score alert: Score low" and posts(connected) == 1


def percent_of(harness: Harness) -> float:
    found = harness.services.store.get_secure_score_summary(HOME)
    assert found is not None
    return float(found["secureScore"]["percent"])


def set_percent(harness: Harness, percent: float) -> None:
    found = harness.services.store.get_secure_score_summary(HOME)
    assert found is not None
    harness.graph.home.set_score(round(found["secureScore"]["max"] * percent / 100, 2))


def record_of(harness: Harness, sys_id: str) -> dict[str, Any]:
    return next(r for r in harness.simulator.records() if r["sys_id"] == sys_id)


def notes_on(harness: Harness, sys_id: str) -> list[str]:
    return [text for s, kind, text in harness.simulator.journal if s == sys_id and kind == "work_notes"]


@pytest.fixture
def low(connected: Harness) -> tuple[Harness, dict[str, Any], float]:
    """The home tenant read, an alert 20 points over its percent, crossed: its one ticket open."""
    refresh(connected)
    percent = percent_of(connected)
    saved(connected, [{"id": "low", "name": "Score low", "tenants": ["home"], "below": min(100.0, percent + 20)}])
    refresh(connected)
    (record,) = alert_records(connected)
    return connected, record, percent


PERSON = pytest.mark.parametrize(("state", "what"), [("8", "canceled"), ("7", "closed"), ("6", "resolved")])


@PERSON
def test_a_person_s_decision_in_servicenow_gets_no_note_before_the_sync_saw_it(low, state, what):
    """The store may not have seen a person's close yet (the status sync runs on its own clock): a note reads the
    record first."""
    harness, record, percent = low
    harness.simulator.update("incident", record["sys_id"], state=state, close_notes=f"{what} by a person")
    set_percent(harness, percent - 5)  # still crossed, moved: a note is due
    refresh(harness)
    assert notes_on(harness, record["sys_id"]) == [] and len(alert_records(harness)) == 1


@PERSON
def test_a_person_s_decision_in_servicenow_is_never_resolved_over_before_the_sync_saw_it(low, state, what):
    """The resolve reads the record first and leaves a person's cancel, close or resolution (and its notes) as is."""
    harness, record, percent = low
    harness.simulator.update("incident", record["sys_id"], state=state, close_notes=f"{what} by a person")
    set_percent(harness, min(100.0, percent + 25))  # recovered: a resolve is due
    refresh(harness)
    after = record_of(harness, record["sys_id"])
    assert (after["state"], after["close_notes"]) == (state, f"{what} by a person")
    assert episode(harness, "low")["state"] == "over" and len(alert_records(harness)) == 1


@pytest.mark.parametrize("member", ["below", "dropOf"])
def test_a_number_too_large_for_a_float_is_refused_by_field_not_a_500(harness, member):
    """JSON integers have no bound: 1 followed by 400 zeros parses as an int that float() cannot hold."""
    raw = b'{"alerts": [{"id": "a", "tenants": "all", "%s": 1%s}]}' % (member.encode(), b"0" * 400)
    assert list(errors_of(put_alerts(harness, raw))) == [f"alerts[0].{member}"]


@pytest.mark.parametrize("score", [float("nan"), float("inf")])
def test_a_score_that_is_no_number_decides_nothing_and_never_resolves(low, score):
    """Python's JSON reader takes NaN and Infinity: such a day is no recovery (a NaN compares false to any line)."""
    harness, record, _ = low
    harness.graph.home.set_score(score)
    refresh(harness)
    assert record_of(harness, record["sys_id"])["state"] == "1" and episode(harness, "low")["state"] == "open"


def test_a_score_flapping_around_the_line_makes_one_ticket_not_a_ticket_per_crossing(connected: Harness):
    """Half a point either side of the line, refresh after refresh: one episode and its one ticket, no resolve, until
    the score is back a whole point over the line (the hysteresis of docs/alerts.md)."""
    refresh(connected)
    percent = percent_of(connected)
    line = percent + 0.5
    saved(connected, [{"id": "low", "name": "Score low", "tenants": ["home"], "below": line}])
    refresh(connected)
    for step in range(6):
        set_percent(connected, line + (0.4 if step % 2 == 0 else -0.4))
        refresh(connected)
    (record,) = alert_records(connected)
    assert record["state"] == "1" and episode(connected, "low")["episode"] == 1 and posts(connected) == 1
    set_percent(connected, line + 1.5)
    refresh(connected)
    assert record_of(connected, record["sys_id"])["state"] == "6" and episode(connected, "low")["state"] == "over"


def test_a_score_wiggling_while_crossed_is_noted_at_most_once_a_day(low):
    """Secure Score reports one total a day, yet its newest day can move between refreshes: no note per refresh."""
    harness, record, percent = low
    for step in range(6):
        set_percent(harness, percent - 2 - (0.3 if step % 2 else 0.0))
        refresh(harness)
    assert len(notes_on(harness, record["sys_id"])) == 1
    harness.clock.advance(days=1)
    set_percent(harness, percent - 4)
    refresh(harness)  # the next day, moved: its one note
    assert len(notes_on(harness, record["sys_id"])) == 2


def test_a_record_deleted_in_servicenow_ends_the_episode_on_recovery_instead_of_failing_every_refresh(low):
    """The resolve's read finds it gone (404): the ticket is `missing` as the sweep marks it, and the episode over."""
    harness, record, percent = low
    harness.simulator.delete("incident", record["sys_id"])
    set_percent(harness, min(100.0, percent + 25))
    refresh(harness)
    refresh(harness)
    assert episode(harness, "low")["state"] == "over" and episode(harness, "low").get("error") is None
    ticket = harness.services.store.get_ticket(episode(harness, "low")["ticket"])
    assert ticket is not None and ticket[0].status == "missing"


def test_a_failure_of_a_tenant_since_removed_is_no_longer_shown_failing(msp, entra):  # noqa: F811
    """Its episode is never stepped again, so nothing would clear it: provisioning would stay failing for ever."""
    added(msp, entra, FABRIKAM)
    saved(msp, [{"id": "low", "name": "Score low", "tenants": "all", "below": 100}])
    msp.simulator.inject(Fault("status", status=400, path_prefix=INCIDENTS, method="POST", times=100))
    refresh(msp)
    assert {c.get("tenant") for c in score_alert_checks(msp) if not c["ok"]} == {None, FABRIKAM.id}
    removed = msp.call("remove_tenant", "DELETE", f"/tenants/{FABRIKAM.id}", route_params={"id": FABRIKAM.id})
    assert removed.status_code == 200, removed.get_body()
    msp.simulator.faults.clear()
    refresh(msp)  # the home tenant's ticket is made; Fabrikam is no longer read
    assert [c["ok"] for c in score_alert_checks(msp)] == [True]


def score_alert_checks(harness: Harness) -> list[dict[str, Any]]:
    checks = body(harness.call("provisioning", path="/provisioning"))["checks"]
    return [c for c in checks if c["name"] == "score_alerts"]


def test_a_ticket_a_person_closed_while_the_score_moves_costs_no_store_write_per_refresh(low):
    """The episode was leased and released (two writes) on every refresh while a person's closed ticket waited."""
    harness, record, percent = low
    harness.simulator.update("incident", record["sys_id"], state="7")
    StatusSync(harness.services).run()
    set_percent(harness, percent - 5)
    refresh(harness)
    found = harness.services.store.get_document("alert-episode:home:low")
    refresh(harness)
    assert harness.services.store.get_document("alert-episode:home:low") == found
    assert notes_on(harness, record["sys_id"]) == []
