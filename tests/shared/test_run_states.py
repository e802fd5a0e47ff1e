"""The run states the status sync and the Secure Score refresh store are dataclasses now; what they write stays the
JSON earlier versions wrote, byte for byte: members in the order they were read, new ones after them, members this
version does not know (or holds in a shape it does not expect) kept as they were."""

from __future__ import annotations

import json

from shared.runs import Failures, RefreshState, SyncState, update_refresh_state, update_sync_state
from shared.store import SqliteTicketStore


def test_a_stored_sync_state_reads_and_writes_back_byte_for_byte():
    stored = {
        "last": {"at": "2026-01-01T00:00:00+00:00", "status": "ok"},
        "sweep": {"started": "2026-01-01T00:00:00+00:00", "position": "8" * 32},
        "watermark": "2026-01-01 00:00:00",
        "failures": {"record:" + "a" * 32: {"kind": "record", "attempts": 2}},
        "fromALaterVersion": [1, 2],
        "audit": "not the object this version keeps",
    }
    state = SyncState.from_json(stored)
    assert state.watermark == "2026-01-01 00:00:00" and state.audit is None
    assert json.dumps(state.to_json()) == json.dumps(stored)


def test_members_a_run_adds_come_after_the_stored_ones_as_the_dict_updates_did():
    state = SyncState.from_json({"fromALaterVersion": True, "watermark": "2026-01-01 00:00:00"})
    state.last = {"status": "ok"}
    state.failures = {}
    state.watermark = "2026-01-02 00:00:00"
    assert list(state.to_json()) == ["fromALaterVersion", "watermark", "last", "failures"]
    assert state.to_json()["watermark"] == "2026-01-02 00:00:00"


def test_the_refresh_state_keeps_each_tenants_suspect_drop_under_its_old_name(tmp_path):
    store = SqliteTicketStore(tmp_path / "store.db")
    stored = {"suspectDrop": {"at": "x"}, "last": {"status": "ok"}, "failures": {}}
    store.put_document("secure_score", stored, None)

    def edit(state: RefreshState) -> None:
        state.set_suspect_drop("f" * 8, {"at": "y"})
        state.run = {"status": "ok"}
        state.failures = {"ticket:1": {"kind": "ticket"}}

    update_refresh_state(store, edit)
    found = store.get_document("secure_score")
    assert found is not None
    assert list(found[0]) == ["suspectDrop", "last", "failures", "run", "suspectDrop:ffffffff"]
    state = RefreshState.from_json(found[0])
    assert state.suspect_drop("") == {"at": "x"} and state.suspect_drop("f" * 8) == {"at": "y"}


def test_the_sync_state_is_edited_under_its_etag_as_a_dataclass(tmp_path):
    store = SqliteTicketStore(tmp_path / "store.db")
    store.put_sync_state({"watermark": "2026-01-01 00:00:00"}, None)

    def edit(state: SyncState) -> None:
        state.audit = {}

    update_sync_state(store, edit)
    found = store.get_sync_state()
    assert found is not None and found[0] == {"watermark": "2026-01-01 00:00:00", "audit": {}}


def test_a_run_that_merges_without_reading_records_every_clear():
    """The refresh never reads its stored failures first: a cleared item must still leave the stored list."""
    blind = Failures.unread("now")
    blind.clear("ticket:1")
    assert blind.snapshot() == {"ticket:1": None}
    read = Failures({"ticket:2": {"attempts": 1}}, "now")
    read.clear("ticket:1")
    read.clear("ticket:2")
    assert read.snapshot() == {"ticket:2": None}
