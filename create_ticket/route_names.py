"""Assignment groups and companies a route names, looked up once when the routes are saved (DESIGN 13), in the
ServiceNow of the rule's own connection: `sys_user_group` and `core_company`, by exact name (one request per
distinct name) or by sys_id (one request for all of a table's). What is kept is the sys_id, with the name ServiceNow
gave; a create then adds no request.

A name reaches an encoded query (`name=...`): the rules refuse `^` in it (create_ticket/route_rules.py), so it can add
no condition; a sys_id is 32 hex characters. Rows from ServiceNow are input too: only a well-formed sys_id counts.
"""

from __future__ import annotations

from collections import defaultdict

from create_ticket.route_rules import Wanted
from create_ticket.routes import Reference
from shared.problems import ConnectorError, FieldError, ServiceNowUnavailable
from shared.services import Services
from shared.text import clean_line, printable
from shared.tickets import SYS_ID

KINDS = {"sys_user_group": "group", "core_company": "company"}
CHUNK = 100  # sys_ids asked for in one request
CANDIDATES = 10  # records with one name listed at most


def resolve(services: Services, wanted: list[Wanted]) -> list[FieldError]:
    """Fill in every wanted reference, or say why not (naming the rule's field). ServiceNow unreachable is raised
    (`servicenow_unavailable`, retry later); any other refusal (not connected, no read access) names the fields it
    left unchecked."""
    errors: list[FieldError] = []
    by_connection: dict[str, list[Wanted]] = defaultdict(list)
    for item in wanted:
        by_connection[item.connection].append(item)
    for connection_id, items in by_connection.items():
        try:
            _resolve_on(services, connection_id, items, errors)
        except ServiceNowUnavailable:
            raise
        except ConnectorError as exc:
            reason = exc.detail + (f" {exc.remediation}" if exc.remediation else "")
            errors.extend(FieldError(i.where, f"could not be checked in ServiceNow connection '{connection_id}': "
                                     f"{reason}") for i in items if i.member not in i.target)  # fmt: skip
    return errors


def _resolve_on(services: Services, connection_id: str, items: list[Wanted], errors: list[FieldError]) -> None:
    scoped = services.for_connection(services.connection_named(connection_id))
    for table in KINDS:
        ids = sorted({i.value for i in items if i.table == table and i.by_id})
        known: dict[str, str] = {}
        for start in range(0, len(ids), CHUNK):
            chunk = ids[start : start + CHUNK]
            known.update(_rows(scoped, table, "sys_idIN" + ",".join(chunk), len(chunk)))
        for item in (i for i in items if i.table == table and i.by_id):
            if item.value in known:
                item.target[item.member] = Reference(item.value, clean_line(known[item.value], 100)).to_json()
            else:
                errors.append(FieldError(item.where, f"no {KINDS[table]} has the sys_id {item.value} in {table} of "
                                         f"ServiceNow connection '{connection_id}' (or its integration user cannot "
                                         f"read it)"))  # fmt: skip
        for name in dict.fromkeys(i.value for i in items if i.table == table and not i.by_id):
            found = [(s, n) for s, n in _rows(scoped, table, f"name={name}", CANDIDATES).items() if n == name]
            for item in (i for i in items if i.table == table and not i.by_id and i.value == name):
                if len(found) == 1:
                    item.target[item.member] = Reference(found[0][0], clean_line(found[0][1], 100)).to_json()
                    continue
                shown = printable(name, 100)
                if not found:
                    # ServiceNow's ACLs hide rows rather than refuse the read: an unreadable table looks empty.
                    message = (f"no {KINDS[table]} is named '{shown}' in {table} of ServiceNow connection "
                               f"'{connection_id}' (the name must match exactly, and the connection's integration user "
                               f"must be able to read {table})")  # fmt: skip
                else:
                    message = (f"{len(found)} records in {table} of ServiceNow connection '{connection_id}' are "
                               f"named '{shown}': {', '.join(s for s, _ in found)}; give the sys_id of the one you "
                               "mean")  # fmt: skip
                errors.append(FieldError(item.where, message))


def _rows(services: Services, table: str, query: str, limit: int) -> dict[str, str]:
    """sys_id -> name (as ServiceNow wrote it) of the rows the query finds; only well-formed sys_ids count."""
    rows, _ = services.servicenow.table_list(
        services.tokens,
        table,
        {"sysparm_query": query, "sysparm_fields": "sys_id,name", "sysparm_limit": str(limit),
         "sysparm_exclude_reference_link": "true"},
    )  # fmt: skip
    found = {}
    for row in rows:
        sys_id = str(row.get("sys_id") or "") if isinstance(row, dict) else ""
        if SYS_ID.fullmatch(sys_id):
            found[sys_id] = str(row.get("name") or "")
    return found
