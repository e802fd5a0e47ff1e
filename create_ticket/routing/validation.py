"""The rules of a routes list (`PUT /api/routes`, `POST /api/routes/preview`): every rule checked, every error named
by rule index and field (`routes[3].set.dueInDays`), and the rules as they will be saved.

Only the shape is checked here, without ServiceNow; assignment groups and companies are looked up afterwards
(create_ticket/routing/names.py), only when the whole list is well-formed.
"""

from __future__ import annotations

import math
import re
import uuid
from collections.abc import Set
from dataclasses import dataclass, field
from typing import Any

from create_ticket.request import NAME
from create_ticket.routing.patterns import compile_pattern
from create_ticket.routing.rules import HOME_TENANT, MAX_RULES
from shared import deadlines, tenant_records
from shared.connections import DEFAULT, Connection
from shared.fieldmap import SERVICENOW_NAME, FieldMap
from shared.problems import FieldError, ValidationFailed
from shared.services import Services
from shared.tenant_records import Tenant, Tenants
from shared.text import one_line_ok, printable
from shared.tickets import CATEGORIES, HOME, PRIORITIES, PRIORITY_NAMES, SYS_ID, TENANT_ID, known_categories

RULE_ID = re.compile(r"^rule-[0-9a-f]{12}$")
RULE_MEMBERS = ("id", "name", "match", "set")
MATCH_MEMBERS = ("tenants", "categories", "services", "minPoints", "controls")
SET_MEMBERS = ("connection", "table", "assignmentGroup", "company", "priority", "dueInDays", "fields", "onRiskAccepted")
LIST_LIMITS = {"tenants": 500, "categories": 20, "services": 50, "controls": 20}
MAX_FIELDS = 20
MAX_VALUE = 255
MAX_NAME = 100  # sys_user_group.name and core_company.name are 80 characters in the base system
MAX_POINTS = 1000
MAX_ERRORS = 100
# Fields the connector writes itself on every record, whatever the field map says; `assignment_group` and `company`
# have members of their own, and ServiceNow computes `priority` from impact and urgency.
OWN_FIELDS = frozenset({"sys_id", "number", "state", "correlation_id", "correlation_display", "priority",
                        "assignment_group", "company", "impact", "urgency"})  # fmt: skip
REFERENCE_TABLES = {"assignmentGroup": "sys_user_group", "company": "core_company"}


@dataclass
class Wanted:
    """An assignment group or company a rule names, to look up in its connection's ServiceNow."""

    where: str  # routes[3].set.assignmentGroup
    connection: str
    table: str  # sys_user_group or core_company
    value: str  # a name, or a sys_id
    by_id: bool
    target: dict[str, Any]  # the rule's saved `set`, where the found {sysId, name} goes
    member: str


@dataclass
class Parsed:
    routes: list[dict[str, Any]]  # as they will be saved (references filled in once found)
    wanted: list[Wanted] = field(default_factory=list)
    errors: list[FieldError] = field(default_factory=list)  # every problem of the list's shape (routing/saving.py)


class _Context:
    """What rules are checked against, each read (or worked out) once per request and only when a rule needs it:
    a list of 200 rules naming 500 tenants each asks the store for the home tenant's id once, not 100,000 times."""

    def __init__(self, services: Services, saved_ids: set[str], removing: set[str]) -> None:
        self.services = services
        self.saved_ids = saved_ids
        self.removing = removing  # connections a removal under way has fenced off (routing/saving.py `fence`)
        self._connections: dict[str, Connection] | None = None
        self._snapshots: list[list[dict[str, Any]]] | None = None
        self._tenants: Tenants | None = None
        self._home_id: str | None = None
        self._categories: list[str] | None = None
        self._services_named: list[str] | None = None

    def connections(self) -> dict[str, Connection]:
        if self._connections is None:
            self._connections = {c.id: c for c in self.services.connections() if c.id not in self.removing}
            self._connections.setdefault(DEFAULT, self.services.connection_named(DEFAULT))
        return self._connections

    def tenants(self) -> Tenants:
        if self._tenants is None:
            self._tenants = tenant_records.load(self.services.store)
        return self._tenants

    def home_id(self) -> str:
        if self._home_id is None:
            if self.services.settings.entra_tenant_id:
                self._home_id = self.services.settings.entra_tenant_id.lower()
            else:
                found = self.services.store.get_secure_score(HOME)
                self._home_id = str((found[0] if found else {}).get("tenantId") or "").lower()
        return self._home_id

    def controls(self) -> list[list[dict[str, Any]]]:
        """Every read tenant's controls (for the categories and services Secure Score names)."""
        if self._snapshots is None:
            found = (self.services.store.get_secure_score(t) for t in self.tenants().readable())
            self._snapshots = [snapshot[1] for snapshot in found if snapshot is not None]
        return self._snapshots

    def categories(self) -> list[str]:
        if self._categories is None:
            self._categories = known_categories(c.get("category") for controls in self.controls() for c in controls)
        return self._categories

    def services_named(self) -> list[str]:
        if self._services_named is None:
            self._services_named = sorted({str(c["service"]) for controls in self.controls() for c in controls
                                           if c.get("service")})  # fmt: skip
        return self._services_named


