"""The ServiceNow side of creating a record exactly once (docs/architecture.md#exactly-once-ticket-creation): each
POST counted before it is sent, a lookup first when a record may already exist, no new POST while one nobody saw
answered may still commit (in_doubt.py), and the link written last. A refusal of a first attempt takes the row and its
claim back; any other failure gives the lease up and leaves the row pending for the next worker.
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from create_ticket import in_doubt
from create_ticket.routing.decision import waiting
from create_ticket.routing.in_force import UNCONFIRMED
from shared.problems import (
    Conflict,
    NotConnected,
    NotFound,
    ReauthorizationRequired,
    ServiceNowRejected,
    ServiceNowUnavailable,
)
from shared.retries import TransientFailure
from shared.servicenow import table_result
from shared.services import Services
from shared.store import StoreConflict, TicketStore
from shared.tickets import SYS_ID, RecordRefused, Ticket, TicketError

log = logging.getLogger(__name__)


class Unconfirmed(Exception):
    """The row's creator left its route unconfirmed, and its record is not in ServiceNow: route it again first."""


def confirmed(row: Ticket) -> Ticket:
    """The row as written once its route is the one in force: every later write clears the mark."""
    return replace(row, extra={k: v for k, v in row.extra.items() if k != UNCONFIRMED})


@dataclass
class Progress:
    """The row as this worker last wrote it, and whether a record may already exist in ServiceNow."""

    ticket: Ticket
    etag: str
    lookup: bool  # a record may exist already: look before posting
    counted: bool  # the next POST is already counted in `post_attempts`
    doubt: datetime | None = None  # when a POST began whose answer nobody saw: no new POST while it may commit
    own: bool = False  # that unanswered POST was this worker's own


def post_and_link(services: Services, current: Progress) -> Ticket:
    """POST the row's record (after a lookup when one may exist) and write the link; the ServiceNow side of a
    create or a resume."""
    store = services.store
    servicenow, tokens = services.servicenow, services.tokens
    state_field = services.settings.field_map.target("state")
    fields = f"sys_id,number,{state_field},sys_updated_on,sys_mod_count"
    ticket = current.ticket
    payload: dict[str, Any] = dict(ticket.extra.get("payload") or {})

    def attempt() -> dict[str, Any]:
        if current.lookup:
            existing = in_doubt.lookup(services, current.ticket, fields)
            if existing is not None:
                return existing
            in_doubt.check(current.doubt, services.clock(), services.settings.in_doubt_seconds)
        if UNCONFIRMED in current.ticket.extra:
            raise Unconfirmed
        if current.counted:
            current.counted = False
        else:
            counted = replace(current.ticket, post_attempts=current.ticket.post_attempts + 1,
                              posted_at=services.clock().isoformat())  # fmt: skip
            current.etag = store.update_ticket(counted, current.etag)
            current.ticket = counted
        try:
            response = servicenow.table_request(
                tokens,
                "POST",
                current.ticket.table,
                params={"sysparm_fields": fields},
                json_body=payload,
                retry=False,
            )
        except TransientFailure as failure:
            # A 429 was refused before any work; anything else may have committed. Without an answer, it
            # may still commit after this (in_doubt.py); with one, ServiceNow has finished with it.
            if failure.response is None or failure.response.status_code != 429:
                current.lookup = True
            answered = not in_doubt.unanswered(failure)
            current.doubt = None if answered else in_doubt.posted_since(current.ticket)
            current.own = not answered
            raise
        current.doubt = None
        return table_result(response)

    try:
        record = servicenow.with_retries(attempt)
    except in_doubt.InDoubt as doubt:
        release_lease(store, current.ticket, current.etag, current.doubt)
        raise in_doubt.problem(doubt, ticket.id, own=current.own) from None
    except StoreConflict:  # another worker counted a POST first: it owns the row now, and this one posts nothing
        raise Conflict("Another request is creating this ticket in ServiceNow right now.", retry_after=5,
                       extra={"ticketId": ticket.id}) from None  # fmt: skip
    except ServiceNowUnavailable as exc:
        release_lease(store, current.ticket, current.etag, current.doubt)
        exc.extra["ticketId"] = ticket.id
        raise
    except (NotConnected, ReauthorizationRequired) as exc:
        # No token, so nothing was posted: the count taken for this POST is given back, the fix kept on the row.
        exc = waiting(services, exc)
        attempts = max(1, current.ticket.failed_attempts)
        error = TicketError(services.clock().isoformat(), exc.code, exc.detail, attempts, "create",
                            exc.remediation).to_json()  # fmt: skip
        unused = max(current.ticket.post_attempts - 1, 0)
        release_lease(store, replace(current.ticket, post_attempts=unused, error=error), current.etag, current.doubt)
        exc.extra["ticketId"] = ticket.id
        raise exc from None
    except (ServiceNowRejected, NotFound) as exc:
        if not current.lookup:
            roll_back(store, current.ticket)
        else:
            release_lease(store, current.ticket, current.etag, current.doubt)
        raise ServiceNowRejected(
            f"ServiceNow refused to create the ticket: {exc.detail}",
            remediation=exc.remediation,
            extra=exc.extra,
        ) from None
    if not SYS_ID.fullmatch(str(record.get("sys_id") or "")):
        release_lease(store, current.ticket, current.etag, None)
        raise ServiceNowRejected("ServiceNow answered the create without the record's sys_id.")
    now = services.clock().isoformat()
    try:
        linked = current.ticket.with_link(record, services.settings.field_map, now)
        linked.error = None
    except RecordRefused as exc:  # the record exists: link it, keep the number out, and say why
        linked = current.ticket.with_link({**record, "number": ""}, services.settings.field_map, now)
        linked.error = TicketError(now, exc.code, exc.detail, 1, "create", exc.remediation).to_json()
    linked.extra = {}
    try:
        store.update_ticket(linked, current.etag)
    except StoreConflict:
        # Our lease ran out and someone else finished the row: theirs is the same record.
        found = store.get_ticket(linked.id)
        if found is None or not found[0].sys_id:
            raise Conflict("The ticket changed while it was being created.", retry_after=5) from None
        return found[0]
    log.info("Ticket %s is %s (%s)", linked.id, linked.number, linked.sys_id)
    return linked


def release_lease(store: TicketStore, ticket: Ticket, etag: str, doubt: datetime | None) -> None:
    """Give the row up, keeping when a POST nobody saw answered began (`doubt`), so no one posts too soon."""
    posted_at = doubt.isoformat() if doubt is not None else None
    with contextlib.suppress(StoreConflict):  # someone else holds the row now: nothing to release
        store.update_ticket(replace(ticket, lease_until=None, posted_at=posted_at), etag)


def roll_back(store: TicketStore, ticket: Ticket) -> None:
    """ServiceNow refused the record and never stored it: leave nothing behind."""
    store.release_claim(ticket.claim_key, ticket.id)
    store.delete_ticket(ticket.id)
