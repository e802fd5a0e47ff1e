"""A worker SIGKILLed in the middle of a queued tenant refresh (docs/architecture.md#fan-out-on-storage-queues): two
real local hosts (`dev/host/run.py`) on one Azurite (tables and queues), the Graph simulator in this process. The
first takes the message and its tenant's lease, and dies while Graph is still answering it; the message comes back
after its visibility timeout (LOCAL_QUEUE_VISIBILITY, the Functions host's 10 minutes shortened), the second host
takes the lease back for that same message and refreshes the tenant once; nothing is left in the queue or the
poison queue, and the lease is ended. And with a ServiceNow connection and a ticket: killed after the resolve, with
the Secure Score note in flight, the tenant's ticket is resolved once and noted once, and no second ticket is made."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from azure.storage.queue import QueueClient

from dev.graph import GraphSimulator, ManagedIdentity
from dev.host.azurite import Azurite
from dev.servicenow import ServiceNowSimulator
from dev.wire.transport import serve
from secure_score.fanout import QUEUE, RefreshMessage
from shared import tenant_records
from shared.queues import WorkQueues, poison_queue
from shared.store.tables import TableTicketStore
from shared.tickets import HOME
from tests.conftest import free_port, own_azurite
from tests.process.test_local_host import press_allow
from tests.process.test_make_run import NAMES, STARTED, MakeRun

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


@pytest.fixture
def remote_graph() -> Iterator[tuple[GraphSimulator, str]]:
    """The Graph simulator (and its managed-identity endpoint) in this process: it outlives the hosts killed."""
    simulator = GraphSimulator(ManagedIdentity())
    server, url = serve(simulator)
    yield simulator, url
    server.shutdown()
    server.server_close()


def test_a_worker_killed_mid_message_leaves_it_to_come_back_and_the_tenant_is_refreshed_once(
    tmp_path: Path, azurite: Azurite, remote_graph: tuple[GraphSimulator, str]
) -> None:
    graph, graph_url = remote_graph
    identity = graph.identity
    held = threading.Event()  # set: Graph answers again

    def hold(_: object) -> None:
        held.wait(60)

    graph.while_in_flight = hold
    connection = azurite.connection_string
    env = _env(identity, graph_url, connection, SERVICENOW_INSTANCE="contoso", SERVICENOW_CLIENT_ID="unused-here")
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
        _stop(first, second)


def _env(identity: ManagedIdentity, graph_url: str, connection: str, **more: str) -> dict[str, str]:
    """Both hosts' settings: the Graph simulator here, the store and the queues on Azurite, every tenant queued."""
    return {"GRAPH_URL": graph_url, "IDENTITY_ENDPOINT": identity.endpoint, "IDENTITY_HEADER": identity.header,
            "AZURE_CLIENT_ID": identity.client_id, "TICKET_STORE": "tables", "AzureWebJobsStorage": connection,
            "FANOUT_THRESHOLD": "1", "LOCAL_QUEUE_VISIBILITY": str(VISIBILITY), "STATUS_SYNC_SCHEDULE": "0 0 0 1 1 *",
            "SECURE_SCORE_SCHEDULE": "0 0 0 1 1 *", **more}  # fmt: skip


def _stop(first: MakeRun, second: MakeRun | None, *servers: Any) -> None:
    if first.process.poll() is None:
        first.process.kill()
        first.process.wait(timeout=30)
    if second is not None:
        second.stop()
    for server in servers:
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


CONTROL = "AdminMFAV2"  # scored 0 in the simulated tenant


@dataclass
class ServiceNowApp:
    """The ServiceNow simulator served here (it outlives a killed host), and what every host of the app shares: its
    ports (the OAuth redirect), settings, store and queues on one Azurite."""

    servicenow: ServiceNowSimulator
    server: Any
    ports: tuple[int, ...]
    env: dict[str, str]
    store: TableTicketStore
    queues: WorkQueues

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.queues.close()


def servicenow_app(azurite: Azurite, graph: GraphSimulator, graph_url: str) -> ServiceNowApp:
    servicenow = ServiceNowSimulator()
    server, servicenow_url = serve(servicenow)
    ports = tuple(free_port() for _ in NAMES)
    servicenow.register_client("local-connector", "local-secret", [f"http://localhost:{ports[0]}/api/oauth/callback"])
    connection = azurite.connection_string
    env = _env(graph.identity, graph_url, connection, SERVICENOW_INSTANCE=servicenow_url,
               SERVICENOW_CLIENT_ID="local-connector", SERVICENOW_CLIENT_SECRET="local-secret")  # fmt: skip
    return ServiceNowApp(servicenow, server, ports, env, TableTicketStore.from_connection_string(connection),
                         WorkQueues.from_connection_string(connection))  # fmt: skip


