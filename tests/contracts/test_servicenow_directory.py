"""The ServiceNow simulator's groups and companies (issue 21): `sys_user_group` and `core_company` readable by the
integration user, two records sharing a name in each, and an incident's `assignment_group` and `company` as
reference fields, set by sys_id or (with `sysparm_input_display_value=true`) by display value."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from dev.servicenow import INTEGRATION_USER_SYS_ID, ServiceNowSimulator, SimulatorTransport
from dev.servicenow import directory as seeded
from tests.conftest import INSTANCE
from tests.contracts.test_simulator import _token


@pytest.fixture
def api(simulator: ServiceNowSimulator) -> httpx.Client:
    """The Table API as the integration user (the consent is auto-approved as that user)."""
    assert simulator.signed_in_user == INTEGRATION_USER_SYS_ID
    http = httpx.Client(base_url=INSTANCE, transport=SimulatorTransport(simulator))
    http.headers["Authorization"] = f"Bearer {_token(http)}"
    return http


@pytest.mark.parametrize(
    ("table", "name", "expected"),
    [("sys_user_group", "Service Desk", {seeded.SERVICE_DESK, seeded.SERVICE_DESK_EMEA}),
     ("sys_user_group", "Identity and Access Management", {seeded.IDENTITY_TEAM}),
     ("core_company", "Contoso", {seeded.CONTOSO, seeded.CONTOSO_SUBSIDIARY}),
     ("core_company", "Fabrikam", {seeded.FABRIKAM}),
     ("core_company", "Nobody", set())],
)  # fmt: skip
def test_groups_and_companies_are_found_by_name_and_two_share_one(api, table, name, expected):
    found = api.get(f"/api/now/table/{table}", params={"sysparm_query": f"name={name}",
                                                        "sysparm_fields": "sys_id,name"})  # fmt: skip
    assert found.status_code == 200
    assert {r["sys_id"] for r in found.json()["result"]} == expected
    assert all(r["name"] == name for r in found.json()["result"])
    assert found.headers["X-Total-Count"] == str(len(expected))


def test_every_group_and_company_is_listed_with_string_values(api):
    groups = api.get("/api/now/table/sys_user_group").json()["result"]
    companies = api.get("/api/now/table/core_company").json()["result"]
    assert len(groups) == len(seeded.GROUPS) + len(seeded.RETIRED_GROUPS) >= 6
    assert len(companies) == len(seeded.COMPANIES) >= 3
    assert all(isinstance(v, str) for row in groups + companies for v in row.values())
    assert {g["sys_id"] for g in groups if g["active"] == "false"} == {s for s, *_ in seeded.RETIRED_GROUPS}


@pytest.mark.parametrize(
    ("query", "expected"),
    [("name=service desk", {seeded.SERVICE_DESK, seeded.SERVICE_DESK_EMEA}),
     ("name=CLOUD SECURITY", {seeded.CLOUD_TEAM, seeded.CLOUD_TEAM_RETIRED}),  # an active group and a retired one
     ("name=Cloud Security^active=true", {seeded.CLOUD_TEAM}),
     ("name!=cloud security^active=TRUE", {seeded.SERVICE_DESK, seeded.SERVICE_DESK_EMEA, seeded.IDENTITY_TEAM,
                                           seeded.ENDPOINT_TEAM})],
)  # fmt: skip
def test_equality_in_a_query_ignores_case_as_servicenow_does(api, query, expected):
    """ServiceNow's GlideFilter API page: "GlideRecord queries are case-insensitive"; `=` and `!=` ignore case."""
    found = api.get("/api/now/table/sys_user_group", params={"sysparm_query": query, "sysparm_fields": "sys_id"})
    assert {r["sys_id"] for r in found.json()["result"]} == expected


def _incident(api: httpx.Client, body: dict[str, str], **params: str) -> dict[str, object]:
    created = api.post("/api/now/table/incident", json={"short_description": "Routed", **body}, params=params)
    assert created.status_code == 201, created.text
    return dict(created.json()["result"])


