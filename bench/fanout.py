"""The Secure Score refresh fanned out on a Storage queue (docs/architecture.md#fan-out-on-storage-queues): 1000
tenants (the home tenant and 999 customers), refreshed by one local host, then by two, each host a process of its
own (`dev/host/run.py`, as `make run` serves), on one Azurite (the store's tables and the queue).

The simulators are those of bench/tenants.py, in their own process (Graph answers each request after a real 100 ms,
300 profiles per tenant). Each measured run starts fresh hosts (no Graph token cached, as hours after the last run)
after the tenants' first refresh (their 90-day history), then fires the Secure Score timer on the first host, as its
schedule would: the wall runs from that call (the timer's enqueue is part of it) until every tenant's outcome is
stored (its last refresh after the timer's start, its lease ended). Graph reads are the GETs the Graph simulator
answered meanwhile; the limit is what a refresh of every tenant needs (its scores and its profile pages), so reads
equal to the limit mean every tenant was read exactly once.
"""

from __future__ import annotations

import json
import math
import os
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.remote import Remote, remote
from dev.entra import READER_APP_ID, ca_bundle
from dev.graph.identity import APP_ID
from dev.host.azurite import Azurite, free_port
from dev.host.processes import HostProcess
from shared import tenant_records
from shared.problems import StoreUnavailable
from shared.store import update_document
from shared.store.tables import TableTicketStore

# 1000 tenants, as docs/benchmarks.md#secure-score-fan-out quotes (`FANOUT_TENANTS=100 make bench` for a quicker look):
# the first refresh (every tenant's 90-day history, 300 profiles each written to the store) is most of its time.
TENANTS = 1000
WORKERS = (1, 2)
LATENCY = 0.100
DEADLINE = 1200.0  # seconds a run may take before the benchmark gives up (a first refresh of 1000: about 10 min)
POLL = 0.5  # seconds between the benchmark's reads of every tenant's outcome (1000 run documents a read)
_NEVER = "0 0 0 1 1 *"  # the timers fire only when the benchmark calls them


@dataclass(frozen=True)
class FanoutRun:
    tenants: int
    workers: int
    reads: int
    limit: int
    wall: float

    def line(self) -> str:
        return (f"secure score fan-out: tenants = {self.tenants}, workers = {self.workers}, Graph reads = "
                f"{self.reads} (limit {self.limit}), wall = {self.wall:.2f} s")  # fmt: skip


@dataclass(frozen=True)
class Measured:
    first: float  # the first refresh's wall, every tenant's 90-day history included (by the most workers)
    runs: list[FanoutRun]


def measure(tenants: int, workers: Sequence[int], latency: float, directory: Path) -> Measured:
    """The first refresh by max(workers) hosts, then one scheduled refresh per count in `workers`, each by that
    many fresh hosts."""
    with remote(tenants, latency) as simulators, Azurite(directory, queues=True) as azurite:
        store = TableTicketStore.from_connection_string(azurite.connection_string)
        _register(store, simulators.started["tenants"])
        env = _env(simulators.started, azurite.connection_string, directory)
        pages = math.ceil(simulators.started["profiles"] / simulators.started["page"])
        limit = tenants * (1 + pages)
        first, _ = _refresh(store, simulators, env, max(workers), directory / "first", tenants)
        runs = []
        for count in workers:
            wall, reads = _refresh(store, simulators, env, count, directory / f"workers-{count}", tenants)
            runs.append(FanoutRun(tenants, count, reads, limit, wall))
    return Measured(first, runs)


def _register(store: TableTicketStore, customers: list[str]) -> None:
    def add(document: dict[str, Any]) -> None:
        added = document.setdefault("tenants", {})
        for tenant_id in customers:
            added[tenant_id] = {"id": tenant_id, "name": tenant_id, "state": "active"}

    update_document(store, tenant_records.DOCUMENT, add)


