"""A worker SIGKILLed in the middle of a queued tenant refresh (docs/architecture.md#fan-out-on-storage-queues): two
real local hosts (`dev/host/run.py`) on one Azurite (tables and queues), the Graph simulator in this process. The
first takes the message and its tenant's lease, and dies while Graph is still answering it; the message comes back
after its visibility timeout (LOCAL_QUEUE_VISIBILITY, the Functions host's 10 minutes shortened), the second host
takes the lease back for that same message and refreshes the tenant once; nothing is left in the queue or the
poison queue, and the lease is ended."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from azure.storage.queue import QueueClient

from dev.graph import GraphSimulator, ManagedIdentity
from dev.host.azurite import Azurite
from dev.wire.transport import serve
from secure_score.fanout import QUEUE, RefreshMessage
from shared import tenant_records
from shared.queues import WorkQueues, poison_queue
from shared.store.tables import TableTicketStore
from shared.tickets import HOME
from tests.conftest import own_azurite
from tests.process.test_make_run import STARTED, MakeRun

VISIBILITY = 5  # seconds a taken message stays hidden (renewed while its host lives)
SCORES = "/v1.0/security/secureScores"


@pytest.fixture
def azurite(tmp_path: Path) -> Iterator[Azurite]:
    with own_azurite(tmp_path, queues=True) as running:
        yield running


def _until(condition: Callable[[], bool], seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"{what}: not within {seconds} s"
        time.sleep(0.1)


def test_a_worker_killed_mid_message_leaves_it_to_come_back_and_the_tenant_is_refreshed_once(
    tmp_path: Path, azurite: Azurite
) -> None:
    identity = ManagedIdentity()
    graph = GraphSimulator(identity)
    server, graph_url = serve(graph)
    held = threading.Event()  # set: Graph answers again

    def hold(_: object) -> None:
        held.wait(60)

    graph.while_in_flight = hold
    connection = azurite.connection_string
    env = {"SERVICENOW_INSTANCE": "contoso", "SERVICENOW_CLIENT_ID": "unused-here", "GRAPH_URL": graph_url,
           "IDENTITY_ENDPOINT": identity.endpoint, "IDENTITY_HEADER": identity.header,
           "AZURE_CLIENT_ID": identity.client_id, "TICKET_STORE": "tables", "AzureWebJobsStorage": connection,
           "FANOUT_THRESHOLD": "1", "LOCAL_QUEUE_VISIBILITY": str(VISIBILITY),
           "STATUS_SYNC_SCHEDULE": "0 0 0 1 1 *", "SECURE_SCORE_SCHEDULE": "0 0 0 1 1 *"}  # fmt: skip
    store = TableTicketStore.from_connection_string(connection)
    first = MakeRun(tmp_path / "first", env=env)
    second: MakeRun | None = None
    try:
        first.wait_for(STARTED)
        due = RefreshMessage(HOME, _now()).to_json()
        WorkQueues.from_connection_string(connection).send(QUEUE, [due])
        _until(lambda: bool(graph.requests), 30, "the first host reads Graph")
        home = tenant_records.load(store).home
        assert home.refreshing_by and home.refreshing_until  # it holds the tenant's lease for its message
        first.process.kill()  # SIGKILL, mid-message: no delete, no lease released
        first.process.wait(timeout=30)
        killed_at = time.monotonic()
        before = sum(1 for r in graph.requests if r.path.startswith(SCORES))
        held.set()
        second = MakeRun(tmp_path / "second", env=env)
        second.wait_for(STARTED)
        _until(lambda: tenant_records.load(store).home.last_refresh is not None, 60, "the tenant is refreshed")
        refreshed_after = time.monotonic() - killed_at
        home = tenant_records.load(store).home
        assert home.last_refresh is not None and home.last_refresh["status"] == "ok", home.last_refresh
        assert home.refreshing_until is None and home.refreshing_by is None
        assert refreshed_after >= VISIBILITY - 1  # the message stayed hidden for what was left of its timeout
        _until(lambda: _count(connection, QUEUE) == 0, 20, "the message is deleted")
        time.sleep(VISIBILITY + 1)  # long enough for a message left behind to show again
        assert _count(connection, QUEUE) == 0 and _count(connection, poison_queue(QUEUE)) == 0
        reads = sum(1 for r in graph.requests if r.path.startswith(SCORES)) - before
        assert reads == 1, f"the tenant's scores were read {reads} times after the kill"  # refreshed once
        assert "Traceback" not in second.text, second.text
    finally:
        held.set()
        if first.process.poll() is None:
            first.process.kill()
            first.process.wait(timeout=30)
        if second is not None:
            second.stop()
        server.shutdown()
        server.server_close()


def _now() -> str:
    from datetime import UTC, datetime

    return datetime.now(UTC).isoformat()


def _count(connection: str, queue: str) -> int:
    from azure.core.exceptions import ResourceNotFoundError

    try:
        props: Any = QueueClient.from_connection_string(connection, queue).get_queue_properties()
    except ResourceNotFoundError:
        return 0
    return int(props.approximate_message_count or 0)
