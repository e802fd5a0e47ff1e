"""sys_id -> ticket id, asked of the store only for the records a run actually meets."""

from __future__ import annotations

from shared.store import TicketStore


class Index:
    def __init__(self, store: TicketStore) -> None:
        self._store = store
        self._known: dict[str, str | None] = {}

    def get(self, sys_id: str) -> str | None:
        if sys_id not in self._known:
            found = self._store.find_ticket_by_sys_id(sys_id)
            self._known[sys_id] = found[0].id if found else None
        return self._known[sys_id]

    def add(self, sys_id: str, ticket_id: str) -> None:
        self._known[sys_id] = ticket_id
