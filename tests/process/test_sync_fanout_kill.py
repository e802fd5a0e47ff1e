"""A worker SIGKILLed in the middle of a queued status sync (docs/architecture.md#fan-out-on-storage-queues): real
local hosts (`dev/host/run.py`) on one Azurite (tables and queues), the ServiceNow and Graph simulators in this
process so they outlive a killed host. An agent resolves the connector's ticket in ServiceNow; the first host takes
the connection's `status-sync` message and its lease, applies the resolve and dies with the Secure Score note in
flight. The message comes back after its visibility timeout (LOCAL_QUEUE_VISIBILITY, the Functions host's ten
minutes shortened); the second host takes the lease back for that same message and syncs the connection once: one
record, no resolve or other write sent to ServiceNow by the connector, one note, nothing left in either queue."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from dev.graph import GraphSimulator
from dev.host.azurite import Azurite
from dev.servicenow import ServiceNowSimulator
from shared.queues import poison_queue
from shared.runs import sync_state
from status_sync.fanout import QUEUE, SyncMessage
from tests.process.test_fanout_kill import (  # noqa: F401  (fixtures)
    CONTROL,
    VISIBILITY,
    _count,
    _now,
    _stop,
    _until,
    azurite,
    first_ticket,
    remote_graph,
    servicenow_app,
)
from tests.process.test_make_run import STARTED, MakeRun

SCAN = "^ORDERBYsys_updated_on^ORDERBYsys_id"  # the incremental scan's order: one such read per page of a sync


def _scans(servicenow: ServiceNowSimulator) -> int:
    """The status sync's incremental reads of the incident table (one per page; one page here)."""
    return sum(
        1
        for r in list(servicenow.requests)
        if r.method == "GET"
        and r.path.endswith("/table/incident")
        and dict(parse_qsl(urlsplit(r.url).query)).get("sysparm_query", "").endswith(SCAN)
    )


def test_a_worker_killed_mid_sync_leaves_the_message_to_come_back_and_the_connection_is_synced_once(
    tmp_path: Path,
    azurite: Azurite,  # noqa: F811
    remote_graph: tuple[GraphSimulator, str],  # noqa: F811
) -> None:
    graph, graph_url = remote_graph
    app = servicenow_app(azurite, graph, graph_url)
    servicenow, store, queues = app.servicenow, app.store, app.queues
    released = threading.Event()

    def hold_the_note(request: Any) -> None:  # the sync's write-back in flight: the resolve is applied by then
        if request.method == "PATCH":
            released.wait(60)

    connection = azurite.connection_string
    first = MakeRun(tmp_path / "data", app.ports, env=app.env)
    second: MakeRun | None = None
    try:
        first.wait_for(STARTED)
        ticket = first_ticket(app, first)
        writes_before = [r for r in servicenow.requests if r.method in ("POST", "PATCH", "PUT", "DELETE")
                         and r.path.startswith("/api/now/")]  # fmt: skip
        servicenow.update("incident", ticket["sysId"], state="6")  # an agent resolves it in ServiceNow
        graph.while_in_flight = hold_the_note
        queues.send(QUEUE, [SyncMessage("default", _now()).to_json()])
        _until(lambda: any(r.method == "PATCH" for r in graph.requests), 60, "the sync's note is in flight")
        found = store.get_ticket(ticket["id"])
        assert found is not None and found[0].status == "resolved"  # the sync applied the resolve before the kill
        held = sync_state(store).syncing or {}
        assert held.get("by") and held.get("until")  # it holds the connection's lease for its message
        scans_before = _scans(servicenow)
        first.process.kill()  # SIGKILL, mid-message: no delete, no lease released, no last run written
        first.process.wait(timeout=30)
        killed_at = time.monotonic()
        released.set()  # the note lands after all; its answer goes nowhere
        second = MakeRun(tmp_path / "data", app.ports, env=app.env)
        second.wait_for(STARTED)

        def synced_again() -> bool:
            state = sync_state(store)
            return state.last is not None and state.syncing is None

        _until(synced_again, 60, "the message's second delivery syncs the connection")
        assert time.monotonic() - killed_at >= VISIBILITY - 1  # hidden for what was left of its timeout
        _until(lambda: _count(connection, QUEUE) == 0, 20, "the message is deleted")
        time.sleep(VISIBILITY + 1)  # long enough for a message left behind to show again
        assert _count(connection, QUEUE) == 0 and _count(connection, poison_queue(QUEUE)) == 0
        assert (sync_state(store).last or {}).get("status") == "ok", sync_state(store).last
        scans = _scans(servicenow) - scans_before
        assert scans == 1, f"the connection was scanned {scans} times after the kill"  # synced once
        records = [r for r in servicenow.tables["incident"].values() if CONTROL in str(r.get("correlation_id"))]
        writes = [r for r in servicenow.requests if r.method in ("POST", "PATCH", "PUT", "DELETE")
                  and r.path.startswith("/api/now/")]  # fmt: skip
        notes = [u for u in graph.profiles[CONTROL]["controlStateUpdates"]
                 if f"{ticket['number']}: Resolved" in str(u.get("comment"))]  # fmt: skip
        assert (len(records), len(writes) - len(writes_before), len(notes)) == (1, 0, 1), (records, writes, notes)
        found = store.get_ticket(ticket["id"])
        assert found is not None and found[0].status == "resolved"
        assert "Traceback" not in second.text, second.text
    finally:
        released.set()
        _stop(first, second)
        app.close()
