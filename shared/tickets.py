"""The ticket model: its states, the record it links to in ServiceNow, and its JSON.

A value from ServiceNow is input too: `with_link` holds each to the shape it must have. The patterns here are
the ones the store, the syncs and the request rules (create_ticket/request.py) share: values that can reach an
encoded query are held to patterns that exclude ServiceNow's separators (`^`, `,`, `@`, CR/LF, non-ASCII).
"""

from __future__ import annotations

import base64
import re
import uuid
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from shared.fieldmap import FieldMap
from shared.problems import ConnectorError, FieldError, ValidationFailed
from shared.text import ascii_int, one_line_ok, printable

CORRELATION_PREFIX = "m365sec:"
CORRELATION_DISPLAY = "Microsoft 365 security"
PRIORITIES = {"critical": 1, "high": 2, "medium": 3, "low": 4, "planning": 5}
PRIORITY_NAMES = {v: k for k, v in PRIORITIES.items()}
CATEGORIES = ("Identity", "Data", "Device", "Apps", "Infrastructure")
# A category as Graph may name one beyond the five (kept as it comes, one clean line).
CATEGORY_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9 &._-]{0,39}$")


def known_categories(seen: Iterable[Any]) -> list[str]:
    """What a filter on category accepts: the five documented, and any other the data holds (a typo such as
    `identity` is refused with this list rather than silently matching nothing)."""
    extra = sorted({c for c in seen if isinstance(c, str) and c not in CATEGORIES and CATEGORY_NAME.fullmatch(c)})
    return [*CATEGORIES, *extra]


OPEN_STATUSES = frozenset({"pending", "new", "in_progress", "on_hold", "unknown"})
CLOSED_STATUSES = frozenset({"resolved", "closed", "canceled"})
RESOLVED_STATUSES = frozenset({"resolved", "closed"})  # done by the work (canceled is a decision not to)
SYS_ID = re.compile(r"^[0-9a-f]{32}$")
SERVICENOW_TIME = re.compile(r"^[0-9]{4}-[0-9]{2}-[0-9]{2} [0-9]{2}:[0-9]{2}:[0-9]{2}$")
HTTPS_URL = re.compile(r"^https://[A-Za-z0-9.-]+(:[0-9]{1,5})?(/[!#-~]*)?$")
CONTROL_ID = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")  # a Secure Score control's id as Graph names one
# A score alert's ticket is `alert/{alert id}` (docs/alerts.md#tickets): `/` is in no control id, so it never reads
# as a control, and 6 + 58 characters keep `m365sec:{tag}/alert/{id}` within correlation_id's 100 (8 + 26 + 1 + 64).
ALERT_PREFIX = "alert/"
ALERT_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,57}$")
RECOMMENDATION_ID = re.compile(r"^(?:[A-Za-z0-9._:-]{1,64}|alert/[A-Za-z0-9][A-Za-z0-9._-]{0,57})$")
EMAIL = re.compile(r"^[A-Za-z0-9._%+'-]+@[A-Za-z0-9.-]+$")
USER_NAME = re.compile(r"^[A-Za-z0-9._-]{1,100}$")


class RecordRefused(ConnectorError):
    """A ServiceNow record the connector will not take as it comes (a correlation id edited by hand, a number
    that is not one line of printable text): that record's failure, never written anywhere verbatim."""

    code = "record_refused"


NUMBER_LIMIT = 40  # task.number is 40 characters in ServiceNow


def record_number(value: Any) -> str:
    """A record's `number` as ServiceNow sent it, held to what a number is: printable, one line, at most 40
    characters; "" when absent. Anything else is `RecordRefused`, so it never reaches a note or a page."""
    text = _plain(value)
    if text and (len(text) > NUMBER_LIMIT or not text.isprintable() or not one_line_ok(text) or text != text.strip()):
        raise RecordRefused(
            f"ServiceNow sent the record number '{printable(text, NUMBER_LIMIT)}', which is not one line of at most "
            f"{NUMBER_LIMIT} printable characters; the record was not taken.",
            remediation="Check the table's number field (and any business rule that writes it) in ServiceNow.",
        )
    return text


