"""Secure Score controls (docs/design.md#secure-score): a control profile joined with its score, and a ticket request
filled from a control.

Graph's data is input too: every value is held to the shape it must have (numbers are numbers, also when sent
as strings; text is clean text of bounded length, without the invisible characters that can hide or reorder what a
reader sees; URLs are https), a missing or null field gets a neutral value, and a profile without a usable id is
refused (the refresh records it and goes on).

A control is *scored* when the tenant's latest snapshot lists it: the profiles are every control Microsoft has,
whatever the licences, so one the snapshot leaves out does not apply to this tenant (docs/design.md#secure-score).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

from secure_score.htmltext import html_to_text
from shared.text import clean_line, printable
from shared.tickets import CATEGORIES, CATEGORY_NAME, HOME, HTTPS_URL, RECOMMENDATION_ID, Ticket

STATES = {"default": "Default", "ignored": "Ignored", "thirdparty": "ThirdParty", "reviewed": "Reviewed"}
TOLERANCE = 1e-6  # points: a score this close to the maximum is the maximum (Graph's numbers are doubles)
# Multi-line text from Graph: control characters become spaces; bidirectional controls and zero-width characters
# go (as they are refused in one-line input); line and paragraph separators become line ends.
_CONTROLS_TEXT = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff]")
_INVISIBLE = re.compile(r"[\u200b-\u200f\u202a-\u202e\u2060-\u2064\u2066-\u2069\ufeff\u061c\u180e]")
_SEPARATORS = re.compile(r"[\u2028\u2029]")
_NUMBER = re.compile(r"^-?[0-9]{1,9}(\.[0-9]{1,12})?$")
_UPDATED = re.compile(
    r"^([0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2})(?:\.([0-9]{1,9}))?(Z|[+-][0-9]{2}:[0-9]{2})?$"
)


class ProfileRefused(ValueError):
    """A profile the connector cannot take (no usable id)."""


def number(value: Any) -> float | None:
    """A number Graph sent, as a number or as a decimal string (`"10"`: real responses carry both)."""
    if isinstance(value, str) and _NUMBER.fullmatch(value.strip()):
        value = float(value.strip())
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    parsed = float(value)
    return parsed if parsed == parsed and abs(parsed) < 1e9 else None  # not NaN, not absurd


def _line(value: Any, limit: int) -> str:
    """One clean line of a profile's text; the catalogue's strings recur in every tenant, so each is cleaned once."""
    return _clean(value, limit) if isinstance(value, str) else ""


@lru_cache(maxsize=16384)
def _clean(value: str, limit: int) -> str:
    return clean_line(value, limit)


def _text(value: Any, limit: int) -> str:
    if not isinstance(value, str):
        return ""
    return _INVISIBLE.sub("", _SEPARATORS.sub("\n", _CONTROLS_TEXT.sub(" ", value)))[:limit]


def _from_html(value: Any, read: int, keep: int) -> str:
    return _plain(value, read, keep) if isinstance(value, str) else ""


@lru_cache(maxsize=4096)
def _plain(markup: str, read: int, keep: int) -> str:
    """Remediation text is the same catalogue in every tenant and every refresh: converted once per process, not
    once per tenant (the conversion is most of a refresh's own time)."""
    return _text(html_to_text(_text(markup, read)), keep)


def _updated_at(value: Any) -> datetime | None:
    """`updatedDateTime` as a time: fractional seconds of any length (the docs show six, Graph sends up to
    seven), `Z` or an offset; None when absent or unreadable."""
    match = _UPDATED.fullmatch(value.strip()) if isinstance(value, str) else None
    if match is None:
        return None
    whole, fraction, zone = match.groups()
    try:
        moment = datetime.fromisoformat(whole + ("+00:00" if zone in (None, "Z") else zone))
    except ValueError:
        return None
    return moment.astimezone(UTC).replace(microsecond=int((fraction or "0")[:6].ljust(6, "0")))


def current_update(profile: dict[str, Any]) -> dict[str, Any]:
    """The newest `controlStateUpdates` entry by its parsed time (entries without a time are oldest, and among
    equals the later in the list wins); `{}` when there is none."""
    raw = profile.get("controlStateUpdates")  # documented as a collection; anything else is no update at all
    updates = [u for u in raw if isinstance(u, dict)] if isinstance(raw, list) else []
    if not updates:
        return {}
    oldest = datetime.min.replace(tzinfo=UTC)
    return max(enumerate(updates), key=lambda pair: (_updated_at(pair[1].get("updatedDateTime")) or oldest, pair[0]))[1]


def last_change(profile: dict[str, Any]) -> dict[str, Any]:
    """The newest `controlStateUpdates` entry that changed the state (the one before it had another, or it is the
    first and not Default): who decided the state and when, not the newest note; `{}` when none did."""
    raw = profile.get("controlStateUpdates")
    updates = [u for u in raw if isinstance(u, dict)] if isinstance(raw, list) else []
    oldest = datetime.min.replace(tzinfo=UTC)
    ordered = [u for _, u in sorted(enumerate(updates), key=lambda p: (_updated_at(p[1].get("updatedDateTime"))
                                                                      or oldest, p[0]))]  # fmt: skip
    for index in range(len(ordered) - 1, -1, -1):
        before = state_of(ordered[index - 1]) if index else "Default"
        if state_of(ordered[index]) != before:
            return ordered[index]
    return {}


def state_of(update: dict[str, Any]) -> str:
    """An entry's state, in the documented spelling when it is one of the four (compared case-insensitively)."""
    raw = _line(update.get("state"), 40)
    return STATES.get(raw.lower(), raw or "Default")


def current_state(profile: dict[str, Any]) -> str:
    """The newest `controlStateUpdates` entry's state; none means Default."""
    return state_of(current_update(profile))


def build_control(profile: dict[str, Any], score_entry: dict[str, Any] | None) -> dict[str, Any]:
    """One stored control: the profile's documented fields, today's score, and whether it is completed
    (score >= maxScore; the undocumented `scoreInPercentage`/`implementationStatus` are shown, never used)."""
    control_id = profile.get("id")
    if not isinstance(control_id, str) or not RECOMMENDATION_ID.fullmatch(control_id):
        raise ProfileRefused(
            f"a control profile with an id the connector cannot use ({printable(str(control_id), 64)})"
        )
    described = _description(control_id, profile)
    score = number(score_entry.get("score")) if score_entry else None
    return {
        **described,
        "score": score,
        "scored": score_entry is not None,
        "completed": is_completed(score, described["maxScore"]),
        "state": current_state(profile),
        "implementationStatus": _line((score_entry or {}).get("implementationStatus"), 300) or None,
    }


_DESCRIBED = ("title", "controlCategory", "service", "rank", "maxScore", "actionType", "tier", "userImpact",
              "implementationCost", "threats", "remediation", "remediationImpact", "actionUrl",
              "deprecated")  # fmt: skip


def _description(control_id: str, profile: dict[str, Any]) -> dict[str, Any]:
    """What a profile says about its control, apart from its state. The catalogue is the same in every tenant and
    every refresh, so each distinct description is made once per process (keyed by each value and its type: `1`
    and `True` are not the same description)."""
    key = tuple(v if type(v) is str else (type(v).__name__, tuple(v) if isinstance(v, list) else v)
                for v in map(profile.get, _DESCRIBED))  # fmt: skip
    try:
        described = _describe(control_id, key)
    except TypeError:  # a value that cannot be a key (an object where text was due): made without the cache
        described = _describe.__wrapped__(control_id, key)
    return {**described, "threats": list(described["threats"])}  # the cached one is never handed out


@lru_cache(maxsize=8192)
def _describe(control_id: str, key: tuple[Any, ...]) -> dict[str, Any]:
    raw = [v if type(v) is str else list(v[1]) if v[0] == "list" else v[1] for v in key]
    (title, category, service, rank_value, max_value, action_type, tier, impact, cost, threats, remediation,
     remediation_impact, action_url, deprecated) = raw  # fmt: skip
    rank = number(rank_value)
    return {
        "id": control_id,
        "title": _line(title, 300) or control_id,
        "category": category_of(category),
        "service": _line(service, 80) or None,
        "rank": int(rank) if rank is not None else None,
        "maxScore": number(max_value),
        "actionType": _line(action_type, 40) or None,
        "tier": _line(tier, 40) or None,
        "userImpact": _line(impact, 40) or None,
        "implementationCost": _line(cost, 40) or None,
        "threats": [_line(t, 80) for t in threats if isinstance(t, str)][:20] if isinstance(threats, list) else [],
        "remediation": _from_html(remediation, 20000, 8000),
        "remediationImpact": _from_html(remediation_impact, 4000, 2000),
        "actionUrl": action_url if isinstance(action_url, str) and HTTPS_URL.fullmatch(action_url) else None,
        "deprecated": deprecated is True,
    }


def category_of(value: Any) -> str | None:
    """Graph's category: one of the five documented, or another as Graph names it (kept, one clean line)."""
    if value in CATEGORIES:
        return str(value)
    text = _line(value, 40)
    return text if CATEGORY_NAME.fullmatch(text) else None


def is_open_action(control: dict[str, Any]) -> bool:
    """Open, as GET /api/recommendations' default `open`: scored (snapshots stored before `scored` was recorded knew
    it as a score that is not null), not completed, not deprecated."""
    scored = control.get("scored", control.get("score") is not None)
    return bool(scored) and not control.get("completed") and not control.get("deprecated")


def is_completed(score: float | None, max_score: float | None) -> bool:
    """Completed: the tenant has all the control's points (as numbers, within a hair of the maximum)."""
    return score is not None and max_score is not None and max_score > 0 and score >= max_score - TOLERANCE


def newest_tickets(tickets: Iterable[Ticket], tenant: str | None = HOME) -> dict[str, Ticket]:
    """Per recommendation of `tenant` (None: of every tenant, keyed by claim key), its newest ticket: the one a
    control's row shows, its edges act on and its note names. Tickets of the caller's own recommendations (source
    `user`) are not Secure Score's, and a record a person opened by hand with the connector's correlation id (a
    duplicate) never takes the connector's place."""
    newest: dict[str, Ticket] = {}
    for ticket in tickets:
        if ticket.recommendation.get("source") == "user" or ticket.duplicate_of:
            continue
        if tenant is not None and ticket.tenant != tenant:
            continue
        key = ticket.recommendation_id if tenant is not None else ticket.claim_key
        held = newest.get(key)
        if held is None or ticket.created_at > held.created_at:
            newest[key] = ticket
    return newest
