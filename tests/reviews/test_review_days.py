"""What the refresh keeps of each day for a review (secure_score/daily.py), from the Graph simulator's snapshots: a
refresh that reads one or two days finds the same changes as one that read all 90, and the document stays small."""

from __future__ import annotations

import copy
import json
from datetime import date, timedelta
from typing import Any

from dev.graph import GraphSimulator
from secure_score import daily, reading
from shared.store._models import MAX_DOCUMENT_CHARS

LATER = "9999-12-31T00:00:00+00:00"  # a refresh time after every simulated day


class Findings:
    def __init__(self) -> None:
        self.errors: list[str] = []

    def warn(self, error: Any, **about: Any) -> None:
        raise AssertionError(error)


def _summary(graph: GraphSimulator, days: int, kept: dict[str, Any] | None = None) -> dict[str, Any]:
    snapshots = graph.home.all_scores()[:days]
    controls = reading.join(list(graph.home.profiles.values()), snapshots[0], Findings())
    history = copy.deepcopy(kept["history"]) if kept else None
    return reading.summary(snapshots, controls, LATER, history,
                           kept.get(daily.BASE) if kept else None)  # fmt: skip


def test_a_refresh_of_one_or_two_days_finds_what_a_full_read_found(graph):
    full = _summary(graph, 90)
    assert sum(len(d["completed"]) for d in full["history"]) > 10
    assert sum(len(d["regressed"]) for d in full["history"]) == 1
    assert full["history"][0]["completed"] == [] and full["history"][0]["comparative"]
    # The next refresh reads back from the newest day stored: the newest day's changes come from the kept base.
    again = _summary(graph, 1, full)
    assert again["history"] == full["history"] and again[daily.BASE] == full[daily.BASE]
    graph.home.regress(next(c for c, s in graph.home.scores.items() if s >= graph.home.profiles[c]["maxScore"] > 0))
    later = _summary(graph, 2, full)
    assert later["history"][:-1] == full["history"][:-1]
    assert len(later["history"][-1]["regressed"]) == 1


def test_a_days_changes_compare_controls_scored_on_both_days_only():
    before = {"a": 0.0, "b": 10.0, "c": 5.0, "gone": 0.0}
    after = {"a": 10.0, "b": 2.5, "c": 7.5, "new": 10.0}
    found = daily.changes(before, after, {"a": 10.0, "b": 10.0, "c": 10.0, "gone": 10.0, "new": 10.0})
    assert found == {"completed": [{"id": "a", "points": 10.0}], "regressed": [{"id": "b", "points": -7.5}]}


def test_only_the_documented_members_of_the_comparative_averages_are_kept():
    snapshot = {"averageComparativeScores": [
        {"basis": "AllTenants", "averageScore": "41.5", "identityScore": 60.1},
        {"basis": "Bad\u202ebasis", "averageScore": 1.0}, {"averageScore": 2.0}, "text"]}  # fmt: skip
    assert daily.comparative(snapshot) == [{"basis": "AllTenants", "averageScore": 41.5}]


def test_a_tenant_of_300_controls_keeps_its_summary_small(graph):
    full = _summary(graph, 90)
    assert len(json.dumps(full)) < MAX_DOCUMENT_CHARS // 10


def test_a_refresh_that_reads_days_already_stored_keeps_their_changes(graph):
    """Before today's snapshot is made, `$top=2` answers the newest stored day and the one before it again: the
    older one has no known day before it in that read, and what the earlier refresh found of it must stay."""
    snapshots = graph.home.all_scores()
    controls = reading.join(list(graph.home.profiles.values()), snapshots[0], Findings())
    full = reading.summary(snapshots, controls, LATER)
    older = next(k for k in range(len(snapshots) - 2, 0, -1) if full["history"][-1 - k]["completed"])
    stored = reading.summary(snapshots[older - 1 :], controls, LATER)
    assert stored["history"][-2]["completed"]
    again = reading.summary(snapshots[older - 1 : older + 1], controls, LATER,
                            copy.deepcopy(stored["history"]), stored[daily.BASE])  # fmt: skip
    assert again["history"] == stored["history"]


def test_a_days_score_sent_as_strings_is_a_day_of_the_review(graph):
    """Numbers sent as strings are read as numbers (docs/design.md#secure-score): such a day is not missing."""
    snapshots = copy.deepcopy(graph.home.all_scores()[:3])
    for snapshot in snapshots[:2]:
        snapshot["currentScore"], snapshot["maxScore"] = str(snapshot["currentScore"]), f" {snapshot['maxScore']} "
    controls = reading.join(list(graph.home.profiles.values()), snapshots[0], Findings())
    found = reading.summary(snapshots, controls, LATER)
    assert [d["current"] for d in found["history"]] == [float(s["currentScore"]) for s in reversed(snapshots)]
    assert found["secureScore"]["current"] == float(snapshots[0]["currentScore"]) and found["secureScore"]["percent"]
    assert all(isinstance(d["max"], float) for d in found["history"])


def test_a_history_stored_before_reviews_is_read_whole_once(graph):
    """A summary an earlier version stored has days without their changes and averages: the next refresh reads all
    90 days once (a review would otherwise show a quarter without a change), then back from the newest day only."""
    full = _summary(graph, 90)
    today = date.fromisoformat(full["history"][-1]["date"])
    earlier = {**full, "history": [{k: d[k] for k in ("date", "current", "max")} for d in full["history"]]}
    del earlier[daily.BASE]
    assert reading.days_to_read(earlier, today) == reading.HISTORY_DAYS
    assert reading.days_to_read(full, today) == 1