def _strings(value: Any, where: str, errors: list[FieldError], limit: int) -> list[str] | None:
    if not isinstance(value, list) or not value or len(value) > limit:
        errors.append(FieldError(where, f"must be a list of 1-{limit} items (leave it out to match every one)"))
        return None
    if not all(isinstance(v, str) for v in value):
        errors.append(FieldError(where, "must hold only strings"))
        return None
    return list(dict.fromkeys(value))


def _listed(match: dict[str, Any], name: str, where: str, errors: list[FieldError]) -> list[str] | None:
    return _strings(match[name], f"{where}.{name}", errors, LIST_LIMITS[name]) if name in match else None


def _unknown(value: dict[str, Any], known: tuple[str, ...], where: str, errors: list[FieldError]) -> None:
    for name in value:
        if name not in known:
            errors.append(FieldError(f"{where}.{printable(name, 64)}", f"is not a member; known: {', '.join(known)}"))


def _object(value: Any, where: str, errors: list[FieldError]) -> dict[str, Any] | None:
    """A member that is there must be an object (null too is refused: leave the member out instead)."""
    if not isinstance(value, dict):
        errors.append(FieldError(where, "must be an object (leave it out rather than null)"))
        return None
    return value


def _tenants(value: Any, where: str, errors: list[FieldError], context: _Context) -> list[str] | None:
    listed = _strings(value, where, errors, LIST_LIMITS["tenants"])
    if listed is None:
        return None
    chosen = []
    for i, tenant in enumerate(listed):
        wanted = tenant.lower() if TENANT_ID.fullmatch(tenant.lower()) else tenant  # "home" is lower case only
        if wanted == HOME_TENANT or (TENANT_ID.fullmatch(wanted) and wanted == context.home_id()):
            chosen.append(HOME_TENANT)
        elif TENANT_ID.fullmatch(wanted) and _reads(context.tenants().added.get(wanted)):
            chosen.append(wanted)
        else:
            errors.append(FieldError(f"{where}[{i}]", "must be 'home' or the id of a tenant the connector reads "
                                     "(GET /api/tenants)"))  # fmt: skip
    return list(dict.fromkeys(chosen))


def _reads(record: Tenant | None) -> bool:
    """A tenant a rule may name: one an admin added, in any state but removed."""
    return record is not None and record.state is not None and not record.removed


def _match(value: Any, where: str, errors: list[FieldError], context: _Context) -> dict[str, Any]:
    match = _object(value, where, errors)
    if match is None:
        return {}
    _unknown(match, MATCH_MEMBERS, where, errors)
    saved: dict[str, Any] = {}
    if "tenants" in match:
        saved["tenants"] = _tenants(match["tenants"], f"{where}.tenants", errors, context)
    if listed := _listed(match, "categories", where, errors):
        known = CATEGORIES if all(c in CATEGORIES for c in listed) else context.categories()
        for i, category in enumerate(listed):
            if category not in known:
                errors.append(FieldError(f"{where}.categories[{i}]", f"must be one of {', '.join(known)}"))
        saved["categories"] = listed
    if listed := _listed(match, "services", where, errors):
        named = context.services_named()
        for i, service in enumerate(listed):
            if not (0 < len(service) <= 80 and one_line_ok(service)) or (named and service not in named):
                hint = f"one of the services Secure Score names: {', '.join(named)}" if named else "one line"
                errors.append(FieldError(f"{where}.services[{i}]", f"must be {hint}"))
        saved["services"] = listed
    if "minPoints" in match:
        points = match["minPoints"]
        if (
            isinstance(points, bool)
            or not isinstance(points, int | float)
            or not (math.isfinite(points) and 0 <= points <= MAX_POINTS)
        ):
            errors.append(FieldError(f"{where}.minPoints", f"must be a number of points from 0 to {MAX_POINTS}"))
        saved["minPoints"] = points
    if listed := _listed(match, "controls", where, errors):
        for i, pattern in enumerate(listed):
            _, refusal = compile_pattern(pattern)
            if refusal:
                errors.append(FieldError(f"{where}.controls[{i}]", refusal))
        saved["controls"] = listed
    return saved


