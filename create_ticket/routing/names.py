"""Assignment groups and companies a route names, looked up once when the routes are saved
(docs/design.md#connections-and-routes), in the ServiceNow of the rule's own connection: `sys_user_group` and
`core_company`, by name (one request per distinct name) or by sys_id (one request for all of a table's). What is kept is
the sys_id, with the name ServiceNow gave; a create then adds no request.

Names match as ServiceNow matches them (docs/design.md#where-the-admin-reads-what): its queries ignore case
("GlideRecord queries are case-insensitive",
https://www.servicenow.com/docs/r/api-reference/server-api-reference/c_GlideFilterScopedAPI.html), so `name=service
desk` also finds "Service Desk". An exact match wins; else one match that differs only in case is taken, and the answer
says so (`notes`); two are ambiguous. A group whose `active` is false is refused, saying so: a retired group often keeps
its name, and a ticket assigned to it reaches nobody.

A name reaches an encoded query (`name=...`): the rules refuse `^` in it (routing/validation.py), so it can add
no condition; a sys_id is 32 hex characters. Rows from ServiceNow are input too: only a well-formed sys_id counts.

A name found nowhere is refused with the names like it that the instance has (a word of it, whatever its case), and
`GET /api/connections/{id}/lookup` (`lookup`) gives the rule editor the active names containing what the admin types.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from create_ticket.request import NAME
from create_ticket.routing.rules import Reference
from create_ticket.routing.validation import MAX_NAME, Wanted, runs_as_script
from shared.problems import (
    Conflict,
    ConnectorError,
    FieldError,
    NotConnected,
    ReauthorizationRequired,
    ServiceNowUnavailable,
    ValidationFailed,
)
from shared.services import Services
from shared.text import clean_line, printable
from shared.tickets import SYS_ID

KINDS = {"sys_user_group": "group", "core_company": "company"}
CHUNK = 100  # sys_ids asked for in one request
CANDIDATES = 10  # records with one name listed at most
LOOKUP_LIMIT = 20  # names a lookup answers at most (docs/design.md#where-the-admin-reads-what)
SUGGESTIONS = 5  # names like it that a "no such name" problem offers
_ASKED = 50  # rows asked for per lookup: ACLs and inactive rows may thin a page (sysparm_limit applies first)


def resolve(services: Services, wanted: list[Wanted], notes: list[FieldError] | None = None) -> list[FieldError]:
    """Fill in every wanted reference, or say why not (naming the rule's field); `notes` gets what the answer should
    say about a reference that was found (a name that matched only when case is ignored). ServiceNow unreachable is
    raised (`servicenow_unavailable`, retry later); any other refusal (not connected, no read access) names the
    fields it left unchecked."""
    errors: list[FieldError] = []
    by_connection: dict[str, list[Wanted]] = defaultdict(list)
    for item in wanted:
        by_connection[item.connection].append(item)
    for connection_id, items in by_connection.items():
        try:
            _resolve_on(services, connection_id, items, errors, notes)
        except ServiceNowUnavailable:
            raise
        except ConnectorError as exc:
            reason = exc.detail + (f" {exc.remediation}" if exc.remediation else "")
            errors.extend(FieldError(i.where, f"could not be checked in ServiceNow connection '{connection_id}': "
                                     f"{reason}") for i in items if i.member not in i.target)  # fmt: skip
    return errors


def _resolve_on(services: Services, connection_id: str, items: list[Wanted], errors: list[FieldError],
                notes: list[FieldError] | None) -> None:  # fmt: skip
    scoped = services.for_connection(services.connection_named(connection_id))
    for table in KINDS:
        ids = sorted({i.value for i in items if i.table == table and i.by_id})
        known: dict[str, tuple[str, bool]] = {}
        for start in range(0, len(ids), CHUNK):
            chunk = ids[start : start + CHUNK]
            known.update(_rows(scoped, table, "sys_idIN" + ",".join(chunk), len(chunk)))
        for item in (i for i in items if i.table == table and i.by_id):
            if item.value in known and not known[item.value][1]:
                named = printable(known[item.value][0], 100)
                errors.append(FieldError(item.where, f"the {KINDS[table]} {item.value} ('{named}') in {table} of "
                                         f"ServiceNow connection '{connection_id}' is inactive: a ticket assigned to "
                                         "it would reach nobody"))  # fmt: skip
            elif item.value in known:
                item.target[item.member] = Reference(item.value, clean_line(known[item.value][0], 100)).to_json()
            else:
                errors.append(FieldError(item.where, f"no {KINDS[table]} has the sys_id {item.value} in {table} of "
                                         f"ServiceNow connection '{connection_id}' (or its integration user cannot "
                                         f"read it)"))  # fmt: skip
        for name in dict.fromkeys(i.value for i in items if i.table == table and not i.by_id):
            found = _rows(scoped, table, f"name={name}", CANDIDATES)
            chosen, message, note = _named(table, connection_id, name, found)
            if chosen is None and not found:  # found nowhere: what the instance has that looks like it
                message += _like(scoped, table, name)
            for item in (i for i in items if i.table == table and not i.by_id and i.value == name):
                if chosen is None:
                    errors.append(FieldError(item.where, message))
                    continue
                item.target[item.member] = Reference(chosen, clean_line(found[chosen][0], 100)).to_json()
                if note and notes is not None:
                    notes.append(FieldError(item.where, note))


Named = tuple[str | None, str, str | None]  # (the sys_id taken, or None; why not; a note for the answer)


def _named(table: str, connection_id: str, name: str, found: dict[str, tuple[str, bool]]) -> Named:
    """Which of `found` (sys_id -> (name, active)) `name` names: exact first, else one that differs only in case."""
    kind, shown = KINDS[table], printable(name, 100)
    where = f"in {table} of ServiceNow connection '{connection_id}'"
    active = {s: n for s, (n, on) in found.items() if on}
    exact = [s for s, n in active.items() if n == name]
    folded = [s for s, n in active.items() if n.casefold() == name.casefold()]
    chosen = exact or folded
    if len(chosen) > 1:
        ambiguous = f"{len(chosen)} records {where} are named '{shown}': {', '.join(chosen)}"
        return None, f"{ambiguous}; give the sys_id of the one you mean", None
    if exact:
        return exact[0], "", None
    if folded:
        given = printable(active[folded[0]], 100)
        return folded[0], "", (f"'{shown}' matched the {kind} '{given}' {where}: the names differ only in case, as "
                               "ServiceNow's queries ignore case; the rule keeps that record")  # fmt: skip
    retired = [s for s, (n, on) in found.items() if not on and n.casefold() == name.casefold()]
    if retired:
        return (
            None,
            (
                f"the {kind} named '{shown}' {where} is inactive ({', '.join(retired)}): a ticket assigned to "
                f"it would reach nobody; name an active {kind}, or make it active again in ServiceNow"
            ),
            None,
        )
    # ServiceNow's ACLs hide rows rather than refuse the read: an unreadable table looks empty.
    return None, (f"no {kind} is named '{shown}' {where} (names match whatever their case; the connection's "
                  f"integration user must be able to read {table})"), None  # fmt: skip


def _rows(services: Services, table: str, query: str, limit: int) -> dict[str, tuple[str, bool]]:
    """sys_id -> (name as ServiceNow wrote it, active) of the rows the query finds; only well-formed sys_ids count.
    `sys_user_group` has an `active` flag; a row without one (a company) counts as active."""
    fields = "sys_id,name,active" if table == "sys_user_group" else "sys_id,name"
    rows, _ = services.servicenow.table_list(
        services.tokens,
        table,
        {"sysparm_query": query, "sysparm_fields": fields, "sysparm_limit": str(limit),
         "sysparm_exclude_reference_link": "true"},
    )  # fmt: skip
    found = {}
    for row in rows:
        sys_id = str(row.get("sys_id") or "") if isinstance(row, dict) else ""
        if SYS_ID.fullmatch(sys_id):
            found[sys_id] = (str(row.get("name") or ""), str(row.get("active", "true")).strip().lower() != "false")
    return found


def _like(services: Services, table: str, name: str) -> str:
    """ "; names like it there: ..." from the instance (its longest word, whatever its case), or nothing."""
    word = max(name.split(), key=len, default="")
    if len(word) < 3:
        return ""
    like = _containing(services, table, word)[:SUGGESTIONS]
    return f"; names like it there: {', '.join(repr(printable(n, 100)) for _, n in like)}" if like else ""


def _containing(services: Services, table: str, text: str) -> list[tuple[str, str]]:
    """(sys_id, name) of the active records whose name contains `text`, whatever its case, those that start with it
    first, then by name. LIKE is ServiceNow's "contains" (https://www.servicenow.com/docs/r/platform-user-interface/
    c_ConditionBuilder.html); the case is checked here again, whatever the instance's collation."""
    rows = _rows(services, table, f"nameLIKE{text}^ORDERBYname", _ASKED)
    folded = text.casefold()
    found = [(s, n) for s, (n, on) in rows.items() if on and folded in n.casefold()]
    return sorted(found, key=lambda row: (not row[1].casefold().startswith(folded), row[1].casefold(), row[0]))