HOME = ""  # the deployment's own tenant: every ticket, claim and snapshot from before tenants is the home tenant's
TENANT_ID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
# `/` is in no control id, and a home alert's `alert/` is no 26-letter tag, so no home id (`m365sec:{control}`,
# `m365sec:alert/{id}`) ever reads as another tenant's.
_TENANT_TAG = re.compile(r"^([a-z2-7]{26})/(.+)$")


def tenant_filter(value: str | None, home_id: str | None, known: Iterable[str]) -> str | None:
    """A `tenant=` query value: absent or `home` is the home tenant (HOME), `all` every one (None), else the id of
    a tenant in `known` (the home tenant's own id included); anything else raises `validation_failed`."""
    if value is None or value == "home":
        return HOME
    if value == "all":
        return None
    wanted = value.lower()
    if wanted == (home_id or "-").lower():
        return HOME
    if TENANT_ID.fullmatch(wanted) and wanted in set(known):
        return wanted
    raise ValidationFailed([FieldError("tenant", "must be home, all, or the id of a tenant the connector reads")])


def tenant_tag(tenant: str) -> str:
    """A tenant id in 26 characters (base32 of its 16 bytes), so that `m365sec:{tag}/{control}` stays within
    correlation_id's 100 characters (8 + 26 + 1 + 64 = 99) and still names the tenant."""
    return base64.b32encode(uuid.UUID(tenant).bytes).decode("ascii").rstrip("=").lower()


def correlation_id(recommendation_id: str, tenant: str = HOME) -> str:
    """The home tenant's `m365sec:{control}` (unchanged since before tenants), another's `m365sec:{tag}/{control}`."""
    return CORRELATION_PREFIX + (f"{tenant_tag(tenant)}/" if tenant else "") + recommendation_id


def parse_correlation(value: str) -> tuple[str, str] | None:
    """(tenant, control) of a correlation id the connector minted, or None."""
    if not value.startswith(CORRELATION_PREFIX):
        return None
    rest = value.removeprefix(CORRELATION_PREFIX)
    tagged = _TENANT_TAG.fullmatch(rest)
    if tagged and RECOMMENDATION_ID.fullmatch(tagged[2]):
        tenant = str(uuid.UUID(bytes=base64.b32decode(tagged[1].upper() + "======")))
        # Only the tag the connector mints: 26 letters carry 130 bits for 128, so four spellings decode to one id.
        return (tenant, tagged[2]) if tenant_tag(tenant) == tagged[1] else None
    return (HOME, rest) if RECOMMENDATION_ID.fullmatch(rest) else None


def is_alert(recommendation_id: str) -> bool:
    """A score alert's ticket (docs/alerts.md#tickets): it has no Secure Score control, so no edge, write-back or
    risk acceptance acts on it."""
    return recommendation_id.startswith(ALERT_PREFIX)


def claim_key(tenant: str, recommendation_id: str) -> str:
    """What one open ticket per recommendation is counted by: the control, and for another tenant the tenant too
    (the home tenant's keys are the control ids they always were)."""
    return f"{tenant}|{recommendation_id}" if tenant else recommendation_id


@dataclass(frozen=True)
class TicketError:
    """The last failure working on a ticket (its `error`, stored and shown as `to_json` says), kept until the work
    that failed succeeds."""

    at: str
    code: str
    detail: str
    attempts: int = 1  # how many times in a row it has failed
    source: str | None = None  # the work that failed ("create", a run's name): only its success clears it
    remediation: str | None = None

    @classmethod
    def from_json(cls, data: dict[str, Any] | None) -> TicketError | None:
        if not data:
            return None
        return cls(str(data.get("at") or ""), str(data.get("code") or ""), str(data.get("detail") or ""),
                   int(data.get("attempts") or 0), data.get("source"), data.get("remediation"))  # fmt: skip

    def to_json(self) -> dict[str, Any]:
        """`{at, code, detail, attempts}`, and `source` and `remediation` when it names the work that failed (a
        conflict between two records names none: it ends when one of them closes, shared/records.py)."""
        json = {"at": self.at, "code": self.code, "detail": self.detail, "attempts": self.attempts}
        if self.source is not None:
            json.update(source=self.source, remediation=self.remediation)
        return json


