"""A create's route while it is unconfirmed (docs/architecture.md#the-routes-beside-the-claim): a rerouted create counts
its lease and window of doubt from its rewrite, not from its claim, so a repeat during its slow POST posts nothing; a
routes read that fails or outlasts a store call leaves the row pending and unconfirmed, and the next repeat in the
process finishes it at once where the rules in force say; the mark a row keeps meanwhile fits Table Storage with a
4000-character non-ASCII description; and a row left unconfirmed on a connection removed since is made where the rules
in force say, not stranded."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from create_ticket.api import parse_ticket_request
from create_ticket.creation import creator_for
from create_ticket.routing import in_force
from create_ticket.routing.in_force import UNCONFIRMED
from oauth_callback.connections import remove_connection
from shared import services as services_module
from shared.auth import LOCAL_CALLER
from shared.problems import Conflict, StoreUnavailable
from shared.services import Services
from shared.tickets import Ticket
from tests.conftest import Harness
from tests.create_ticket.routing.test_routes_in_force import Crash, another_instance, save_routes
from tests.routes_support import (
    SECOND,
    SECOND_INSTANCE,
    add_second,
    connect_second,
    second_simulator,  # noqa: F401 (the fixture `second`)
    two_instances_transport,  # noqa: F401 (the fixture `transport`)
)

ROUTES_READ = "RowKey='routes')"  # the end of the routes document's URL on Table Storage


def request(control: str, category: str = "Identity", description: str = "", requested_by: str | None = None) -> Any:
    body: dict[str, Any] = {"name": f"Fix {control}", "description": description,
                            "recommendation": {"id": control, "source": "microsoft", "category": category}}  # fmt: skip
    if requested_by:
        body["requestedBy"] = requested_by
    return parse_ticket_request(body, initiating_user=None)


def on_tables(harness: Harness, azurite: str, *, fresh: bool = False, **options: Any) -> Services:
    """Another connector process on Azurite (`fresh`: its tables emptied, the connections document copied in);
    `options` go to the SDK client (hooks on the wire, its retries)."""
    from azure.data.tables import TableServiceClient

    from shared.store.tables import TableTicketStore

    service = TableServiceClient.from_connection_string(azurite, **options)
    store = TableTicketStore(service)
    if fresh:
        for table in service.list_tables():
            service.delete_table(table.name)
        connections = harness.services.store.get_document("connections")
        if connections is not None:
            store.put_document("connections", connections[0], None)
    return Services(harness.services.settings, transport=harness.transport, store=store,
                    secrets=harness.services.secrets, clock=harness.clock, sleep=harness.sleeps)  # fmt: skip


def pending(services: Services) -> list[Ticket]:
    return [t for t, _ in services.store.list_pending_tickets()]


def test_a_rerouted_create_counts_its_lease_and_window_of_doubt_from_its_rewrite(connected, second):
    """A stale process claims on default; the routes in force send the control to fabrikam, so it rewrites its row
    there after looking its requester up on fabrikam (slow: 100 s), then posts. While that POST runs in ServiceNow
    (30 s), a repeat on another instance must find the row held: counted from the claim, the lease and the window of
    doubt would both have passed, and the repeat would post a second record."""
    add_second(connected, second)
    connect_second(connected)
    save_routes(connected.services, [{"set": {}}])
    stale = another_instance(connected)
    creator_for(stale).create(request("Warm", requested_by="admin@contoso.com"), caller=LOCAL_CALLER,
                              idempotency_key=None)  # fmt: skip
    save_routes(connected.services, [{"set": {"connection": SECOND}}])
    repeat = another_instance(connected)
    repeat.creation_wait = 0.2  # its answer while the row is held: at once
    slowed = {"lookup": False, "post": False}
    answers: list[Any] = []

    def slow(sent: Any) -> None:
        if "/sys_user" in sent.url and not slowed["lookup"]:
            slowed["lookup"] = True
            connected.clock.advance(seconds=100)  # the requester lookup on fabrikam was slow (its retries)
        elif sent.method == "POST" and "/incident" in sent.url and not slowed["post"]:
            slowed["post"] = True
            connected.clock.advance(seconds=30)  # this POST is still running in ServiceNow meanwhile
            try:
                answers.append(creator_for(repeat).create(request("Dup", requested_by="admin@contoso.com"),
                                                          caller=LOCAL_CALLER, idempotency_key=None))  # fmt: skip
            except Conflict as exc:
                answers.append(exc)

    second.before_request = slow
    ticket, made = creator_for(stale).create(request("Dup", requested_by="admin@contoso.com"), caller=LOCAL_CALLER,
                                             idempotency_key=None)  # fmt: skip
    second.before_request = None

    assert slowed == {"lookup": True, "post": True}
    assert made and ticket.connection == SECOND
    assert [r["correlation_id"] for r in second.records()].count("m365sec:Dup") == 1
    (answer,) = answers
    assert isinstance(answer, Conflict) and answer.status == 409 and answer.extra["ticketId"] == ticket.id
    stale.close()
    repeat.close()


def test_a_routes_read_that_fails_beside_the_claim_leaves_the_row_for_the_next_repeat(connected, second, azurite):
    """Only the routes read answers 503: the create is 503 `store_unavailable`, its row stays pending and unconfirmed
    (nothing posted), and the next repeat in the same process takes it over at once (no wait for the lease) and makes
    it where the rules in force say, once."""
    add_second(connected, second)
    connect_second(connected)
    armed = threading.Event()

    def unavailable_routes(response: Any) -> None:
        if armed.is_set() and response.http_request.url.endswith(ROUTES_READ):
            response.http_response.status_code = 503

    process = on_tables(connected, azurite, fresh=True, raw_response_hook=unavailable_routes, retry_total=0)
    other = on_tables(connected, azurite)  # another instance, which saves the routes
    save_routes(process, [{"set": {}}])
    creator_for(process).create(request("Warm"), caller=LOCAL_CALLER, idempotency_key=None)  # its rules read
    save_routes(other, [{"name": "Fabrikam", "set": {"connection": SECOND}}])
    armed.set()
    with pytest.raises(StoreUnavailable) as failed:
        creator_for(process).create(request("AdminMFAV2"), caller=LOCAL_CALLER, idempotency_key=None)
    armed.clear()
    assert failed.value.status == 503 and failed.value.code == "store_unavailable"
    (left,) = pending(other)
    assert left.connection == "" and UNCONFIRMED in left.extra and left.lease_until is not None
    assert [r["correlation_id"] for r in connected.simulator.records()] == ["m365sec:Warm"] and second.records() == []

    started = time.monotonic()
    ticket, made = creator_for(process).create(request("AdminMFAV2"), caller=LOCAL_CALLER, idempotency_key=None)

    assert time.monotonic() - started < 5  # taken over at once, not after the lease (or a 409 after 25 s)
    assert not made and ticket.id == left.id and ticket.connection == SECOND
    assert [r["correlation_id"] for r in second.records()] == ["m365sec:AdminMFAV2"]
    assert [r["correlation_id"] for r in connected.simulator.records()] == ["m365sec:Warm"]
    found = other.store.get_ticket(ticket.id)
    assert found is not None and found[0].sys_id == ticket.sys_id and UNCONFIRMED not in found[0].extra
    process.close()


def test_a_routes_read_that_outlasts_a_store_call_is_store_unavailable(connected, azurite, monkeypatch):
    """The wait for the read beside the claim is bounded by one store call's deadline (shortened here): past it the
    create is 503 `store_unavailable`, nothing is posted, and the next repeat in the process finishes the row."""
    monkeypatch.setattr(in_force, "TOTAL_TIMEOUT", 0.5)
    armed = threading.Event()

    def slow_routes(sent: Any) -> None:
        if armed.is_set() and sent.http_request.url.endswith(ROUTES_READ):
            time.sleep(2)

    process = on_tables(connected, azurite, fresh=True, raw_request_hook=slow_routes)
    save_routes(process, [{"set": {}}])
    creator_for(process).create(request("Warm"), caller=LOCAL_CALLER, idempotency_key=None)
    armed.set()
    with pytest.raises(StoreUnavailable) as failed:
        creator_for(process).create(request("Slow"), caller=LOCAL_CALLER, idempotency_key=None)
    armed.clear()
    assert failed.value.code == "store_unavailable" and failed.value.retry_after
    (left,) = pending(process)
    assert UNCONFIRMED in left.extra
    assert [r["correlation_id"] for r in connected.simulator.records()] == ["m365sec:Warm"]
    ticket, made = creator_for(process).create(request("Slow"), caller=LOCAL_CALLER, idempotency_key=None)
    assert not made and ticket.id == left.id and ticket.sys_id
    assert [r["correlation_id"] for r in connected.simulator.records()] == ["m365sec:Warm", "m365sec:Slow"]
    process.close()


def test_a_long_non_ascii_description_is_created_on_table_storage(connected, azurite):
    """4000 characters of Japanese, valid input: the unconfirmed row keeps the description once (in its record), so
    the row fits Table Storage's 64 KiB property; and the record carries the description whole."""
    process = on_tables(connected, azurite, fresh=True)
    save_routes(process, [{"set": {}}])
    creator_for(process).create(request("Warm"), caller=LOCAL_CALLER, idempotency_key=None)  # rules read: speculates
    text = "日本語の説明" * 666 + "説明日本"
    assert len(text) == 4000

    ticket, made = creator_for(process).create(request("Long", description=text), caller=LOCAL_CALLER,
                                               idempotency_key=None)  # fmt: skip

    assert made and ticket.sys_id
    (record,) = [r for r in connected.simulator.records() if r["correlation_id"] == "m365sec:Long"]
    assert str(record["description"]).startswith(text[:3800])
    process.close()


