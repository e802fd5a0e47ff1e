"""Where each ticket field goes in ServiceNow (docs/design.md#servicenow-mapping), and how its states read back.

`SERVICENOW_FIELD_MAP` overrides any entry: `{"recommendation_source": "u_recommendation_source"}` adds a
custom field, `""` leaves a field out, and `"states": {"10": "new", ...}` maps another table's states.
`"resolution_code": {"field": "close_code", "value": "Solution provided"}` sets a resolution code when the
connector resolves a ticket (close_code's choices differ between releases, so there is no default).
`"risk_accepted_codes": ["Risk Accepted"]`: a ticket closed with one of these close codes (read from the field
`resolution_code` names, `close_code` by default) sets its control to `Ignored` with the close notes, where its route
says `"onRiskAccepted": "ignore"` (docs/templates.md#risk-accepted-in-servicenow).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

DEFAULT_FIELDS: dict[str, str] = {
    "name": "short_description",
    "description": "description",
    "impact": "impact",
    "urgency": "urgency",
    "due_date": "due_date",
    "caller": "caller_id",
    "correlation_id": "correlation_id",
    "correlation_display": "correlation_display",
    "recommendation_source": "",
    "recommendation_category": "",
    "state": "state",
    "resolution_notes": "close_notes",
    "resolution_code": "",
    "work_notes": "work_notes",
    "assignee": "assigned_to",
}
REQUIRED = ("name", "description", "correlation_id", "state")
STATUSES = ("new", "in_progress", "on_hold", "resolved", "closed", "canceled")
INCIDENT_STATES: dict[str, str] = {
    "1": "new",
    "2": "in_progress",
    "3": "on_hold",
    "6": "resolved",
    "7": "closed",
    "8": "canceled",
}
# A ServiceNow table or column name, as the platform makes them: a lower-case letter, then up to 79 of a-z, 0-9, _.
# Always used with fullmatch (a `$` pattern with `match` would let a trailing newline through).
SERVICENOW_NAME = re.compile(r"[a-z][a-z0-9_]{0,79}")
MAX_RISK_CODES = 20
CLOSE_CODE = "close_code"  # the incident table's resolution code (a choice list), where no other field is mapped


@dataclass(frozen=True)
class FieldMap:
    fields: dict[str, str] = field(default_factory=lambda: dict(DEFAULT_FIELDS))
    states: dict[str, str] = field(default_factory=lambda: dict(INCIDENT_STATES))
    resolution_code: str = ""  # the value written to fields["resolution_code"] when resolving
    risk_accepted_codes: tuple[str, ...] = ()  # close codes by which a person in ServiceNow accepts the risk

    def target(self, logical: str) -> str:
        return self.fields.get(logical, "")

    def status_of(self, raw_state: str) -> str:
        return self.states.get(raw_state, "unknown")

    def close_code_field(self) -> str:
        """Where a record's close code is read: the field `resolution_code` names, else `close_code`."""
        return self.fields.get("resolution_code") or CLOSE_CODE

    def state_for(self, status: str) -> str | None:
        """The raw state value that means `status` (the first the map names), to write it back."""
        return next((raw for raw, mapped in self.states.items() if mapped == status), None)


def parse_field_map(raw: Any, table: str) -> FieldMap:
    """Validate an override object; raises ValueError saying what is wrong."""
    if not isinstance(raw, dict):
        raise ValueError("it must be a JSON object")
    fields = dict(DEFAULT_FIELDS)
    states = dict(INCIDENT_STATES) if table == "incident" else {}
    resolution_code = ""
    risk_codes: tuple[str, ...] = ()
    for key, value in raw.items():
        if key == "risk_accepted_codes":
            risk_codes = _risk_codes(value)
            continue
        if key == "resolution_code" and isinstance(value, dict):
            target, code = value.get("field"), value.get("value")
            if not (isinstance(target, str) and SERVICENOW_NAME.fullmatch(target) and isinstance(code, str)
                    and 0 < len(code) <= 80 and "^" not in code and code.isprintable()):  # fmt: skip
                raise ValueError('\'resolution_code\' must be {"field": "close_code", "value": "<one of its choices>"}')
            fields["resolution_code"], resolution_code = target, code
            continue
        if key == "states":
            if not isinstance(value, dict) or not all(isinstance(k, str) and v in STATUSES for k, v in value.items()):
                raise ValueError(f"'states' must map state values to one of {', '.join(STATUSES)}")
            states = dict(value)
            continue
        if key not in DEFAULT_FIELDS:
            raise ValueError(f"'{key}' is not a ticket field; known: {', '.join(DEFAULT_FIELDS)}, states")
        if not isinstance(value, str) or (value and not SERVICENOW_NAME.fullmatch(value)):
            raise ValueError(f"'{key}' must name a ServiceNow field such as 'u_{key}', or be \"\"")
        if not value and key in REQUIRED:
            raise ValueError(f"'{key}' cannot be left out")
        fields[key] = value
    if fields["resolution_code"] and not resolution_code:
        raise ValueError('\'resolution_code\' needs a value: {"field": "close_code", "value": "..."}')
    if resolution_code and resolution_code in risk_codes:  # the connector's own resolve would accept a risk
        raise ValueError("'risk_accepted_codes' must not hold the code 'resolution_code' writes when the connector "
                         "resolves a ticket")  # fmt: skip
    return FieldMap(fields, states, resolution_code, risk_codes)


def _risk_codes(value: Any) -> tuple[str, ...]:
    """1 to MAX_RISK_CODES close codes, each text of 1 to 80 printable characters without '^' (ServiceNow's query
    separator)."""
    if not (isinstance(value, list) and 0 < len(value) <= MAX_RISK_CODES and all(
            isinstance(c, str) and 0 < len(c) <= 80 and "^" not in c and c.isprintable() for c in value)):  # fmt: skip
        raise ValueError(f"'risk_accepted_codes' must be a list of 1 to {MAX_RISK_CODES} close codes, each 1 to 80 "
                         "printable characters, e.g. [\"Risk Accepted\"]")  # fmt: skip
    return tuple(dict.fromkeys(value))
