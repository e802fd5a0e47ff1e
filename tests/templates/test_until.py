"""An exception's end per control (`until`, docs/templates.md#a-template): a control's own last day wins over
`expiresInDays`, the hourly run ends that control alone, and a changed `until` starts only that control's exception
again. Over the Graph simulator, the app called as the worker calls it."""

from __future__ import annotations

from datetime import timedelta

from templates.model import MAX_DAYS
from tests.conftest import Harness
from tests.templates.test_endings import hourly, record
from tests.templates.test_templates import fields
from tests.templates_support import DLP, apply, body, create, created, get, patches, put, states, template


def day(harness: Harness, days: int) -> str:
    return (harness.clock.now + timedelta(days=days)).date().isoformat()


def test_a_control_s_until_wins_and_ends_that_control_alone(harness):
    last = day(harness, 10)
    made = created(harness, template(expiresInDays=30, until={DLP[0]: last}))
    assert made["until"] == {DLP[0]: last} and body(get(harness, made["id"]))["until"] == {DLP[0]: last}
    at = harness.clock.now
    assert apply(harness, made["id"])["applied"] == 3
    assert record(harness, made["id"], DLP[0])["until"] == f"{last}T23:59:59+00:00"
    assert record(harness, made["id"], DLP[1])["until"] == (at + timedelta(days=30)).isoformat()
    harness.clock.advance(days=10)
    hourly(harness)
    assert set(states(harness, DLP).values()) == {"ThirdParty"}  # the last day is still within the exception
    harness.clock.advance(days=1)
    hourly(harness)
    assert states(harness, DLP) == {DLP[0]: "Default", DLP[1]: "ThirdParty", DLP[2]: "ThirdParty"}
    assert harness.graph.home.state_of(DLP[0])["comment"].startswith(f"The exception ended on {last}")


def test_a_wrong_until_is_validation_failed_by_control(harness):
    wrong = {"AdminMFAV2": day(harness, 5), DLP[0]: day(harness, -1), DLP[1]: "2027-02-30",
             DLP[2]: day(harness, MAX_DAYS + 1)}  # fmt: skip
    assert fields(create(harness, template(until=wrong))) == {f"until.{c}" for c in wrong}
    assert fields(create(harness, template(until=[DLP[0]]))) == {"until"}
    assert fields(create(harness, template(until={DLP[0]: 20270101}))) == {f"until.{DLP[0]}"}
    assert created(harness, template(until={DLP[0]: day(harness, 0), DLP[1]: day(harness, MAX_DAYS)}))["until"]


def test_a_changed_until_starts_only_that_control_again(harness):
    first = day(harness, 20)
    made = created(harness, template(until={DLP[0]: first, DLP[1]: first}))
    assert apply(harness, made["id"])["applied"] == 3
    before = {c: record(harness, made["id"], c) for c in DLP}
    written = len(patches(harness))
    harness.clock.advance(days=1)
    later = day(harness, 40)
    answer = body(get(harness, made["id"]))
    changed = put(harness, made["id"], {**answer, "until": {DLP[0]: later, DLP[1]: first}})
    assert changed.status_code == 200, changed.get_body()
    assert apply(harness, made["id"])["unchanged"] == 3 and len(patches(harness)) == written
    now = {c: record(harness, made["id"], c) for c in DLP}
    assert now[DLP[0]]["until"] == f"{later}T23:59:59+00:00" and now[DLP[0]]["at"] != before[DLP[0]]["at"]
    for control in DLP[1:]:
        assert (now[control]["at"], now[control]["until"]) == (before[control]["at"], before[control]["until"])


def test_past_dates_saved_already_are_taken_back_and_not_written_again(harness):
    last = day(harness, 2)
    made = created(harness, template(until={DLP[0]: last}))
    assert apply(harness, made["id"])["applied"] == 3
    harness.clock.advance(days=3)
    hourly(harness)
    assert states(harness, [DLP[0]]) == {DLP[0]: "Default"}
    written = len(patches(harness))
    answer = body(get(harness, made["id"]))
    changed = put(harness, made["id"], {**answer, "comment": "Still covered"})  # GET's answer, its date past
    assert changed.status_code == 200, changed.get_body()
    assert fields(put(harness, made["id"], {**answer, "until": {DLP[0]: day(harness, -2)}})) == {f"until.{DLP[0]}"}
    assert apply(harness, made["id"]) == {"applied": 0, "unchanged": 2, "failed": [], "drifted": []}
    assert len(patches(harness)) == written and states(harness, [DLP[0]]) == {DLP[0]: "Default"}