def test_a_row_left_unconfirmed_on_a_connection_removed_since_is_made_where_the_rules_in_force_say(
    connected, second, azurite
):
    """Stale rules send a Data control to fabrikam; another instance saves "everything to default" and removes
    fabrikam (its fence, its open-ticket check, its disconnect) just before the stale create's claim lands; the
    creator dies before the routes read answers. The row is unconfirmed on a connection that is gone: the next
    repeat makes it on default, once, with its description, instead of `not_configured` for ever."""
    add_second(connected, second)
    connect_second(connected)
    armed = threading.Event()
    removal: dict[str, Any] = {}

    def remove_before_the_claim(sent: Any) -> None:
        if armed.is_set() and sent.http_request.url.endswith("$batch") and not removal:
            removal["answer"] = remove_connection(following, SECOND, force=True)

    def die_on_the_routes_answer(response: Any) -> None:
        if armed.is_set() and response.http_request.url.endswith(ROUTES_READ):
            raise Crash()

    dying = on_tables(connected, azurite, fresh=True, raw_request_hook=remove_before_the_claim,
                      raw_response_hook=die_on_the_routes_answer)  # fmt: skip
    following = on_tables(connected, azurite)
    services_module.install(following)
    try:
        save_routes(dying, [{"match": {"categories": ["Data"]}, "set": {"connection": SECOND}}, {"set": {}}])
        creator_for(dying).create(request("Warm"), caller=LOCAL_CALLER, idempotency_key=None)  # rules read
        save_routes(following, [{"set": {}}])  # nothing names fabrikam any more: its removal may go ahead
        armed.set()
        with pytest.raises(Crash):
            creator_for(dying).create(request("DataLoss", "Data", "Classify the data."), caller=LOCAL_CALLER,
                                      idempotency_key=None)  # fmt: skip
        armed.clear()
        assert removal["answer"]["removed"] is True
        (left,) = pending(following)
        assert left.instance == SECOND_INSTANCE and UNCONFIRMED in left.extra
        connected.clock.advance(minutes=5)  # the dead creator's lease and its window of doubt have passed

        ticket, made = creator_for(following).create(request("DataLoss", "Data", "Classify the data."),
                                                     caller=LOCAL_CALLER, idempotency_key=None)  # fmt: skip

        assert not made and ticket.id == left.id and ticket.connection == "" and ticket.sys_id
        (record,) = [r for r in connected.simulator.records() if r["correlation_id"] == "m365sec:DataLoss"]
        assert str(record["description"]).startswith("Classify the data.\n---\nRecommendation: DataLoss\n")
        assert second.records() == []
        again, made = creator_for(following).create(request("DataLoss", "Data", "Classify the data."),
                                                    caller=LOCAL_CALLER, idempotency_key=None)  # fmt: skip
        assert not made and again.id == ticket.id and len(connected.simulator.records()) == 2
    finally:
        services_module.install(connected.services)


