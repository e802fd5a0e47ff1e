"""A hostile review of ServiceNow connections (issue 21): each test shows a defect found by reading the code, over
the same two simulated instances as tests/oauth_callback/test_connections.py (no mocks)."""

from __future__ import annotations

import json

from create_ticket.creation import creator_for
from create_ticket.fill import complete_request
from create_ticket.request import parse_ticket_request
from shared.auth import Caller
from shared.runs import MAX_ITEM_ATTEMPTS
from shared.secrets import CLIENT_SECRET
from status_sync.every import sync_every_connection
from tests.oauth_callback.test_connections import SECOND_SECRET, add, both, listed, second, two  # noqa: F401  (fixtures)
from tests.routes_support import saved
from tests.shared.test_signin import principal, use

CONTROL = "AdminMFAV2"


def test_a_refused_add_never_replaces_the_secret_of_the_connection_holding_the_id(both, second):  # noqa: F811
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


def test_a_regression_after_its_connection_was_removed_still_gets_an_open_ticket(both, second):  # noqa: F811
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


def test_an_added_connection_is_never_plain_http_in_azure(two):  # noqa: F811
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
