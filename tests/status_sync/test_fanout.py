"""The status sync fanned out on a Storage queue (status_sync/fanout.py, lease.py, queued.py), against Azurite's Queue
service, the local host's queue listener and two simulated ServiceNow instances: from FANOUT_THRESHOLD connections
the timer queues one message per connection and `status_sync_connection` syncs it; a repeat of a message is a no-op
(after the first: its `due`; while the first runs: the connection's lease); a message failing its last try says so
in the connection's sync state and lands in the poison queue. Below the threshold, or with no queue, the timer syncs
as before. Message bodies are checked at the edge, by fuzzing."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest
from azure.functions.timer import TimerRequest
from azure.storage.queue import QueueClient
from hypothesis import given, settings
from hypothesis import strategies as st

from dev.host.server import LocalHost
from dev.servicenow import Fault
from secure_score.fanout import RefreshMessage
from shared.problems import ServiceNowUnavailable
from shared.queues import poison_queue
from shared.runs import SyncState, sync_state
from status_sync.fanout import QUEUE, SyncMessage
from status_sync.lease import claim_sync
from status_sync.queued import sync_queued
from tests.conftest import Harness, concurrently, free_port
from tests.oauth_callback.test_connections import add, connect, second, two  # noqa: F401  (fixtures)
from tests.queue_support import FAST, empty_queue, messages, until, with_queue
from tests.status_sync.test_sync import agent_changes, create_tickets

INCIDENTS = "/api/now/v2/table/incident"


def _queue(connection: str, name: str = QUEUE) -> QueueClient:
    return empty_queue(connection, name)


def _fan_out(harness: Harness, monkeypatch: pytest.MonkeyPatch, queue: str | None, threshold: int) -> None:
    with_queue(harness, monkeypatch, queue, threshold)


def _timer(harness: Harness) -> None:
    harness.functions["status_sync"].get_user_function()(TimerRequest(past_due=False))


def _state(harness: Harness, connection: str = "default") -> SyncState:
    services = harness.services.for_connection(harness.services.connection_named(connection))
    return sync_state(services.store)


def _queued(harness: Harness, connection: str = "default") -> bytes:
    """A message for `connection`, queued now; the clock then moves on (a message is taken after it is queued)."""
    body = json.dumps(SyncMessage(connection, harness.clock().isoformat()).to_json()).encode()
    harness.clock.advance(seconds=1)
    return body


def _table_reads(harness: Harness) -> int:
    return sum(1 for r in harness.simulator.requests if r.path == INCIDENTS and r.method == "GET")


@pytest.fixture
def both(two: Harness) -> Harness:  # noqa: F811
    """Two connected ServiceNow connections (`default`, `fabrikam`), a ticket on the default one."""
    assert add(two).status_code == 201
    assert connect(two, "fabrikam").status_code == 200
    create_tickets(two, 1)
    return two


@pytest.mark.parametrize("threshold", [3, 2])
def test_the_timer_queues_one_message_per_connection_from_the_threshold_and_syncs_itself_below_it(
    both: Harness, azurite_queues: str, monkeypatch: pytest.MonkeyPatch, threshold: int
) -> None:
    client = _queue(azurite_queues)
    _fan_out(both, monkeypatch, azurite_queues, threshold)
    _timer(both)
    if threshold == 3:  # two connections: below it, both synced here and nothing queued
        assert messages(client) == []
        assert _state(both).last is not None and _state(both, "fabrikam").last is not None
        return
    at = both.clock().isoformat()
    assert sorted(messages(client), key=lambda m: m["connection"]) == [
        {"kind": "sync", "connection": "default", "due": at},
        {"kind": "sync", "connection": "fabrikam", "due": at},
    ]
    assert _state(both).last is None and _state(both, "fabrikam").last is None  # the queue does the work


def test_without_a_queue_the_timer_syncs_whatever_the_threshold(both: Harness, monkeypatch: pytest.MonkeyPatch) -> None:
    _fan_out(both, monkeypatch, None, 1)
    _timer(both)
    assert (_state(both).last or {}).get("status") == "ok"
    assert (_state(both, "fabrikam").last or {}).get("status") == "ok"


def test_the_queue_function_syncs_each_connection_once_and_ends_its_lease(
    both: Harness, azurite_queues: str, monkeypatch: pytest.MonkeyPatch, indexed_functions: dict[str, Any]
) -> None:
    client = _queue(azurite_queues)
    _fan_out(both, monkeypatch, azurite_queues, 2)
    [ticket] = [t for t, _ in both.services.store.list_tickets()]
    both.clock.advance(minutes=5)
    agent_changes(both, [str(ticket.sys_id)], state="6")  # an agent resolves the record in ServiceNow
    _timer(both)
    assert len(messages(client)) == 2
    both.clock.advance(seconds=1)  # the messages are taken after they were queued
    for schedule in ("STATUS_SYNC_SCHEDULE", "SECURE_SCORE_SCHEDULE"):  # the timers stay quiet: the queue works
        monkeypatch.setenv(schedule, "0 0 0 1 1 *")
    host = LocalHost(indexed_functions.values(), "127.0.0.1", free_port(), queue_options=FAST)
    host.start()
    try:
        until(lambda: _state(both).last is not None and _state(both, "fabrikam").last is not None)
        until(lambda: messages(client) == [])
    finally:
        host.stop()
    for connection in ("default", "fabrikam"):
        state = _state(both, connection)
        assert (state.last or {}).get("status") == "ok", state.last
        assert state.syncing is None  # the lease ended with the run's last write
    found = both.services.store.get_ticket(ticket.id)
    assert found is not None and found[0].status == "resolved"


def test_a_message_repeated_after_its_sync_reads_nothing(connected: Harness) -> None:
    body = _queued(connected)
    assert sync_queued(connected.services, body, 1, "m1") == "synced"
    read = _table_reads(connected)
    assert read > 0
    assert sync_queued(connected.services, body, 2, "m1") == "done"  # delivered again (at least once): a no-op
    assert sync_queued(connected.services, body, 1, "m2") == "done"  # a second copy too
    assert _table_reads(connected) == read


def test_two_workers_never_sync_one_connection_at_once(connected: Harness) -> None:
    create_tickets(connected, 2)
    body = _queued(connected)
    connected.simulator.latency = 0.3  # the first is still reading when the second takes its copy
    outcomes = concurrently(2, lambda i: sync_queued(connected.services, body, 1, f"copy{i}"))
    assert sorted(outcomes) == ["busy", "synced"]
    assert _state(connected).syncing is None


def test_a_message_seen_again_takes_its_own_lease_back_and_another_copy_does_not(connected: Harness) -> None:
    """The queue hides a message while its function runs: seeing it again means the instance that held it died."""
    body = _queued(connected)
    due = json.loads(body)["due"]
    assert claim_sync(connected.services, due, timedelta(seconds=150), "m1") == "claimed"
    # ...and its instance dies here, the lease still held
    assert sync_queued(connected.services, body, 2, "another copy") == "busy"
    assert _table_reads(connected) == 0
    assert sync_queued(connected.services, body, 2, "m1") == "synced"
    assert _state(connected).syncing is None


def test_an_expired_lease_is_taken_by_another_copy(connected: Harness) -> None:
    body = _queued(connected)
    assert claim_sync(connected.services, json.loads(body)["due"], timedelta(seconds=150), "m1") == "claimed"
    connected.clock.advance(seconds=151)
    assert sync_queued(connected.services, body, 1, "m2") == "synced"


def test_a_message_for_a_connection_that_is_gone_does_nothing(connected: Harness) -> None:
    assert sync_queued(connected.services, _queued(connected, "removed-one"), 1, "m1") == "gone"
    assert connected.simulator.requests == []


def test_a_message_that_fails_its_last_try_shows_on_the_connection_and_in_provisioning_until_a_sync_succeeds(
    connected: Harness,
) -> None:
    connected.simulator.inject(Fault("status", status=503, times=10_000, path_prefix=INCIDENTS))
    body = _queued(connected)
    with pytest.raises(ServiceNowUnavailable):
        sync_queued(connected.services, body, 4, "m1")  # not the last try: the run's failure, not the poison
    assert "poisoned" not in (_state(connected).last or {}) and _state(connected).syncing is None
    with pytest.raises(ServiceNowUnavailable):
        sync_queued(connected.services, body, 5, "m1")
    last = _state(connected).last or {}
    assert last["status"] == "failed" and "servicenow_unavailable" in last["errors"][-1]
    assert (last["poisoned"]["queue"], last["poisoned"]["attempts"]) == ("status-sync-poison", 5)
    [row] = json.loads(connected.call("list_connections", path="/connections").get_body())["connections"]
    assert row["lastSync"]["poisoned"]["queue"] == "status-sync-poison"
    shown = json.loads(connected.call("provisioning", path="/provisioning").get_body())
    assert shown["lastSync"]["poisoned"]["attempts"] == 5
    [check] = [c for c in shown["checks"] if c["name"] == "status_sync"]
    assert not check["ok"] and check["remediation"]  # the failed run, with the fix of its error
    connected.simulator.faults.clear()  # fixed: the next sync replaces it
    assert sync_queued(connected.services, _queued(connected), 1, "m2") == "synced"
    assert "poisoned" not in (_state(connected).last or {})


def test_a_message_failing_every_try_lands_in_the_poison_queue(
    connected: Harness, azurite_queues: str, monkeypatch: pytest.MonkeyPatch, indexed_functions: dict[str, Any]
) -> None:
    """Through the local host's listener, as the Functions host runs it: five failed tries, then the poison queue."""
    client, poison = _queue(azurite_queues), _queue(azurite_queues, poison_queue(QUEUE))
    _fan_out(connected, monkeypatch, azurite_queues, 1)
    connected.simulator.inject(Fault("status", status=503, times=10_000, path_prefix=INCIDENTS))
    _timer(connected)
    [queued] = messages(client)
    connected.clock.advance(seconds=1)
    for schedule in ("STATUS_SYNC_SCHEDULE", "SECURE_SCORE_SCHEDULE"):
        monkeypatch.setenv(schedule, "0 0 0 1 1 *")
    host = LocalHost(indexed_functions.values(), "127.0.0.1", free_port(), queue_options=FAST)
    host.start()
    try:
        until(lambda: messages(poison) != [])
    finally:
        host.stop()
    assert messages(poison) == [queued] and messages(client) == []
    assert (_state(connected).last or {})["poisoned"]["attempts"] == FAST.max_dequeue_count


