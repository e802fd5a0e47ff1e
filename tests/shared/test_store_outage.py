"""The connector's own store unavailable (docs/architecture.md#when-the-store-is-unavailable): Azurite stopped in
the middle of a burst of creates, or hanging. Every answer is 503 `store_unavailable` with Retry-After (never a
500), nothing is half-written, leases taken before the outage do not block the repeats once the store is back, and
every repeat then succeeds: one record, and one ticket, per recommendation."""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from dev.host.azurite import Azurite
from dev.wire import SimRequest
from shared.services import Services
from shared.store.outage import connections_for
from shared.store.tables import TableTicketStore
from tests.conftest import Harness, own_azurite
from tests.create_ticket.test_exactly_once import INCIDENTS, body_for, on_store

BURST = 30


@pytest.fixture
def azurite_on_disk(tmp_path: Path) -> Iterator[Azurite]:
    """An Azurite of this test's own, keeping its tables on disk, so stopping it is an outage, not a loss."""
    with own_azurite(tmp_path, on_disk=True) as azurite:
        yield azurite


def on_tables(connected: Harness, azurite: Azurite) -> Services:
    """The connector on that Azurite, its store built as the app builds it (the pool sized to its concurrency)."""
    return on_store(connected, TableTicketStore.from_connection_string(azurite.connection_string, connections_for(8)))


def create(harness: Harness, recommendation_id: str) -> tuple[int, dict[str, Any], str | None]:
    response = harness.call("create_ticket", "POST", "/tickets", body=json.dumps(body_for(recommendation_id)).encode())
    return response.status_code, json.loads(response.get_body() or b"{}"), response.headers.get("Retry-After")


def test_a_store_that_stops_mid_burst_is_503_and_every_repeat_then_succeeds_once(connected, azurite_on_disk, caplog):
    services = on_tables(connected, azurite_on_disk)
    ids = [f"Outage{i}" for i in range(BURST)]
    seen = []
    lock = threading.Lock()

    def stop_at_the_tenth_post(request: SimRequest) -> None:
        """Azurite stops while the tenth create is inside ServiceNow: rows and leases of the first are written,
        their links are not; later creates meet the outage at their first write."""
        if request.method == "POST" and request.path == INCIDENTS:
            with lock:
                seen.append(request)
                if len(seen) == 10:
                    azurite_on_disk.stop()

    connected.simulator.before_request = stop_at_the_tenth_post
    with caplog.at_level(logging.WARNING), ThreadPoolExecutor(16) as pool:
        first = dict(zip(ids, pool.map(lambda i: create(connected, i), ids), strict=True))
    connected.simulator.before_request = None

    statuses = Counter(status for status, _, _ in first.values())
    assert set(statuses) <= {201, 503} and statuses[503] >= BURST - 10, statuses  # never a 500
    for status, problem, retry_after in first.values():
        if status == 503:
            assert problem["code"] == "store_unavailable" and retry_after is not None and int(retry_after) >= 1
            assert "Traceback" not in json.dumps(problem)
    assert not [r for r in caplog.records if "Connection pool is full" in r.getMessage()]

    azurite_on_disk.start()  # the store is back, with everything it acknowledged
    written = {t.recommendation_id for t, _ in services.store.list_tickets()}
    started = time.monotonic()
    repeats: Counter[int] = Counter()
    for recommendation_id, (status, _, _) in first.items():
        if status != 201:
            again, ticket, _ = create(connected, recommendation_id)
            assert again in (200, 201) and ticket["sysId"], (recommendation_id, again, ticket)
            # a row written before the outage is finished, not made again; without one, the repeat makes it
            assert again == (200 if recommendation_id in written else 201), (recommendation_id, again)
            repeats[again] += 1
    assert time.monotonic() - started < 30  # no repeat waited for a lease left before the outage
    assert repeats[200] >= 1, repeats  # some rows were written before the outage (the tenth POST's, at least)

    records = connected.simulator.records()
    assert len(records) == BURST and len({r["correlation_id"] for r in records}) == BURST
    tickets = [t for t, _ in services.store.list_tickets()]
    assert len(tickets) == BURST and all(t.sys_id for t in tickets), [t.status for t in tickets]
    by_correlation = {r["correlation_id"]: r["sys_id"] for r in records}
    assert {by_correlation[f"m365sec:{t.recommendation_id}"] for t in tickets} == set(by_correlation.values())


def test_a_store_that_hangs_answers_503_within_its_deadline(connected, azurite_on_disk):
    """A store that accepts connections and answers nothing (Azurite paused) is an outage too: every store call has
    a total deadline, so the create answers 503 instead of hanging the caller."""
    on_tables(connected, azurite_on_disk)
    assert create(connected, "Warm")[0] == 201
    azurite_on_disk.pause()
    try:
        started = time.monotonic()
        status, problem, retry_after = create(connected, "Hanging")
        assert time.monotonic() - started < 60
    finally:
        azurite_on_disk.resume()
    assert status == 503 and problem["code"] == "store_unavailable" and retry_after, problem
    again, ticket, _ = create(connected, "Hanging")
    assert again in (200, 201) and ticket["sysId"], ticket
    assert len(connected.simulator.records()) == 2
