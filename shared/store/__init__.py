"""TicketStore: the connector's own state: OAuth states, tickets, recommendation claims, idempotency keys
(and later the sync watermark).

Two implementations keep one contract, proven by one test suite run against both:
`SqliteTicketStore` (local runs) and `TableTicketStore` (Azure Table Storage, Azurite in tests).
"""

from __future__ import annotations

from shared.store._models import IdempotencyRecord, OAuthState, StoreConflict, TicketStore
from shared.store.sqlite import SqliteTicketStore

__all__ = ["IdempotencyRecord", "OAuthState", "SqliteTicketStore", "StoreConflict", "TicketStore"]
