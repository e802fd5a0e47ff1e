"""TicketStore: the connector's own state (OAuth states now; tickets and the sync watermark later).

Two implementations keep one contract, proven by one test suite run against both:
`SqliteTicketStore` (local runs) and `TableTicketStore` (Azure Table Storage, Azurite in tests).
"""

from __future__ import annotations

from shared.store._models import OAuthState, TicketStore
from shared.store.sqlite import SqliteTicketStore

__all__ = ["OAuthState", "SqliteTicketStore", "TicketStore"]