def first_ticket(app: ServiceNowApp, host: MakeRun) -> dict[str, Any]:
    """An admin connects ServiceNow (Allow), the first refresh runs through the queue, and a ticket is made for
    CONTROL: the ticket's JSON."""
    with httpx.Client(timeout=30) as browser:
        press_allow(browser, host.url)
        app.queues.send(QUEUE, [RefreshMessage(HOME, _now()).to_json()])  # the snapshot, through the queue
        _until(lambda: tenant_records.load(app.store).home.last_refresh is not None, 60, "the first refresh")
        made = browser.post(f"{host.url}/api/tickets", json={"recommendation": {"id": CONTROL}})
        assert made.status_code == 201, made.text
        ticket: dict[str, Any] = made.json()
    return ticket


def test_killed_with_the_note_in_flight_the_ticket_is_resolved_once_and_noted_once(
    tmp_path: Path, azurite: Azurite, remote_graph: tuple[GraphSimulator, str]
) -> None:
    graph, graph_url = remote_graph
    app = servicenow_app(azurite, graph, graph_url)
    servicenow, ports, env, store, queues = app.servicenow, app.ports, app.env, app.store, app.queues
    released = threading.Event()

    def hold_the_note(request: Any) -> None:  # a write-back in flight: the resolve is done by then
        if request.method == "PATCH":
            released.wait(60)

    connection = azurite.connection_string
    first = MakeRun(tmp_path / "data", ports, env=env)
    second: MakeRun | None = None
    try:
        first.wait_for(STARTED)
        ticket = first_ticket(app, first)
        before = tenant_records.load(store).home.last_refresh_at
        graph.complete(CONTROL)
        graph.while_in_flight = hold_the_note
        queues.send(QUEUE, [RefreshMessage(HOME, _now()).to_json()])
        _until(lambda: any(r.method == "PATCH" for r in graph.requests), 60, "the note is in flight")
        assert servicenow.tables["incident"][ticket["sysId"]]["state"] == "6"  # resolved before the kill
        first.process.kill()
        first.process.wait(timeout=30)
        released.set()  # the note lands after all; its answer goes nowhere
        second = MakeRun(tmp_path / "data", ports, env=env)
        second.wait_for(STARTED)

        def refreshed_again() -> bool:
            home = tenant_records.load(store).home
            return home.last_refresh_at > before and home.refreshing_until is None

        _until(refreshed_again, 60, "the message's second delivery refreshes the tenant")
        _until(lambda: _count(connection, QUEUE) == 0, 20, "the message is deleted")
        time.sleep(VISIBILITY + 1)
        assert _count(connection, QUEUE) == 0 and _count(connection, poison_queue(QUEUE)) == 0
        assert (tenant_records.load(store).home.last_refresh or {}).get("status") == "ok"
        records = [r for r in servicenow.tables["incident"].values() if CONTROL in str(r.get("correlation_id"))]
        resolves = [r for r in servicenow.requests if r.method == "PATCH" and b'"6"' in r.body]
        notes = [u for u in graph.profiles[CONTROL]["controlStateUpdates"] if ticket["number"] in str(u.get("comment"))]
        assert (len(records), len(resolves), len(notes)) == (1, 1, 1), (records, resolves, notes)
        assert "Traceback" not in second.text, second.text
    finally:
        released.set()
        _stop(first, second)
        app.close()


def test_two_hosts_given_two_copies_of_a_tenant_never_refresh_it_at_once(
    tmp_path: Path, azurite: Azurite, remote_graph: tuple[GraphSimulator, str]
) -> None:
    graph, graph_url = remote_graph
    released = threading.Event()

    def hold(_: object) -> None:
        released.wait(60)

    connection = azurite.connection_string
    env = _env(graph.identity, graph_url, connection, SERVICENOW_INSTANCE="contoso", SERVICENOW_CLIENT_ID="unused")
    store = TableTicketStore.from_connection_string(connection)
    hosts = [MakeRun(tmp_path / name, env=env) for name in ("one", "two")]
    try:
        for host in hosts:
            host.wait_for(STARTED)
        graph.while_in_flight = hold
        copy = RefreshMessage(HOME, _now()).to_json()
        WorkQueues.from_connection_string(connection).send(QUEUE, [copy, copy])  # at least once: two deliveries
        _until(lambda: bool(graph.requests), 30, "one host reads Graph")
        # The other copy is taken by whichever host polls next, finds the tenant busy and is deleted; the first
        # stays, hidden, while its host waits on Graph.
        _until(lambda: _count(connection, QUEUE) == 1, 60, "the other copy is done with")
        released.set()
        _until(lambda: tenant_records.load(store).home.last_refresh is not None, 60, "the tenant is refreshed")
        _until(lambda: _count(connection, QUEUE) == 0, 20, "the first copy is deleted")
        assert sum(1 for r in graph.requests if r.path.startswith(SCORES)) == 1  # one refresh, not two
        assert graph.max_in_flight <= 4
    finally:
        released.set()
        for host in hosts:
            host.stop()
