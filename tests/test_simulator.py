"""The simulator speaks ServiceNow's wire protocol (reference/servicenow-api.md), so tests against it mean something."""

from __future__ import annotations

import httpx
import pytest

from dev.simulator import ADMIN_SYS_ID, ServiceNowSimulator, SimulatorTransport
from tests.conftest import CLIENT_ID, CLIENT_SECRET, INSTANCE, REDIRECT_URI


@pytest.fixture
def client(simulator: ServiceNowSimulator) -> httpx.Client:
    simulator.signed_in_user = ADMIN_SYS_ID
    return httpx.Client(base_url=INSTANCE, transport=SimulatorTransport(simulator))


def _token(client: httpx.Client) -> str:
    redirect = client.get(
        "/oauth_auth.do",
        params={"response_type": "code", "client_id": CLIENT_ID, "redirect_uri": REDIRECT_URI, "state": "s"},
    )
    code = httpx.URL(redirect.headers["Location"]).params["code"]
    form = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": REDIRECT_URI,
        "client_id": CLIENT_ID,
        "client_secret": CLIENT_SECRET,
    }
    token = client.post("/oauth_token.do", data=form).json()
    assert token["scope"] == "useraccount" and token["token_type"] == "Bearer" and token["expires_in"] == 1799
    return str(token["access_token"])


def test_token_endpoint_wants_a_form_and_answers_the_real_401(client):
    assert client.post("/oauth_token.do", json={"grant_type": "refresh_token"}).status_code == 400
    denied = client.post("/oauth_token.do", data={"grant_type": "refresh_token", "client_id": CLIENT_ID})
    assert denied.status_code == 401
    assert denied.json() == {"error_description": "access_denied", "error": "server_error"}


def test_authorize_without_state_fails_like_servicenow(client):
    page = client.get("/oauth_auth.do", params={"response_type": "code", "client_id": CLIENT_ID})
    assert page.status_code == 400 and "Missing State parameter in request" in page.text


def test_table_api_shapes(client):
    headers = {"Authorization": f"Bearer {_token(client)}"}
    created = client.post(
        "/api/now/v2/table/incident", json={"short_description": "x", "impact": 2, "urgency": 2}, headers=headers
    )
    assert created.status_code == 201 and created.headers["Location"].endswith(created.json()["result"]["sys_id"])
    record = created.json()["result"]
    assert record["impact"] == "2" and record["priority"] == "3" and record["sys_mod_count"] == "0"
    assert record["opened_by"] == {"link": f"{INSTANCE}/api/now/table/sys_user/{ADMIN_SYS_ID}", "value": ADMIN_SYS_ID}
    assert record["caller_id"] == ""
    for _ in range(2):
        client.post("/api/now/v2/table/incident", json={"short_description": "y"}, headers=headers)
    page = client.get(
        "/api/now/v2/table/incident",
        params={"sysparm_limit": "1", "sysparm_offset": "1", "sysparm_exclude_reference_link": "true"},
        headers=headers,
    )
    assert page.headers["X-Total-Count"] == "3"
    assert 'rel="next"' in page.headers["Link"] and 'rel="prev"' in page.headers["Link"]
    assert page.json()["result"][0]["opened_by"] == ADMIN_SYS_ID
    empty = client.get("/api/now/v2/table/incident", params={"sysparm_query": "number=NOPE"}, headers=headers)
    assert empty.status_code == 200 and empty.json() == {"result": []}
    v1_empty = client.get("/api/now/table/incident", params={"sysparm_query": "number=NOPE"}, headers=headers)
    assert v1_empty.status_code == 404


def test_error_envelopes(client):
    unauthenticated = client.get("/api/now/v2/table/incident")
    assert unauthenticated.status_code == 401
    assert unauthenticated.json() == {
        "error": {"message": "User Not Authenticated", "detail": "Required to provide Auth information"},
        "status": "failure",
    }
    headers = {"Authorization": f"Bearer {_token(client)}"}
    missing = client.get(f"/api/now/v2/table/incident/{'0' * 32}", headers=headers)
    assert missing.status_code == 404 and missing.json()["error"]["message"] == "No Record found"
    assert client.get("/api/now/v2/table/u_nope", headers=headers).json()["error"]["message"] == "Invalid table u_nope"


def test_encoded_query_subset(simulator, client):
    headers = {"Authorization": f"Bearer {_token(client)}"}
    for i in range(3):
        client.post("/api/now/v2/table/incident", json={"correlation_id": f"m365sec:r{i}"}, headers=headers)
    client.post("/api/now/v2/table/incident", json={"correlation_id": "other"}, headers=headers)

    def count(query: str) -> int:
        response = client.get("/api/now/v2/table/incident", params={"sysparm_query": query}, headers=headers)
        return len(response.json()["result"])

    assert count("correlation_idSTARTSWITHm365sec:") == 3
    assert count("correlation_idINm365sec:r0,m365sec:r2") == 2
    assert count("correlation_id=m365sec:r0^ORcorrelation_id=other") == 2
    assert count("correlation_id=nothing^NQcorrelation_idSTARTSWITHm365sec:") == 3
    assert count("sys_idISNOTEMPTY^ORDERBYDESCsys_updated_on") == 4
