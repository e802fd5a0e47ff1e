"""ServiceNow connections (docs/design.md#connections-and-routes) over two simulated instances: adding one (its secret
kept, never shown), connecting it through the one OAuth callback, its own tokens, provisioning and status sync, one
failing connection never stopping the other, and removing one only when nothing depends on it."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import httpx
import pytest

from create_ticket.creation import creator_for
from create_ticket.fill import complete_request
from create_ticket.request import parse_ticket_request
from dev.servicenow import Fault, ServiceNowSimulator, SimulatorTransport
from shared import services as services_module
from shared.auth import Caller
from shared.runs import MAX_ITEM_ATTEMPTS
from shared.secrets import CLIENT_SECRET, TOKEN_BUNDLE, FileSecretStore
from status_sync.every import sync_every_connection
from tests.conftest import CLIENT_ID, INSTANCE, REDIRECT_URI, Harness, build_services
from tests.conftest import CLIENT_SECRET as DEFAULT_SECRET
from tests.routes_support import saved
from tests.shared.test_signin import principal, use

SECOND = "https://fabrikam.service-now.com"
SECOND_CLIENT = "5f1e2d3c4b5a69788796a5b4c3d2e1f0"
SECOND_SECRET = "second-client-secret-7a6b5c4d"


class Instances(httpx.BaseTransport):
    """Each request to the simulator of its host, as DNS and the network would send it."""

    def __init__(self, *simulators: ServiceNowSimulator) -> None:
        self.by_host = {urlsplit(s.instance_url).netloc: SimulatorTransport(s) for s in simulators}

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        return self.by_host[request.url.netloc.decode()].handle_request(request)


@pytest.fixture
def second(clock: Any) -> ServiceNowSimulator:
    sim = ServiceNowSimulator(SECOND, clock=clock.epoch)
    sim.register_client(SECOND_CLIENT, SECOND_SECRET, [REDIRECT_URI])
    sim.auto_approve = True
    return sim


@pytest.fixture
def two(connected: Harness, second: ServiceNowSimulator) -> Iterator[Harness]:
    """The connected app on a network with both instances."""
    transport = Instances(connected.simulator, second)
    connected.services.close()
    services_module.install(build_services(connected.tmp, transport, connected.clock, connected.sleeps,
                                           connected.graph))  # fmt: skip
    connected.services = services_module.get_services()
    connected.transport = transport  # type: ignore[assignment]
    yield connected


def body(response: Any) -> Any:
    return json.loads(response.get_body())


def add(harness: Harness, **overrides: Any) -> Any:
    payload = {"id": "fabrikam", "instance": SECOND, "clientId": SECOND_CLIENT, "clientSecret": SECOND_SECRET,
               **overrides}  # fmt: skip
    payload = {k: v for k, v in payload.items() if v is not None}
    return harness.call("add_connection", "POST", "/connections", body=json.dumps(payload).encode())


def connect(harness: Harness, connection: str) -> Any:
    start = harness.call("connect", path="/connect", params={"connection": connection})
    assert start.status_code == 302, start.get_body()
    with httpx.Client(transport=harness.transport) as browser:
        consent = browser.get(start.headers["Location"])
    assert consent.status_code == 302, consent.text
    return harness.callback(dict(parse_qsl(urlsplit(consent.headers["Location"]).query)))


@pytest.fixture
def both(two: Harness) -> Harness:
    assert add(two).status_code == 201
    assert connect(two, "fabrikam").status_code == 200
    return two


def ticket_on(harness: Harness, connection: str, control: str) -> dict[str, Any]:
    """A ticket made on `connection` by a route for its control (the route is taken away again after)."""
    saved(harness, [{"match": {"controls": [control]}, "set": {"connection": connection}}])
    request = parse_ticket_request({"name": f"Fix {control}", "recommendation": {"id": control, "source": "user",
                                    "category": "Identity"}}, initiating_user=None)  # fmt: skip
    ticket, created = creator_for(harness.services).create(request, caller=Caller("test"), idempotency_key=None)
    assert created and ticket.connection == ("" if connection == "default" else connection)
    saved(harness, [])
    return ticket.to_json(None)


def listed(harness: Harness) -> dict[str, dict[str, Any]]:
    return {c["id"]: c for c in body(harness.call("list_connections", path="/connections"))["connections"]}


def test_a_connection_is_added_with_its_secret_kept_and_never_shown(two, second):
    response = add(two, table="incident")
    assert response.status_code == 201, response.get_body()
    assert response.headers["Location"] == "/api/connections/fabrikam"
    shown = body(response)
    assert (shown["id"], shown["instance"], shown["state"], shown["default"]) == ("fabrikam", SECOND,
                                                                                 "not_connected", False)  # fmt: skip
    assert shown["connectUrl"] == "/api/connect?connection=fabrikam" and shown["connectedAs"] is None
    everything = json.dumps(body(two.call("list_connections", path="/connections")))
    assert SECOND_SECRET not in everything and SECOND_SECRET not in response.get_body().decode()
    assert two.services.secrets.get(f"{CLIENT_SECRET}-fabrikam") == SECOND_SECRET
    assert set(listed(two)) == {"default", "fabrikam"} and listed(two)["default"]["state"] == "connected"
    # The list shows who added it and when (as the add answered), and the one redirect URI every client registers.
    assert shown["addedAt"] == two.clock().isoformat() and shown["addedBy"]
    assert {k: listed(two)["fabrikam"][k] for k in ("addedAt", "addedBy")} == {
        k: shown[k] for k in ("addedAt", "addedBy")
    }
    assert body(two.call("list_connections", path="/connections"))["redirectUri"] == REDIRECT_URI
    default = listed(two)["default"]  # the app settings' connection, as they describe it
    assert (default["clientId"], default["table"], default["instance"]) == (CLIENT_ID, "incident", INSTANCE)


@pytest.mark.parametrize(
    ("overrides", "field"),
    [({"id": "default"}, "id"), ({"id": "Bad_Id"}, "id"), ({"id": None}, "id"), ({"instance": "ftp://x"}, "instance"),
     ({"instance": "https://evil.example/path"}, "instance"), ({"clientSecret": ""}, "clientSecret"),
     ({"clientId": "a\nb"}, "clientId"), ({"clientId": ""}, "clientId"), ({"table": "Incident;drop"}, "table"),
     ({"fieldMap": {"nope": "x"}}, "fieldMap"), ({"extra": 1}, "extra")],
)  # fmt: skip
def test_a_bad_connection_is_refused_naming_the_field_and_nothing_is_kept(two, overrides, field):
    response = add(two, **overrides)
    assert response.status_code == 400, response.get_body()
    errors = body(response)["errors"]
    assert field in [e["field"] for e in errors]
    assert all(isinstance(e["message"], str) and e["message"] for e in errors), errors  # each says what is wrong
    assert set(listed(two)) == {"default"}
    assert two.services.secrets.get(f"{CLIENT_SECRET}-fabrikam") is None


@pytest.mark.parametrize("payload", [[], "fabrikam", 7, None])
def test_a_body_that_is_not_an_object_is_refused_naming_the_body(two, payload):
    """JSON that is not an object passes the edge's parsing; the add refuses it as a bad field, never a 500."""
    response = two.call("add_connection", "POST", "/connections", body=json.dumps(payload).encode())
    assert response.status_code == 400, response.get_body()
    [error] = body(response)["errors"]
    assert error["field"] == "body" and isinstance(error["message"], str) and error["message"], error
    assert set(listed(two)) == {"default"}


