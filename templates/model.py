"""A posture template (docs/templates.md): one decision (a state and a comment) for a set of Secure Score controls in
a set of tenants, and the checks a template passes before it is saved.

Every bound is here so that the work a template can cause stays bounded: at most `MAX_CONTROLS` control ids (letters,
digits, `_`, `-`, `.`), a comment of at most `MAX_COMMENT` characters on one line, one of the three states a person
may set through the connector, and tenants the connector knows (`home`, or an added tenant's id that is not
removed). All problems are named at once, each by its field (docs/design.md#robustness).

`until` ends one control's decision on a date of its own: `{control id: "YYYY-MM-DD"}`, the decision standing through
that whole day in UTC (it ends at 23:59:59Z), a date not past when saved and at most `MAX_DAYS` ahead; it wins over
`expiresInDays` for that control (docs/templates.md#a-template).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from shared.problems import FieldError, ValidationFailed
from shared.text import one_line_ok

STATES = ("ThirdParty", "Ignored", "Reviewed")  # securescorecontrolprofile-update; `Default` is no decision
MAX_CONTROLS = 500
MAX_COMMENT = 1000
MAX_NAME = 100
MAX_TENANTS = 2000
MAX_DAYS = 3650
LAST_SECOND = time(23, 59, 59)  # an `until` day ends at its last second in UTC
ALL = "all"
HOME_ID = "home"  # the home tenant in a template's list (its records' names too)
CONTROL_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
TEMPLATE_ID = re.compile(r"^[a-z0-9]{12}$")  # the ids the connector gives: safe in a Table RowKey and a URL
TEMPLATE_MARK = "[template: "  # how a template's note ends (`Template.note`): the connector's own write
TENANT_ID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
# Members of a template's answer that a PUT may send back as GET gave them: they are the connector's, not the caller's.
ANSWER_ONLY = frozenset({"id", "version", "savedAt", "savedBy", "appliedAt", "appliedBy", "lastApply", "drift",
                         "expiring", "listedOf", "partial"})  # fmt: skip
WRITABLE = ("name", "controls", "state", "comment", "tenants", "expiresInDays", "until", "onRiskAccepted")
DAY = re.compile(r"^\d{4}-\d{2}-\d{2}$")
IGNORE = "ignore"


@dataclass(frozen=True)
class Template:
    """One template as stored. `revision` changes with every save: the template's version is derived from it."""

    id: str
    name: str
    controls: tuple[str, ...]
    state: str
    comment: str = ""
    tenants: tuple[str, ...] | None = None  # None: every tenant (`"all"`), those added later too
    expires_in_days: int | None = None
    until: dict[str, str] = field(default_factory=dict, compare=False)  # control id -> its last day (YYYY-MM-DD)
    revision: str = ""
    saved_at: str | None = None
    saved_by: str | None = None
    applied_at: str | None = None
    applied_by: str | None = None
    on_risk_accepted: str | None = None  # "ignore": a risk accepted in ServiceNow sets the control Ignored
    others: dict[str, Any] = field(default_factory=dict, compare=False)  # members of a newer version, kept

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Template:
        tenants = data.get("tenants")
        days, until = data.get("expiresInDays"), data.get("until")
        known = {"id", "name", "controls", "state", "comment", "tenants", "expiresInDays", "until", "revision",
                 "savedAt", "savedBy", "appliedAt", "appliedBy", "onRiskAccepted"}  # fmt: skip
        return cls(
            str(data.get("id") or ""), str(data.get("name") or ""), tuple(str(c) for c in data.get("controls") or []),
            str(data.get("state") or ""), str(data.get("comment") or ""),
            None if tenants == ALL or not isinstance(tenants, list) else tuple(str(t) for t in tenants),
            days if isinstance(days, int) and not isinstance(days, bool) else None,
            {str(c): str(d) for c, d in until.items()} if isinstance(until, dict) else {},
            str(data.get("revision") or ""), data.get("savedAt"), data.get("savedBy"), data.get("appliedAt"),
            data.get("appliedBy"), IGNORE if data.get("onRiskAccepted") == IGNORE else None,
            {k: v for k, v in data.items() if k not in known},
        )  # fmt: skip

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name, "controls": list(self.controls), "state": self.state,
                "comment": self.comment, "tenants": ALL if self.tenants is None else list(self.tenants),
                "expiresInDays": self.expires_in_days, "until": dict(self.until), "revision": self.revision,
                "savedAt": self.saved_at, "savedBy": self.saved_by, "appliedAt": self.applied_at,
                "appliedBy": self.applied_by, "onRiskAccepted": self.on_risk_accepted,
                **self.others}  # fmt: skip

    def ends(self, control: str, at: str) -> tuple[str | None, int | str | None]:
        """When this template's decision on `control`, written at `at` (ISO 8601), ends (None: never), and what that
        end was derived from: the control's own `until` date wins over `expiresInDays`. The second is kept in the
        record (`days`) so that a changed end starts the exception again."""
        day = self.until.get(control)
        if day is not None:
            return datetime.combine(date.fromisoformat(day), LAST_SECOND, UTC).isoformat(), day
        if self.expires_in_days:
            return (datetime.fromisoformat(at) + timedelta(days=self.expires_in_days)).isoformat(), self.expires_in_days
        return None, None

    def covers(self, tenant: str) -> bool:
        return self.tenants is None or tenant in self.tenants

    def overlaps(self, other: Template) -> list[str]:
        """The controls both templates set in some tenant (`all` meets every tenant): none may be set by two."""
        if self.tenants is not None and other.tenants is not None and not set(self.tenants) & set(other.tenants):
            return []
        theirs = set(other.controls)
        return [c for c in self.controls if c in theirs]

    def note(self) -> str:
        """The comment the PATCH writes: the template's comment and its name, so the portal says where it came from."""
        mark = f"{TEMPLATE_MARK}{self.name}]"
        return f"{self.comment} {mark}" if self.comment else mark