def _priority(value: Any) -> str | None:
    if isinstance(value, str) and value in PRIORITIES:
        return value
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= 5:
        return PRIORITY_NAMES[value]
    return None


def _fields(value: Any, where: str, errors: list[FieldError], field_map: FieldMap) -> dict[str, str]:
    given = _object(value, where, errors)
    if given is None:
        return {}
    if len(given) > MAX_FIELDS:
        errors.append(FieldError(where, f"must name at most {MAX_FIELDS} fields"))
        return {}
    own = OWN_FIELDS | {target for target in field_map.fields.values() if target}
    for name, text in given.items():
        at = f"{where}.{printable(name, 64)}"
        if not SERVICENOW_NAME.fullmatch(name) or name.startswith("sys_"):
            errors.append(FieldError(at, "must be a ServiceNow field name (a-z, 0-9, _; not a sys_ field)"))
        elif name in own:
            errors.append(FieldError(at, "is a field the connector writes itself; it cannot be set by a route"))
        if not (isinstance(text, str) and 0 < len(text) <= MAX_VALUE and one_line_ok(text) and text.strip()):
            errors.append(FieldError(at, f"must be one line of 1-{MAX_VALUE} characters"))
        elif runs_as_script(text):
            errors.append(FieldError(at, "must not start with 'javascript:' (ServiceNow may run it as a script)"))
    return dict(given)


def _reference(value: Any, where: str, errors: list[FieldError]) -> tuple[str, bool] | None:
    """(a name or a sys_id, whether it is a sys_id): a string, or the {sysId, name} object GET shows."""
    if (isinstance(value, dict) and set(value) <= {"sysId", "name"} and isinstance(value.get("sysId"), str)
            and isinstance(value.get("name", ""), str)):  # fmt: skip
        value = value["sysId"]
        if not SYS_ID.fullmatch(value):
            errors.append(FieldError(f"{where}.sysId", "must be a sys_id (32 lowercase hex characters)"))
            return None
    if not isinstance(value, str):
        errors.append(FieldError(where, 'must be a name, a sys_id, or {"sysId": "..."}'))
        return None
    if SYS_ID.fullmatch(value):
        return value, True
    # A name goes into an encoded query (name=...): '^' would start another condition, so it is refused.
    if not (0 < len(value) <= MAX_NAME and NAME.fullmatch(value) and value == value.strip() and "^" not in value):
        errors.append(FieldError(where, f"must be a sys_id or an exact name: one line of 1-{MAX_NAME} characters "
                                 "without '^' or leading or trailing spaces"))  # fmt: skip
        return None
    if runs_as_script(value):
        errors.append(FieldError(where, "must not start with 'javascript:' (ServiceNow runs such a query value as a "
                                 "script on the instance)"))  # fmt: skip
        return None
    return value, False


def runs_as_script(value: str) -> bool:
    """A value ServiceNow's encoded queries evaluate as script: `javascript:` in any case, after any spaces
    (ServiceNow's Table API docs show `caller_id=javascript:gs.getUserID()`)."""
    return value.lstrip().lower().startswith("javascript:")