def test_the_longest_client_id_and_secret_are_taken_and_one_more_character_is_not(two):
    """A Client ID of up to 100 characters and a Client Secret of up to 500 are kept whole."""
    longest = add(two, clientId="c" * 100, clientSecret="s" * 500)
    assert longest.status_code == 201, longest.get_body()
    assert two.services.secrets.get(f"{CLIENT_SECRET}-fabrikam") == "s" * 500
    assert listed(two)["fabrikam"]["clientId"] == "c" * 100
    for overrides, field in (({"clientId": "c" * 101}, "clientId"), ({"clientSecret": "s" * 501}, "clientSecret")):
        refused = add(two, id="longer", **overrides)
        assert refused.status_code == 400 and [e["field"] for e in body(refused)["errors"]] == [field]


def test_an_id_taken_is_refused(two):
    assert add(two).status_code == 201
    again = add(two)
    assert again.status_code == 400
    assert body(again)["errors"] == [{"field": "id", "message": f"is taken by another connection ({SECOND})"}]


def test_the_connector_holds_at_most_50_connections(two):
    for n in range(50):
        assert add(two, id=f"c{n}").status_code == 201
    over = add(two, id="c50")
    assert over.status_code == 400
    assert body(over)["errors"] == [{"field": "id", "message": "the connector holds 50 connections already"}]
    assert len(listed(two)) == 51  # the 50 and the default


