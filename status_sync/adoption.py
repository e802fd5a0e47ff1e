"""Adoption: a connector record the store does not know (the store was lost or restored) is tracked again.

Only records whose correlation id the connector mints are adopted. One that is open while the connector's own
ticket for its recommendation is open too (a person opened it by hand with the same correlation id) is kept as a
duplicate of that ticket: shown, never resolved, reopened or written back (shared/records.py).
"""

from __future__ import annotations

import logging
import uuid
from typing import Any

from shared.records import note_failures, retake_claim
from shared.services import Services
from shared.text import printable
from shared.tickets import CORRELATION_PREFIX, RecordRefused, Ticket, parse_correlation

log = logging.getLogger(__name__)


def adopt(services: Services, row: dict[str, Any]) -> Ticket:
    field_map = services.settings.field_map
    correlation = str(row.get(field_map.target("correlation_id")) or "")
    minted = parse_correlation(correlation)
    if minted is None:
        raise RecordRefused(
            f"Its correlation_id '{printable(correlation, 80)}' is not one the connector mints "
            f"('{CORRELATION_PREFIX}' and a recommendation id of A-Z, a-z, 0-9, '.', '_', ':', '-'), so it "
            "was not adopted.",
            remediation="Restore the record's correlation_id in ServiceNow, or clear it if the record is not "
            "the connector's.",
        )
    tenant, recommendation_id = minted
    now = services.clock().isoformat()
    priority = str(row.get("priority") or "")
    ticket = Ticket(
        id=uuid.uuid4().hex,
        recommendation_id=recommendation_id,
        recommendation={"id": recommendation_id, "source": None, "category": None, "url": None},
        name=str(row.get(field_map.target("name")) or "")[:160],
        priority=int(priority) if priority in ("1", "2", "3", "4", "5") else 3,
        due_date=None,
        requested_by=None,
        table=services.settings.table,
        fingerprint="",
        created_at=now,
        updated_at=now,
        extra={"adopted": True},
        tenant=tenant,
        connection=services.connection.key,
        instance="" if services.connection.is_default else services.settings.instance_url or "",
    ).with_link(row, field_map, now)
    changes: dict[str, dict[str, Any] | None] = {}
    if ticket.is_open:
        ticket = retake_claim(services, ticket, changes)
    services.store.add_ticket(ticket)
    if changes:
        note_failures(services.store, changes)
    log.info("Adopted %s (%s), a connector record the store did not know", ticket.number, ticket.sys_id)
    return ticket