@dataclass
class Ticket:
    """The connector's record of one ticket; `sys_id` is empty while creation is pending."""

    id: str
    recommendation_id: str
    recommendation: dict[str, Any]
    name: str
    priority: int
    due_date: str | None
    requested_by: str | None
    table: str
    fingerprint: str
    created_at: str
    updated_at: str
    status: str = "pending"
    servicenow_state: str | None = None
    servicenow_updated_on: str | None = None  # ServiceNow's sys_updated_on of the state we hold
    servicenow_mod_count: int | None = None  # ServiceNow's sys_mod_count of that state: the record's version
    sys_id: str | None = None
    number: str | None = None
    synced_at: str | None = None
    post_attempts: int = 0
    lease_until: str | None = None
    posted_at: str | None = None  # when a POST began whose answer nobody has seen: the create is in doubt
    assigned_to: str | None = None  # the assignee's email in ServiceNow (assigned_to.email)
    secure_score: dict[str, Any] | None = None  # the control's figures at creation, what was seen and written
    error: dict[str, Any] | None = None  # the last failure working on this ticket, as stored: TicketError.to_json()
    extra: dict[str, Any] = field(default_factory=dict)
    duplicate_of: str | None = None  # a record opened by hand with this recommendation's id: the ticket it copies
    tenant: str = HOME  # the Microsoft tenant whose recommendation this is (HOME: the deployment's own)
    connection: str = ""  # the ServiceNow connection it lives on ("": the default connection, as before connections)
    instance: str = ""  # that connection's instance URL when it was made ("": the default connection's)
    route: dict[str, Any] | None = None  # the rule that placed it: {"rule": id, "name": ...} (None: no routes)
    resolved_at: str | None = None  # when it was resolved: ServiceNow's stamp, else first seen so (None: not done)

    @property
    def claim_key(self) -> str:
        return claim_key(self.tenant, self.recommendation_id)

    @property
    def is_open(self) -> bool:
        return self.status in OPEN_STATUSES

    @property
    def failure(self) -> TicketError | None:
        return TicketError.from_json(self.error)

    @property
    def failed_attempts(self) -> int:
        """How many times in a row the work on it has failed (0: its last work succeeded)."""
        failure = self.failure
        return failure.attempts if failure is not None else 0

    def is_overdue(self, now: datetime) -> bool:
        """Past its due date and not done (resolved, closed and canceled are done)."""
        if not self.due_date or not self.is_open:
            return False
        try:
            due = datetime.fromisoformat(self.due_date.replace("Z", "+00:00"))
        except ValueError:
            return False
        return (due if due.tzinfo else due.replace(tzinfo=UTC)) < now

    def to_record(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> Ticket:
        """A stored ticket. A field the record lacks is None when it may be: Table Storage keeps no null
        property, so a ticket without a due date or a requester comes back without them."""
        known = cls.__dataclass_fields__
        values = {k: v for k, v in record.items() if k in known}
        for name in ("due_date", "requested_by"):
            values.setdefault(name, None)
        return cls(**values)

    def with_link(self, record: dict[str, Any], field_map: FieldMap, now: str) -> Ticket:
        """This ticket as ServiceNow's record says. Values from ServiceNow are input too: each is held to the
        shape it must have (or bounded), so a strange record cannot poison the store; a bad number refuses the
        record (`RecordRefused`)."""
        raw_state = _plain(record.get(field_map.target("state")))[:40]
        stamp = _plain(record.get("sys_updated_on"))
        number = record_number(record.get("number"))
        assignee_field = f"{field_map.target('assignee')}.email"
        assignee = _plain(record.get(assignee_field))[:254] if assignee_field in record else self.assigned_to or ""
        status = field_map.status_of(raw_state)
        # A review counts tickets resolved in its period: when ServiceNow says the record was resolved (else closed),
        # else when the connector first saw it done (resolved then closed keeps the first); a reopened ticket has
        # none until it is done again.
        resolved_at = None
        if status in RESOLVED_STATUSES:
            # A stamp older than the open version we held is an earlier resolution's (reopened since).
            held = self.servicenow_updated_on if self.status not in RESOLVED_STATUSES else None
            seen_done = self.resolved_at if self.status in RESOLVED_STATUSES else now
            resolved_at = resolution_stamp(record, now, held) or seen_done
        return replace(
            self,
            sys_id=_plain(record.get("sys_id")),
            number=number or self.number,
            servicenow_state=raw_state if raw_state and one_line_ok(raw_state) else None,
            servicenow_updated_on=stamp if SERVICENOW_TIME.fullmatch(stamp) else self.servicenow_updated_on,
            servicenow_mod_count=mod_count(record),
            assigned_to=assignee if EMAIL.fullmatch(assignee) else None,
            status=status,
            resolved_at=resolved_at,
            updated_at=now,
            synced_at=now,
            lease_until=None,
            posted_at=None,
        )

    def to_json(self, instance_url: str | None) -> dict[str, Any]:
        url = None
        instance_url = self.instance or instance_url
        if self.sys_id and instance_url:
            url = f"{instance_url}/nav_to.do?uri={quote(f'{self.table}.do?sys_id={self.sys_id}', safe='')}"
        return {
            "id": self.id,
            "number": self.number,
            "sysId": self.sys_id,
            "table": self.table,
            "url": url,
            "status": self.status,
            "serviceNowState": self.servicenow_state,
            "priority": PRIORITY_NAMES.get(self.priority, "medium"),
            "dueDate": self.due_date,
            "name": self.name,
            "recommendation": self.recommendation,
            "requestedBy": self.requested_by,
            "createdAt": self.created_at,
            "updatedAt": self.updated_at,
            "syncedAt": self.synced_at,
            "assignedTo": self.assigned_to,
            "secureScore": self.secure_score_json(),
            "error": self.error,
            "duplicateOf": self.duplicate_of,
            "tenant": self.tenant or None,
            "connection": self.connection or "default",
            "route": self.route,
            "resolvedAt": self.resolved_at,
        }

    def secure_score_json(self) -> dict[str, Any] | None:
        """The write-back to the control's notes, and the control's score when the ticket was made from it."""
        data = self.secure_score or {}
        if not data:
            return None
        keys = ("writtenAt", "ok", "detail", "attempts", "refused", "forbidden", "scoreAtCreation", "maxScore")
        return {k: data.get(k) for k in keys}


def mod_count(record: dict[str, Any]) -> int | None:
    """ServiceNow's `sys_mod_count`: incremented on every update of the record, so it orders versions even when
    two changes share one `sys_updated_on` second."""
    return ascii_int(_plain(record.get("sys_mod_count")), max_digits=12)


def resolution_stamp(record: dict[str, Any], now: str, held: str | None = None) -> str | None:
    """When ServiceNow says the record was resolved (`resolved_at`), else closed (`closed_at`), as an ISO time never
    after `now` nor the record's last update (done by then: a later one is a wrong clock or an import's); None when it
    says neither (a stamp before `held`, the open version we held, is an earlier one's)."""
    updated = _stamp(record.get("sys_updated_on"), now)
    stamps = (_stamp(record.get(name), updated or now, held) for name in ("resolved_at", "closed_at"))
    return next((found for found in stamps if found), None)


def _plain(value: Any) -> str:
    if isinstance(value, dict):
        return str(value.get("value") or "")
    return "" if value is None else str(value)


def _stamp(value: Any, now: str, after: str | None = None) -> str | None:
    """A record's date-time (the Table API's UTC `YYYY-MM-DD HH:MM:SS`, docs/status-sync.md) as an ISO time, never
    after `now` (an instance clock ahead of ours); None when it is not one, or is before `after` (same format)."""
    text = _plain(value)
    if not SERVICENOW_TIME.fullmatch(text) or (after is not None and text < after):
        return None
    try:
        stamped = datetime.strptime(text, "%Y-%m-%d %H:%M:%S").replace(tzinfo=UTC)
        seen = datetime.fromisoformat(now.replace("Z", "+00:00"))
    except ValueError:
        return None
    return min(stamped, seen if seen.tzinfo else seen.replace(tzinfo=UTC)).isoformat()
