"""Status sync against naive per-ticket polling: ServiceNow requests and time per sync, and how both grow.

The table's setup: N tracked tickets, 100 of them changed since the last sync, and 20 ms of network latency per
ServiceNow request. Both strategies run in this process against the same in-process simulator; the latency is
accounted, not slept (N = 100,000 naive polls would sleep over half an hour), so each strategy's time is the
connector's measured processing time (the simulator's own time excluded: it stands in for the remote instance)
plus 20 ms x its requests. The table is one run, so it leaves out the work that is not done every run.

The amortised line puts that back: runs every 5 minutes on a moved clock, 100 records changed (spread over the
interval) before each, with the rolling sweep verifying the tracked records and, worst case, `sys_audit_delete`
readable so deletions are asked for every run too. After a warm-up, requests are counted over windows of runs,
repeated; the line gives their mean (every window is shown beside it).
"""

from __future__ import annotations

import math
import tempfile
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from bench.common import ManualClock, TimedTransport, timed_servicenow
from dev.servicenow import ServiceNowSimulator
from shared.services import Services
from shared.tickets import Ticket
from status_sync.api import PAGE_SIZE, StatusSync

LATENCY = 0.020
CHANGED = 100
INTERVAL = timedelta(minutes=5)  # the default STATUS_SYNC_SCHEDULE
WARM_UP = 6  # runs before counting: the sweep's cycle begins, the audit table's answer is learnt
WINDOW = 36  # runs per counted window: three hours
REPEATS = 2


@dataclass
class Measured:
    requests: int
    seconds: float  # processing + accounted latency


