"""A ticket request: the rules of `POST /api/tickets`' body, and the ServiceNow record it becomes
(docs/design.md#http-api-and-errors, docs/design.md#servicenow-mapping).

Every value that can reach an encoded query (recommendation id, requestedBy) is held to a pattern that
excludes ServiceNow's separators (`^`, `,`, `@` where it matters, CR/LF, non-ASCII) before it is used.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import asdict, dataclass, replace
from datetime import UTC, date, datetime, time
from typing import Any

from shared.fieldmap import FieldMap
from shared.problems import FieldError, ValidationFailed
from shared.text import MULTI_LINE_CLASS, ONE_LINE_CLASS, printable
from shared.tickets import (
    CATEGORIES,
    CONTROL_ID,
    CORRELATION_DISPLAY,
    EMAIL,
    HOME,
    HTTPS_URL,
    PRIORITIES,
    TENANT_ID,
    USER_NAME,
    correlation_id,
    is_alert,
)

IMPACT_URGENCY = {1: ("1", "1"), 2: ("1", "2"), 3: ("2", "2"), 4: ("2", "3"), 5: ("3", "3")}
SOURCES = ("microsoft", "user")
DESCRIPTION_LIMIT = 4000  # incident.description's length in ServiceNow
MAX_BODY = 64 * 1024  # a valid request is under 10 KB

# These patterns are also the OpenAPI document's (docs/openapi.yaml): keep the two identical. `NAME` is one
# line (shared.text's one-line rule, as a pattern) with at least one visible character; `DESCRIPTION` refuses
# control characters but tab, CR and LF. Lone surrogates are refused at the edge for every string.
NAME = re.compile(rf"^[^{ONE_LINE_CLASS}]*[^\x20{ONE_LINE_CLASS}][^{ONE_LINE_CLASS}]*$")
DESCRIPTION = re.compile(rf"^[^{MULTI_LINE_CLASS}]*$")
# Years 2000-9999 (ServiceNow's date fields and the connector's own UTC formatting hold no other years).
DUE_DATE = re.compile(
    r"^(2[0-9]{3}|[3-9][0-9]{3})-((0[1-9]|1[0-2])-(0[1-9]|1[0-9]|2[0-9])|(0[13-9]|1[0-2])-30|(0[13578]|1[02])-31)(T([01][0-9]|2[0-3]):[0-5][0-9](:[0-5][0-9](\.[0-9]{1,6})?)?(Z|[+-]([01][0-9]|2[0-3]):[0-5][0-9])?)?$"
)
IDEMPOTENCY_KEY = re.compile(r"^[\x21\x23-\x7e]{1,255}$")  # printable ASCII without space or '"'


@dataclass(frozen=True)
class Recommendation:
    id: str
    source: str
    category: str
    url: str | None = None


@dataclass(frozen=True)
class TicketRequest:
    name: str
    description: str
    priority: int
    due_date: datetime | None
    recommendation: Recommendation
    requested_by: str | None
    control: dict[str, Any] | None = None  # the Secure Score control's figures when filled from one
    origin: str | None = None  # the caller's own request's fingerprint, when fields were filled in
    tenant: str = HOME  # whose recommendation: a tenant the connector reads (docs/design.md#several-microsoft-tenants)
    # False: the caller named no priority, so a route's default may apply (docs/design.md#connections-and-routes)
    priority_named: bool = True

    @property
    def needs_control(self) -> bool:
        """The caller left something for the Secure Score control to fill."""
        rec = self.recommendation
        return not (self.name and rec.source and rec.category)

    def fingerprint(self) -> str:
        """Identifies the caller's request, to tell a retry from a different request under one key."""
        if self.origin:
            return self.origin
        data = asdict(self)
        data.pop("control")
        data.pop("origin")
        data.pop("priority_named")  # the same request as before routes: its keys still match
        if not self.tenant:
            data.pop("tenant")  # a home request's fingerprint is what it was before tenants: its keys still match
        data["due_date"] = self.due_date.isoformat() if self.due_date else None
        return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()

    def to_json(self) -> dict[str, Any]:
        """What a row keeps of the request while its route is unconfirmed (routing/in_force.py): what a route reads,
        the control cut to its figures. Not the name and description, which route nothing and which the row has
        already (its name, its payload): twice in one Table Storage property, a long non-ASCII description would
        overflow its 64 KiB (https://learn.microsoft.com/en-us/rest/api/storageservices/understanding-the-table-service-data-model)."""
        data = asdict(self)
        del data["name"], data["description"]
        data["due_date"] = self.due_date.isoformat() if self.due_date else None
        if self.control is not None:
            data["control"] = {k: self.control[k] for k in CONTROL_FIGURES if k in self.control}
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any], *, name: str, description: str) -> TicketRequest:
        """The request a row kept (`to_json`), with the name and description the row has."""
        due = data.get("due_date")
        return cls(**{**data, "name": name, "description": description,
                      "recommendation": Recommendation(**data["recommendation"]),
                      "due_date": datetime.fromisoformat(due) if due else None})  # fmt: skip


