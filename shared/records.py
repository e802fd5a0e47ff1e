"""What ServiceNow's record says, applied to the store: the one place the status sync, a push notice and a Secure
Score edge bring a ticket up to date, so they all follow the same rules (docs/design.md#robustness):

- never back to an older version of the record (`sys_mod_count`, then `sys_updated_on`), so order, replays and
  overlapping runs end where one run would;
- a ticket that reopens takes its recommendation's claim back; if another open ticket holds it, the conflict is
  recorded (on the ticket and in provisioning) rather than a second claim made;
- a record that vanished or that ACLs hide is marked `missing`, never dropped.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from shared.fieldmap import FieldMap
from shared.problems import ConnectorError
from shared.recommendation_claims import take_claim
from shared.runs import SyncState, failure_entry, merge_failures, update_sync_state
from shared.services import Services
from shared.store import StoreConflict, TicketStore, change_ticket
from shared.tickets import CLOSED_STATUSES, SERVICENOW_TIME, Ticket, TicketError, mod_count

log = logging.getLogger(__name__)


class DuplicateOpenRecord(ConnectorError):
    """Two open ServiceNow records for one recommendation: a closed one was reopened after a new one was made,
    or a person opened a record by hand with the connector's correlation id."""

    code = "duplicate_open_record"


def record_fields(services: Services) -> str:
    """The only fields the connector reads back from a record (the sync, a push notice's GET, a state change)."""
    field_map = services.settings.field_map
    return ",".join(
        dict.fromkeys(
            [
                "sys_id",
                "number",
                field_map.target("state"),
                "sys_updated_on",
                field_map.target("correlation_id"),
                field_map.target("name"),
                "priority",
                "sys_mod_count",
                f"{field_map.target('assignee')}.email",
                # When a person resolved or closed it (an incident's own stamps; other tables may lack them)
                "resolved_at",
                "closed_at",
                # A risk accepted in ServiceNow is read only where the admin maps its close codes
                *(
                    (field_map.close_code_field(), field_map.target("resolution_notes"))
                    if field_map.risk_accepted_codes
                    else ()
                ),
            ]
        )
    )


# `accepts(tenant, control)`: whether a template accepts the risks of that control there (the status sync asks
# templates.api; the kernel cannot): docs/templates.md#risk-accepted-in-servicenow
Acceptor = Callable[[str, str], bool]


def risk_accepted(row: dict[str, Any], ticket: Ticket, field_map: FieldMap,
                  accepts: Acceptor | None = None) -> dict[str, Any] | None:  # fmt: skip
    """`{code, notes}` when the record is done (resolved or closed) with a close code of `risk_accepted_codes` and
    the ticket's route says `onRiskAccepted: "ignore"` (recorded on the ticket when it was made) or, asked last,
    `accepts` says a template does; else None."""
    code = row.get(field_map.close_code_field())
    if (ticket.status not in ("resolved", "closed") or not isinstance(code, str)
            or code not in field_map.risk_accepted_codes):  # fmt: skip
        return None
    if ((ticket.route or {}).get("set") or {}).get("onRiskAccepted") != "ignore" and not (
            accepts is not None and accepts(ticket.tenant, ticket.recommendation_id)):  # fmt: skip
        return None
    notes = row.get(field_map.target("resolution_notes"))
    return {"code": code, "notes": " ".join(notes.split())[:1000] if isinstance(notes, str) else ""}


def note_failures(store: TicketStore, changes: dict[str, dict[str, Any] | None]) -> None:
    """Record (or clear, with None) item failures in the sync state, where provisioning lists them."""

    def note(state: SyncState) -> None:
        state.failures = merge_failures(state.failures, changes)

    update_sync_state(store, note)


def compare(row: dict[str, Any], ticket: Ticket) -> int:
    """-1 if the record is older than what the ticket holds, 0 the same version, 1 newer. `sys_mod_count` is
    the record's own version counter; `sys_updated_on` (one-second resolution) only when a count is missing."""
    theirs, ours = mod_count(row), ticket.servicenow_mod_count
    if theirs is not None and ours is not None:
        return (theirs > ours) - (theirs < ours)
    stamp = str(row.get("sys_updated_on") or "")
    held = ticket.servicenow_updated_on
    if SERVICENOW_TIME.fullmatch(stamp) and held and ours is not None:
        return (stamp > held) - (stamp < held)
    return 1  # a ticket without a version yet: what ServiceNow says now is the truth


def is_conflict(ticket: Ticket) -> bool:
    failure = ticket.failure
    return failure is not None and failure.code == DuplicateOpenRecord.code