def lookup(services: Services, connection_id: str, table: str | None, prefix: str | None) -> dict[str, Any]:
    """`GET /api/connections/{id}/lookup?table=&prefix=`: at most LOOKUP_LIMIT active groups or companies of that
    connection's instance whose name contains `prefix` (those starting with it first), for the rule editor."""
    errors = []
    if table not in KINDS:
        errors.append(FieldError("table", f"must be one of {', '.join(KINDS)}"))
    text = prefix or ""
    if not (0 < len(text) <= MAX_NAME and NAME.fullmatch(text) and "^" not in text) or runs_as_script(text):
        errors.append(FieldError("prefix", f"must be one line of 1-{MAX_NAME} characters without '^' (the start of a "
                                 "name, or a part of it)"))  # fmt: skip
    if errors:
        raise ValidationFailed(errors)
    assert table is not None  # checked above
    connection = services.connection_named(connection_id)
    try:
        found = _containing(services.for_connection(connection), table, text)[:LOOKUP_LIMIT]
    except (NotConnected, ReauthorizationRequired) as exc:  # the connection's state, not a failure of the connector
        raise Conflict(f"Connection {connection.id} cannot look names up yet: {exc.detail}",
                       remediation=exc.remediation) from None  # fmt: skip
    return {"connection": connection.id, "table": table, "prefix": text,
            "records": [{"sysId": s, "name": clean_line(n, 100)} for s, n in found]}  # fmt: skip