CONTROL_FIGURES = ("id", "score", "maxScore", "completed", "service", "category")


_ABSENT = object()


def _optional(body: dict[str, Any], key: str, errors: list[FieldError], field: str | None = None) -> Any:
    """An optional member is absent or has a value; an explicit null is refused, as the OpenAPI schema says."""
    value = body.get(key, _ABSENT)
    if value is None:
        errors.append(FieldError(field or key, "must not be null; leave it out instead"))
    return None if value is _ABSENT else value


def _name(value: Any, errors: list[FieldError]) -> str:
    """Absent (None here) is allowed: the Secure Score control names the ticket, or completion says so."""
    if value is None:
        return ""
    if not isinstance(value, str) or not 1 <= len(value) <= 160 or not NAME.fullmatch(value):
        errors.append(
            FieldError(
                "name",
                "must be one line of 1-160 characters, not only spaces, without control, zero-width or "
                "bidirectional formatting characters",
            )
        )
    return value if isinstance(value, str) else ""


def _description(value: Any, errors: list[FieldError]) -> str:
    if value is None:
        return ""
    if not isinstance(value, str) or len(value) > DESCRIPTION_LIMIT or not DESCRIPTION.fullmatch(value):
        errors.append(
            FieldError(
                "description", f"must be text of at most {DESCRIPTION_LIMIT} characters without control characters"
            )
        )
        return ""
    return value


def _priority(value: Any, errors: list[FieldError]) -> int:
    if value is None:
        return 3
    if isinstance(value, str) and value in PRIORITIES:
        return PRIORITIES[value]
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= 5:
        return value
    errors.append(FieldError("priority", "must be one of critical, high, medium, low, planning, or 1-5"))
    return 3


_EARLIEST = datetime(2000, 1, 1, tzinfo=UTC)
_LATEST = datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC)


def _due_date(value: Any, errors: list[FieldError]) -> datetime | None:
    """A date means the end of that day (UTC); a date-time without an offset is read as UTC. The written year
    is 2000-9999 (the pattern); an offset that carries the time across either end is held at that end, so
    every value the pattern admits is accepted and none reaches ServiceNow outside those years."""
    if value is None:
        return None
    if isinstance(value, str) and DUE_DATE.fullmatch(value):
        try:
            if len(value) == 10:
                return datetime.combine(date.fromisoformat(value), time(23, 59, 59), UTC)
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:  # 29 February of a common year: the pattern does not know leap years
            parsed = None
        if parsed is not None and parsed.tzinfo is None:
            return parsed.replace(tzinfo=UTC, microsecond=0)
        if parsed is not None:
            try:
                utc = parsed.astimezone(UTC)
            except OverflowError:  # past 9999-12-31 in UTC
                return _LATEST
            return min(max(utc.replace(microsecond=0), _EARLIEST), _LATEST)
    errors.append(
        FieldError(
            "dueDate",
            "must be an ISO 8601 date (2026-12-31) or date-time (2026-12-31T17:00:00Z) in the years 2000-9999",
        )
    )
    return None


def _recommendation(value: Any, errors: list[FieldError]) -> Recommendation:
    if not isinstance(value, dict):
        errors.append(FieldError("recommendation", "is required and must be an object"))
        return Recommendation("", "", "")
    rec_id = value.get("id")
    source = _optional(value, "source", errors, "recommendation.source")
    category = _optional(value, "category", errors, "recommendation.category")
    url = _optional(value, "url", errors, "recommendation.url")
    # CONTROL_ID, not RECOMMENDATION_ID: `alert/{id}` is the connector's own (docs/alerts.md#tickets); a caller's
    # would be a ticket the alert's next episode takes as its own.
    if not isinstance(rec_id, str) or not CONTROL_ID.fullmatch(rec_id):
        errors.append(FieldError("recommendation.id", "must be 1-64 characters of A-Z, a-z, 0-9, '.', '_', ':', '-'"))
    if source is not None and source not in SOURCES:
        errors.append(FieldError("recommendation.source", "must be 'microsoft' or 'user'"))
    if category is not None and category not in CATEGORIES:
        errors.append(FieldError("recommendation.category", f"must be one of {', '.join(CATEGORIES)}"))
    if url is not None and not (isinstance(url, str) and len(url) <= 2048 and HTTPS_URL.fullmatch(url)):
        errors.append(FieldError("recommendation.url", "must be an https:// URL of at most 2048 characters"))
    return Recommendation(
        str(rec_id or ""), str(source or ""), str(category or ""), url if isinstance(url, str) else None
    )


