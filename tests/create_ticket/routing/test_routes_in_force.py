"""The routes are read beside the claim, and a create still routes by the rules in force
(docs/architecture.md#the-routes-beside-the-claim): a process whose last read rules are stale follows a save that
committed before its create started, one record made; under a stream of saves from another instance, with real
threads, no create follows rules older than the last save committed before it started; and a creator that dies
between its claim and the routes read leaves a row the next process routes by the rules in force."""

from __future__ import annotations

import threading
import time
from collections import Counter
from typing import Any

import pytest

from create_ticket.api import parse_ticket_request, save, version_of
from create_ticket.creation import creator_for
from create_ticket.routing.document import load
from create_ticket.routing.in_force import UNCONFIRMED
from shared import services as services_module
from shared.auth import LOCAL_CALLER
from shared.services import Services
from tests.conftest import Harness, build_services
from tests.routes_support import (
    SECOND,
    add_second,
    connect_second,
    second_simulator,  # noqa: F401 (the fixture `second`)
    two_instances_transport,  # noqa: F401 (the fixture `transport`)
)

SAVES = 30
CREATORS = 4
CREATES_EACH = 12


def request(control: str) -> Any:
    body = {"name": f"Fix {control}", "recommendation": {"id": control, "source": "microsoft", "category": "Identity"}}
    return parse_ticket_request(body, initiating_user=None)


def another_instance(harness: Harness) -> Services:
    """A second connector process on the same store, secrets and simulators: its own memory of the routes."""
    return build_services(harness.tmp, harness.transport, harness.clock, harness.sleeps)


def save_routes(services: Services, routes: list[dict[str, Any]]) -> None:
    save(services, {"routes": routes}, f'"{version_of(load(services.store).etag)}"', "admin@contoso.com")


def test_a_create_follows_a_save_committed_before_it_started_though_its_process_read_older_rules(connected, second):
    add_second(connected, second)
    connect_second(connected)
    save_routes(connected.services, [{"set": {"fields": {"subcategory": "first"}}}])
    instance = another_instance(connected)
    creator = creator_for(instance)
    _, made = creator.create(request("Warm"), caller=LOCAL_CALLER, idempotency_key=None)
    assert made  # this process has read the first rules: its next create starts from them
    save_routes(connected.services, [{"name": "Fabrikam", "set": {"connection": SECOND}}])  # another instance's PUT

    ticket, made = creator.create(request("AdminMFAV2"), caller=LOCAL_CALLER, idempotency_key=None)

    assert made and ticket.connection == SECOND and ticket.route is not None and ticket.route["name"] == "Fabrikam"
    assert [r["correlation_id"] for r in second.records()] == ["m365sec:AdminMFAV2"]
    assert [r["correlation_id"] for r in connected.simulator.records()] == ["m365sec:Warm"]  # nothing on the old one
    stored = connected.services.store.get_ticket(ticket.id)[0]
    assert stored.sys_id == second.records()[0]["sys_id"] and UNCONFIRMED not in stored.extra
    again, made = creator.create(request("AdminMFAV2"), caller=LOCAL_CALLER, idempotency_key=None)
    assert not made and again.id == ticket.id and len(second.records()) == 1
    instance.close()


def test_no_create_follows_rules_older_than_the_last_save_committed_before_it_started(connected):
    """One instance saves the routes 30 times, each save naming itself in the field it sets; another instance's four
    threads create tickets meanwhile. Each create notes the last save committed before it started; its record must
    carry that save or a later one."""
    saver, creating = connected.services, another_instance(connected)
    committed, created = [-1], [0]
    done = threading.Event()
    start, counting = threading.Barrier(CREATORS + 1), threading.Lock()

    def saves() -> None:
        try:
            start.wait()
            for n in range(SAVES):
                save_routes(saver, [{"set": {"fields": {"subcategory": f"save{n}"}}}])
                committed[0] = n  # after the commit: a create that starts later must follow save n or a later one
                seen = created[0]
                while created[0] == seen and created[0] < CREATORS * CREATES_EACH:  # a create between two saves
                    time.sleep(0.001)
        finally:
            done.set()

    def creates(k: int) -> list[tuple[int, str, str | None]]:
        creator, seen = creator_for(creating), []
        start.wait()
        for i in range(CREATES_EACH):
            before = committed[0]
            ticket, made = creator.create(request(f"C{k}_{i}"), caller=LOCAL_CALLER, idempotency_key=None)
            assert made
            field = str(ticket.route["set"]["fields"]["subcategory"]) if ticket.route else ""
            seen.append((before, field, ticket.sys_id))
            with counting:
                created[0] += 1
        return seen

    save_routes(saver, [{"set": {"fields": {"subcategory": "before"}}}])
    creator_for(creating).create(request("Warm"), caller=LOCAL_CALLER, idempotency_key=None)  # rules read: stale soon
    saving = threading.Thread(target=saves)
    results: dict[int, list[tuple[int, str, str | None]]] = {}
    threads = [threading.Thread(target=lambda k=k: results.__setitem__(k, creates(k))) for k in range(CREATORS)]
    saving.start()
    for thread in threads:
        thread.start()
    for thread in [saving, *threads]:
        thread.join(120)
    assert done.is_set() and len(results) == CREATORS
    seen = [entry for k in range(CREATORS) for entry in results[k]]
    followed = [(before, int(field.removeprefix("save")) if field.startswith("save") else -1) for before, field, _ in
                seen]  # fmt: skip
    assert [(b, f) for b, f in followed if f < b] == [], "a create followed rules older than a save before it"
    records = {r["sys_id"]: r for r in connected.simulator.records()}
    assert Counter(r["correlation_id"] for r in records.values()).most_common(1)[0][1] == 1
    assert all(records[sys_id]["subcategory"] == field for _, field, sys_id in seen)  # the record is what the row says
    assert len({field for _, field, _ in seen}) > 1  # the saves really interleaved with the creates
    creating.close()