@pytest.mark.parametrize(
    "body",
    [b"", b"not json", b"[]", b"[" * 1000,
     b'{"kind":"refresh","connection":"default","due":"2026-01-01T00:00:00+00:00"}',
     b'{"kind":"sync","connection":"../x","due":"2026-01-01T00:00:00+00:00"}',
     b'{"kind":"sync","connection":"default","due":"yesterday"}', b'{"kind":"sync","connection":"default"}',
     b'{"kind":"sync","connection":"default","due":"2026-01-01T00:00:00+00:00","more":1}',
     b'{"kind":"sync","connection":"default","due":"2026-13-01T00:00:00+00:00"}',
     b"\xff\xfe", b'{"kind":"sync","connection":"default","due":"' + b"1" * 2000 + b'"}'],
)  # fmt: skip
def test_a_message_the_connector_did_not_queue_is_dropped_without_a_request(connected: Harness, body: bytes) -> None:
    assert sync_queued(connected.services, body, 1, "m1") == "ignored"
    assert connected.simulator.requests == []


# -- the edge, fuzzed: whatever a queue holds, parsing answers a message or None, never raises --------------------

_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=40),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=12,
)
_near_miss = st.fixed_dictionaries(
    {"kind": st.sampled_from(["sync", "refresh", "Sync", ""]) | st.text(max_size=8)},
    optional={
        "connection": st.from_regex(r"[a-z0-9-]{0,34}", fullmatch=True) | _json,
        "due": st.from_regex(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,7})?\+00:00", fullmatch=True) | _json,
        "tenant": st.just("home") | _json,
        "more": _json,
    },
)


