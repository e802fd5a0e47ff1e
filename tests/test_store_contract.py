"""One contract, two stores: SqliteTicketStore and TableTicketStore (through Azurite)."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from shared.store import OAuthState, SqliteTicketStore, TicketStore


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
    with pytest.raises(Exception):
        store.add_oauth_state(state)


def test_concurrent_takers_get_the_state_exactly_once(store):
    state = _state()
    store.add_oauth_state(state)
    barrier = threading.Barrier(16)
    winners: list[OAuthState] = []

    def take() -> None:
        barrier.wait()
        taken = store.take_oauth_state(state.state)
        if taken is not None:
            winners.append(taken)

    threads = [threading.Thread(target=take) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(winners) == 1


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
