"""What the refresh keeps of each day for a review (secure_score/daily.py), from the Graph simulator's snapshots: a
refresh that reads one or two days finds the same changes as one that read all 90, and the document stays small."""

from __future__ import annotations

import copy
import json
from typing import Any

from dev.graph import GraphSimulator
from secure_score import daily, reading
from shared.store._models import MAX_DOCUMENT_CHARS


class Findings:
    def __init__(self) -> None:
        self.errors: list[str] = []

    def warn(self, error: Any, **about: Any) -> None:
        raise AssertionError(error)


def _summary(graph: GraphSimulator, days: int, kept: dict[str, Any] | None = None) -> dict[str, Any]:
    snapshots = graph.home.all_scores()[:days]
    controls = reading.join(list(graph.home.profiles.values()), snapshots[0], Findings())
    history = copy.deepcopy(kept["history"]) if kept else None
    return reading.summary(snapshots, controls, "2026-12-07T00:00:00+00:00", history,
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
