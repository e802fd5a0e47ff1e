"""A score alert (docs/alerts.md#a-rule): `{id, name, tenants, below?, dropOf?, within?}`, and the rules of a whole
`PUT /api/alerts` body, every bad field named at once (`alerts[3].below`)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from shared.problems import FieldError, ValidationFailed
from shared.text import one_line_ok, printable
from shared.tickets import ALERT_ID, HOME, TENANT_ID

MAX_ALERTS = 100
MAX_TENANTS = 2000
NAME_LIMIT = 160
WITHIN_DEFAULT, WITHIN_MIN, WITHIN_MAX = 7, 1, 90  # days; Secure Score keeps 90 days of history
HOME_ID = "home"
MEMBERS = ("id", "name", "tenants", "below", "dropOf", "within")


@dataclass(frozen=True)
class Alert:
    id: str
    name: str
    tenants: tuple[str, ...] | None  # None: every tenant the connector reads ("all"); HOME for the home tenant
    below: float | None = None  # percent
    drop_of: float | None = None  # points
    within: int = WITHIN_DEFAULT  # days

    def covers(self, tenant: str) -> bool:
        return self.tenants is None or tenant in self.tenants

    def to_json(self) -> dict[str, Any]:
        tenants: Any = "all" if self.tenants is None else [HOME_ID if t == HOME else t for t in self.tenants]
        data: dict[str, Any] = {"id": self.id, "name": self.name, "tenants": tenants}
        if self.below is not None:
            data["below"] = self.below
        if self.drop_of is not None:
            data["dropOf"] = self.drop_of
        data["within"] = self.within
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Alert:
        tenants = data.get("tenants")
        chosen = None if tenants == "all" else tuple(HOME if t == HOME_ID else str(t) for t in tenants or ())
        return cls(str(data["id"]), str(data.get("name") or data["id"]), chosen, _number(data.get("below")),
                   _number(data.get("dropOf")), int(data.get("within") or WITHIN_DEFAULT))  # fmt: skip


def _number(value: Any) -> float | None:
    """A finite number, else None: a JSON integer has no bound (float() of 10**400 overflows), a stored one no NaN."""
    if not isinstance(value, int | float) or isinstance(value, bool):
        return None
    try:
        number = float(value)
    except OverflowError:
        return None
    return number if math.isfinite(number) else None


def _tenants(value: Any, known: set[str], where: str, errors: list[FieldError]) -> tuple[str, ...] | None:
    if value == "all":
        return None
    if not isinstance(value, list) or not 1 <= len(value) <= MAX_TENANTS:
        errors.append(FieldError(where, f'must be "all" or a list of 1-{MAX_TENANTS} tenant ids ("home" too)'))
        return ()
    chosen: list[str] = []
    for i, tenant in enumerate(value):
        name = tenant.lower() if isinstance(tenant, str) else None
        if name == HOME_ID:
            chosen.append(HOME)
        elif name is not None and TENANT_ID.fullmatch(name) and name in known:
            chosen.append(name)
        else:
            shown = printable(tenant, 40) if isinstance(tenant, str) else "this value"
            errors.append(FieldError(f"{where}[{i}]", f"'{shown}' is not \"home\" nor a tenant the connector reads "
                                     "(GET /api/tenants lists them)"))  # fmt: skip
    return tuple(dict.fromkeys(chosen))


def _one(body: Any, i: int, known: set[str], errors: list[FieldError]) -> Alert | None:
    where = f"alerts[{i}]"
    if not isinstance(body, dict):
        errors.append(FieldError(where, "must be an object"))
        return None
    for member in body:
        if member not in MEMBERS:
            names = ", ".join(MEMBERS)
            errors.append(FieldError(f"{where}.{printable(member, 40)}", f"is not a member; known: {names}"))
    alert_id = body.get("id")
    if not isinstance(alert_id, str) or not ALERT_ID.fullmatch(alert_id):
        errors.append(FieldError(f"{where}.id", "must be 1-58 characters of A-Z, a-z, 0-9, '.', '_', '-', starting "
                                 "with a letter or digit"))  # fmt: skip
    name = body.get("name", alert_id)
    if not isinstance(name, str) or not 1 <= len(name) <= NAME_LIMIT or not name.strip() or not one_line_ok(name) \
            or not name.isprintable():  # fmt: skip
        errors.append(FieldError(f"{where}.name", f"must be one line of 1-{NAME_LIMIT} printable characters"))
    tenants = _tenants(body.get("tenants"), known, f"{where}.tenants", errors)
    below, drop_of = _number(body.get("below")), _number(body.get("dropOf"))
    if "below" in body and not (below is not None and 0 <= below <= 100):
        errors.append(FieldError(f"{where}.below", "must be a percent of the maximum score, 0-100"))
    if "dropOf" in body and not (drop_of is not None and 0 < drop_of <= 100_000):
        errors.append(FieldError(f"{where}.dropOf", "must be a positive number of points"))
    if "below" not in body and "dropOf" not in body:
        errors.append(FieldError(where, "needs below (percent) or dropOf (points), or both"))
    within = body.get("within", WITHIN_DEFAULT)
    if not (isinstance(within, int) and not isinstance(within, bool) and WITHIN_MIN <= within <= WITHIN_MAX):
        errors.append(FieldError(f"{where}.within", f"must be a whole number of days, {WITHIN_MIN}-{WITHIN_MAX}"))
    if errors:
        return None
    return Alert(str(alert_id), str(name), tenants, below, drop_of, int(within))


def parse(body: Any, known: set[str]) -> list[Alert]:
    """The whole list, or `validation_failed` naming every bad field. `known`: the tenants an alert may name."""
    if not isinstance(body, dict) or not isinstance(body.get("alerts"), list):
        raise ValidationFailed([FieldError("alerts", 'is required: a list of alerts (the body is {"alerts": [...]})')])
    errors: list[FieldError] = [FieldError(printable(k, 40), "is not a member; known: alerts")
                                for k in body if k not in ("alerts", "version")]  # fmt: skip
    listed = body["alerts"]
    if len(listed) > MAX_ALERTS:
        raise ValidationFailed([FieldError("alerts", f"holds {len(listed)} alerts; at most {MAX_ALERTS}")])
    alerts: list[Alert] = []
    seen: dict[str, int] = {}
    for i, item in enumerate(listed):
        own: list[FieldError] = []
        alert = _one(item, i, known, own)
        errors.extend(own)
        alert_id = item.get("id") if isinstance(item, dict) else None
        if isinstance(alert_id, str) and ALERT_ID.fullmatch(alert_id):
            if alert_id.lower() in seen:
                errors.append(FieldError(f"alerts[{i}].id", f"'{alert_id}' is also alerts[{seen[alert_id.lower()]}]'s "
                                         "id; each alert has its own"))  # fmt: skip
            seen.setdefault(alert_id.lower(), i)
        if alert is not None:
            alerts.append(alert)
    if errors:
        raise ValidationFailed(errors)
    return alerts
