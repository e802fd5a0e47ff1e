"""The Graph simulator serves several tenants: the managed identity's tokens read the home tenant as always, the
Entra simulator's tokens read the tenant they name, each with its own scores and history; tokens Graph does not
trust, or without the permission, are refused as before; requests are counted per tenant."""

from __future__ import annotations

import threading
from typing import Any

import httpx
import pytest

from dev.entra import FABRIKAM, HOME, NORTHWIND, READER_APP_ID, TOKEN_EXCHANGE, EntraSimulator
from dev.graph import GraphSimulator, ManagedIdentity
from dev.graph.simulator import PROFILES, SCORES
from dev.servicenow import SimulatorTransport
from tests.conftest import concurrently

GRAPH = "https://graph.microsoft.com"


@pytest.fixture
def entra(identity: ManagedIdentity, graph: GraphSimulator) -> EntraSimulator:
    simulator = EntraSimulator(identity)
    simulator.register_app(READER_APP_ID, ["https://connector.example.net/api/tenants/consent"])
    simulator.trust_identity(READER_APP_ID, identity)
    for tenant in (FABRIKAM, NORTHWIND):
        simulator.grant(tenant.id, READER_APP_ID)
    graph.trust(simulator)
    return simulator


def token(entra: EntraSimulator, tenant: str) -> str:
    """The reader app's token for `tenant`, from the Entra simulator's token endpoint (client assertion)."""
    assert entra.identity is not None
    form = {"grant_type": "client_credentials", "client_id": READER_APP_ID, "scope": f"{GRAPH}/.default",
            "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            "client_assertion": entra.identity.issue(TOKEN_EXCHANGE)}  # fmt: skip
    with httpx.Client(transport=SimulatorTransport(entra)) as http:
        answer = http.post(f"https://login.microsoftonline.com/{tenant}/oauth2/v2.0/token", data=form)
    assert answer.status_code == 200, answer.text
    return str(answer.json()["access_token"])


def read(graph: GraphSimulator, bearer: str, path: str, **params: str) -> httpx.Response:
    with httpx.Client(transport=SimulatorTransport(graph)) as http:
        return http.get(f"{GRAPH}{path}", params=params, headers={"Authorization": f"Bearer {bearer}"})


def latest(graph: GraphSimulator, bearer: str) -> dict[str, Any]:
    answer = read(graph, bearer, SCORES, **{"$top": "1"})
    assert answer.status_code == 200, answer.text
    return dict(answer.json()["value"][0])


def test_each_token_reads_its_own_tenants_secure_score(graph, entra, identity):
    home = latest(graph, identity.issue(GRAPH))
    fabrikam = latest(graph, token(entra, FABRIKAM.id))
    northwind = latest(graph, token(entra, NORTHWIND.domain))
    assert [s["azureTenantId"] for s in (home, fabrikam, northwind)] == [HOME.id, FABRIKAM.id, NORTHWIND.id]
    scored = [{c["controlName"] for c in s["controlScores"]} for s in (home, fabrikam, northwind)]
    assert len(scored[0]) == 120 and len({frozenset(s) for s in scored}) == 3  # the home tenant as before; 3 sets
    for controls in scored:
        assert "AdminMFAV2" in controls and len(controls) < len(graph.profiles) / 2  # many controls unscored
    assert len({s["currentScore"] for s in (home, fabrikam, northwind)}) == 3
    listing = read(graph, token(entra, FABRIKAM.id), PROFILES, **{"$top": "250"}).json()["value"]
    assert len(listing) == 250 and {p["azureTenantId"] for p in listing} == {FABRIKAM.id}  # the same catalogue


def test_a_customer_tenants_history_is_its_own_and_the_same_every_time(graph, entra, identity, clock):
    history = read(graph, token(entra, FABRIKAM.id), SCORES, **{"$top": "90"}).json()["value"]
    assert len(history) == 90 and {s["azureTenantId"] for s in history} == {FABRIKAM.id}
    assert history[0]["currentScore"] >= history[-1]["currentScore"]  # the score climbs over the quarter
    other = GraphSimulator(identity, clock=clock.epoch)  # another run: the same data
    assert other.tenant(FABRIKAM.id).all_scores() == graph.tenant(FABRIKAM.id).all_scores()


def test_switches_act_on_one_tenant(graph, entra, identity):
    graph.tenant(FABRIKAM.id).complete("AdminMFAV2")
    scores = {name: {c["controlName"]: c["score"] for c in latest(graph, bearer)["controlScores"]}
              for name, bearer in (("home", identity.issue(GRAPH)), ("fabrikam", token(entra, FABRIKAM.id)),
                                   ("northwind", token(entra, NORTHWIND.id)))}  # fmt: skip
    assert scores["fabrikam"]["AdminMFAV2"] == 10.0
    assert scores["home"]["AdminMFAV2"] == scores["northwind"]["AdminMFAV2"] == 0.0
    graph.tenant(NORTHWIND.id).forbidden = True  # Northwind's admin removed the grant: only Northwind is refused
    assert read(graph, token(entra, NORTHWIND.id), SCORES).status_code == 403
    assert read(graph, token(entra, FABRIKAM.id), SCORES).status_code == 200


def test_a_write_back_lands_in_the_tenant_the_token_names(graph, entra):
    body = {"comment": "INC0010001: new", "vendorInformation": {"provider": "SecureScore", "vendor": "Microsoft"}}
    with httpx.Client(transport=SimulatorTransport(graph)) as http:
        answer = http.patch(f"{GRAPH}{PROFILES}/AdminMFAV2", json=body,
                            headers={"Authorization": f"Bearer {token(entra, FABRIKAM.id)}"})  # fmt: skip
    assert answer.status_code == 204
    assert graph.tenant(FABRIKAM.id).state_of("AdminMFAV2")["comment"] == "INC0010001: new"
    assert graph.tenant(FABRIKAM.id).state_of("AdminMFAV2")["updatedBy"] == READER_APP_ID
    assert graph.state_of("AdminMFAV2")["comment"] is None  # the home tenant's control is untouched


def test_tokens_graph_does_not_trust_or_that_lack_the_permission_are_refused(graph, entra, identity):
    stranger = EntraSimulator(identity)  # a token endpoint Graph was never told to trust
    stranger.register_app(READER_APP_ID, [])
    stranger.trust_identity(READER_APP_ID, identity)
    stranger.grant(FABRIKAM.id, READER_APP_ID)
    refused = read(graph, token(stranger, FABRIKAM.id), SCORES)
    assert refused.status_code == 401 and refused.json()["error"]["code"] == "InvalidAuthenticationToken"
    entra.withdraw(FABRIKAM.id, how="revoke")  # a token without roles
    assert read(graph, token(entra, FABRIKAM.id), SCORES).status_code == 403
    entra.lifetime = -1  # an expired token
    assert "expired" in read(graph, token(entra, NORTHWIND.id), SCORES).json()["error"]["message"]


def test_requests_and_requests_in_flight_are_counted_per_tenant(graph, entra, identity):
    bearers = [token(entra, FABRIKAM.id), token(entra, NORTHWIND.id), identity.issue(GRAPH)]
    all_in = threading.Barrier(12, timeout=30)
    graph.while_in_flight = lambda _: all_in.wait()  # every request is in flight before any answers
    concurrently(12, lambda i: read(graph, bearers[i % 3], SCORES, **{"$top": "1"}))
    for tenant in (FABRIKAM.id, NORTHWIND.id, HOME.id):
        data = graph.tenant(tenant)
        assert len(data.requests) == 4 and data.max_in_flight == 4 and data.in_flight == 0
    assert graph.max_in_flight == 12 and len(graph.requests) == 12


def test_the_simulators_page_lists_the_tenants_and_switches_each(graph, entra):
    graph.tenant(FABRIKAM.id, FABRIKAM.name)
    with httpx.Client(transport=SimulatorTransport(graph), base_url=GRAPH) as browser:
        page = browser.get("/sim").text
        assert f'href="/sim?tenant={FABRIKAM.id}"' in page and "Fabrikam" in page
        fabrikam = browser.get("/sim", params={"tenant": FABRIKAM.id}).text
        assert f"/sim/controls/AdminMFAV2/complete?back=page&amp;tenant={FABRIKAM.id}" in fabrikam
        done = browser.post(f"/sim/controls/AdminMFAV2/complete?back=page&tenant={FABRIKAM.id}")
    assert done.status_code == 303 and done.headers["location"] == f"/sim?tenant={FABRIKAM.id}"
    assert graph.tenant(FABRIKAM.id).scores["AdminMFAV2"] == 10.0 and graph.scores["AdminMFAV2"] == 0.0
