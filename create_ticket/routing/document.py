"""The routes document: the one store document that holds the saved rules (docs/routes.md#the-api), and its owner.

Everything that reads or writes it goes through `RoutesDocument`: `from_json` reads what is stored, `to_json` gives
back the same JSON, member for member and in the same order, so a document written before this module existed reads
and writes unchanged. A PUT replaces it under the ETag the caller's version names (routing/saving.py `save`); a
connection's removal changes it under its ETag, again on a lost race (`change`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from create_ticket.routing.rules import Rules, compiled
from shared.store import TicketStore, update_document

DOCUMENT = "routes"  # its name in the store
REMOVING = "removing"  # its member: connections being removed (id -> the record's addedAt)
_MEMBERS = ("routes", "savedAt", "savedBy", "revision", REMOVING)


@dataclass
class RoutesDocument:
    """The saved rules as stored: each rule's JSON as validated (groups and companies already sys_ids), who saved
    them and when, the save's revision, and the connections a removal under way has fenced off."""

    routes: list[dict[str, Any]] = field(default_factory=list)
    saved_at: str | None = None  # None: never saved by a PUT (a removal's fence may still have written it)
    saved_by: str | None = None
    revision: str | None = None  # a random id each save writes: the compiled rules are kept by it
    removing: dict[str, str] | None = None  # None: the member was never written
    others: dict[str, Any] = field(default_factory=dict)  # members this version does not know, kept as they were

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> RoutesDocument:
        revision, removing = data.get("revision"), data.get(REMOVING)
        return cls(
            list(data.get("routes") or []),
            data.get("savedAt"),
            data.get("savedBy"),
            revision if isinstance(revision, str) else None,
            {str(c): str(at) for c, at in removing.items()} if isinstance(removing, dict) else None,
            {name: value for name, value in data.items() if name not in _MEMBERS},
        )

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"routes": self.routes}
        if self.saved_at is not None:  # a PUT writes both, `savedBy` null for a caller without a name
            data["savedAt"] = self.saved_at
            data["savedBy"] = self.saved_by
        if self.revision is not None:
            data["revision"] = self.revision
        if self.removing is not None:
            data[REMOVING] = self.removing
        return {**data, **self.others}

    def rules_naming(self, connection_id: str) -> list[str]:
        """The names of the rules that send tickets to a connection (`rule 3` for one without a name)."""
        return [str(rule.get("name") or f"rule {i + 1}") for i, rule in enumerate(self.routes)
                if isinstance(rule, dict) and (rule.get("set") or {}).get("connection") == connection_id]  # fmt: skip


@dataclass(frozen=True)
class Saved:
    """The routes document as read, with the store's ETag it was read under (None: never written)."""

    document: RoutesDocument
    etag: str | None

    @property
    def routes(self) -> list[dict[str, Any]]:
        return self.document.routes

    def rules(self) -> Rules:
        return compiled(self.document.routes, self.document.revision)


def load(store: TicketStore) -> Saved:
    found = store.get_document(DOCUMENT)
    return Saved(RoutesDocument(), None) if found is None else Saved(RoutesDocument.from_json(found[0]), found[1])


class _Unchanged(Exception):
    """An edit that found nothing to write."""


def change(store: TicketStore, edit: Callable[[RoutesDocument], bool]) -> None:
    """`edit` the stored document in place under its ETag, again on a lost race (shared.store.update_document); an
    edit that returns False has nothing to write, and nothing is written (the ETag stays, so no save is made stale).
    Raises StoreConflict when the document kept changing."""

    def edited(data: dict[str, Any]) -> None:
        document = RoutesDocument.from_json(data)
        if not edit(document):
            raise _Unchanged
        data.clear()
        data.update(document.to_json())

    with contextlib.suppress(_Unchanged):
        update_document(store, DOCUMENT, edited)