def _flapping(controls: int, days: int) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """A tenant whose every control is done one day and undone the next (a provider that comes and goes)."""
    ids = [f"scid_{n}_{'x' * 40}" for n in range(controls)]
    snapshots = []
    for ago in range(days):
        scores = [{"controlName": c, "score": 10.0 * ((ago + n) % 2)} for n, c in enumerate(ids)]
        snapshots.append({"createdDateTime": f"{date.fromordinal(740_000 - ago).isoformat()}T00:00:00Z",
                          "currentScore": 2000.0, "maxScore": 4000.0, "controlScores": scores,
                          "averageComparativeScores": [{"basis": "AllTenants", "averageScore": 41.0}]})  # fmt: skip
    return snapshots, [{"id": c, "maxScore": 10.0} for c in ids]


def test_a_summary_of_400_controls_changing_every_day_fits_the_store():
    """The store holds at most 500,000 characters a document: a summary past it would fail every refresh of the
    tenant for good. The largest changes stay, and each day says how many were left out."""
    snapshots, controls = _flapping(400, 90)
    found = reading.summary(snapshots, controls, LATER)
    assert len(json.dumps(found)) < MAX_DOCUMENT_CHARS * 0.8
    day = found["history"][-1]
    assert day["completed"] + day["regressed"] and len(day["completed"] + day["regressed"]) + day["omitted"] == 400
    again = reading.summary(snapshots[:2], controls, LATER, found["history"], found[daily.BASE])
    assert len(json.dumps(again)) < MAX_DOCUMENT_CHARS * 0.8 and all(
        len(d["completed"] + d["regressed"]) + d["omitted"] == 400 for d in again["history"][1:]
    )


def test_a_snapshot_dated_in_the_future_or_not_a_date_leaves_the_history_whole(graph):
    """One bad day from Graph must not cost the others: a snapshot dated after the refresh (the history keeps the
    90 days before its newest, so it would push every real day out, for good) or not a date at all is left out."""
    snapshots = graph.home.all_scores()
    now = snapshots[0]["createdDateTime"]
    controls = reading.join(list(graph.home.profiles.values()), snapshots[0], Findings())
    full = reading.summary(snapshots, controls, now)
    bad = [{**copy.deepcopy(snapshots[0]), "createdDateTime": when} for when in ("2099-01-01T00:00:00Z", "2026-13-45")]
    again = reading.summary([*bad, snapshots[0]], controls, now, copy.deepcopy(full["history"]), full[daily.BASE])
    assert [d["date"] for d in again["history"]] == [d["date"] for d in full["history"]]
    stored = {**full, "history": [*copy.deepcopy(full["history"]), {"date": "2099-01-01", "current": 1.0, "max": 2.0}]}
    healed = reading.summary(snapshots[:1], controls, now, stored["history"], full[daily.BASE])
    assert [d["date"] for d in healed["history"]] == [d["date"] for d in full["history"]]


def test_a_control_missing_from_one_day_is_compared_with_its_last_known_score():
    """A day whose snapshot leaves a control out (a provider's hiccup) must not hide that control's change the
    day after: it is compared with the last day that scored it, in one read or across refreshes."""

    def day(ago: int, **scores: float) -> dict[str, Any]:
        listed = [{"controlName": c, "score": s} for c, s in scores.items()]
        when = f"{date.fromordinal(740_000 - ago).isoformat()}T00:00:00Z"
        return {"createdDateTime": when, "currentScore": 1.0, "maxScore": 20.0, "controlScores": listed}

    controls = [{"id": "a", "maxScore": 10.0}, {"id": "b", "maxScore": 10.0}]
    snapshots = [day(0, a=10.0, b=0.0), day(1, b=10.0), day(2, a=0.0, b=10.0)]
    found = reading.summary(snapshots, controls, LATER)
    assert found["history"][-1]["completed"] == [{"id": "a", "points": 10.0}]
    stored = reading.summary(snapshots[1:], controls, LATER)
    # The next refresh reads back from the newest stored day (reading.days_to_read): the left-out day and today.
    again = reading.summary(snapshots[:2], controls, LATER, stored["history"], stored[daily.BASE])
    assert again["history"][-1]["completed"] == [{"id": "a", "points": 10.0}]
    assert again["history"][-1]["regressed"] == [{"id": "b", "points": -10.0}]


def test_a_snapshot_time_with_an_offset_is_its_utc_day(graph):
    """A review's days are UTC days: a `createdDateTime` sent with an offset is the day it is in UTC."""
    snapshots = copy.deepcopy(graph.home.all_scores()[:2])
    newest = date.fromisoformat(snapshots[0]["createdDateTime"][:10])
    snapshots[0]["createdDateTime"] = f"{newest - timedelta(days=1)}T20:00:00.1234567-04:00"  # midnight UTC
    controls = reading.join(list(graph.home.profiles.values()), snapshots[0], Findings())
    found = reading.summary(snapshots, controls, LATER)
    assert [d["date"] for d in found["history"]] == [str(newest - timedelta(days=1)), str(newest)]
    assert found["history"][-1]["comparative"]