def parse(body: Any, known_tenants: set[str], today: date, kept: dict[str, str] | None = None) -> dict[str, Any]:
    """The writable members of a template from a request body, each checked; `validation_failed` names every field
    that is wrong. `known_tenants`: `home` and the added tenants that are not removed; `today`: in UTC; `kept`: the
    `until` saved already (a PUT), whose dates may have passed: GET's answer sent back is taken."""
    if not isinstance(body, dict):
        raise ValidationFailed([FieldError("body", "must be a JSON object with name, controls, state and tenants")])
    errors: list[FieldError] = []
    for member in sorted(set(body) - set(WRITABLE) - ANSWER_ONLY)[:10]:
        errors.append(FieldError(member[:64], "is not a member of a template"))
    name = body.get("name")
    if not (isinstance(name, str) and name.strip() and len(name) <= MAX_NAME and one_line_ok(name)):
        errors.append(FieldError("name", f"must be text on one line, 1 to {MAX_NAME} characters"))
    controls = _controls(body.get("controls"), errors)
    state = body.get("state")
    if state not in STATES:
        errors.append(FieldError("state", f"must be one of {', '.join(STATES)}"))
    comment = body.get("comment", "")
    if not (isinstance(comment, str) and len(comment) <= MAX_COMMENT and one_line_ok(comment)):
        errors.append(FieldError("comment", f"must be text on one line, at most {MAX_COMMENT} characters"))
    tenants = _tenants(body.get("tenants"), known_tenants, errors)
    days = body.get("expiresInDays")
    if days is not None and not (isinstance(days, int) and not isinstance(days, bool) and 1 <= days <= MAX_DAYS):
        errors.append(FieldError("expiresInDays", f"must be a whole number of days from 1 to {MAX_DAYS}, or absent"))
    until = _until(body.get("until"), controls, today, kept or {}, errors)
    risk = body.get("onRiskAccepted")
    if risk is not None and risk != IGNORE:
        errors.append(FieldError("onRiskAccepted", f'must be "{IGNORE}", null or absent'))
    if errors:
        raise ValidationFailed(errors)
    return {"name": str(name).strip(), "controls": controls, "state": state, "comment": str(comment).strip(),
            "tenants": tenants, "expires_in_days": days, "until": until, "on_risk_accepted": risk}  # fmt: skip


def _until(value: Any, controls: tuple[str, ...], today: date, kept: dict[str, str],
           errors: list[FieldError]) -> dict[str, str]:  # fmt: skip
    if value is None:
        return {}
    if not isinstance(value, dict) or len(value) > MAX_CONTROLS:
        errors.append(FieldError("until", "must be an object of control ids (of `controls`) and dates (YYYY-MM-DD), "
                                 "or absent"))  # fmt: skip
        return {}
    last = today + timedelta(days=MAX_DAYS)
    wrong = 0
    for control, day in value.items():
        when = _date(day) if isinstance(day, str) and DAY.fullmatch(day) else None
        problem = None
        if control not in controls:
            problem = "is not one of the template's controls"
        elif when is None:
            problem = "must be a date, YYYY-MM-DD (the decision ends at the end of that day, UTC)"
        elif not today <= when <= last and kept.get(control) != day:
            problem = f"must be a date from today (UTC) to {MAX_DAYS} days ahead"
        if problem is not None:
            wrong += 1
            if wrong <= 10:
                errors.append(FieldError(f"until.{str(control)[:64]}", problem))
    return {} if wrong else {c: value[c] for c in controls if c in value}


def _date(text: str) -> date | None:
    try:
        return date.fromisoformat(text)
    except ValueError:
        return None


def _controls(value: Any, errors: list[FieldError]) -> tuple[str, ...]:
    if not isinstance(value, list) or not value:
        errors.append(FieldError("controls", "must be a list of 1 or more Secure Score control ids"))
        return ()
    if len(value) > MAX_CONTROLS:
        errors.append(FieldError("controls", f"has {len(value)} control ids; at most {MAX_CONTROLS} are taken"))
        return ()
    wrong = [i for i, c in enumerate(value) if not (isinstance(c, str) and CONTROL_ID.fullmatch(c))]
    for i in wrong[:10]:
        errors.append(FieldError(f"controls[{i}]", "must be a control id: letters, digits, '_', '-' and '.', at "
                                 "most 64, starting with a letter or digit"))  # fmt: skip
    return () if wrong else tuple(dict.fromkeys(value))


def _tenants(value: Any, known: set[str], errors: list[FieldError]) -> tuple[str, ...] | None:
    if value == ALL:
        return None
    if not isinstance(value, list) or not value or len(value) > MAX_TENANTS:
        errors.append(FieldError("tenants", f"must be \"all\" or a list of 1 to {MAX_TENANTS} tenant ids ('home' "
                                 "for the home tenant)"))  # fmt: skip
        return ()
    wrong = [i for i, t in enumerate(value) if not (isinstance(t, str) and t in known)]
    for i in wrong[:10]:
        errors.append(FieldError(f"tenants[{i}]", "is not a tenant the connector reads: 'home' or the id of an "
                                 "added tenant (GET /api/tenants)"))  # fmt: skip
    return () if wrong else tuple(dict.fromkeys(value))
