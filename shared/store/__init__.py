"""TicketStore: the connector's own state: OAuth states, tickets, recommendation claims, idempotency keys
(and later the sync watermark).

Two implementations keep one contract, proven by one test suite run against both:
`SqliteTicketStore` (local runs) and `TableTicketStore` (Azure Table Storage, Azurite in tests).
"""

from __future__ import annotations

from collections.abc import Callable

from shared.store._models import IdempotencyRecord, OAuthState, StoreConflict, TicketStore
from shared.store.sqlite import SqliteTicketStore
from shared.tickets import Ticket

__all__ = ["IdempotencyRecord", "OAuthState", "SqliteTicketStore", "StoreConflict", "TicketStore", "change_ticket"]


def change_ticket(store: TicketStore, ticket_id: str, change: Callable[[Ticket], Ticket | None]) -> Ticket | None:
    """Apply `change` to the stored ticket under its ETag, re-reading on a lost race. `change` returns the new
    ticket, or None to leave it. Returns the ticket as stored afterwards (None if it is gone)."""
    for _ in range(10):
        found = store.get_ticket(ticket_id)
        if found is None:
            return None
        ticket, etag = found
        updated = change(ticket)
        if updated is None:
            return ticket
        try:
            store.update_ticket(updated, etag)
        except StoreConflict:
            continue
        return updated
    raise StoreConflict(f"ticket {ticket_id} kept changing")