def _env(started: dict[str, Any], connection: str, directory: Path) -> dict[str, str]:
    """Every host's settings: the simulators' process, the store and the queue on Azurite, no ServiceNow connected."""
    bundle = ca_bundle(Path(started["ca"]), directory)
    return {"GRAPH_URL": started["graph"], "ENTRA_AUTHORITY": started["entra"], "READER_APP_CLIENT_ID": READER_APP_ID,
            "IDENTITY_ENDPOINT": started["identityEndpoint"], "IDENTITY_HEADER": started["identityHeader"],
            "AZURE_CLIENT_ID": APP_ID, "REQUESTS_CA_BUNDLE": str(bundle), "SSL_CERT_FILE": str(bundle),
            "TICKET_STORE": "tables", "AzureWebJobsStorage": connection, "SERVICENOW_INSTANCE": "bench",
            "SERVICENOW_CLIENT_ID": "bench", "STATUS_SYNC_SCHEDULE": _NEVER, "SECURE_SCORE_SCHEDULE": _NEVER,
            "LOCAL_USER": ""}  # fmt: skip


@contextmanager
def hosts(count: int, env: dict[str, str], directory: Path) -> Iterator[list[HostProcess]]:
    """`count` local hosts, each a process with its own port and data folder, all serving; stopped on exit."""
    with ExitStack() as stack:
        started = []
        for index in range(count):
            folder = directory / f"host-{index + 1}"
            folder.mkdir(parents=True)
            ports = {name: str(free_port()) for name in ("PORT", "SIMULATOR_PORT", "GRAPH_SIMULATOR_PORT",
                                                         "SECOND_SIMULATOR_PORT", "ENTRA_SIMULATOR_PORT")}  # fmt: skip
            host = HostProcess({**env, **ports, "LOCAL_DATA_DIR": str(folder)}, folder / "host.log")
            stack.callback(host.stop)
            started.append(host)
        for host in started:
            host.wait_started()
        yield started


def _refresh(
    store: TableTicketStore, simulators: Remote, env: dict[str, str], count: int, directory: Path, tenants: int
) -> tuple[float, int]:
    """(wall seconds, Graph reads) of the refresh the Secure Score timer starts on the first of `count` hosts."""
    with hosts(count, env, directory) as running:
        before = simulators.gets()
        at = datetime.now(UTC).isoformat()
        started = time.perf_counter()
        _fire(running[0].port, "secure_score_sync")
        _until(lambda: _stored(store, at) == tenants, running)
        wall = time.perf_counter() - started
        return wall, simulators.gets() - before


def _fire(port: int, timer: str) -> None:
    request = urllib.request.Request(f"http://127.0.0.1:{port}/admin/functions/{timer}", method="POST", data=b"")
    with urllib.request.urlopen(request, timeout=DEADLINE) as answer:  # noqa: S310 (loopback)
        assert answer.status == 202, answer.status


def _stored(store: TableTicketStore, at: str) -> int:
    """How many tenants have an outcome from a refresh begun at or after `at`, their lease ended."""
    document = tenant_records.load(store)
    records = [document.home, *document.added.values()]
    return sum(1 for r in records if r.last_refresh_at >= at and r.refreshing_until is None)


def _until(done: Callable[[], bool], running: list[HostProcess]) -> None:
    deadline = time.monotonic() + DEADLINE
    while not _answered(done):
        for host in running:
            if host.process.poll() is not None:
                raise RuntimeError(f"a host ended during the benchmark:\n{host.text[-2000:]}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"the refresh did not end within {DEADLINE:.0f} s")
        time.sleep(POLL)


def _answered(done: Callable[[], bool]) -> bool:
    """`done()`, or False when the store did not answer this time (Azurite under load): the next poll asks again."""
    try:
        return done()
    except StoreUnavailable:
        return False


def main(tenants: int | None = None, workers: Sequence[int] = WORKERS, latency: float = LATENCY) -> list[FanoutRun]:
    """Measure and print; `tenants` None: FANOUT_TENANTS, else TENANTS."""
    if tenants is None:
        tenants = int(os.environ.get("FANOUT_TENANTS") or TENANTS)
    with tempfile.TemporaryDirectory() as tmp:
        measured = measure(tenants, workers, latency, Path(tmp))
    print(f"secure score fan-out, {tenants} tenants over the simulators of the tenants line, each worker a local "
          f"host in its own process on one Azurite; the first refresh (90-day histories, {max(workers)} workers): "
          f"{measured.first:.2f} s")  # fmt: skip
    for run in measured.runs:
        print(run.line())
    if len(measured.runs) == 2:
        one, two = measured.runs
        print(f"  two workers' wall / one worker's = {two.wall / one.wall:.2f}")
    sys.stdout.flush()
    return measured.runs


if __name__ == "__main__":
    main(*(json.loads(a) for a in sys.argv[1:]))