def test_admins_adding_connections_at_once_each_get_theirs(two):
    """Each add writes the connections document under its ETag: one that lost the race reads it again and retries,
    so every add at once lands (none is refused for another's write)."""
    from tests.conftest import concurrently

    def adding(burst: int) -> Callable[[int], int]:
        return lambda i: int(add(two, id=f"at-once-{burst}-{i}").status_code)

    for burst in range(5):  # 8 at once: one may lose at most 7 times, within the 10 tries each add makes
        answers = concurrently(8, adding(burst))
        assert answers == [201] * 8
    assert len(listed(two)) == 41  # the 40 and the default


def test_an_added_connections_field_map_is_the_one_its_tickets_are_written_with(two, second):
    """The field map given when a connection is added is kept with it: its records carry the recommendation's
    category in the field that map names (the default connection's map leaves it out)."""
    assert add(two, fieldMap={"recommendation_category": "category"}).status_code == 201
    assert connect(two, "fabrikam").status_code == 200
    ticket_on(two, "fabrikam", "AdminMFAV2")
    (record,) = second.records()
    assert record["category"] == "Identity"


def test_every_id_removed_before_is_remembered_and_gets_new_names_when_added_again(two):
    """Removing one connection never forgets that another id was removed before it: each id added again gets new
    secret and sync-state names, never its earlier connection's."""
    for connection in ("alpha", "beta"):
        assert add(two, id=connection).status_code == 201
        removed = two.call("remove_connection", "DELETE", f"/connections/{connection}",
                           route_params={"id": connection})  # fmt: skip
        assert removed.status_code == 200 and body(removed)["id"] == connection, removed.get_body()
    for connection in ("alpha", "beta"):
        assert add(two, id=connection).status_code == 201
        again = two.services.connection_named(connection)
        assert len(again.tag) == 32 and again.client_secret_name == f"{CLIENT_SECRET}-{connection}-{again.tag}"


def test_the_one_callback_connects_the_connection_its_flow_names(two, second):
    assert add(two).status_code == 201
    start = two.call("connect", path="/connect", params={"connection": "fabrikam"})
    assert start.headers["Location"].startswith(f"{SECOND}/oauth_auth.do")
    assert connect(two, "fabrikam").status_code == 200
    assert two.services.secrets.get(f"{TOKEN_BUNDLE}-fabrikam")
    status = body(two.call("provisioning", path="/provisioning", params={"connection": "fabrikam"}))
    assert (status["connection"], status["state"], status["instance"]) == ("fabrikam", "connected", SECOND)
    assert listed(two)["default"]["state"] == "connected"  # the default connection's tokens are untouched
    unknown = two.call("connect", path="/connect", params={"connection": "nope"})
    assert unknown.status_code == 404


def test_each_connection_syncs_its_own_records(both, second):
    mine = ticket_on(both, "default", "OnDefault")
    theirs = ticket_on(both, "fabrikam", "OnSecond")
    assert theirs["connection"] == "fabrikam" and theirs["url"].startswith(SECOND)
    assert [r["number"] for r in second.records()] == [theirs["number"]]
    both.simulator.update("incident", mine["sysId"], state="2")
    second.update("incident", theirs["sysId"], state="6")
    both.clock.advance(minutes=5)
    results = sync_every_connection(both.services)
    assert [r.status for r in results] == ["ok", "ok"]
    statuses = {t.connection or "default": t.status for t, _ in both.services.store.list_tickets()}
    assert statuses == {"default": "in_progress", "fabrikam": "resolved"}
    assert both.services.store.get_document("sync-state:fabrikam") is not None  # its own watermark and sweep


