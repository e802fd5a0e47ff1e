"""Ticket creation: ServiceNow requests per create, and the connector's overhead against a bare POST.

Both sides talk to the same simulator over loopback HTTP in the same process and run, so the ratio is
what the connector adds (validation, the store's claim/lease/link writes, response shaping) on top of
the one Table API request it has to make.
"""

from __future__ import annotations

import json
import time

import httpx

from bench.common import connected_rig, summary
from shared.secrets import TOKEN_BUNDLE
from shared.tickets import parse_ticket_request

CREATES = 300


def body(i: int) -> bytes:
    return json.dumps(
        {
            "name": "Require MFA for administrative roles",
            "description": "Why and how ...",
            "priority": "high",
            "dueDate": "2026-12-31",
            "recommendation": {"id": f"Bench{i}", "source": "microsoft", "category": "Identity"},
            "requestedBy": "m365.integration@example.com",
        }
    ).encode()


def main() -> None:
    from shared.auth import LOCAL_CALLER

    with connected_rig() as rig:
        services, simulator = rig.services, rig.simulator
        creator = services.creator

        def create(i: int) -> None:
            request = parse_ticket_request(body(i), initiating_user=None)
            creator.create(request, caller=LOCAL_CALLER, idempotency_key=None)

        create(-1)  # warm: the token and the requester's sys_user lookup are now cached
        before = len(simulator.requests)
        connector: list[float] = []
        for i in range(CREATES):
            started = time.perf_counter()
            create(i)
            connector.append(time.perf_counter() - started)
        per_create = (len(simulator.requests) - before) / CREATES

        token = json.loads(services.secrets.get(TOKEN_BUNDLE) or "{}")["access_token"]
        payload = json.loads(body(0))
        bare: list[float] = []
        with httpx.Client(base_url=rig.instance, headers={"Authorization": f"Bearer {token}"}) as client:
            client.post("/api/now/v2/table/incident", json=payload)  # warm the connection
            for _ in range(CREATES):
                started = time.perf_counter()
                client.post("/api/now/v2/table/incident", json=payload).raise_for_status()
                bare.append(time.perf_counter() - started)

    p50 = sorted(connector)[CREATES // 2] / sorted(bare)[CREATES // 2]
    p99 = sorted(connector)[int(CREATES * 0.99)] / sorted(bare)[int(CREATES * 0.99)]
    print(f"create: {CREATES} tickets, token and requester cached")
    print(f"  ServiceNow requests per create: {per_create:.2f}")
    print(f"  connector create   {summary(connector)}")
    print(f"  bare httpx POST    {summary(bare)}")
    print(f"  ratio connector / bare POST: p50 {p50:.2f}x   p99 {p99:.2f}x")


if __name__ == "__main__":
    main()
