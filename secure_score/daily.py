"""What each day of the stored history keeps for a tenant's review (docs/api.md#a-tenants-review): Secure Score's
comparative averages that day, and the controls completed and regressed that day, found by comparing the day's
`controlScores` with the snapshot before it. So a review is served from the store alone, never waiting for Graph.

Completed is as everywhere (score >= the profile's maxScore, docs/design.md#secure-score): a control completed on a
day was scored and not completed in the snapshot before, a control regressed was completed before and is scored and
not completed now (a control that only starts or stops being scored is neither). The day before the first day a
refresh reads is kept as its scores (`BASE`), so a refresh that reads one or two snapshots still finds that day's
changes; the document stays small: the changes per day, and one day's scores.
"""

from __future__ import annotations

from typing import Any

from secure_score.controls import is_completed, number
from shared.text import one_line_ok

BASE = "scoresBefore"  # the summary's {"date", "scores": {control: score}} of the day before the newest one
MAX_BASES = 10  # comparative averages kept per day (Graph documents three bases)


def scores_of(snapshot: dict[str, Any]) -> dict[str, float]:
    """A snapshot's scored controls: id -> score (numbers sent as strings read as numbers)."""
    listed = snapshot.get("controlScores")
    found: dict[str, float] = {}
    for entry in listed if isinstance(listed, list) else []:
        if isinstance(entry, dict) and isinstance(entry.get("controlName"), str):
            score = number(entry.get("score"))
            if score is not None and len(entry["controlName"]) <= 200:
                found[entry["controlName"]] = score
    return found


def comparative(snapshot: dict[str, Any]) -> list[dict[str, Any]]:
    """The documented members of `averageComparativeScores` (basis, averageScore); others are left out."""
    listed = snapshot.get("averageComparativeScores")
    kept = []
    for entry in listed if isinstance(listed, list) else []:
        basis = entry.get("basis") if isinstance(entry, dict) else None
        average = number(entry.get("averageScore")) if isinstance(entry, dict) else None
        if isinstance(basis, str) and 0 < len(basis) <= 60 and basis.isprintable() and one_line_ok(basis):
            kept.append({"basis": basis, "averageScore": average})
    return kept[:MAX_BASES]


def changes(before: dict[str, float], after: dict[str, float], maxima: dict[str, float]) -> dict[str, Any]:
    """The controls completed and regressed from one snapshot to the next, each with the points it moved."""
    done: list[dict[str, Any]] = []
    undone: list[dict[str, Any]] = []
    for control in sorted(set(before) & set(after) & set(maxima)):
        was, now = is_completed(before[control], maxima[control]), is_completed(after[control], maxima[control])
        if was != now:
            (done if now else undone).append({"id": control, "points": round(after[control] - before[control], 2)})
    return {"completed": done, "regressed": undone}


def annotate(
    history: list[dict[str, Any]],
    snapshots: list[dict[str, Any]],
    controls: list[dict[str, Any]],
    base: dict[str, Any] | None,
) -> dict[str, Any] | None:
    """Add each read day's comparative averages and changes to its entry in `history` (oldest first, the days read
    in it); `base` is the stored scores of the day before the newest stored day. Answers the new base."""
    maxima = {str(c.get("id")): float(c["maxScore"]) for c in controls if number(c.get("maxScore")) is not None}
    read = {str(s.get("createdDateTime") or "")[:10]: s for s in snapshots if isinstance(s, dict)}
    known = base if isinstance(base, dict) and isinstance(base.get("scores"), dict) else None
    kept: dict[str, float] = {}
    if known is not None:
        kept = {str(k): float(v) for k, v in known["scores"].items() if isinstance(v, int | float)}
    days = [str(h.get("date")) for h in history]
    seen: list[dict[str, float] | None] = []  # each day's scores, where known
    for entry, day in zip(history, days, strict=True):
        snapshot = read.get(day)
        if snapshot is None:
            seen.append(kept if known is not None and known.get("date") == day else None)
            continue
        scores = scores_of(snapshot)
        entry["comparative"] = comparative(snapshot)
        before = seen[-1] if seen else None
        if before is not None:
            entry.update(changes(before, scores, maxima))
        else:  # the day before is unknown: what an earlier refresh found stays, if anything
            entry.setdefault("completed", [])
            entry.setdefault("regressed", [])
        seen.append(scores)
    if len(seen) < 2 or seen[-2] is None:
        return None
    return {"date": days[-2], "scores": seen[-2]}