def test_a_failing_connection_never_stops_the_other(both, second):
    mine = ticket_on(both, "default", "OnDefault")
    ticket_on(both, "fabrikam", "OnSecond")
    second.inject(Fault("status", status=503, times=1000))
    both.simulator.update("incident", mine["sysId"], state="2")
    results = sync_every_connection(both.services)
    assert [r.status for r in results] == ["ok"]  # the default's ran; the other's failure is on its own state
    assert next(t for t, _ in both.services.store.list_tickets() if not t.connection).status == "in_progress"
    checks = body(both.call("provisioning", path="/provisioning"))["checks"]
    failing = [c for c in checks if c["name"] == "servicenow_connection"]
    assert failing and failing[0]["ok"] is False and "connection=fabrikam" in failing[0]["remediation"]
    own = body(both.call("provisioning", path="/provisioning", params={"connection": "fabrikam"}))
    assert own["state"] == "degraded"


def test_a_connection_in_use_is_not_removed(both, second):
    ticket = ticket_on(both, "fabrikam", "OnSecond")
    refused = both.call("remove_connection", "DELETE", "/connections/fabrikam", route_params={"id": "fabrikam"})
    assert refused.status_code == 409 and "open ticket" in body(refused)["detail"]
    default = both.call("remove_connection", "DELETE", "/connections/default", route_params={"id": "default"})
    assert default.status_code == 409
    second.update("incident", ticket["sysId"], state="7")
    sync_every_connection(both.services)
    removed = both.call("remove_connection", "DELETE", "/connections/fabrikam", route_params={"id": "fabrikam"})
    assert removed.status_code == 200, removed.get_body()
    assert set(listed(both)) == {"default"}
    assert both.services.secrets.get(f"{CLIENT_SECRET}-fabrikam") is None
    assert both.services.secrets.get(f"{TOKEN_BUNDLE}-fabrikam") is None
    assert all(g.revoked for g in second.refresh_tokens.values())
    gone = both.call("remove_connection", "DELETE", "/connections/fabrikam", route_params={"id": "fabrikam"})
    assert gone.status_code == 404


def test_disconnect_names_its_connection(both, second):
    default_tokens = both.services.secrets.get(TOKEN_BUNDLE)
    response = both.call("disconnect", "POST", "/disconnect", params={"connection": "fabrikam"})
    assert response.status_code == 204
    assert listed(both)["fabrikam"]["state"] == "not_connected"
    assert both.services.secrets.get(f"{TOKEN_BUNDLE}-fabrikam") is None
    assert all(g.revoked for g in second.refresh_tokens.values())
    # The default connection is untouched: its tokens as they were, none of its grants revoked, and it still works.
    assert listed(both)["default"]["state"] == "connected" and both.services.secrets.get(TOKEN_BUNDLE) == default_tokens
    assert not any(g.revoked for g in both.simulator.refresh_tokens.values())
    assert both.services.settings.client_secret == DEFAULT_SECRET
    assert [r.status for r in sync_every_connection(both.services)] == ["ok", "skipped"]


def test_a_connection_a_saved_route_names_is_not_removed_and_the_rule_is_named(both, second):
    saved(both, [{"name": "Fabrikam's service desk", "match": {"categories": ["Identity"]},
                  "set": {"connection": "fabrikam"}}])  # fmt: skip
    refused = both.call("remove_connection", "DELETE", "/connections/fabrikam", route_params={"id": "fabrikam"})
    assert refused.status_code == 409, refused.get_body()
    assert "Fabrikam's service desk" in body(refused)["detail"] and "PUT /api/routes" in body(refused)["remediation"]
    assert "fabrikam" in listed(both) and both.services.secrets.get(f"{CLIENT_SECRET}-fabrikam") == SECOND_SECRET
    assert not any(g.revoked for g in second.refresh_tokens.values())  # nothing was revoked either