def test_assignment_group_and_company_are_references_by_sys_id(api):
    record = _incident(api, {"assignment_group": seeded.IDENTITY_TEAM, "company": seeded.FABRIKAM})
    assert record["assignment_group"] == {
        "link": f"{INSTANCE}/api/now/table/sys_user_group/{seeded.IDENTITY_TEAM}",
        "value": seeded.IDENTITY_TEAM,
    }
    assert record["company"] == {"link": f"{INSTANCE}/api/now/table/core_company/{seeded.FABRIKAM}",
                                 "value": seeded.FABRIKAM}  # fmt: skip
    shown = api.get(f"/api/now/table/incident/{record['sys_id']}", params={
        "sysparm_display_value": "true", "sysparm_exclude_reference_link": "true",
        "sysparm_fields": "assignment_group,company,assignment_group.email,company.name"}).json()["result"]  # fmt: skip
    assert shown == {"assignment_group": "Identity and Access Management", "company": "Fabrikam",
                     "assignment_group.email": "iam@example.com", "company.name": "Fabrikam"}  # fmt: skip
    found = api.get("/api/now/table/incident", params={"sysparm_query": f"company={seeded.FABRIKAM}"}).json()
    assert [r["sys_id"] for r in found["result"]] == [record["sys_id"]]


@pytest.mark.parametrize(
    ("given", "stored"),
    [("Identity and Access Management", seeded.IDENTITY_TEAM),  # one record has that name
     (seeded.ENDPOINT_TEAM, seeded.ENDPOINT_TEAM),  # a sys_id is still a sys_id
     ("Service Desk", ""),  # two records have that name: not set
     ("No Such Team", "")],  # no record has it: not set
)  # fmt: skip
def test_a_display_value_input_resolves_one_name_and_leaves_an_ambiguous_or_unknown_one_empty(api, given, stored):
    record = _incident(api, {"assignment_group": given}, sysparm_input_display_value="true")
    value = record["assignment_group"]
    assert (value["value"] if isinstance(value, dict) else value) == stored


def test_without_display_value_input_a_name_is_taken_as_a_sys_id(api):
    record = _incident(api, {"company": "Northwind Traders"})
    assert record["company"] == {"link": f"{INSTANCE}/api/now/table/core_company/Northwind Traders",
                                 "value": "Northwind Traders"}  # fmt: skip
    shown = api.get(f"/api/now/table/incident/{record['sys_id']}", params={"sysparm_display_value": "true"})
    assert shown.json()["result"]["company"]["display_value"] == ""  # a broken reference shows nothing


def test_an_update_by_display_value_moves_the_ticket_to_another_company(api):
    record = _incident(api, {"company": seeded.FABRIKAM})
    moved = api.patch(f"/api/now/table/incident/{record['sys_id']}", json={"company": "Northwind Traders"},
                      params={"sysparm_input_display_value": "true"})  # fmt: skip
    assert moved.status_code == 200 and moved.json()["result"]["company"]["value"] == seeded.NORTHWIND


def test_an_older_saved_state_keeps_the_seeded_groups_and_companies(tmp_path: Path):
    from dev.servicenow.persist import STATE_FILE, keep, snapshot

    old = snapshot(ServiceNowSimulator())
    for table in ("sys_user_group", "core_company"):  # a state file written before these tables existed
        del old["tables"][table], old["fields"][table]
    (tmp_path / STATE_FILE).write_text(json.dumps(old))
    restored = ServiceNowSimulator()
    assert keep(restored, tmp_path)[1]
    assert len(restored.tables["sys_user_group"]) == len(seeded.GROUPS) + len(seeded.RETIRED_GROUPS)
    assert "company" in restored.fields["incident"] and len(restored.tables["core_company"]) == len(seeded.COMPANIES)
