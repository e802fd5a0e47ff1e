"""The simulator speaks ServiceNow's wire protocol (docs/design.md#servicenow-facts), so tests against it mean
something."""

from __future__ import annotations

import httpx
import pytest

from dev.servicenow import ADMIN_SYS_ID, ServiceNowSimulator, SimulatorTransport
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
    v1_empty = client.get("/api/now/v1/table/incident", params={"sysparm_query": "number=NOPE"}, headers=headers)
    assert v1_empty.status_code == 404
    latest = client.get("/api/now/table/incident", params={"sysparm_query": "number=NOPE"}, headers=headers)
    assert latest.status_code == 200 and latest.json() == {"result": []}  # the unversioned path is the latest


def _links(response: httpx.Response) -> dict[str, int]:
    return {str(rel): int(httpx.URL(link["url"]).params["sysparm_offset"]) for rel, link in response.links.items()}


def test_link_headers_as_a_real_instance_sends_them(client):
    headers = {"Authorization": f"Bearer {_token(client)}"}
    for _ in range(5):
        client.post("/api/now/v2/table/incident", json={"short_description": "x"}, headers=headers)

    def page(**params: str) -> httpx.Response:
        response: httpx.Response = client.get("/api/now/v2/table/incident", params=params, headers=headers)
        return response

    assert _links(page(sysparm_limit="2")) == {"first": 0, "next": 2, "last": 4}  # no prev on the first page
    assert _links(page(sysparm_limit="2", sysparm_offset="2")) == {"first": 0, "prev": 0, "next": 4, "last": 4}
    assert _links(page(sysparm_limit="2", sysparm_offset="4")) == {"first": 0, "prev": 2, "last": 4}
    whole = page(sysparm_limit="10")
    assert "Link" not in whole.headers and whole.headers["X-Total-Count"] == "5"  # everything fits one page
    uncounted = page(sysparm_limit="2", sysparm_no_count="true")
    assert "X-Total-Count" not in uncounted.headers and _links(uncounted) == {"first": 0, "next": 2}
    assert "Link" not in page(sysparm_limit="2", sysparm_suppress_pagination_header="true").headers
    assert page().headers["Date"].endswith(" GMT")  # the instance's clock, on every answer


def test_the_limit_applies_before_acls_so_pages_come_back_short(simulator, client):
    headers = {"Authorization": f"Bearer {_token(client)}"}
    ids = [
        client.post("/api/now/v2/table/incident", json={"short_description": str(i)}, headers=headers).json()["result"][
            "sys_id"
        ]
        for i in range(6)
    ]
    simulator.hidden.update(ids[:3])
    params = {"sysparm_limit": "3", "sysparm_query": "ORDERBYsys_created_on^ORDERBYnumber"}
    first = client.get("/api/now/v2/table/incident", params=params, headers=headers)
    assert first.json()["result"] == [] and first.headers["X-Total-Count"] == "6" and "next" in first.links
    second = client.get("/api/now/v2/table/incident", params={**params, "sysparm_offset": "3"}, headers=headers)
    assert [r["sys_id"] for r in second.json()["result"]] == ids[3:] and "next" not in second.links


def test_display_values_true_and_all(client):
    headers = {"Authorization": f"Bearer {_token(client)}"}
    created = client.post(
        "/api/now/v2/table/incident",
        json={"short_description": "x", "impact": 1, "urgency": 2, "assigned_to": ADMIN_SYS_ID},
        headers=headers,
    ).json()["result"]
    fields = {"sysparm_fields": "state,priority,assigned_to,number"}
    url = f"/api/now/v2/table/incident/{created['sys_id']}"
    shown = client.get(url, params={**fields, "sysparm_display_value": "true"}, headers=headers).json()["result"]
    assert shown["state"] == "New" and shown["priority"] == "2 - High" and shown["number"] == created["number"]
    assert shown["assigned_to"] == {
        "display_value": "System Administrator",
        "link": f"{INSTANCE}/api/now/table/sys_user/{ADMIN_SYS_ID}",
    }
    both = client.get(url, params={**fields, "sysparm_display_value": "all"}, headers=headers).json()["result"]
    assert both["state"] == {"display_value": "New", "value": "1"}
    assert both["assigned_to"] == {
        "display_value": "System Administrator",
        "value": ADMIN_SYS_ID,
        "link": f"{INSTANCE}/api/now/table/sys_user/{ADMIN_SYS_ID}",
    }
    plain = client.get(
        url,
        params={**fields, "sysparm_display_value": "all", "sysparm_exclude_reference_link": "true"},
        headers=headers,
    ).json()["result"]
    assert plain["assigned_to"] == {"display_value": "System Administrator", "value": ADMIN_SYS_ID}


def test_delete_answers_204_and_is_audited(simulator, client):
    headers = {"Authorization": f"Bearer {_token(client)}"}
    sys_id = client.post("/api/now/v2/table/incident", json={}, headers=headers).json()["result"]["sys_id"]
    deleted = client.delete(f"/api/now/v2/table/incident/{sys_id}", headers=headers)
    assert deleted.status_code == 204 and deleted.content == b""
    assert client.delete(f"/api/now/v2/table/incident/{sys_id}", headers=headers).status_code == 404
    audit = {"sysparm_query": "tablename=incident", "sysparm_fields": "documentkey"}
    assert client.get("/api/now/v2/table/sys_audit_delete", params=audit, headers=headers).status_code == 403
    simulator.deny.pop("sys_audit_delete")  # an admin granted the integration user the audit role
    rows = client.get("/api/now/v2/table/sys_audit_delete", params=audit, headers=headers).json()["result"]
    assert rows == [{"documentkey": sys_id}]


def test_revoke_takes_the_token_only_in_the_documented_query_form(simulator, client):
    token = _token(client)
    headers = {"Authorization": f"Bearer {token}"}
    client.post("/oauth_revoke_token.do", data={"token": token})  # not the documented form: nothing happens
    assert client.get("/api/now/v2/table/incident", headers=headers).status_code == 200
    assert client.get("/oauth_revoke_token.do", params={"token": token}).status_code == 200
    assert client.get("/api/now/v2/table/incident", headers=headers).status_code == 401


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