def test_a_connection_in_use_two_ways_is_refused_once_naming_every_reason(both, second):
    """Issue 29, item 6 (docs/design.md#where-the-admin-reads-what): one refusal with every reason, the rules by name
    and the open tickets by number, and where each is changed (the Routes view); nothing removed, nothing fenced off."""
    first, other = ticket_on(both, "fabrikam", "OnSecond"), ticket_on(both, "fabrikam", "AlsoOnSecond")
    to_fabrikam = {"connection": "fabrikam"}
    rules = [{"name": "Fabrikam's service desk", "match": {"categories": ["Identity"]}, "set": to_fabrikam},
             {"name": "Fabrikam's apps", "match": {"categories": ["Apps"]}, "set": to_fabrikam}]  # fmt: skip
    saved(both, rules)
    refused = both.call("remove_connection", "DELETE", "/connections/fabrikam", route_params={"id": "fabrikam"})
    assert refused.status_code == 409, refused.get_body()
    problem = body(refused)
    detail, fix = problem["detail"], problem["remediation"]
    assert "Fabrikam's service desk" in detail and "Fabrikam's apps" in detail and "2 rule(s)" in detail, detail
    assert first["number"] in detail and other["number"] in detail and "2 open ticket(s)" in detail, detail
    assert "/api/portal#routes" in fix and "Resolve or close" not in fix and "resolve or close" in fix, fix
    assert problem["rules"] == ["Fabrikam's service desk", "Fabrikam's apps"]
    assert sorted(problem["openTickets"]) == sorted([first["number"], other["number"]])
    assert problem["routesUrl"] == "/api/portal#routes"
    assert "fabrikam" in listed(both) and not any(g.revoked for g in second.refresh_tokens.values())
    # Only the tickets left: still one refusal, now naming them alone; no removal left half-fenced.
    saved(both, [])
    again = body(both.call("remove_connection", "DELETE", "/connections/fabrikam", route_params={"id": "fabrikam"}))
    assert again["rules"] == [] and "rule" not in again["detail"] and first["number"] in again["detail"]
    saved(both, rules[:1])  # the connection can still be routed to: the refusal took its fence back


def test_a_ticket_on_a_second_connection_is_resolved_and_reopened_there(both, second):
    """Secure Score's edges act on the record where it lives: the PATCHes go to the second instance only."""
    control = "AdminMFAV2"
    assert both.call("refresh_recommendations", "POST", "/recommendations/refresh").status_code == 200
    saved(both, [{"match": {"controls": [control]}, "set": {"connection": "fabrikam"}}])
    draft = parse_ticket_request({"recommendation": {"id": control}}, initiating_user=None)
    ticket, _ = creator_for(both.services).create(complete_request(both.services, draft), caller=Caller("test"),
                                                  idempotency_key=None)  # fmt: skip
    assert ticket.connection == "fabrikam"
    saved(both, [])
    both.simulator.requests.clear()
    both.graph.complete(control)
    assert both.call("refresh_recommendations", "POST", "/recommendations/refresh").status_code == 200
    assert second.tables["incident"][ticket.sys_id]["state"] == "6"
    both.graph.regress(control)
    both.clock.advance(hours=4)
    assert both.call("refresh_recommendations", "POST", "/recommendations/refresh").status_code == 200
    assert second.tables["incident"][ticket.sys_id]["state"] == "2"
    assert [j for j in second.journal if j[0] == ticket.sys_id and j[1] == "work_notes"]
    assert not [r for r in both.simulator.requests if r.method == "PATCH"]  # the default instance was never asked
    (stored,) = [t for t, _ in both.services.store.list_tickets()]
    assert (stored.id, stored.status, stored.connection) == (ticket.id, "in_progress", "fabrikam")


def test_a_connection_whose_key_vault_refuses_is_listed_as_not_configured_naming_the_vault(harness, tmp_path):
    """The list asks the secret store for each connection's tokens; a Key Vault the app cannot reach is the setup's
    to fix (`not_configured`, naming the vault), never `not_connected` (which would send the admin to connect)."""
    from shared.config import load_settings
    from shared.secrets import KeyVaultSecretStore
    from shared.services import Services
    from shared.store import SqliteTicketStore
    from tests.conftest import settings_env

    class NoCredential:
        def get_token(self, *scopes: str, **kwargs: Any) -> Any:
            raise PermissionError("no identity")

    vault = KeyVaultSecretStore("https://127.0.0.1:9", credential=NoCredential(), retry_total=0)
    harness.services.close()
    services_module.install(Services(load_settings(settings_env()), transport=harness.transport, secrets=vault,
                                     store=SqliteTicketStore(tmp_path / "store.db"), clock=harness.clock))  # fmt: skip
    harness.services = services_module.get_services()
    default = listed(harness)["default"]
    assert default["state"] == "not_configured" and "Key Vault at https://127.0.0.1:9" in default["detail"]


