"""Routes at their largest (docs/routes.md): 200 rules of 20 control patterns each, matched by RE2.

Preview: `POST /api/routes/preview`'s work (the list checked as a save would check it, then every open recommendation
of every tenant the connector reads decided) over 10,000 open recommendations (40 tenants of 250), the rules spread so
that recommendations fall all along the list. The goal is 2 s; the baseline is the same preview with an empty list
(no rule to check or match: what reading and answering the recommendations alone costs).

Routing per create: what a create spends deciding where its ticket goes (the saved rules read from the store, their
compiled form found by the save's revision, the first matching rule), against the same with no routes saved.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import timed_servicenow
from create_ticket.api import parse_ticket_request, route_request, save, version_of
from create_ticket.api import preview_routes as preview
from shared.services import Services
from shared.tenant_records import DOCUMENT as TENANTS

RULES = 200
PATTERNS = 20
TENANT_COUNT = 40
PER_TENANT = 250
GOAL = 2.0
ROUTED = 2000
ROUNDS = 3


def _control(i: int) -> str:
    """Recommendation i's id: matched by rule i % RULES, by that rule's pattern (i // RULES) % PATTERNS."""
    return f"R{i % RULES:03d}p{(i // RULES) % PATTERNS:02d}_{i}"


def _rules() -> list[dict[str, Any]]:
    return [{"name": f"Team {k}", "match": {"controls": [f"R{k:03d}p{j:02d}_[0-9]+" for j in range(PATTERNS)]},
             "set": {"priority": 1 + k % 5, "dueInDays": 1 + k % 30}} for k in range(RULES)]  # fmt: skip


def _tenant(n: int) -> str:
    return f"{n:08x}-0000-4000-8000-{n:012x}"


def _scored(services: Services) -> None:
    """10,000 open recommendations: the home tenant and 39 customers, 250 scored controls each."""
    i = 0
    for n in range(TENANT_COUNT):
        controls = []
        for rank in range(PER_TENANT):
            controls.append({"id": _control(i), "title": f"Control {i}", "category": "Identity", "service": "AzureAD",
                             "rank": rank, "maxScore": 10, "score": 0, "scored": True, "completed": False,
                             "deprecated": False})  # fmt: skip
            i += 1
        summary = {"secureScore": {"current": 0, "max": 2500}, "refreshedAt": "2026-01-01T00:00:00Z", "history": []}
        services.store.put_secure_score(summary, controls, "" if n == 0 else _tenant(n))
    registered = {_tenant(n): {"id": _tenant(n), "state": "active"} for n in range(1, TENANT_COUNT)}
    services.store.put_document(TENANTS, {"tenants": registered}, None)


def preview_seconds(services: Services, routes: list[dict[str, Any]]) -> float:
    """The median of ROUNDS previews of `routes`."""
    times = []
    for _ in range(ROUNDS):
        started = time.perf_counter()
        answer = preview(services, {"routes": routes})
        times.append(time.perf_counter() - started)
        assert len(answer["recommendations"]) == TENANT_COUNT * PER_TENANT
        assert answer["unmatched"] == (TENANT_COUNT * PER_TENANT if not routes else 0)
    return statistics.median(times)


def routing_seconds(services: Services) -> float:
    """Median seconds of one create's routing decision (ROUTED creates' worth, spread over the rules)."""
    times = []
    for i in range(ROUTED):
        request = parse_ticket_request({"name": "Routed", "recommendation": {"id": _control(i * 7), "source": "user",
                                        "category": "Identity"}}, initiating_user=None)  # fmt: skip
        started = time.perf_counter()
        target, _ = route_request(services, request)
        times.append(time.perf_counter() - started)
        assert target.route is None or target.route["index"] == (i * 7) % RULES
    return statistics.median(times)


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        services = timed_servicenow(Path(tmp)).services
        _scored(services)
        empty = preview_seconds(services, [])
        bare = routing_seconds(services)
        saved = save(services, {"routes": _rules()}, f'"{version_of(None)}"', "bench")
        assert len(saved.routes) == RULES
        full = preview_seconds(services, _rules())
        routed = routing_seconds(services)
        services.close()
    verdict = "within" if full <= GOAL else "OVER"
    print(f"routes: preview of {RULES} rules x {PATTERNS} patterns over {TENANT_COUNT * PER_TENANT} recommendations = "
          f"{full:.2f} s")  # fmt: skip
    print(f"  {verdict} the {GOAL:.2f} s goal; {full / empty:.2f}x the preview of an empty list ({empty:.2f} s)")
    print(f"create: routing per create at {RULES} rules x {PATTERNS} patterns = {routed * 1e6:.0f} us")
    print(f"  {routed / bare:.2f}x routing with no routes saved ({bare * 1e6:.0f} us); medians of {ROUTED} creates")


if __name__ == "__main__":
    main()
