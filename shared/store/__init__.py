"""TicketStore: the connector's own state: OAuth states, tickets, recommendation claims, idempotency keys
(and later the sync watermark).

Two implementations keep one contract, proven by one test suite run against both:
`SqliteTicketStore` (local runs) and `TableTicketStore` (Azure Table Storage, Azurite in tests).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from shared.store._models import (
    DIGEST,
    MAX_DOCUMENT_CHARS,
    IdempotencyRecord,
    OAuthState,
    StoreConflict,
    TicketStore,
    controls_digest,
)
from shared.store.sqlite import SqliteTicketStore
from shared.tickets import Ticket

__all__ = [
    "DIGEST", "MAX_DOCUMENT_CHARS", "IdempotencyRecord", "OAuthState", "SqliteTicketStore", "StoreConflict",
    "TicketStore", "change_ticket", "controls_digest", "update_conditionally", "update_document",
]  # fmt: skip

T = TypeVar("T")
TRIES = 10  # lost races in a row before a writer gives up: each is another writer's finished change


def update_conditionally(
    read: Callable[[], tuple[dict[str, Any], str] | None],
    write: Callable[[dict[str, Any], str | None], object],
    edit: Callable[[dict[str, Any]], T],
    what: str,
) -> T:
    """The one read-edit-write under an ETag: `edit` changes a copy of what `read` found (`{}` when nothing is
    stored) in place and returns its answer; the copy is written on the ETag it was read with, and a lost race
    reads again and edits again (so `edit` must be safe to run more than once)."""
    for _ in range(TRIES):
        found = read()
        document, etag = (dict(found[0]), found[1]) if found else ({}, None)
        answer = edit(document)
        try:
            write(document, etag)
        except StoreConflict:
            continue
        return answer
    raise StoreConflict(f"{what} kept changing")


def update_document(store: TicketStore, name: str, edit: Callable[[dict[str, Any]], T]) -> T:
    """`update_conditionally` for a named store document."""
    return update_conditionally(
        lambda: store.get_document(name), lambda data, etag: store.put_document(name, data, etag), edit, name
    )


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