def test_a_secret_store_that_cannot_be_read_lists_the_connection_degraded_saying_so(two):
    """The secret store's file is damaged (not JSON): the list still answers, and each connection says the store
    could not be read and how, not that it is unconnected (mutation survivors of connection_state 15, 16)."""
    store = two.services.secrets
    assert isinstance(store, FileSecretStore)
    store.path.write_text("{not json", encoding="utf-8")
    default = listed(two)["default"]
    assert (default["state"], default["detail"]) == (
        "degraded",
        "The secret store could not be read (JSONDecodeError).",
    )


# A refused add, a regression after its connection was removed, and plain http in Azure


CONTROL = "AdminMFAV2"


def test_a_refused_add_never_replaces_the_secret_of_the_connection_holding_the_id(both, second):
    """POST /api/connections with an id that is taken answers 400 "taken", but the secret store already holds the
    new body's clientSecret under that id: the existing connection's next token refresh is refused, and it needs
    reauthorizing by a person. (Two admins adding one id at once: the loser's secret replaces the winner's.)"""
    again = add(both, clientSecret="a-typo-or-someone-elses-secret")
    assert again.status_code == 400 and "taken" in again.get_body().decode()
    both.clock.advance(hours=2)  # its access token expired: the next run refreshes it with the stored secret
    statuses = [r.status for r in sync_every_connection(both.services)]
    state = listed(both)["fabrikam"]["state"]
    secret = both.services.secrets.get(f"{CLIENT_SECRET}-fabrikam")
    assert (statuses, state, secret == SECOND_SECRET) == (["ok", "ok"], "connected", True)


def test_a_regression_after_its_connection_was_removed_still_gets_an_open_ticket(both, second):
    """Removal is allowed once no ticket on the connection is open, but `resolved` is not open: a resolved ticket
    stays on the removed connection. When its control regresses, the refresh tries to reopen it there
    (`services.for_ticket`: not_found), fails MAX_ITEM_ATTEMPTS times, then marks the edge seen and clears the
    error: the regression never gets an open ticket anywhere (a closed ticket would have got a new one)."""
    assert both.call("refresh_recommendations", "POST", "/recommendations/refresh").status_code == 200
    saved(both, [{"match": {"controls": [CONTROL]}, "set": {"connection": "fabrikam"}}])
    draft = parse_ticket_request({"recommendation": {"id": CONTROL}}, initiating_user=None)
    made, _ = creator_for(both.services).create(complete_request(both.services, draft), caller=Caller("test"),
                                                idempotency_key=None)  # fmt: skip
    assert made.connection == "fabrikam"
    saved(both, [])  # no route names it any more: only its resolved ticket lives there
    both.graph.complete(CONTROL)
    both.call("refresh_recommendations", "POST", "/recommendations/refresh")
    assert [t.status for t, _ in both.services.store.list_tickets()] == ["resolved"]
    removed = both.call("remove_connection", "DELETE", "/connections/fabrikam", route_params={"id": "fabrikam"})
    assert removed.status_code == 200, removed.get_body()
    both.graph.regress(CONTROL)
    for _ in range(MAX_ITEM_ATTEMPTS + 1):
        both.clock.advance(hours=4)
        both.call("refresh_recommendations", "POST", "/recommendations/refresh")
    tickets = [t for t, _ in both.services.store.list_tickets() if t.recommendation_id == CONTROL]
    assert any(t.is_open for t in tickets), [(t.status, t.connection, t.error) for t in tickets]


def test_an_added_connection_is_never_plain_http_in_azure(two):
    """parse_instance lets http:// through for loopback hosts (meant for SERVICENOW_INSTANCE in local runs, where
    `make run` serves its second simulated instance so); in Azure, through the admin API, it would make a connection
    that sends its client secret and tokens over plain HTTP to the function host's own loopback."""
    use(two, WEBSITE_AUTH_ENABLED="True", WEBSITE_SITE_NAME="func-connector")
    admin = {"X-MS-CLIENT-PRINCIPAL": principal("admin@contoso.com", ("Connector.Admin",))}
    payload = {"id": "local", "instance": "http://127.0.0.1:8080", "clientId": "c", "clientSecret": "s"}
    response = two.call("add_connection", "POST", "/connections", body=json.dumps(payload).encode(), headers=admin)
    assert response.status_code == 400, response.get_body()
    assert json.loads(response.get_body())["errors"][0]["field"] == "instance"
    assert two.services.secrets.get(f"{CLIENT_SECRET}-local") is None