def _set(value: Any, where: str, errors: list[FieldError], context: _Context, wanted: list[Wanted]) -> dict[str, Any]:
    chosen = _object(value, where, errors) or {}
    _unknown(chosen, SET_MEMBERS, where, errors)
    connection_id = chosen.get("connection", DEFAULT)
    connection = context.connections().get(connection_id) if isinstance(connection_id, str) else None
    if connection is None:
        known = ", ".join(context.connections())
        removed = (
            " (it is being removed)" if isinstance(connection_id, str) and connection_id in context.removing else ""
        )
        errors.append(FieldError(f"{where}.connection", f"must be a connection the connector has{removed}: {known}"))
    saved: dict[str, Any] = {"connection": connection_id if connection else DEFAULT}
    if "table" in chosen:
        if not (isinstance(chosen["table"], str) and SERVICENOW_NAME.fullmatch(chosen["table"])):
            errors.append(FieldError(f"{where}.table", "must be a ServiceNow table name (a-z, 0-9, _)"))
        saved["table"] = chosen["table"]
    for member, table in REFERENCE_TABLES.items():
        found = _reference(chosen[member], f"{where}.{member}", errors) if member in chosen else None
        if found and connection is not None:  # a name is looked up only in the connection the rule names
            wanted.append(Wanted(f"{where}.{member}", saved["connection"], table, found[0], found[1], saved, member))
    if "priority" in chosen:
        saved["priority"] = _priority(chosen["priority"])
        if saved["priority"] is None:
            errors.append(FieldError(f"{where}.priority", "must be one of critical, high, medium, low, planning, "
                                     "or 1-5"))  # fmt: skip
    if "dueInDays" in chosen:
        days = chosen["dueInDays"]
        days = int(days) if isinstance(days, float) and days.is_integer() else days
        if isinstance(days, bool) or not isinstance(days, int) or not 1 <= days <= 365:
            errors.append(FieldError(f"{where}.dueInDays", "must be a whole number of days from 1 to 365"))
        saved["dueInDays"] = days
    if "onRiskAccepted" in chosen:  # docs/templates.md#risk-accepted-in-servicenow
        if chosen["onRiskAccepted"] != "ignore":
            errors.append(FieldError(f"{where}.onRiskAccepted", 'must be "ignore" (or left out)'))
        saved["onRiskAccepted"] = chosen["onRiskAccepted"]
    if "fields" in chosen:
        field_map = connection.field_map if connection else FieldMap()
        saved["fields"] = _fields(chosen["fields"], f"{where}.fields", errors, field_map)
    return saved


def _rule(value: Any, where: str, errors: list[FieldError], context: _Context, wanted: list[Wanted],
          seen: set[str]) -> dict[str, Any]:  # fmt: skip
    if not isinstance(value, dict):
        errors.append(FieldError(where, "must be an object"))
        return {}
    rule = value
    _unknown(rule, RULE_MEMBERS, where, errors)
    rule_id = rule.get("id")
    if "id" in rule and not (isinstance(rule_id, str) and rule_id in context.saved_ids and rule_id not in seen):
        errors.append(FieldError(f"{where}.id", "must be the id of a saved rule, once (leave it out for a new rule)"))
    saved: dict[str, Any] = {"id": rule_id if isinstance(rule_id, str) else f"rule-{uuid.uuid4().hex[:12]}"}
    seen.add(saved["id"])
    if "name" in rule:
        name = rule["name"]
        if not (isinstance(name, str) and 0 < len(name) <= MAX_NAME and NAME.fullmatch(name)):
            errors.append(FieldError(f"{where}.name", f"must be one line of 1-{MAX_NAME} characters"))
        saved["name"] = name
    saved["match"] = _match(rule["match"], f"{where}.match", errors, context) if "match" in rule else {}
    saved["set"] = _set(rule.get("set", {}), f"{where}.set", errors, context, wanted)
    return saved


def parse_routes(services: Services, body: Any, saved_ids: set[str], removing: Set[str] = frozenset()) -> Parsed:
    """The rules of `{"routes": [...]}` as they will be saved, with every bad field in `errors` (the names to look up
    too, so the caller names every problem of the list at once: docs/design.md#where-the-admin-reads-what); a body that
    is no list of rules at all is `validation_failed` at once."""
    if not isinstance(body, dict):
        raise ValidationFailed([FieldError("body", 'must be a JSON object: {"routes": [...]}')])
    errors: list[FieldError] = []
    _unknown(body, ("routes",), "body", errors)
    listed = body.get("routes")
    if not isinstance(listed, list) or len(listed) > MAX_RULES:
        errors.append(FieldError("routes", f"must be a list of at most {MAX_RULES} rules"))
        raise ValidationFailed(errors)
    context = _Context(services, saved_ids, set(removing))
    parsed = Parsed([])
    seen: set[str] = set()
    for index, value in enumerate(listed):
        deadlines.check_run()  # saving and previewing stop at ROUTES_DEADLINE (routing/saving.py)
        parsed.routes.append(_rule(value, f"routes[{index}]", errors, context, parsed.wanted, seen))
    parsed.errors = errors
    return parsed
