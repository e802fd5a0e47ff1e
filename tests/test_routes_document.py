"""The routes document's owner (create_ticket/routing/document.py): what earlier versions stored reads and writes back
byte for byte, and a change writes under the ETag, edits again after a lost race, and writes nothing when the edit
has nothing to write (so no save is made stale by it)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from create_ticket.routing.document import DOCUMENT, RoutesDocument, change, load
from shared.store import SqliteTicketStore

RULE = {"id": "rule-0123456789ab", "name": "Apps", "match": {"categories": ["Apps"]}, "set": {"connection": "emea"}}

# Each shape an earlier version wrote: a PUT before revisions, a PUT with one, a PUT by a caller without a name, a
# PUT made while a removal was under way, a removal's fence before any PUT and after one, and a fence taken back.
STORED = [
    {"routes": [RULE], "savedAt": "2026-11-02T10:00:00+00:00", "savedBy": "admin@contoso.com"},
    {"routes": [RULE], "savedAt": "2026-11-02T10:00:00+00:00", "savedBy": "admin@contoso.com", "revision": "ab12"},
    {"routes": [], "savedAt": "2026-11-02T10:00:00+00:00", "savedBy": None, "revision": "ab12"},
    {"routes": [RULE], "savedAt": "2026-11-02T10:00:00+00:00", "savedBy": "a", "revision": "ab12",
     "removing": {"apac": "2026-11-01T09:00:00+00:00"}},
    {"routes": [], "removing": {"apac": "2026-11-01T09:00:00+00:00"}},
    {"routes": [RULE], "savedAt": "2026-11-02T10:00:00+00:00", "savedBy": "a", "revision": "ab12", "removing": {}},
    {"routes": [], "removing": {}},
]  # fmt: skip


@pytest.mark.parametrize("stored", STORED)
def test_what_earlier_versions_stored_is_written_back_byte_for_byte(stored: dict[str, Any]):
    assert json.dumps(RoutesDocument.from_json(stored).to_json()) == json.dumps(stored)


def test_members_this_version_does_not_know_are_kept():
    stored = {"routes": [RULE], "savedAt": "t", "savedBy": "a", "revision": "r", "later": {"x": 1}}
    document = RoutesDocument.from_json(stored)
    assert document.others == {"later": {"x": 1}}
    assert document.to_json() == stored


def test_the_rules_naming_a_connection_are_named_by_their_name_or_place():
    document = RoutesDocument([RULE, {"set": {"connection": "emea"}}, {"set": {"connection": "apac"}}])
    assert document.rules_naming("emea") == ["Apps", "rule 2"]
    assert document.rules_naming("default") == []


def test_a_change_edits_again_after_a_lost_race_and_writes_nothing_when_nothing_changed(tmp_path: Path):
    store = SqliteTicketStore(tmp_path / "store.db")
    store.put_document(DOCUMENT, {"routes": [RULE], "savedAt": "t", "savedBy": "a", "revision": "r"}, None)
    seen: list[dict[str, str] | None] = []

    def mark(document: RoutesDocument) -> bool:
        seen.append(document.removing)
        if len(seen) == 1:  # a removal of another connection lands between this read and this write
            current = store.get_document(DOCUMENT)
            assert current is not None
            store.put_document(DOCUMENT, {**current[0], "removing": {"apac": "1"}}, current[1])
        document.removing = {**(document.removing or {}), "emea": "2"}
        return True

    change(store, mark)
    assert seen == [None, {"apac": "1"}]
    after = load(store)
    assert after.document.removing == {"apac": "1", "emea": "2"} and after.routes == [RULE]

    change(store, lambda document: False)
    assert load(store).etag == after.etag  # nothing written: a save from that version is not made stale

    empty = SqliteTicketStore(tmp_path / "empty.db")
    change(empty, lambda document: False)
    assert empty.get_document(DOCUMENT) is None