class Crash(BaseException):
    """The process dies: nothing in the connector catches this."""


@pytest.mark.parametrize("saved_meanwhile", [True, False], ids=["routes-changed", "routes-unchanged"])
def test_a_creator_that_dies_before_the_routes_read_leaves_a_row_the_next_process_routes_by_the_rules_in_force(
    connected, second, azurite, saved_meanwhile
):
    """On Table Storage: the routes read's answer never reaches a creator that dies (after its claim, row and lease
    were written, and before it settled the route). Meanwhile the rules had moved the recommendation to another
    connection (or, unchanged, kept it where the row says). The next process, once the lease and the in-doubt window
    have passed, looks the record up where the row says, finds nothing, and makes it where the rules in force send
    it: once."""
    from azure.data.tables import TableServiceClient

    from shared.store.tables import TableTicketStore

    add_second(connected, second)
    connect_second(connected)
    armed = threading.Event()

    def die_on_the_routes_answer(response: Any) -> None:
        if armed.is_set() and response.http_request.url.endswith("RowKey='routes')"):
            armed.clear()
            raise Crash()

    service = TableServiceClient.from_connection_string(azurite, raw_response_hook=die_on_the_routes_answer)
    for table in service.list_tables():
        service.delete_table(table.name)
    store = TableTicketStore(service)
    store.put_document("connections", connected.services.store.get_document("connections")[0], None)
    dying = Services(connected.services.settings, transport=connected.transport, store=store,
                     secrets=connected.services.secrets, clock=connected.clock, sleep=connected.sleeps)  # fmt: skip
    save_routes(dying, [{"set": {"fields": {"subcategory": "first"}}}])
    creator_for(dying).create(request("Warm"), caller=LOCAL_CALLER, idempotency_key=None)
    if saved_meanwhile:
        save_routes(dying, [{"name": "Fabrikam", "set": {"connection": SECOND}}])  # committed before the create starts
    armed.set()
    with pytest.raises(Crash):
        creator_for(dying).create(request("AdminMFAV2"), caller=LOCAL_CALLER, idempotency_key=None)
    (left,) = [t for t, _ in store.list_pending_tickets()]
    assert left.connection == "" and UNCONFIRMED in left.extra  # routed by the stale rules, unconfirmed
    assert [r["correlation_id"] for r in connected.simulator.records()] == ["m365sec:Warm"] and second.records() == []

    following = Services(connected.services.settings, transport=connected.transport,
                         store=TableTicketStore(TableServiceClient.from_connection_string(azurite)),
                         secrets=connected.services.secrets, clock=connected.clock, sleep=connected.sleeps)  # fmt: skip
    services_module.install(following)
    connected.clock.advance(minutes=3)  # the dead creator's lease and its in-doubt window have passed
    ticket, made = creator_for(following).create(request("AdminMFAV2"), caller=LOCAL_CALLER, idempotency_key=None)

    made_there, made_here = (second, connected.simulator) if saved_meanwhile else (connected.simulator, second)
    assert not made and ticket.id == left.id and ticket.connection == (SECOND if saved_meanwhile else "")
    assert [r["correlation_id"] for r in made_there.records()] == [*(["m365sec:Warm"] * (not saved_meanwhile)),
                                                                   "m365sec:AdminMFAV2"]  # fmt: skip
    assert [r["correlation_id"] for r in made_here.records()] == ["m365sec:Warm"] * saved_meanwhile
    found = following.store.get_ticket(ticket.id)
    assert found is not None
    stored = found[0]
    assert UNCONFIRMED not in stored.extra and stored.sys_id == ticket.sys_id
    assert stored.route is not None
    assert stored.route["set"] == ({"connection": SECOND} if saved_meanwhile else
                                   {"connection": "default", "fields": {"subcategory": "first"}})  # fmt: skip
    services_module.install(connected.services)