def _requested_by(value: Any, errors: list[FieldError]) -> str | None:
    if value is None:
        return None
    if isinstance(value, str) and len(value) <= 254 and (EMAIL.fullmatch(value) or USER_NAME.fullmatch(value)):
        return value
    errors.append(FieldError("requestedBy", "must be an email address, a UPN or a ServiceNow user name"))
    return None


REQUEST_MEMBERS = ("name", "description", "priority", "dueDate", "recommendation", "requestedBy", "tenant")
RECOMMENDATION_MEMBERS = ("id", "source", "category", "url")


def _unknown(body: dict[str, Any], known: tuple[str, ...], where: str, errors: list[FieldError]) -> None:
    """Unknown members are refused, not ignored: a misspelt `dueData` would otherwise vanish silently."""
    for name in body:
        if name not in known:
            errors.append(FieldError(f"{where}{printable(name, 64)}", f"is not a member; known: {', '.join(known)}"))


def parse_ticket_request(body: Any, *, initiating_user: str | None) -> TicketRequest:
    """Validate the whole body (parsed by the edge) and report every bad field at once (`validation_failed`)."""
    if not isinstance(body, dict):
        raise ValidationFailed([FieldError("body", "must be a JSON object")])
    errors: list[FieldError] = []
    _unknown(body, REQUEST_MEMBERS, "", errors)
    if isinstance(body.get("recommendation"), dict):
        _unknown(body["recommendation"], RECOMMENDATION_MEMBERS, "recommendation.", errors)
    name = _name(_optional(body, "name", errors), errors)
    description = _description(_optional(body, "description", errors), errors)
    priority = _priority(_optional(body, "priority", errors), errors)
    due = _due_date(_optional(body, "dueDate", errors), errors)
    recommendation = _recommendation(body.get("recommendation"), errors)
    requested_by = _requested_by(_optional(body, "requestedBy", errors), errors)
    tenant = _tenant(_optional(body, "tenant", errors), errors)
    if errors:
        raise ValidationFailed(errors)
    request = TicketRequest(name, description, priority, due, recommendation, initiating_user or requested_by,
                            priority_named="priority" in body)  # fmt: skip
    return replace(request, tenant=tenant) if tenant else request


def _tenant(value: Any, errors: list[FieldError]) -> str:
    """A tenant's id (the route checks the connector reads it); absent or `home`: the deployment's own."""
    if value is None or value == "home":
        return HOME
    if isinstance(value, str) and TENANT_ID.fullmatch(value.lower()):
        return value.lower()
    errors.append(FieldError("tenant", "must be a tenant id (a GUID) or 'home'"))
    return HOME


def validate_idempotency_key(value: str | None) -> str | None:
    if value is None:
        return None
    if not IDEMPOTENCY_KEY.fullmatch(value):
        raise ValidationFailed([FieldError("Idempotency-Key", "must be 1-255 printable ASCII characters")])
    return value


def servicenow_datetime(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")


def _source(rec: Recommendation) -> str:
    if is_alert(rec.id):
        return "Secure Score alert"
    return "Microsoft recommendation" if rec.source == "microsoft" else "User recommendation"


def footer(request: TicketRequest, ticket_id: str, caller_known: bool) -> str:
    rec = request.recommendation
    lines = [
        "",
        "---",
        f"Recommendation: {rec.id}",
        f"Category: {rec.category}",
        f"Source: {_source(rec)}",
    ]
    if rec.url:
        lines.append(f"Portal: {rec.url}")
    if request.tenant:
        lines.append(f"Microsoft tenant: {request.tenant}")
    if request.requested_by:
        lines.append(f"Requested by: {request.requested_by}" + ("" if caller_known else " (no ServiceNow user)"))
    lines.append(f"Connector reference: {ticket_id}")
    return "\n".join(lines)


def servicenow_record(
    request: TicketRequest, ticket_id: str, field_map: FieldMap, caller_sys_id: str | None
) -> dict[str, str]:
    """The record to POST, as docs/design.md#servicenow-mapping maps it. The footer always fits: the description is
    shortened instead, so the connector reference that finds the record again is never cut off."""
    tail = footer(request, ticket_id, caller_sys_id is not None)
    description = request.description[: max(0, DESCRIPTION_LIMIT - len(tail))]
    impact, urgency = IMPACT_URGENCY[request.priority]
    values = {
        "name": request.name,
        "description": description + tail,
        "impact": impact,
        "urgency": urgency,
        "due_date": servicenow_datetime(request.due_date) if request.due_date else "",
        "caller": caller_sys_id or "",
        "correlation_id": correlation_id(request.recommendation.id, request.tenant),
        "correlation_display": CORRELATION_DISPLAY,
        "recommendation_source": request.recommendation.source,
        "recommendation_category": request.recommendation.category,
    }
    record: dict[str, str] = {}
    for logical, value in values.items():
        target = field_map.target(logical)
        if target and value:
            record[target] = value
    return record
