"""The Secure Score refresh fanned out on a Storage queue (secure_score/fanout.py, queued.py), against Azurite's
Queue service and the local host's queue listener: from FANOUT_THRESHOLD tenants due, the refresh queues one
message per tenant and `secure_score_tenant` refreshes it; a repeat of a message is a no-op (after the first: its
`due`; while the first runs: the tenant's lease); a message failing its last try shows on the tenant's row and in
provisioning with its fix. Below the threshold, or with no queue, nothing changes."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest
from azure.storage.queue import QueueClient

from dev.host.server import LocalHost
from secure_score import tenant_runs
from secure_score.fanout import QUEUE, RefreshMessage
from secure_score.queued import refresh_queued
from shared import tenant_records
from shared.problems import SecureScoreForbidden
from shared.queues import poison_queue
from shared.tickets import HOME
from tests.conftest import Harness, concurrently, free_port
from tests.queue_support import FAST, empty_queue, messages, until, with_queue


def _queue(connection: str, name: str = QUEUE) -> QueueClient:
    return empty_queue(connection, name)


def _fan_out(harness: Harness, monkeypatch: pytest.MonkeyPatch, connection: str | None, **env: str) -> None:
    """The harness's app with the fan-out's queue (Azurite's, or none) and FANOUT_THRESHOLD=1."""
    with_queue(harness, monkeypatch, connection, env.pop("FANOUT_THRESHOLD", "1"), **env)


def _refresh(harness: Harness) -> tuple[int, dict[str, Any]]:
    response = harness.call("refresh_recommendations", "POST", "/recommendations/refresh")
    return response.status_code, json.loads(response.get_body())


def _queued(harness: Harness) -> bytes:
    """A message for the home tenant, queued now; the clock then moves on (a message is taken after it is queued)."""
    body = json.dumps(RefreshMessage(HOME, harness.clock().isoformat()).to_json()).encode()
    harness.clock.advance(seconds=1)
    return body


def _home(harness: Harness) -> tenant_records.Tenant:
    return tenant_records.load(harness.services.store).home


def test_below_the_threshold_the_request_refreshes_and_queues_nothing(
    harness: Harness, azurite_queues: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = _queue(azurite_queues)
    _fan_out(harness, monkeypatch, azurite_queues, FANOUT_THRESHOLD="2")  # one tenant due: below 2
    status, answer = _refresh(harness)
    assert status == 200 and answer["status"] == "ok" and answer["controls"] > 0
    assert messages(client) == []


def test_without_a_queue_the_request_refreshes_whatever_the_threshold(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    _fan_out(harness, monkeypatch, None)
    status, answer = _refresh(harness)
    assert status == 200 and answer["status"] == "ok" and answer["controls"] > 0


def test_from_the_threshold_the_request_queues_each_tenant_and_the_queue_function_refreshes_it(
    harness: Harness, azurite_queues: str, monkeypatch: pytest.MonkeyPatch, indexed_functions: dict[str, Any]
) -> None:
    client = _queue(azurite_queues)
    _fan_out(harness, monkeypatch, azurite_queues)
    status, answer = _refresh(harness)
    assert (status, answer["status"], answer["queued"], answer["queue"]) == (202, "queued", 1, QUEUE)
    assert messages(client) == [{"kind": "refresh", "tenant": "home", "due": answer["at"]}]
    assert harness.services.store.get_secure_score(HOME) is None  # nothing read yet: the queue does it
    harness.clock.advance(seconds=1)  # the message is taken after it was queued
    for schedule in ("STATUS_SYNC_SCHEDULE", "SECURE_SCORE_SCHEDULE"):  # the timers stay quiet: the queue works
        monkeypatch.setenv(schedule, "0 0 0 1 1 *")
    host = LocalHost(indexed_functions.values(), "127.0.0.1", free_port(), queue_options=FAST)
    host.start()
    try:
        until(lambda: _home(harness).last_refresh is not None)
        until(lambda: messages(client) == [])
    finally:
        host.stop()
    home = _home(harness)
    assert home.last_refresh is not None and home.last_refresh["status"] == "ok"
    assert home.refreshing_until is None  # the lease ended with the outcome's write
    assert harness.services.store.get_secure_score(HOME) is not None


def test_a_message_repeated_after_its_refresh_reads_nothing(
    harness: Harness, azurite_queues: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    _fan_out(harness, monkeypatch, azurite_queues)
    body = _queued(harness)
    assert refresh_queued(harness.services, body, 1, "m1") == "refreshed"
    read = len(harness.graph.requests)
    assert read > 0
    assert refresh_queued(harness.services, body, 2, "m1") == "done"  # delivered again (at least once): a no-op
    assert len(harness.graph.requests) == read


def test_two_workers_never_refresh_one_tenant_at_once(
    harness: Harness, azurite_queues: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    _fan_out(harness, monkeypatch, azurite_queues)
    body = _queued(harness)
    harness.graph.latency = 0.3  # the first is still reading when the second takes its copy
    outcomes = concurrently(2, lambda i: refresh_queued(harness.services, body, 1, f"copy{i}"))
    assert sorted(outcomes) == ["busy", "refreshed"]
    assert _home(harness).refreshing_until is None


def test_a_message_seen_again_takes_its_own_lease_back_and_another_copy_does_not(
    harness: Harness, azurite_queues: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The queue hides a message while its function runs: seeing it again means the instance that held it died."""
    _fan_out(harness, monkeypatch, azurite_queues)
    body = _queued(harness)
    lease = timedelta(seconds=150)
    assert tenant_runs.claim_refresh(harness.services, HOME, json.loads(body)["due"], lease, "m1") == "claimed"
    # ...and its instance dies here, the lease still held
    assert refresh_queued(harness.services, body, 2, "another copy") == "busy"
    assert refresh_queued(harness.services, body, 2, "m1") == "refreshed"
    assert _home(harness).refreshing_until is None and _home(harness).refreshing_by is None


def test_a_message_that_fails_its_last_try_shows_on_the_row_and_in_provisioning_with_its_fix(
    connected: Harness, azurite_queues: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    harness = connected  # provisioning lists the app's checks once ServiceNow is connected
    _fan_out(harness, monkeypatch, azurite_queues)
    harness.graph.forbidden = True
    body = _queued(harness)
    with pytest.raises(SecureScoreForbidden):
        refresh_queued(harness.services, body, 4, "m1")  # not the last try: the row shows the error, not the poison
    assert "poisoned" not in (_home(harness).last_error or {})
    with pytest.raises(SecureScoreForbidden):
        refresh_queued(harness.services, body, 5, "m1")
    error = _home(harness).last_error or {}
    assert error["code"] == "secure_score_forbidden"
    assert error["poisoned"]["queue"] == poison_queue(QUEUE) and error["poisoned"]["attempts"] == 5
    row = json.loads(harness.call("list_tenants", path="/tenants").get_body())["tenants"][0]
    assert row["lastError"]["poisoned"]["queue"] == "secure-score-refresh-poison"
    checks = json.loads(harness.call("provisioning", path="/provisioning").get_body())["checks"]
    [check] = [c for c in checks if c["name"] == "secure_score"]
    assert not check["ok"] and "failed 5 times" in check["detail"]
    assert "secure-score-refresh-poison" in check["remediation"] and "SecurityEvents" in check["remediation"]
    harness.graph.forbidden = False  # fixed: the next refresh clears it
    harness.clock.advance(seconds=1)
    later = _queued(harness)
    assert refresh_queued(harness.services, later, 1, "m2") == "refreshed"
    assert _home(harness).last_error is None


def test_a_message_failing_every_try_lands_in_the_poison_queue_and_shows_on_the_row(
    harness: Harness, azurite_queues: str, monkeypatch: pytest.MonkeyPatch, indexed_functions: dict[str, Any]
) -> None:
    """Through the local host's listener, as the Functions host runs it: five failed tries, then the poison queue."""
    client, poison = _queue(azurite_queues), _queue(azurite_queues, poison_queue(QUEUE))
    _fan_out(harness, monkeypatch, azurite_queues)
    harness.graph.forbidden = True
    status, answer = _refresh(harness)
    assert status == 202 and answer["queued"] == 1
    harness.clock.advance(seconds=1)
    for schedule in ("STATUS_SYNC_SCHEDULE", "SECURE_SCORE_SCHEDULE"):
        monkeypatch.setenv(schedule, "0 0 0 1 1 *")
    host = LocalHost(indexed_functions.values(), "127.0.0.1", free_port(), queue_options=FAST)
    host.start()
    try:
        until(lambda: messages(poison) != [])
    finally:
        host.stop()
    assert messages(poison) == [{"kind": "refresh", "tenant": "home", "due": answer["at"]}] and messages(client) == []
    error = _home(harness).last_error or {}
    assert error["code"] == "secure_score_forbidden" and error["poisoned"]["attempts"] == FAST.max_dequeue_count


@pytest.mark.parametrize(
    "body",
    [b"", b"not json", b"[]", b'{"kind":"sync","tenant":"home","due":"2026-01-01T00:00:00+00:00"}',
     b'{"kind":"refresh","tenant":"../x","due":"2026-01-01T00:00:00+00:00"}',
     b'{"kind":"refresh","tenant":"home","due":"yesterday"}', b'{"kind":"refresh","tenant":"home"}',
     b'{"kind":"refresh","tenant":"home","due":"2026-01-01T00:00:00+00:00","more":1}', b"[" * 1000,
     b'{"kind":"refresh","tenant":"home","due":"2026-01-01T00:00:00"}',
     b'{"kind":"refresh","tenant":"home","due":"2026-13-01T00:00:00+00:00"}',
     b"\xff\xfe", b'{"kind":"refresh","tenant":"home","due":"' + b"1" * 2000 + b'"}'],
)  # fmt: skip
def test_a_message_the_connector_did_not_queue_is_dropped_without_reading(harness: Harness, body: bytes) -> None:
    assert refresh_queued(harness.services, body, 1, "m1") == "ignored"
    assert harness.graph.requests == []


def test_queuing_a_refresh_drops_the_run_state_an_earlier_version_kept_in_the_tenants_document(
    harness: Harness, azurite_queues: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A tenant's run state is its run document's once that exists: the fan-out's one write of the tenants document
    drops the copy an earlier version kept there (only what the page and the run document do not need)."""
    _queue(azurite_queues)
    _fan_out(harness, monkeypatch, azurite_queues)
    assert refresh_queued(harness.services, _queued(harness), 1, "m1") == "refreshed"
    outcome = _home(harness).last_refresh
    store = harness.services.store
    document, etag = store.get_document(tenant_records.DOCUMENT) or ({"tenants": {}}, None)
    stale = {"lastRefresh": {"at": "2026-01-01T00:00:00+00:00", "status": "ok"}, "lastError": None}
    store.put_document(tenant_records.DOCUMENT, {**document, "home": {"name": "Contoso", **stale}}, etag)
    assert _home(harness).last_refresh == outcome  # the run document's, not the stale copy
    status, answer = _refresh(harness)
    assert (status, answer["queued"]) == (202, 1)
    found = store.get_document(tenant_records.DOCUMENT)
    assert found is not None
    stored = found[0]
    assert stored["home"] == {"name": "Contoso"} and stored[tenant_records.FANOUT_MEMBER]["queued"] == 1
    assert _home(harness).last_refresh == outcome
