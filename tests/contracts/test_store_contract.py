"""One contract, two stores: SqliteTicketStore and TableTicketStore (through Azurite)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from shared.problems import DocumentTooLarge
from shared.store import (
    DIGEST,
    MAX_DOCUMENT_CHARS,
    TRIES,
    IdempotencyRecord,
    OAuthState,
    SqliteTicketStore,
    StoreConflict,
    TicketStore,
    controls_digest,
    update_document,
)
from shared.tickets import Ticket
from tests.conftest import concurrently


@pytest.fixture(params=["sqlite", "tables"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[TicketStore]:
    if request.param == "sqlite":
        sqlite = SqliteTicketStore(tmp_path / "store.db")
        yield sqlite
        sqlite.close()
        return
    from azure.data.tables import TableServiceClient

    from shared.store.tables import TableTicketStore

    connection = request.getfixturevalue("azurite")
    service = TableServiceClient.from_connection_string(connection)
    for table in service.list_tables():
        service.delete_table(table.name)
    yield TableTicketStore(service)


def _state(expires_in: timedelta = timedelta(minutes=10), value: str | None = None) -> OAuthState:
    now = datetime.now(UTC).replace(microsecond=0)
    return OAuthState(
        state=value or uuid.uuid4().hex + uuid.uuid4().hex,
        code_verifier="v" * 86,
        instance_url="https://contoso.service-now.com",
        redirect_uri="https://connector.example.net/api/oauth/callback",
        started_by="admin@contoso.com",
        created_at=now,
        expires_at=now + expires_in,
        browser_hash="b" * 64,
    )


def test_a_state_round_trips_exactly(store):
    state = _state()
    store.add_oauth_state(state)
    assert store.take_oauth_state(state.state) == state


def test_a_state_can_be_taken_once(store):
    state = _state()
    store.add_oauth_state(state)
    assert store.take_oauth_state(state.state) is not None
    assert store.take_oauth_state(state.state) is None


def test_an_unknown_state_is_none(store):
    assert store.take_oauth_state("never-issued") is None


def test_a_duplicate_state_is_refused(store):
    state = _state()
    store.add_oauth_state(state)
    with pytest.raises(StoreConflict):
        store.add_oauth_state(state)
    assert store.take_oauth_state(state.state) == state  # the first is kept whole


def test_concurrent_takers_get_the_state_exactly_once(store):
    state = _state()
    store.add_oauth_state(state)
    taken = concurrently(16, lambda _: store.take_oauth_state(state.state))
    assert [t for t in taken if t is not None] == [state]


def test_purge_removes_only_expired_states(store):
    fresh, stale = _state(), _state(expires_in=timedelta(minutes=-1))
    store.add_oauth_state(fresh)
    store.add_oauth_state(stale)
    assert store.purge_oauth_states(datetime.now(UTC)) == 1
    assert store.take_oauth_state(stale.state) is None
    assert store.take_oauth_state(fresh.state) == fresh


def test_hostile_state_values_are_just_values(store):
    state = _state()
    store.add_oauth_state(state)
    for probe in ["' or 1=1 --", "x' or PartitionKey ne 'y", "%", "*"]:
        assert store.take_oauth_state(probe) is None
    assert store.take_oauth_state(state.state) == state


# -- tickets, claims, idempotency keys, sync state -----------------------------------------------------


def _ticket(ticket_id: str | None = None, recommendation_id: str = "AdminMFAV2") -> Ticket:
    return Ticket(
        id=ticket_id or uuid.uuid4().hex,
        recommendation_id=recommendation_id,
        recommendation={"id": recommendation_id, "source": "microsoft", "category": "Identity", "url": None},
        name="Require MFA",
        priority=2,
        due_date="2026-12-31T23:59:59Z",
        requested_by="admin@contoso.com",
        table="incident",
        fingerprint="f" * 64,
        created_at="2026-11-26T10:00:00+00:00",
        updated_at="2026-11-26T10:00:00+00:00",
        extra={"payload": {"short_description": "Require MFA", "impact": "1"}},
    )


def test_a_ticket_without_a_due_date_or_a_requester_round_trips(store):
    """Table Storage keeps no null property: such a ticket (one filled from a control alone) must still read."""
    ticket = replace(_ticket(), due_date=None, requested_by=None)
    store.add_ticket(ticket)
    found = store.get_ticket(ticket.id)
    assert found is not None and found[0] == ticket
    assert [t for t, _ in store.list_tickets()] == [ticket]


def test_a_ticket_round_trips_exactly(store):
    ticket = _ticket()
    store.add_ticket(ticket)
    found = store.get_ticket(ticket.id)
    assert found is not None and found[0] == ticket
    assert store.get_ticket("0" * 32) is None


def test_a_duplicate_ticket_is_a_conflict(store):
    ticket = _ticket()
    store.add_ticket(ticket)
    with pytest.raises(StoreConflict):
        store.add_ticket(ticket)


def test_updates_are_conditional_on_the_etag(store):
    ticket = _ticket()
    first = store.add_ticket(ticket)
    second = store.update_ticket(replace(ticket, status="new", sys_id="a" * 32), first)
    with pytest.raises(StoreConflict):
        store.update_ticket(replace(ticket, status="closed"), first)  # a stale ETag loses
    found = store.get_ticket(ticket.id)
    assert found is not None and found[0].status == "new" and found[1] == second
    store.delete_ticket(ticket.id)
    with pytest.raises(StoreConflict):
        store.update_ticket(ticket, second)


def test_concurrent_conditional_updates_let_exactly_one_win(store):
    ticket = _ticket()
    etag = store.add_ticket(ticket)

    def update(i: int) -> bool:
        try:
            store.update_ticket(replace(ticket, post_attempts=i), etag)
        except StoreConflict:
            return False
        return True

    assert concurrently(8, update).count(True) == 1


def test_listing_and_finding_by_sys_id(store):
    linked, pending = _ticket(), _ticket(recommendation_id="Other")
    store.update_ticket(replace(linked, sys_id="b" * 32, status="new"), store.add_ticket(linked))
    store.add_ticket(pending)
    assert {t.id for t, _ in store.list_tickets()} == {linked.id, pending.id}
    assert [t.id for t, _ in store.list_pending_tickets()] == [pending.id]
    found = store.find_ticket_by_sys_id("b" * 32)
    assert found is not None and found[0].id == linked.id
    assert store.find_ticket_by_sys_id("c" * 32) is None
    assert store.find_ticket_by_sys_id("' or sys_id ne '") is None


def test_one_claim_per_recommendation(store):
    assert store.claim_recommendation("AdminMFAV2", "t1") is None
    assert store.claim_recommendation("AdminMFAV2", "t1") is None  # the holder claiming again
    assert store.claim_recommendation("AdminMFAV2", "t2") == "t1"
    assert not store.replace_claim("AdminMFAV2", "t2", "t3")  # only the holder can be replaced
    assert store.replace_claim("AdminMFAV2", "t1", "t2")
    store.release_claim("AdminMFAV2", "t1")  # not the holder: nothing happens
    assert store.claim_recommendation("AdminMFAV2", "t9") == "t2"
    store.release_claim("AdminMFAV2", "t2")
    assert store.claim_recommendation("AdminMFAV2", "t9") is None


def test_the_claim_holder_is_read_without_taking_the_claim(store):
    assert store.claim_holder("AdminMFAV2") is None
    assert store.claim_holder("AdminMFAV2") is None  # reading claimed nothing
    assert store.claim_recommendation("AdminMFAV2", "t1") is None
    assert store.claim_holder("AdminMFAV2") == "t1" and store.claim_holder("tenant|AdminMFAV2") is None
    store.release_claim("AdminMFAV2", "t1")
    assert store.claim_holder("AdminMFAV2") is None


def test_concurrent_claims_have_one_winner(store):
    outcomes = concurrently(12, lambda i: store.claim_recommendation("Contended", f"t{i}"))
    assert outcomes.count(None) == 1
    assert len({o for o in outcomes if o is not None}) == 1


def test_idempotency_keys(store):
    key = "function-key\nsome/key#with?odd chars"
    assert store.remember_idempotency_key(key, IdempotencyRecord("t1", "fp1")) is None
    assert store.remember_idempotency_key(key, IdempotencyRecord("t2", "fp2")) == IdempotencyRecord("t1", "fp1")
    store.repoint_idempotency_key(key, IdempotencyRecord("t3", "fp1"))
    assert store.remember_idempotency_key(key, IdempotencyRecord("t4", "x")) == IdempotencyRecord("t3", "fp1")


def test_the_sync_state_is_etag_guarded(store):
    assert store.get_sync_state() is None
    etag = store.put_sync_state({"watermark": "2026-11-26 10:00:00"}, None)
    with pytest.raises(StoreConflict):
        store.put_sync_state({"watermark": "x"}, None)  # a second insert loses
    newer = store.put_sync_state({"watermark": "2026-11-26 10:05:00"}, etag)
    with pytest.raises(StoreConflict):
        store.put_sync_state({"watermark": "2026-11-26 09:00:00"}, etag)  # a stale writer loses
    assert store.get_sync_state() == ({"watermark": "2026-11-26 10:05:00"}, newer)


def test_a_store_from_before_browser_binding_gains_the_column(tmp_path):
    """States written before the browser binding have none, so their callbacks are refused (start again)."""
    import sqlite3

    path = tmp_path / "old.db"
    with sqlite3.connect(path) as db:
        db.execute(
            "CREATE TABLE oauth_states (state TEXT PRIMARY KEY, code_verifier TEXT NOT NULL, instance_url TEXT NOT "
            "NULL, redirect_uri TEXT NOT NULL, started_by TEXT NOT NULL, created_at TEXT NOT NULL, expires_at TEXT "
            "NOT NULL)"
        )
        db.execute("INSERT INTO oauth_states VALUES ('old', 'v', 'i', 'r', 's', '2026-01-01T00:00:00+00:00', "
                   "'2026-01-01T00:10:00+00:00')")  # fmt: skip
    store = SqliteTicketStore(path)
    taken = store.take_oauth_state("old")
    assert taken is not None and taken.browser_hash == ""
    fresh = _state()
    store.add_oauth_state(fresh)
    assert store.take_oauth_state(fresh.state) == fresh


def _controls(count: int, version: str) -> list[dict[str, object]]:
    return [{"id": f"ctl.{i}:{version}", "title": f"Control {i} ({version})", "score": float(i)} for i in range(count)]


def test_the_secure_score_snapshot_is_replaced_whole(store):
    assert store.get_secure_score() is None and store.get_secure_score_control("x") is None
    store.put_secure_score({"refreshedAt": "1"}, _controls(130, "a"))  # more than one entity-group transaction
    summary, controls = store.get_secure_score()
    assert summary == {"refreshedAt": "1"} and len(controls) == 130
    assert store.get_secure_score_control("ctl.7:a") == {"id": "ctl.7:a", "title": "Control 7 (a)", "score": 7.0}
    store.put_secure_score({"refreshedAt": "2"}, _controls(3, "b"))
    summary, controls = store.get_secure_score()
    assert summary == {"refreshedAt": "2"} and sorted(c["id"] for c in controls) == ["ctl.0:b", "ctl.1:b", "ctl.2:b"]
    assert store.get_secure_score_control("ctl.7:a") is None  # nothing of the old snapshot shows through
    store.put_secure_score({"refreshedAt": "3"}, [])
    assert store.get_secure_score() == ({"refreshedAt": "3"}, [])


@pytest.mark.parametrize("tenant", ["", "b2e4f6a8-3c5d-4e7f-8a9b-0c1d2e3f4a5b"])
def test_only_the_summary_can_be_replaced_with_the_controls_kept(store, tenant):
    assert store.put_secure_score_summary({"refreshedAt": "0"}, tenant) is False  # nothing to update yet
    assert store.get_secure_score(tenant) is None
    long = {"refreshedAt": "1", "history": [{"date": f"2026-01-{d:02d}", "current": d} for d in range(1, 29)] * 400}
    store.put_secure_score(long, _controls(5, "a"), tenant)  # a summary long enough for several properties
    assert store.put_secure_score_summary({"refreshedAt": "2"}, tenant) is True
    summary, controls = store.get_secure_score(tenant)
    assert summary == {"refreshedAt": "2"} and sorted(c["id"] for c in controls) == [f"ctl.{i}:a" for i in range(5)]
    assert store.get_secure_score("" if tenant else "c3f5a7b9-4d6e-4f80-9b1c-2d3e4f5a6b7c") is None  # its own only


@pytest.mark.parametrize("tenant", ["", "b2e4f6a8-3c5d-4e7f-8a9b-0c1d2e3f4a5b"])
def test_the_summary_is_read_alone_and_replaced_only_while_its_controls_are_the_ones_its_digest_names(store, tenant):
    a, b = _controls(5, "a"), _controls(5, "b")
    assert store.get_secure_score_summary(tenant) is None
    assert controls_digest(a) == controls_digest(list(reversed(a))) != controls_digest(b)  # a set: any order
    store.put_secure_score({"refreshedAt": "1", DIGEST: controls_digest(a)}, a, tenant)
    assert store.get_secure_score_summary(tenant) == {"refreshedAt": "1", DIGEST: controls_digest(a)}
    # Another refresh stored other controls since this one read the summary: its summary-only write is refused
    # and writes nothing, so the caller writes its whole snapshot.
    store.put_secure_score({"refreshedAt": "2", DIGEST: controls_digest(b)}, b, tenant)
    assert store.put_secure_score_summary({"refreshedAt": "3", DIGEST: controls_digest(a)}, tenant) is False
    assert store.get_secure_score_summary(tenant) == {"refreshedAt": "2", DIGEST: controls_digest(b)}
    assert store.put_secure_score_summary({"refreshedAt": "4", DIGEST: controls_digest(b)}, tenant) is True
    summary, controls = store.get_secure_score(tenant)
    assert summary["refreshedAt"] == "4" and sorted(c["id"] for c in controls) == [c["id"] for c in b]


def test_readers_during_replacements_see_one_whole_snapshot(store):
    store.put_secure_score({"v": "0"}, _controls(20, "0"))
    seen: list[tuple[str, set[str]]] = []

    def work(i: int) -> None:
        if i % 2:
            store.put_secure_score({"v": str(i)}, _controls(20, str(i)))
        else:
            for _ in range(3):
                found = store.get_secure_score()
                assert found is not None
                seen.append((found[0]["v"], {c["id"].split(":")[1] for c in found[1]}))

    concurrently(8, work)
    for version, versions_of_controls in seen:
        assert versions_of_controls == {version}, (version, versions_of_controls)


def test_documents_are_replaced_under_their_etag(store):
    assert store.get_document("run") is None
    etag = store.put_document("run", {"a": 1}, None)
    with pytest.raises(StoreConflict):
        store.put_document("run", {"a": 2}, None)
    new = store.put_document("run", {"a": 2}, etag)
    with pytest.raises(StoreConflict):
        store.put_document("run", {"a": 3}, etag)
    assert store.get_document("run") == ({"a": 2}, new)


def test_a_document_update_that_loses_a_race_edits_the_winners_document_again(store):
    """Every read-edit-write of a document goes through update_document: a writer that lands between the read and
    the write is never overwritten; the edit runs again on what it wrote."""
    store.put_document("tenants", {"tenants": {}}, None)
    tries: list[dict[str, Any]] = []

    def add_b(document: dict[str, Any]) -> str:
        tries.append(dict(document["tenants"]))
        if len(tries) == 1:  # another writer lands between this read and this write
            found = store.get_document("tenants")
            store.put_document("tenants", {"tenants": {"a": 1}}, found[1])
        document["tenants"]["b"] = 2
        return "added"

    assert update_document(store, "tenants", add_b) == "added"
    assert tries == [{}, {"a": 1}]
    assert store.get_document("tenants")[0] == {"tenants": {"a": 1, "b": 2}}


def test_a_document_update_starts_from_nothing_and_gives_up_only_after_every_try_lost(store):
    assert update_document(store, "fresh", lambda d: d.update(n=1)) is None
    assert store.get_document("fresh")[0] == {"n": 1}
    tries = 0

    def always_beaten(document: dict[str, Any]) -> None:
        nonlocal tries
        tries += 1
        current = store.get_document("fresh")
        store.put_document("fresh", {"n": tries}, current[1])

    with pytest.raises(StoreConflict, match="fresh kept changing"):
        update_document(store, "fresh", always_beaten)
    assert tries == TRIES and store.get_document("fresh")[0] == {"n": TRIES}


def test_a_document_is_deleted_and_can_be_written_anew(store):
    store.put_document("sync-state:gone", {"watermark": "2026-01-01 00:00:00"}, None)
    store.delete_document("sync-state:gone")
    assert store.get_document("sync-state:gone") is None
    store.delete_document("sync-state:gone")  # absent: nothing to do, no error
    store.put_document("sync-state:gone", {}, None)  # a new one starts from nothing
    assert store.get_document("sync-state:gone")[0] == {}


def test_begin_creation_writes_the_ticket_and_its_claim_together(store):
    first = _ticket()
    holder, etag = store.begin_creation(first)
    assert holder is None and etag
    assert store.get_ticket(first.id)[0] == first
    second = _ticket()
    assert store.begin_creation(second) == (first.id, "")
    assert store.get_ticket(second.id) is None  # nothing of the loser was written
    assert store.claim_recommendation(first.recommendation_id, "someone-else") == first.id
    assert [t.id for t, _ in store.list_tickets()] == [first.id]  # claims never show up as tickets


def test_a_linked_ticket_begun_with_its_claim_is_found_by_its_sys_id_and_tracked(store):
    """Adoption stores a record's ticket with its claim in one transaction (status_sync/adoption.py): by sys_id it is
    a point read, and the sweep lists it like any tracked record."""
    adopted = replace(_ticket(), status="new", sys_id="0" * 31 + "a", connection="second")
    assert store.begin_creation(adopted)[0] is None
    found = store.find_ticket_by_sys_id(adopted.sys_id)
    assert found is not None and found[0].id == adopted.id
    assert store.list_tracked_by_sys_id("", "g", 10, "second") == [(adopted.sys_id, adopted.id)]


def test_the_done_tickets_without_a_resolution_time_are_listed_by_id_on_their_connection(store):
    """The backfill's walk (status_sync/backfill.py): resolved or closed, linked, no `resolved_at`, of one
    connection, in id order after a cursor; a claim or a sys_id hint (Table Storage's rows) is never one."""

    def made(n: int, **fields: Any) -> Ticket:
        ticket = replace(_ticket(f"{n:032x}", f"Control{n}"), **{"status": "closed", "sys_id": f"{n:032x}", **fields})
        store.begin_creation(ticket)
        return ticket

    wanted = [made(1), made(2, status="resolved"), made(6), made(7)]
    made(3, resolved_at="2026-11-27T10:00:00+00:00")  # stamped already
    made(4, status="canceled")
    made(5, status="new")
    made(8, sys_id=None, status="pending")
    made(9, connection="second")
    found, more = store.list_unstamped_done("", 3)
    assert [t.id for t, _ in found] == [t.id for t in wanted[:3]] and more == wanted[2].id
    assert [t for t, _ in found] == wanted[:3] and all(store.get_ticket(t.id)[1] == e for t, e in found)
    found, more = store.list_unstamped_done(wanted[2].id, 3)
    assert [t.id for t, _ in found] == [wanted[3].id] and more is None
    assert store.list_unstamped_done(wanted[3].id, 3) == ([], None)
    assert [t.id for t, _ in store.list_unstamped_done("", 10, "second")[0]] == [f"{9:032x}"]


def test_a_walk_over_many_stamped_done_tickets_is_bounded_per_call_and_says_where_it_goes_on(store):
    """Table Storage cannot filter on a missing property: a call looks at no more than `scan` done tickets (100,000
    stamped ones took 13.5 s in one call on Azurite) and says where the next goes on; followed, it finds them all."""
    for n in range(1, 8):
        stamped = None if n in (3, 7) else "2026-11-27T10:00:00+00:00"
        store.begin_creation(replace(_ticket(f"{n:032x}", f"Control{n}"), status="closed", sys_id=f"{n:032x}",
                                     resolved_at=stamped))  # fmt: skip
    walked, after, calls = [], "", 0
    while after is not None:
        found, after = store.list_unstamped_done(after, 10, scan=2)
        walked += [t.id for t, _ in found]
        calls += 1
        assert calls <= 4 and (after is None or len(found) <= 2)
    assert walked == [f"{3:032x}", f"{7:032x}"]
    if type(store).__name__ == "TableTicketStore":
        assert calls == 4  # 2, 2, 2 and 1 looked at


def test_begin_creation_takes_the_claim_only_from_the_holder_it_names(store):
    old = _ticket()
    store.begin_creation(old)
    new = _ticket()
    assert store.begin_creation(new, replacing="not-the-holder") == (old.id, "")
    holder, etag = store.begin_creation(new, replacing=old.id)
    assert holder is None and etag
    assert store.claim_recommendation(new.recommendation_id, "x") == new.id
    store.release_claim(new.recommendation_id, new.id)
    third = _ticket()
    assert store.begin_creation(third, replacing=new.id)[0] is None  # the claim had gone: taken afresh


def test_concurrent_begins_for_one_recommendation_leave_exactly_one_ticket(store):
    tickets = [_ticket() for _ in range(16)]
    outcomes = concurrently(16, lambda i: store.begin_creation(tickets[i])[0])
    winners = [t.id for t, held in zip(tickets, outcomes, strict=True) if held is None]
    assert len(winners) == 1
    assert set(outcomes) == {None, winners[0]}
    assert [t.id for t, _ in store.list_tickets()] == winners


def test_claims_of_a_store_from_before_move_into_the_tickets_table(azurite):
    from azure.data.tables import TableServiceClient

    from shared.store.tables import TableTicketStore

    service = TableServiceClient.from_connection_string(azurite)
    for table in service.list_tables():
        service.delete_table(table.name)
    legacy = service.create_table_if_not_exists("claims")
    legacy.create_entity({"PartitionKey": "claim", "RowKey": "AdminMFAV2", "ticket_id": "t" * 32})
    service.create_table_if_not_exists("ticketsbysysid").create_entity(
        {"PartitionKey": "sysid", "RowKey": "d" * 32, "ticket_id": "elsewhere"}
    )
    store = TableTicketStore(service)
    linked = replace(_ticket(recommendation_id="Linked"), sys_id="d" * 32)
    store.add_ticket(linked)
    service.get_table_client("tickets").delete_entity("ticket", "~sysid|" + "d" * 32)  # as an old store has it
    assert store.begin_creation(_ticket()) == ("t" * 32, "")  # the old claim still holds: no duplicate
    assert {"claims", "ticketsbysysid"}.isdisjoint(t.name for t in service.list_tables())
    found = store.find_ticket_by_sys_id("d" * 32)  # without its old hint: found by a scan, and hinted again
    assert found is not None and found[0].id == linked.id
    assert store.find_ticket_by_sys_id("d" * 32) == found


def test_large_run_states_and_documents_round_trip(store):
    """A run state listing a hundred failures is far beyond one Table property (64 KiB): it must still store."""
    failures = {f"record:{i:032x}": {"detail": "é" * 600, "at": str(i)} for i in range(100)}
    state = {"last": {"errors": ["x" * 500] * 50}, "failures": failures}
    etag = store.put_sync_state(state, None)
    assert store.get_sync_state() == (state, etag)
    etag = store.put_sync_state({**state, "more": "y" * 70_000}, etag)
    assert store.get_sync_state() == ({**state, "more": "y" * 70_000}, etag)
    assert store.put_document("secure_score", state, None)
    found = store.get_document("secure_score")
    assert found is not None and found[0] == state


def test_a_document_larger_than_one_entity_holds_is_refused_before_it_is_written(store):
    """Table Storage takes at most 1 MiB per entity, counting a string 2 bytes a character; Azurite does not enforce
    it, so both stores refuse a larger document themselves (413 document_too_large), and none ever meets Azure's
    EntityTooLarge as a 500."""
    assert MAX_DOCUMENT_CHARS * 2 + 2 * 2048 + 17 * (8 + 2 * 6 + 4) + 40_000 <= 1024 * 1024  # keys, chunks, margin
    fits = {"pad": "a" * (MAX_DOCUMENT_CHARS - 20)}
    assert store.put_document("big", fits, None)
    with pytest.raises(DocumentTooLarge) as raised:
        store.put_document("bigger", {"pad": "a" * MAX_DOCUMENT_CHARS}, None)
    assert raised.value.status == 413 and raised.value.code == "document_too_large"
    assert store.get_document("bigger") is None
    with pytest.raises(DocumentTooLarge):
        store.put_sync_state({"pad": "é" * (MAX_DOCUMENT_CHARS // 6 + 1)}, None)  # "\u00e9": 6 characters of JSON


def test_a_begin_the_store_refuses_for_another_reason_than_the_claim_is_that_reason_and_writes_nothing(azurite):
    """Only a claim that exists (or changed) means "someone holds it"; a transaction refused for anything else
    (here a property over Table Storage's 64 KiB, https://learn.microsoft.com/rest/api/storageservices/understanding-the-table-service-data-model#property-types)
    is raised as it is, once, instead of being read as a claim that is not there and tried again without end."""
    from azure.core.exceptions import HttpResponseError
    from azure.data.tables import TableServiceClient

    from shared.store.tables import TableTicketStore

    store = TableTicketStore(TableServiceClient.from_connection_string(azurite))  # SQLite has no such limit

    huge = replace(_ticket(), extra={"payload": {"description": "é" * 40_000}})
    with pytest.raises(HttpResponseError) as raised:
        store.begin_creation(huge)
    assert "PropertyValueTooLarge" in str(raised.value)
    assert store.get_ticket(huge.id) is None and store.claim_recommendation(huge.recommendation_id, "x") is None


def test_documents_are_listed_by_the_prefix_of_their_names_with_their_etags(store):
    """Many small documents (a tenant's run state each) are read in one query and written apart: the listing holds
    exactly the names that start with the prefix (not a neighbour one character past it), each with the ETag its
    next conditional write needs."""
    assert store.list_documents("tenant-run:") == {}
    first = store.put_document("tenant-run:a", {"n": 1}, None)
    store.put_document("tenant-run:b", {"n": 2}, None)
    for other in ("tenant-run", "tenant-run;", "tenant-runs:a", "tenants", "a-tenant-run:a"):
        store.put_document(other, {"other": True}, None)
    listed = store.list_documents("tenant-run:")
    assert listed == {"tenant-run:a": ({"n": 1}, first), "tenant-run:b": ({"n": 2}, listed["tenant-run:b"][1])}
    assert store.put_document("tenant-run:a", {"n": 3}, listed["tenant-run:a"][1])  # the listed ETag is current
    assert store.list_documents("tenant-run:")["tenant-run:a"][0] == {"n": 3}
    with pytest.raises(ValueError):
        store.list_documents("")


def test_one_tenants_tickets_are_listed_without_the_others(store):
    """A tenant's refresh lists its own tickets only (one filtered query), the home tenant's included those stored
    before tenants, which carry no tenant at all on Table Storage."""
    other, third = str(uuid.uuid4()), str(uuid.uuid4())
    home, theirs, mine = _ticket(), replace(_ticket(), tenant=other), replace(_ticket(), tenant=third)
    for ticket in (home, theirs, mine):
        store.add_ticket(ticket)
    assert [t.id for t, _ in store.list_tickets(other)] == [theirs.id]
    assert [t.id for t, _ in store.list_tickets(third)] == [mine.id]
    assert [t.id for t, _ in store.list_tickets("")] == [home.id]
    assert {t.id for t, _ in store.list_tickets()} == {home.id, theirs.id, mine.id}
    assert store.list_tickets(str(uuid.uuid4())) == []
    assert store.list_tickets("' or tenant ne '") == []