@settings(max_examples=300, deadline=None)
@given(
    st.binary(max_size=1100) | st.builds(lambda n, tail: b"[" * n + tail, st.integers(900, 1100), st.binary(max_size=8))
)
def test_any_bytes_parse_to_a_message_or_none(body: bytes) -> None:
    for parse in (SyncMessage.parse, RefreshMessage.parse):
        assert parse(body) is None or isinstance(parse(body), (SyncMessage, RefreshMessage))


def test_brackets_nested_past_the_recursion_limit_are_refused_not_raised() -> None:
    """json.loads raises RecursionError (not ValueError) from about 1000 nested brackets, well inside a message's
    size; hypothesis lifts the recursion limit while it runs a test, so this case is checked outside it."""
    for depth in (995, 1000, 1020):
        assert SyncMessage.parse(b"[" * depth) is None and RefreshMessage.parse(b"[" * depth) is None
        assert SyncMessage.parse(b'{"a":' * (depth // 5)) is None


@settings(max_examples=300, deadline=None)
@given(_json | _near_miss)
def test_any_json_parses_to_a_message_the_connector_would_queue_or_none(value: Any) -> None:
    body = json.dumps(value).encode()
    message = SyncMessage.parse(body)
    if message is not None:  # only ever what to_json makes: parsing it again gives the same message
        assert json.loads(body) == message.to_json() and SyncMessage.parse(body) == message
    RefreshMessage.parse(body)


@settings(max_examples=100, deadline=None)
@given(st.from_regex(r"[a-z0-9](?:[a-z0-9-]{0,30}[a-z0-9])?", fullmatch=True), st.datetimes())
def test_every_message_the_connector_queues_parses_back(connection: str, when: Any) -> None:
    from datetime import UTC

    message = SyncMessage(connection, when.replace(tzinfo=UTC).isoformat())
    assert SyncMessage.parse(json.dumps(message.to_json()).encode()) == message
