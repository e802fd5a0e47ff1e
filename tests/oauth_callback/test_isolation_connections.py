"""Issue 25, items 2, 7 and 9: a connection is its instance (an id removed and added again for another instance
inherits nothing), each connection signs its push notices with its own key, and a routes save and a connection
removal that race conflict (the later sees the other's write). Over three simulated ServiceNow instances and the
Graph simulator; the races are driven by the simulator's 'hold' fault, not by guessed sleeps."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import pytest

from create_ticket.creation import creator_for
from create_ticket.fill import complete_request
from create_ticket.request import parse_ticket_request
from dev.servicenow import Fault, ServiceNowSimulator
from shared import services as services_module
from shared.auth import Caller
from shared.problems import NotFound
from shared.secrets import CLIENT_SECRET, WEBHOOK_SECRET
from status_sync.events import sign
from status_sync.every import sync_every_connection
from tests.conftest import REDIRECT_URI, Clock, Harness, build_services
from tests.isolation_support import Instances
from tests.oauth_callback.test_connections import SECOND, SECOND_CLIENT, SECOND_SECRET, add, connect, listed
from tests.routes_support import get_routes, put_routes, saved

CONTROL = "AdminMFAV2"
THIRD = "https://third.service-now.com"
THIRD_CLIENT = "0f9e8d7c6b5a49382716a5b4c3d2e1f0"
THIRD_SECRET = "third-client-secret-1a2b3c4d"


def body(response: Any) -> Any:
    return json.loads(response.get_body())


@pytest.fixture
def second(clock: Clock) -> ServiceNowSimulator:
    sim = ServiceNowSimulator(SECOND, clock=clock.epoch)
    sim.register_client(SECOND_CLIENT, SECOND_SECRET, [REDIRECT_URI])
    sim.auto_approve = True
    return sim


@pytest.fixture
def third(clock: Clock) -> ServiceNowSimulator:
    sim = ServiceNowSimulator(THIRD, clock=clock.epoch)
    sim.register_client(THIRD_CLIENT, THIRD_SECRET, [REDIRECT_URI])
    sim.auto_approve = True
    return sim


@pytest.fixture
def three(connected: Harness, second: ServiceNowSimulator, third: ServiceNowSimulator) -> Iterator[Harness]:
    """The connected app on a network with three instances; `fabrikam` added (on the second) and connected."""
    transport = Instances(connected.simulator, second, third)
    connected.services.close()
    services_module.install(build_services(connected.tmp, transport, connected.clock, connected.sleeps,
                                           connected.graph))  # fmt: skip
    connected.services = services_module.get_services()
    connected.transport = transport  # type: ignore[assignment]
    assert add(connected).status_code == 201
    assert connect(connected, "fabrikam").status_code == 200
    yield connected


def _remove(harness: Harness, connection: str = "fabrikam") -> Any:
    return harness.call("remove_connection", "DELETE", f"/connections/{connection}", route_params={"id": connection})


# -- item 2: an id removed and added again for another instance inherits nothing -----------------------------


def test_an_id_added_again_for_another_instance_inherits_nothing_of_the_old_one(three, second, third):
    assert three.call("refresh_recommendations", "POST", "/recommendations/refresh").status_code == 200
    saved(three, [{"match": {"controls": [CONTROL]}, "set": {"connection": "fabrikam"}}])
    draft = parse_ticket_request({"recommendation": {"id": CONTROL}}, initiating_user=None)
    old, _ = creator_for(three.services).create(complete_request(three.services, draft), caller=Caller("test"),
                                                idempotency_key=None)  # fmt: skip
    assert old.connection == "fabrikam" and old.instance == SECOND
    saved(three, [])
    three.graph.complete(CONTROL)
    three.call("refresh_recommendations", "POST", "/recommendations/refresh")  # resolves it on the second instance
    three.clock.advance(minutes=5)
    sync_every_connection(three.services)
    assert listed(three)["fabrikam"]["lastSync"] is not None
    removed = _remove(three)
    assert removed.status_code == 200 and body(removed)["removed"] is True, removed.get_body()
    assert three.services.store.get_document("sync-state:fabrikam") is None  # its watermark and sweep went with it

    again = add(three, instance=THIRD, clientId=THIRD_CLIENT, clientSecret=THIRD_SECRET)
    assert again.status_code == 201, again.get_body()
    # New names for its secrets (a vault keeps the old ones reserved) and its sync state, never the earlier ones.
    assert three.services.secrets.get(f"{CLIENT_SECRET}-fabrikam") is None
    renamed = three.services.connection_named("fabrikam")
    assert len(renamed.tag) == 32 and three.services.secrets.get(renamed.client_secret_name) == THIRD_SECRET
    assert renamed.sync_state_name == f"sync-state:fabrikam:{renamed.tag}"
    shown = body(again)
    assert (shown["instance"], shown["lastSync"], shown["state"]) == (THIRD, None, "not_connected")
    assert connect(three, "fabrikam").status_code == 200
    assert listed(three)["fabrikam"]["state"] == "connected"

    three.graph.regress(CONTROL)
    three.clock.advance(hours=4)
    third.requests.clear()
    three.call("refresh_recommendations", "POST", "/recommendations/refresh")
    three.clock.advance(minutes=5)
    sync_every_connection(three.services)
    asked = [r.url for r in third.requests]
    assert not any(str(old.sys_id) in url for url in asked), asked  # nothing sent to the new instance for it
    assert not any(r.method in ("PATCH", "POST") and "/api/now/" in r.url for r in third.requests)
    tickets = {t.id: t for t, _ in three.services.store.list_tickets()}
    assert tickets[old.id].status == "resolved" and tickets[old.id].instance == SECOND  # untouched, not "missing"
    (new,) = [t for t in tickets.values() if t.id != old.id]  # the regression got a new ticket, as routes say now
    assert new.is_open and new.connection == "" and new.sys_id in {r["sys_id"] for r in three.simulator.records()}
    with pytest.raises(NotFound, match="connection is gone"):
        three.services.for_ticket(tickets[old.id])


# -- item 7: each connection's own push-notice key ----------------------------------------------------------


def _notify(harness: Harness, sys_id: str, key: str, connection: str | None = None) -> tuple[int, Any]:
    payload = json.dumps({"sys_id": sys_id, "table": "incident"}).encode()
    timestamp = str(int(harness.clock.epoch()))
    headers = {"X-ServiceNow-Timestamp": timestamp, "X-ServiceNow-Signature": sign(key, timestamp, payload),
               "Content-Type": "application/json"}  # fmt: skip
    response = harness.call("servicenow_events", "POST", "/servicenow/events", body=payload, headers=headers,
                            params={"connection": connection} if connection else None)  # fmt: skip
    return response.status_code, body(response)


def test_each_connection_signs_its_notices_with_its_own_key(three, second):
    default_key = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="
    three.services.secrets.set(WEBHOOK_SECRET, default_key)  # the default connection's, as before connections
    own = three.services.secrets.get(f"{WEBHOOK_SECRET}-fabrikam")
    assert own and own != default_key  # minted when the connection was added
    shown = listed(three)["fabrikam"]["push"]
    assert shown == {"url": "/api/servicenow/events?connection=fabrikam", "secretName": f"{WEBHOOK_SECRET}-fabrikam"}
    assert own not in json.dumps(listed(three)) and listed(three)["default"]["push"]["url"] == "/api/servicenow/events"
    saved(three, [{"set": {"connection": "fabrikam"}}])
    payload = {"name": "On the second", "recommendation": {"id": "Pushed", "source": "user", "category": "Identity"}}
    created = three.call("create_ticket", "POST", "/tickets", body=json.dumps(payload).encode())
    ticket = body(created)
    assert created.status_code == 201 and ticket["connection"] == "fabrikam"
    second.update("incident", ticket["sysId"], state="2")
    second.requests.clear()
    # The default connection's key (held by the default instance's admin) moves nothing on another connection.
    assert _notify(three, ticket["sysId"], default_key, "fabrikam")[0] == 401
    assert _notify(three, ticket["sysId"], default_key) == (202, {"result": "unknown"})
    assert _notify(three, ticket["sysId"], own, "nope")[0] == 401
    assert second.requests == []  # not even read
    assert body(three.call("get_ticket", route_params={"id": ticket["id"]}))["status"] == "new"
    assert _notify(three, ticket["sysId"], own, "fabrikam") == (200, {"result": "updated"})
    assert body(three.call("get_ticket", route_params={"id": ticket["id"]}))["status"] == "in_progress"


def test_a_removed_connections_push_key_goes_with_it_and_an_existing_default_needs_no_new_step(three):
    assert three.services.secrets.get(f"{WEBHOOK_SECRET}-fabrikam")
    assert _remove(three).status_code == 200
    assert three.services.secrets.get(f"{WEBHOOK_SECRET}-fabrikam") is None
    assert three.services.secrets.get(f"{CLIENT_SECRET}-fabrikam") is None
    assert _notify(three, "a" * 32, "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=", "fabrikam")[0] == 401
    key = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="
    three.services.secrets.set(WEBHOOK_SECRET, key)
    assert _notify(three, "a" * 32, key) == (202, {"result": "unknown"})  # the default's URL and key, as before


# -- item 9: a routes save and a connection removal conflict --------------------------------------------------


def test_a_routes_save_that_checked_a_connection_before_its_removal_is_refused_after_it(three):
    """The save checks its rules (fabrikam exists), then looks a group of another rule up in the default instance
    (held there); meanwhile fabrikam is removed; then the save writes."""
    hold = Fault("hold", method="GET", path_prefix="/api/now/v2/table/sys_user_group", seconds=30)
    three.simulator.inject(hold)
    version = get_routes(three).headers["ETag"]
    rules = [{"name": "Fabrikam", "set": {"connection": "fabrikam"}},
             {"name": "Identity", "set": {"assignmentGroup": "Identity and Access Management"}}]  # fmt: skip
    outcome: dict[str, Any] = {}
    saving = threading.Thread(target=lambda: outcome.update(put=put_routes(three, rules, if_match=version)))
    saving.start()
    assert hold.arrived.wait(30)  # the save has checked that fabrikam exists and is looking a group up
    removed = _remove(three)
    hold.release.set()
    saving.join(30)
    assert removed.status_code == 200, removed.get_body()
    assert outcome["put"].status_code == 412, outcome["put"].get_body()  # it sees the removal's write
    named = {(r.get("set") or {}).get("connection") for r in body(get_routes(three))["routes"]}
    assert named <= {"default"} and "fabrikam" not in listed(three)


def test_a_routes_save_during_a_removal_sees_the_connection_as_removed(three, second):
    hold = Fault("hold", method="GET", path_prefix="/oauth_revoke_token.do", seconds=30)
    second.inject(hold)
    outcome: dict[str, Any] = {}
    removing = threading.Thread(target=lambda: outcome.update(delete=_remove(three)))
    removing.start()
    assert hold.arrived.wait(30)  # the removal has checked the routes and is revoking the tokens
    refused = put_routes(three, [{"set": {"connection": "fabrikam"}}])
    hold.release.set()
    removing.join(30)
    assert outcome["delete"].status_code == 200, outcome["delete"].get_body()
    assert refused.status_code == 400, refused.get_body()
    (error,) = body(refused)["errors"]
    assert error["field"] == "routes[0].set.connection" and "being removed" in error["message"]
    assert body(get_routes(three))["routes"] == []


def test_a_removal_that_stops_half_way_lets_the_connection_be_routed_to_again(three, second):
    second.inject(Fault("status", status=503, method="GET", path_prefix="/oauth_revoke_token.do", times=100))
    assert _remove(three).status_code == 503  # ServiceNow could not revoke the tokens: nothing removed
    assert put_routes(three, [{"set": {"connection": "fabrikam"}}]).status_code == 200
    assert put_routes(three, []).status_code == 200
    forced = three.call("remove_connection", "DELETE", "/connections/fabrikam", route_params={"id": "fabrikam"},
                        params={"force": "true"})  # fmt: skip
    assert forced.status_code == 200, forced.get_body()  # forgotten anyway, and said: revoke them in ServiceNow
    assert "Manage Tokens" in body(forced)["remains"] and "fabrikam" not in listed(three)


def test_tokens_of_another_instance_never_count_as_this_connections(three):
    """A token bundle kept under a connection's name but issued by another instance (an id that named another
    instance before) is never used: the connection shows as needing authorization, not connected."""
    scoped = three.services.for_connection(three.services.connection_named("fabrikam"))
    bundle = scoped.tokens.load()
    assert bundle is not None and listed(three)["fabrikam"]["state"] == "connected"
    scoped.tokens.save(replace(bundle, instance=THIRD))
    again = listed(three)["fabrikam"]  # and says who it was connected as (mutation survivors of connection_state 32-34)
    assert (again["state"], again["connectedAs"]) == ("reauthorization_required", bundle.connected_as)
