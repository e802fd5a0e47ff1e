"""The refresh's poison queue as an admin sees it (secure_score/poison.py, provisioning/queue_checks.py), against
Azurite's Queue service: a message the Functions host moved to `secure-score-refresh-poison` (whether or not the
connector's code ran on its tries) shows in `GET /api/provisioning` as a `refresh_queue` check with the tenant, how
many, the last error when known and the fix, and on the tenant's row in `GET /api/tenants`; anything else in that
queue is shown as unreadable; a queue that does not answer is said within its deadline. And a queued refresh's
progress (`refreshing` in `GET /api/tenants`), which the 202 of `POST /api/recommendations/refresh` points to."""

from __future__ import annotations

import base64
import contextlib
import json
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from azure.storage.queue import QueueClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dev.entra import FABRIKAM, READER_APP_ID
from secure_score.fanout import QUEUE, RefreshMessage
from secure_score.queued import refresh_queued
from shared import tenant_records
from shared.problems import SecureScoreForbidden
from shared.queues import POISON_DEADLINE, poison_queue
from shared.tickets import HOME
from tests.conftest import Harness
from tests.entra_support import ServedEntra
from tests.secure_score.test_fanout import _fan_out, _queue
from tests.secure_score.test_tenants import added, entra

__all__ = ["entra"]  # a fixture, used by name

POISON = poison_queue(QUEUE)


def _moved(poison: QueueClient, tenant: str, due: str) -> None:
    """What the Functions host does after the last failed try: the message, as queued, into the poison queue."""
    body = json.dumps(RefreshMessage(tenant, due).to_json(), separators=(",", ":")).encode()
    poison.send_message(base64.b64encode(body).decode())


def _get(harness: Harness, function: str, path: str) -> dict[str, Any]:
    response = harness.call(function, path=path)
    assert response.status_code == 200, response.get_body()
    return json.loads(response.get_body())  # type: ignore[no-any-return]


def _queue_checks(harness: Harness) -> list[dict[str, Any]]:
    return [c for c in _get(harness, "provisioning", "/provisioning")["checks"] if c["name"] == "refresh_queue"]


def _rows(harness: Harness) -> dict[str, dict[str, Any]]:
    return {("home" if r["home"] else r["id"]): r for r in _get(harness, "list_tenants", "/tenants")["tenants"]}