def _stamp(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%S")


def build(
    tracked: int, directory: Path, clock: ManualClock | None = None
) -> tuple[Services, ServiceNowSimulator, TimedTransport]:
    rig = timed_servicenow(directory, clock=clock)
    services, simulator, transport, store = rig.services, rig.simulator, rig.transport, rig.services.store
    now = clock() if clock else datetime.now(UTC).replace(microsecond=0)
    old = _stamp(now - timedelta(days=1))
    for i in range(tracked):
        sys_id = uuid.uuid4().hex
        simulator.tables["incident"][sys_id] = {
            "sys_id": sys_id, "number": f"INC{i:07d}", "state": "1", "correlation_id": f"m365sec:Bench{i}",
            "short_description": "Bench", "priority": "3", "sys_updated_on": old, "sys_created_on": old,
        }  # fmt: skip
        ticket = Ticket(
            id=uuid.uuid4().hex, recommendation_id=f"Bench{i}", recommendation={"id": f"Bench{i}"}, name="Bench",
            priority=3, due_date=None, requested_by=None, table="incident", fingerprint="", created_at=old,
            updated_at=old, status="new", servicenow_state="1", servicenow_updated_on=old, sys_id=sys_id,
            number=f"INC{i:07d}",
        )  # fmt: skip
        store.add_ticket(ticket)
    # The last sync ran an hour ago; the backlog changed long before that.
    store.put_sync_state({"watermark": _stamp(now - timedelta(hours=1))}, None)
    for sys_id in list(simulator.tables["incident"])[:: max(1, tracked // CHANGED)][:CHANGED]:
        simulator.update("incident", sys_id, state="2")
    transport.count = 0
    return services, simulator, transport


def incremental(services: Services, transport: TimedTransport) -> Measured:
    before, server = transport.count, transport.server_seconds
    started = time.perf_counter()
    result = StatusSync(services).run()
    assert result.changed == CHANGED, result
    return _measured(transport, before, server, started)


def _measured(transport: TimedTransport, before: int, server: float, started: float) -> Measured:
    requests = transport.count - before
    own = time.perf_counter() - started - (transport.server_seconds - server)
    return Measured(requests, own + requests * LATENCY)


def naive(services: Services, transport: TimedTransport) -> Measured:
    """What a connector without a watermark does: ask ServiceNow about every tracked ticket, every time."""
    before, server = transport.count, transport.server_seconds
    started = time.perf_counter()
    changed = 0
    for ticket, etag in services.store.list_tickets():
        assert ticket.sys_id
        response = services.servicenow.table_request(
            services.tokens, "GET", "incident", sys_id=ticket.sys_id, params={"sysparm_fields": "state,sys_updated_on"}
        )
        state = response.json()["result"]["state"]
        if state != ticket.servicenow_state:
            services.store.update_ticket(
                Ticket(**{**ticket.to_record(), "servicenow_state": state, "status": "in_progress"}), etag
            )
            changed += 1
    assert changed == CHANGED
    return _measured(transport, before, server, started)


def amortised(tracked: int, directory: Path) -> list[float]:
    """Requests per run, every window's mean, over runs every 5 minutes with 100 changes between them."""
    clock = ManualClock()
    services, simulator, transport = build(tracked, directory, clock)
    simulator.deny.pop("sys_audit_delete", None)  # worst case: deletions are asked for on every run
    sys_ids = list(simulator.tables["incident"])
    turn = [0]

    def one_run() -> int:
        for k in range(CHANGED):  # agents' changes, spread over the interval
            clock.advance(seconds=INTERVAL.total_seconds() / CHANGED)
            target = sys_ids[(turn[0] * CHANGED + k * 997) % len(sys_ids)]
            simulator.update("incident", target, state=str(2 + turn[0] % 2))  # a real change every time
        turn[0] += 1
        before = transport.count
        result = StatusSync(services).run()
        assert result.status == "ok", result
        return transport.count - before

    for _ in range(WARM_UP):
        one_run()
    means = []
    for _ in range(REPEATS):
        means.append(sum(one_run() for _ in range(WINDOW)) / WINDOW)
    services.close()
    return means


def main(sizes: tuple[int, ...] = (1_000, 10_000, 100_000)) -> None:
    print(f"sync: {CHANGED} changed records, {LATENCY * 1000:.0f} ms accounted latency per request, page {PAGE_SIZE}")
    print(f"  {'tracked':>8}  {'sync req':>8}  {'limit':>5}  {'sync s':>7}  {'naive req':>9}  {'naive s':>8}  "
          f"{'req ratio':>9}  {'time ratio':>10}")  # fmt: skip
    rows: dict[int, tuple[Measured, Measured]] = {}
    for tracked in sizes:
        with tempfile.TemporaryDirectory() as tmp:
            services, _, transport = build(tracked, Path(tmp))
            sync = incremental(services, transport)
        with tempfile.TemporaryDirectory() as tmp:
            services, _, transport = build(tracked, Path(tmp))
            poll = naive(services, transport)
        rows[tracked] = (sync, poll)
        limit = math.ceil(CHANGED / PAGE_SIZE) + 1
        request_ratio, time_ratio = poll.requests / sync.requests, poll.seconds / sync.seconds
        print(f"  {tracked:>8}  {sync.requests:>8}  {limit:>5}  {sync.seconds:>7.2f}  {poll.requests:>9}  "
              f"{poll.seconds:>8.2f}  {request_ratio:>8.0f}x  {time_ratio:>9.0f}x")  # fmt: skip
    first, last = sizes[0], sizes[-1]
    growth = last / first
    print(f"  growth from {first:,} to {last:,} tracked ({growth:.0f}x the backlog): "
          f"sync requests {rows[last][0].requests / rows[first][0].requests:.1f}x, "
          f"sync time {rows[last][0].seconds / rows[first][0].seconds:.1f}x; "
          f"naive requests {rows[last][1].requests / rows[first][1].requests:.1f}x, "
          f"naive time {rows[last][1].seconds / rows[first][1].seconds:.1f}x")  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        means = amortised(last, Path(tmp))
    mean = sum(means) / len(means)
    print(f"sync: amortised requests per run at {last} tracked = {mean:.1f} (reconcile included)")
    print(f"  runs every {INTERVAL.total_seconds() / 60:.0f} min, {CHANGED} changes between runs, sys_audit_delete "
          f"readable; after {WARM_UP} warm-up runs, {REPEATS} windows of {WINDOW} runs: "
          + ", ".join(f"{m:.2f}" for m in means))  # fmt: skip


if __name__ == "__main__":
    main()