def test_a_reroute_the_store_fails_under_is_taken_over_by_the_next_repeat_at_once(connected, second, azurite):
    """A row left unconfirmed by a dead creator; the routes moved it to fabrikam; the repeat that takes it over
    meets the store failing as it rewrites the row there. Its process's next repeat takes the row over at once (the
    lease it left is remembered) and makes it on fabrikam, once; before, it waited out the lease (409)."""
    from azure.core.exceptions import ServiceRequestError

    add_second(connected, second)
    connect_second(connected)
    armed = threading.Event()

    def die_on_the_routes_answer(response: Any) -> None:
        if armed.is_set() and response.http_request.url.endswith(ROUTES_READ):
            armed.clear()
            raise Crash()

    dying = on_tables(connected, azurite, fresh=True, raw_response_hook=die_on_the_routes_answer)
    save_routes(dying, [{"set": {}}])
    creator_for(dying).create(request("Warm"), caller=LOCAL_CALLER, idempotency_key=None)
    save_routes(dying, [{"name": "Fabrikam", "set": {"connection": SECOND}}])
    armed.set()
    with pytest.raises(Crash):
        creator_for(dying).create(request("AdminMFAV2"), caller=LOCAL_CALLER, idempotency_key=None)
    (left,) = pending(dying)
    writes: list[str] = []

    def cut_at_the_rewrite(sent: Any) -> None:
        """The repeat's ticket writes are transactions: its begin (refused: the claim is held), the lease it takes,
        then the rewrite for fabrikam, which never reaches the store."""
        if sent.http_request.url.endswith("$batch"):
            writes.append(sent.http_request.method)
            if len(writes) == 3:
                raise ServiceRequestError("the connection to the store was cut")

    following = on_tables(connected, azurite, raw_request_hook=cut_at_the_rewrite, retry_total=0)
    following.creation_wait = 0.5  # a row held by another worker: 409 at once
    services_module.install(following)
    try:
        connected.clock.advance(minutes=3)  # the dead creator's lease and its window of doubt have passed
        with pytest.raises(StoreUnavailable):
            creator_for(following).create(request("AdminMFAV2"), caller=LOCAL_CALLER, idempotency_key=None)
        assert second.records() == []

        ticket, made = creator_for(following).create(request("AdminMFAV2"), caller=LOCAL_CALLER, idempotency_key=None)

        assert not made and ticket.id == left.id and ticket.connection == SECOND
        assert [r["correlation_id"] for r in second.records()] == ["m365sec:AdminMFAV2"]
        assert [r["correlation_id"] for r in connected.simulator.records()] == ["m365sec:Warm"]
    finally:
        services_module.install(connected.services)
        following.close()


def test_closing_the_services_stops_their_routes_reading_threads(connected):
    instance = another_instance(connected)
    creator_for(instance).create(request("Warm"), caller=LOCAL_CALLER, idempotency_key=None)  # reads first
    before = set(threading.enumerate())
    creator_for(instance).create(request("Next"), caller=LOCAL_CALLER, idempotency_key=None)  # reads beside its claim
    readers = [t for t in set(threading.enumerate()) - before if t.name.startswith("routes-in-force")]
    assert readers

    instance.close()

    assert not [t for t in readers if t.is_alive()]
