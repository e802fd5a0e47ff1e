"""Secure Score refresh against a naive refresher: Graph requests and PATCHes per run, and time.

The setup: 300 controls (120 scored, as in real tenants), 50 tickets on 50 of them, 5 of those controls completed
between two runs. Both strategies run in this process against the same Graph and ServiceNow simulators (in
process), with real tokens from a managed-identity endpoint on loopback.

The connector's refresh is *measured*: the Graph simulator really takes 100 ms to answer each request (its own
work included), so the time printed is the wall time of the whole refresh, its waves of at most 4 concurrent
requests included, and its reads include the one it makes of each control just before writing its note. The
naive refresher's time is *modelled*: its measured processing time plus 100 ms for each of its requests, one after
the other (measuring it would mean waiting 100 ms x 355 requests).
"""

from __future__ import annotations

import copy
import math
import os
import tempfile
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from bench.common import TimedTransport, timed_servicenow
from dev.graph import GraphSimulator, ManagedIdentity
from dev.servicenow import serve
from secure_score.api import SecureScoreRefresh
from shared.services import Services
from shared.tickets import Ticket

CONTROLS = 300
TICKETS = 50
CHANGED = 5
LATENCY = 0.100


@dataclass
class Measured:
    gets: int
    patches: int
    seconds: float


def build(directory: Path, identity: ManagedIdentity) -> tuple[Services, GraphSimulator, list[TimedTransport]]:
    graph = GraphSimulator(identity)
    template = graph.profiles["AdminMFAV2"]
    for i in range(CONTROLS - len(graph.profiles)):
        profile = copy.deepcopy(template)
        profile.update(id=f"bench_control_{i}", title=f"Bench control {i}", rank=1000 + i)
        graph.add_profile(profile, 0.0)
    graph_transport = TimedTransport(graph)
    rig = timed_servicenow(directory, graph_transport=graph_transport)
    services, servicenow, transports = rig.services, rig.simulator, [rig.transport, graph_transport]
    now = datetime.now(UTC).replace(microsecond=0)
    open_controls = [cid for cid, score in graph.scores.items()
                     if score < graph.profiles[cid]["maxScore"] and not cid.startswith("scid_")]  # fmt: skip
    assert len(open_controls) >= TICKETS, "the catalogue has too few open controls for the setup"
    for i, cid in enumerate(open_controls[:TICKETS]):
        sys_id = uuid.uuid4().hex
        stamp = now.strftime("%Y-%m-%d %H:%M:%S")
        servicenow.tables["incident"][sys_id] = {
            "sys_id": sys_id, "number": f"INC{i:07d}", "state": "2", "correlation_id": f"m365sec:{cid}",
            "short_description": "Bench", "sys_updated_on": stamp, "sys_mod_count": "1",
        }  # fmt: skip
        services.store.add_ticket(
            Ticket(id=uuid.uuid4().hex, recommendation_id=cid,
                   recommendation={"id": cid, "source": "microsoft", "category": "Identity", "url": None},
                   name="Bench", priority=3, due_date=None, requested_by=None, table="incident", fingerprint="",
                   created_at=now.isoformat(), updated_at=now.isoformat(), status="in_progress",
                   servicenow_state="2", servicenow_mod_count=1, sys_id=sys_id, number=f"INC{i:07d}")
        )  # fmt: skip
    return services, graph, transports


def _measure(graph: GraphSimulator, transports: list[TimedTransport], run: object) -> Measured:
    before = len(graph.requests)
    server = sum(t.server_seconds for t in transports)
    started = time.perf_counter()
    run()  # type: ignore[operator]
    own = time.perf_counter() - started - (sum(t.server_seconds for t in transports) - server)
    requests = graph.requests[before:]
    gets = sum(1 for r in requests if r.method == "GET")
    patches = sum(1 for r in requests if r.method == "PATCH")
    return Measured(gets, patches, own)


def connector(directory: Path, identity: ManagedIdentity) -> Measured:
    services, graph, _ = build(directory, identity)
    SecureScoreRefresh(services).refresh()  # the previous run: every ticket's note is written once
    changed = [t.recommendation_id for t, _ in services.store.list_tickets()][:CHANGED]
    for cid in changed:
        graph.complete(cid)
    graph.latency = LATENCY  # from here on, each Graph answer really takes 100 ms
    before = len(graph.requests)
    started = time.perf_counter()
    SecureScoreRefresh(services).refresh()
    wall = time.perf_counter() - started
    requests = graph.requests[before:]
    gets = sum(1 for r in requests if r.method == "GET")
    patches = sum(1 for r in requests if r.method == "PATCH")
    services.close()
    return Measured(gets, patches, wall)


def naive(directory: Path, identity: ManagedIdentity) -> Measured:
    """Without snapshot or change tracking: every profile read on its own, every ticket's control written."""
    services, graph, transports = build(directory, identity)
    client = services.graph
    ids = list(graph.profiles)

    def run() -> None:
        client.secure_scores(1)
        for control_id in ids:
            client.control_profile(control_id)
        for ticket, _ in services.store.list_tickets():
            client.update_control(ticket.recommendation_id, {
                "comment": f"ServiceNow {ticket.number}", "assignedTo": "", "state": "Default",
                "vendorInformation": {"provider": "SecureScore", "vendor": "Microsoft"}})  # fmt: skip

    measured = _measure(graph, transports, run)
    measured.seconds += (measured.gets + measured.patches) * LATENCY
    services.close()
    return measured


def main() -> None:
    identity = ManagedIdentity()
    server, _ = serve(identity)
    saved = {k: os.environ.get(k) for k in ("IDENTITY_ENDPOINT", "IDENTITY_HEADER")}
    os.environ.update(IDENTITY_ENDPOINT=identity.endpoint, IDENTITY_HEADER=identity.header)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            ours = connector(Path(tmp) / "a", identity)
            theirs = naive(Path(tmp) / "b", identity)
    finally:
        server.shutdown()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    page = GraphSimulator(ManagedIdentity()).page_size
    limit = 1 + math.ceil(CONTROLS / page)
    print(f"secure score: {CONTROLS} controls, {TICKETS} tickets, {CHANGED} controls changed between runs, "
          f"{LATENCY * 1000:.0f} ms per Graph request, pages of {page}")  # fmt: skip
    print(f"  refresh: Graph reads {ours.gets} (limit 1 + ceil({CONTROLS}/{page}) = {limit}, plus one read of each "
          f"control before its note: {limit + ours.patches}), PATCHes {ours.patches} (changes {CHANGED}), "
          f"{ours.seconds:.2f} s measured")  # fmt: skip
    print(f"  naive:   Graph reads {theirs.gets}, PATCHes {theirs.patches}, {theirs.seconds:.2f} s modelled")
    requests = (theirs.gets + theirs.patches) / (ours.gets + ours.patches)
    print(f"  ratios:  reads {theirs.gets / ours.gets:.1f}x fewer, PATCHes {theirs.patches / max(ours.patches, 1):.1f}x"
          f" fewer, requests {requests:.1f}x fewer, time {theirs.seconds / ours.seconds:.1f}x")  # fmt: skip


if __name__ == "__main__":
    main()
