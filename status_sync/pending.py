"""Pending creations the status sync finishes: a crash or an outage left their ticket row without its record.

One that keeps failing is retried MAX_ITEM_ATTEMPTS runs, then only listed: a new request for its recommendation
resumes it (create_ticket's exactly-once rules find the record if an earlier attempt made it).
"""

from __future__ import annotations

from datetime import datetime

from create_ticket.api import creator_for
from shared import deadlines
from shared.problems import Conflict
from shared.runs import MAX_ITEM_ATTEMPTS, SYNC_SYSTEMIC, Failures, describe, failure_entry, record_ticket_error
from shared.services import Services
from status_sync.index import Index
from status_sync.reader import SyncResult

RESUME_PER_RUN = 20


def forget_recovered(services: Services, failures: Failures) -> None:
    """Pending tickets that were finished since they failed (a new request resumed them) leave the list."""
    for key, entry in failures.stored.items():
        if isinstance(entry, dict) and entry.get("kind") == "ticket":
            found = services.store.get_ticket(str(entry.get("id")))
            if found is None or found[0].sys_id:
                failures.clear(key)


def resume_pending(services: Services, failures: Failures, index: Index, result: SyncResult) -> None:
    """Finish the creations whose lease ran out, at most RESUME_PER_RUN a run; each failure stays with its ticket."""
    now = services.clock()
    stale = [
        t
        for t, _ in services.store.list_pending_tickets()
        if services.connection.serves(t)  # each connection resumes its own (never an earlier one's of its id)
        and (t.lease_until is None or datetime.fromisoformat(t.lease_until) <= now)
        and t.failed_attempts < MAX_ITEM_ATTEMPTS
    ]
    for ticket in stale[:RESUME_PER_RUN]:
        deadlines.check_run()
        key = f"ticket:{ticket.id}"
        try:
            linked = creator_for(services).resume(ticket.id)
        except SYNC_SYSTEMIC:
            raise
        except Conflict:  # someone else is finishing it right now: not a failure of the ticket
            continue
        except Exception as exc:
            attempts = record_ticket_error(services.store, now.isoformat(), ticket.id, exc, source="sync")
            code, detail = describe(exc)
            result.errors.append(f"pending ticket {ticket.id}: {code}: {detail}")
            failures.record(key, failure_entry("ticket", ticket.id, None, exc, now.isoformat(), attempts))
            continue
        failures.clear(key)
        result.resumed += 1
        if linked.sys_id:
            index.add(linked.sys_id, linked.id)