def apply_record(services: Services, ticket_id: str, row: dict[str, Any], accepts: Acceptor | None = None) -> bool:
    """Bring one ticket to what ServiceNow's record says; True if that changed it. `accepts`: see risk_accepted."""
    store = services.store
    field_map = services.settings.field_map
    for _ in range(10):
        found = store.get_ticket(ticket_id)
        if found is None:
            return False
        ticket, etag = found
        if not services.connection.serves(ticket):  # a record of another instance (a clone shares sys_ids)
            return False
        order = compare(row, ticket)
        if order < 0:
            return False
        now = services.clock().isoformat()
        updated = ticket.with_link({**row, "number": row.get("number") or ticket.number}, field_map, now)
        updated = replace(updated, lease_until=ticket.lease_until, extra=ticket.extra, error=ticket.error)
        # the first close with it is the decision; a template is asked at the close only (one saved later: nothing)
        closing = ticket.status not in ("resolved", "closed")
        accepted = None if "riskAccepted" in ticket.extra else risk_accepted(row, updated, field_map,
                                                                             accepts if closing else None)  # fmt: skip
        if accepted is not None:
            updated = replace(updated, extra={**ticket.extra, "riskAccepted": {**accepted, "written": False}})
        if (updated.status, updated.servicenow_state, updated.assigned_to) == (
            ticket.status,
            ticket.servicenow_state,
            ticket.assigned_to,
        ):
            if order > 0:
                with contextlib.suppress(StoreConflict):  # someone wrote a newer version; the next run sees it
                    store.update_ticket(replace(updated, updated_at=ticket.updated_at), etag)
            return False
        conflicts: dict[str, dict[str, Any] | None] = {}
        if updated.is_open and not ticket.is_open and not ticket.duplicate_of:
            updated = retake_claim(services, updated, conflicts)
        elif not updated.is_open and is_conflict(ticket):
            updated = replace(updated, error=None)
            conflicts[f"ticket:{ticket.id}"] = None
        try:
            store.update_ticket(updated, etag)
        except StoreConflict:
            continue
        if updated.status in CLOSED_STATUSES:
            store.release_claim(ticket.claim_key, ticket.id)
        if conflicts:
            note_failures(store, conflicts)
        return True
    return False


def retake_claim(services: Services, ticket: Ticket, changes: dict[str, dict[str, Any] | None]) -> Ticket:
    """The open `ticket` takes its recommendation's claim, or, when another open ticket holds it, carries the
    conflict (and `changes` gets the entry provisioning lists)."""
    store = services.store
    holder = take_claim(store, ticket.claim_key, ticket.id)
    key = f"ticket:{ticket.id}"
    if holder is None:
        if is_conflict(ticket):
            changes[key] = None
            return replace(ticket, error=None)
        return ticket
    other = store.get_ticket(holder)
    other_name = (other[0].number if other else None) or holder
    how = "was opened by hand with its correlation id" if ticket.extra.get("adopted") else "was reopened"
    error = DuplicateOpenRecord(
        f"{ticket.number} {how}, but {other_name} is already the open ticket for recommendation "
        f"{ticket.recommendation_id}; the connector keeps {other_name} as the recommendation's ticket and never "
        f"resolves or reopens {ticket.number}. Close one of the two in ServiceNow.",
    )
    now = services.clock().isoformat()
    changes[key] = failure_entry("conflict", ticket.id, ticket.number, error, now, 1)
    log.warning("Ticket %s is open while %s holds its recommendation", ticket.number, other_name)
    duplicate_of = holder if ticket.extra.get("adopted") else ticket.duplicate_of  # a copy never takes over
    return replace(ticket, error=TicketError(now, error.code, error.detail).to_json(), duplicate_of=duplicate_of)


def mark_missing(services: Services, ticket_id: str) -> bool:
    """ServiceNow no longer shows the record (deleted, or hidden by ACLs): the ticket is `missing`, not dropped."""
    marked: list[Ticket] = []

    def mark(ticket: Ticket) -> Ticket | None:
        marked.clear()
        if ticket.status == "missing" or not services.connection.serves(ticket):
            return None
        now = services.clock().isoformat()
        marked.append(replace(ticket, status="missing", updated_at=now, synced_at=now))
        return marked[0]

    try:
        change_ticket(services.store, ticket_id, mark)
    except StoreConflict:
        return False  # it kept changing: the next run looks again
    if not marked:
        return False
    log.warning("Ticket %s (%s) is gone from ServiceNow or hidden by ACLs", marked[0].number, marked[0].sys_id)
    return True