def test_a_message_the_host_moved_shows_in_provisioning_and_on_the_row_with_the_fix_until_refreshed(
    connected: Harness, azurite_queues: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    harness = connected
    poison = _queue(azurite_queues, POISON)
    _fan_out(harness, monkeypatch, azurite_queues)
    [empty] = _queue_checks(harness)
    assert empty["ok"] and "is empty" in empty["detail"] and empty["group"] == "tenant"
    due = harness.clock().isoformat()
    _moved(poison, HOME, due)  # its instance died on every try: the connector's code never noted anything
    _moved(poison, HOME, due)
    [check] = _queue_checks(harness)
    assert not check["ok"] and check["code"] == "refresh_poisoned" and "tenant" not in check  # this organization's
    assert "2 queued refresh message(s) of this organization's tenant failed 5 tries" in check["detail"]
    assert POISON in check["detail"] and "The last error is not known" in check["detail"]
    fix = check["remediation"]
    assert "Application Insights" in fix and "queues it again" in fix and "POST /api/recommendations/refresh" in fix
    assert f"az storage message clear --queue-name {POISON}" in fix and "Clear queue" in fix
    row = _rows(harness)["home"]
    assert row["poisoned"]["queue"] == POISON and row["poisoned"]["messages"] == 2 and row["poisoned"]["lastAt"]

    harness.clock.advance(seconds=1)  # the next refresh comes, and succeeds: nothing left to fix
    later = json.dumps(RefreshMessage(HOME, harness.clock().isoformat()).to_json()).encode()
    harness.clock.advance(seconds=1)
    assert refresh_queued(harness.services, later, 1, "m2") == "refreshed"
    [check] = _queue_checks(harness)
    assert check["ok"] and "2 old message(s)" in check["detail"] and "can be cleared" in check["detail"]
    assert _rows(harness)["home"]["poisoned"] is None


def test_the_last_error_a_try_noted_is_named_with_its_own_fix(
    connected: Harness, azurite_queues: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    harness = connected
    poison = _queue(azurite_queues, POISON)
    _fan_out(harness, monkeypatch, azurite_queues)
    harness.graph.forbidden = True
    due = harness.clock().isoformat()
    harness.clock.advance(seconds=1)
    body = json.dumps(RefreshMessage(HOME, due).to_json()).encode()
    with pytest.raises(SecureScoreForbidden):
        refresh_queued(harness.services, body, 5, "m1")  # the last try: noted on the record, then the host moves it
    _moved(poison, HOME, due)
    [check] = _queue_checks(harness)
    assert not check["ok"] and check["code"] == "refresh_poisoned"
    assert (
        "1 queued refresh message(s)" in check["detail"] and "The last error: secure_score_forbidden" in check["detail"]
    )
    assert "SecurityEvents" in check["remediation"] and "queues it again" in check["remediation"]
    assert check["remediation"].count("failed 5 times in a row") == 0  # the record's own poison words are not repeated


MALFORMED = [
    ("raw", "not base64 at all %%%"),  # added by hand in the portal, unencoded
    ("b64", base64.b64encode(b"not json").decode()),
    ("b64", base64.b64encode(b"\xff\xfe\x00").decode()),
    ("b64", base64.b64encode(b'{"kind":"sync","tenant":"home","due":"2026-01-01T00:00:00+00:00"}').decode()),
    ("b64", base64.b64encode(b'{"kind":"refresh","tenant":"../x","due":"2026-01-01T00:00:00+00:00"}').decode()),
    ("b64", base64.b64encode(b"[" * 5000).decode()),
]


def test_what_is_not_a_refresh_in_the_poison_queue_is_shown_as_such_never_a_500(
    connected: Harness, azurite_queues: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    harness = connected
    poison = _queue(azurite_queues, POISON)
    _fan_out(harness, monkeypatch, azurite_queues)
    for _, content in MALFORMED:
        poison.send_message(content)
    _moved(poison, HOME, harness.clock().isoformat())  # among them, one that is the connector's
    checks = _queue_checks(harness)
    unreadable = [c for c in checks if c.get("code") == "queue_message_unreadable"]
    assert len(unreadable) == 1 and not unreadable[0]["ok"]
    assert f"{len(MALFORMED)} message(s) in {POISON} are not refreshes the connector queued" in unreadable[0]["detail"]
    assert "az storage message clear" in unreadable[0]["remediation"]
    assert [c["code"] for c in checks if c.get("code") == "refresh_poisoned"] == ["refresh_poisoned"]
    assert _rows(harness)["home"]["poisoned"]["messages"] == 1


XML_TEXT = st.text(st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")), max_size=300)


def test_anything_in_the_poison_queue_answers_200(
    connected: Harness, azurite_queues: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Fuzzed: any text as it sits in the queue, and any bytes the way the host encodes them (base64)."""
    harness = connected
    poison = _queue(azurite_queues, POISON)
    _fan_out(harness, monkeypatch, azurite_queues)

    @settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck))
    @given(st.one_of(XML_TEXT.filter(str.strip), st.binary(max_size=600).map(lambda b: base64.b64encode(b).decode())))
    def shown(content: str) -> None:
        poison.clear_messages()
        poison.send_message(content)
        checks = _queue_checks(harness)
        assert checks and all(c["remediation"] for c in checks if not c["ok"])
        assert _rows(harness)["home"]["state"] == "active"

    shown()


@contextlib.contextmanager
def _silent_queue_service() -> Iterator[str]:
    """A queue endpoint that takes the connection and never answers: a connection string pointing at it."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.2)
        while not stop.is_set():
            with contextlib.suppress(OSError):
                held.append(listener.accept()[0])

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    port = listener.getsockname()[1]
    key = base64.b64encode(b"k" * 32).decode()
    try:
        yield (f"DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey={key};"
               f"QueueEndpoint=http://127.0.0.1:{port}/devstoreaccount1;")  # fmt: skip
    finally:
        stop.set()
        thread.join()
        for connection in held:
            connection.close()
        listener.close()


def test_a_poison_queue_that_does_not_answer_is_said_within_its_deadline(
    connected: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    harness = connected
    with _silent_queue_service() as connection:
        _fan_out(harness, monkeypatch, connection)
        started = time.monotonic()
        [check] = _queue_checks(harness)
        assert time.monotonic() - started < POISON_DEADLINE + 3
        assert not check["ok"] and check["code"] == "store_unavailable" and "could not be read" in check["detail"]
        assert "Storage Queue Data Contributor" in check["remediation"]
        started = time.monotonic()
        assert _rows(harness)["home"]["poisoned"] is None  # the overview answers all the same
        assert time.monotonic() - started < POISON_DEADLINE + 3


def test_without_a_queue_there_is_no_poison_check(connected: Harness, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AzureWebJobsStorage", raising=False)
    assert _queue_checks(connected) == []
    assert _get(connected, "list_tenants", "/tenants")["refreshing"] is None


def test_a_queued_refresh_shows_how_many_tenants_are_done_until_each_has_an_outcome(
    connected: Harness, entra: ServedEntra, azurite_queues: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    harness = connected
    _queue(azurite_queues, QUEUE)
    poison = _queue(azurite_queues, POISON)
    reader = {
        "READER_APP_CLIENT_ID": READER_APP_ID,
        "ENTRA_AUTHORITY": entra.url,
        "APP_URL": "https://connector.example.net",
    }
    _fan_out(harness, monkeypatch, azurite_queues, FANOUT_THRESHOLD="3", **reader)  # below: refreshed in the request
    assert harness.call("refresh_recommendations", "POST", "/recommendations/refresh").status_code == 200
    added(harness, entra, FABRIKAM)
    assert _get(harness, "list_tenants", "/tenants")["refreshing"] is None
    _fan_out(harness, monkeypatch, azurite_queues, FANOUT_THRESHOLD="2", **reader)
    harness.clock.advance(seconds=5)
    response = harness.call("refresh_recommendations", "POST", "/recommendations/refresh")
    assert response.status_code == 202 and response.headers["Location"] == "/api/tenants"
    at = json.loads(response.get_body())["at"]
    progress = _get(harness, "list_tenants", "/tenants")["refreshing"]
    assert progress == {"at": at, "due": 2, "done": 0, "failed": 0, "running": 0}

    harness.clock.advance(seconds=1)
    _moved(poison, FABRIKAM.id, at)  # Fabrikam's message failed every try
    assert _get(harness, "list_tenants", "/tenants")["refreshing"] == {**progress, "done": 1, "failed": 1}
    assert _rows(harness)[FABRIKAM.id]["poisoned"]["messages"] == 1
    home = json.dumps(RefreshMessage(HOME, at).to_json()).encode()
    assert refresh_queued(harness.services, home, 1, "m-home") == "refreshed"
    assert _get(harness, "list_tenants", "/tenants")["refreshing"] is None  # every tenant has its outcome
    assert tenant_records.load(harness.services.store).fanout == {"at": at, "queued": 2}


def _queued_home(harness: Harness, connection: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """Empty queues, FANOUT_THRESHOLD=1, and the refresh queued (202): when."""
    _queue(connection, QUEUE)
    _queue(connection, POISON)
    _fan_out(harness, monkeypatch, connection)
    response = harness.call("refresh_recommendations", "POST", "/recommendations/refresh")
    assert response.status_code == 202
    return str(json.loads(response.get_body())["at"])


def test_a_tenant_refreshing_now_is_counted_running(
    connected: Harness, azurite_queues: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    harness = connected
    at = _queued_home(harness, azurite_queues, monkeypatch)
    harness.clock.advance(seconds=1)
    body = json.dumps(RefreshMessage(HOME, at).to_json()).encode()
    harness.graph.latency = 1.0
    worker = threading.Thread(target=refresh_queued, args=(harness.services, body, 1, "m1"))
    worker.start()
    try:
        deadline = time.monotonic() + 10
        while tenant_records.load(harness.services.store).home.refreshing_until is None:
            assert time.monotonic() < deadline
            time.sleep(0.02)
        progress = _get(harness, "list_tenants", "/tenants")["refreshing"]
        assert progress is not None and (progress["due"], progress["done"], progress["running"]) == (1, 0, 1)
    finally:
        worker.join()
    assert _get(harness, "list_tenants", "/tenants")["refreshing"] is None


def test_a_queued_refresh_nobody_takes_stops_showing_after_the_round_limit(
    connected: Harness, azurite_queues: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    harness = connected
    _queued_home(harness, azurite_queues, monkeypatch)
    harness.clock.advance(seconds=59 * 60)
    assert _get(harness, "list_tenants", "/tenants")["refreshing"]["done"] == 0
    harness.clock.advance(seconds=2 * 60)  # no instance took the queue: an hour on, it is no longer "refreshing"
    assert _get(harness, "list_tenants", "/tenants")["refreshing"] is None
