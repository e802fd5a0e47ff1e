"""A notice storm: push notices are hints, so no order, replay, equal timestamp or forged time can move a ticket
away from what ServiceNow says, or leave a recommendation with two open records."""

from __future__ import annotations

import json
import random
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from shared.secrets import WEBHOOK_SECRET
from shared.tickets import CLOSED_STATUSES
from tests.conftest import Harness
from tests.create_ticket.test_exactly_once import body_for
from tests.create_ticket.test_tickets import post
from tests.status_sync.test_events import SECRET, notify
from tests.status_sync.test_sync import STATUS

TICKETS = 50
NOTICES = 1000
OPEN_STATES = ("1", "2", "3")


def test_a_storm_of_notices_leaves_every_ticket_equal_to_servicenow(connected: Harness) -> None:
    harness = connected
    sim = harness.simulator
    rng = random.Random(20261126)
    harness.services.secrets.set(WEBHOOK_SECRET, SECRET)
    latest: dict[str, dict[str, Any]] = {}  # recommendation -> its newest ticket (the one agents work on)
    for i in range(TICKETS):
        status, ticket = post(harness, body_for(f"Storm{i}"))
        assert status == 201
        latest[f"Storm{i}"] = ticket
    sent: list[dict[str, Any]] = []  # every notice a business rule sent, for replays
    queue: list[dict[str, Any]] = []
    outcomes: Counter[int] = Counter()
    results: Counter[str] = Counter()
    delivered = 0

    def notice(ticket: dict[str, Any], *, forged: bool = False) -> dict[str, Any]:
        record = sim.tables["incident"][ticket["sysId"]]
        return {"sys_id": ticket["sysId"], "table": "incident", "number": ticket["number"],
                "state": rng.choice("12367") if forged else record["state"],
                "sys_updated_on": "2099-01-01 00:00:00" if forged else record["sys_updated_on"],
                "correlation_id": record["correlation_id"]}  # fmt: skip

    def change(ticket: dict[str, Any], state: str) -> None:
        sim.update("incident", ticket["sysId"], state=state)
        made = notice(ticket)
        sent.append(made)
        queue.append(made)

    def deliver(batch: list[dict[str, Any]]) -> None:
        def one(item: dict[str, Any]) -> tuple[int, str]:
            status, body = notify(harness, item)
            return status, str(body.get("result") or body.get("code"))

        with ThreadPoolExecutor(8) as pool:
            for status, result in pool.map(one, batch):
                outcomes[status] += 1
                results[result] += 1

    while delivered < NOTICES:
        harness.clock.advance(seconds=rng.choice([0, 1, 1, 2]))  # 0: changes that share a second
        for _ in range(rng.randint(3, 8)):
            rec = rng.choice(sorted(latest))
            ticket = latest[rec]
            current = sim.tables["incident"][ticket["sysId"]]["state"]
            if current in ("7", "8"):
                if rng.random() < 0.5:  # a new ticket for the recommendation, through the API
                    status, made = post(harness, body_for(rec))
                    assert status in (200, 201), made
                    if status == 201:
                        latest[rec] = made
                continue
            change(ticket, rng.choice(["2", "3", "6", "7", "2"] if current != "6" else ["2", "7"]))  # 6 -> 2: reopen
            if rng.random() < 0.3:
                change(ticket, rng.choice(["2", "6", "7"]))  # a second change in the same second
        extras = [dict(rng.choice(sent)) for _ in range(rng.randint(0, 4))]  # replays, any age
        extras += [notice(rng.choice(list(latest.values())), forged=True) for _ in range(rng.randint(0, 2))]
        batch = queue + extras
        rng.shuffle(batch)
        take = rng.randint(max(1, len(batch) // 3), len(batch))  # some wait for a later delivery
        queue[:] = [n for n in batch[take:] if n in queue]
        batch = batch[:take][: NOTICES - delivered]
        deliver(batch)
        delivered += len(batch)
    deliver(list(queue))  # whatever was still in flight arrives last
    delivered += len(queue)

    assert outcomes[500] == 0 and set(outcomes) <= {200, 202}, outcomes
    store = {t.sys_id: t for t, _ in harness.services.store.list_tickets()}
    records = sim.records()
    for record in records:
        held = store[record["sys_id"]]
        assert (held.status, held.servicenow_state) == (STATUS[record["state"]], record["state"]), record["number"]
    open_records = Counter(r["correlation_id"] for r in records if STATUS[r["state"]] not in CLOSED_STATUSES)
    assert max(open_records.values(), default=0) <= 1, open_records
    open_tickets = Counter(t.recommendation_id for t in store.values() if t.is_open)
    assert max(open_tickets.values(), default=0) <= 1, open_tickets
    assert all(t.error is None for t in store.values())
    print(json.dumps({"notices": delivered, "records": len(records), "results": results, "statuses": outcomes}))
