"""The Graph simulator against Microsoft Graph's own Python SDK models (msgraph-sdk, a test dependency only).

Every kind of answer the simulator gives is read by the SDK's generated v1.0 model and written back by its
serializer: a value the model could not read as its documented type comes back missing or different, and the test
fails. So the simulator cannot drift into shapes real Graph never sends (a number as a string, a date that is not
one, a history entry with properties its closed type does not have) without a test saying so."""

from __future__ import annotations

import json
import re
from datetime import datetime
from typing import Any

import httpx
import pytest
from kiota_serialization_json.json_parse_node_factory import JsonParseNodeFactory
from kiota_serialization_json.json_serialization_writer import JsonSerializationWriter
from msgraph.generated.models.o_data_errors.o_data_error import ODataError
from msgraph.generated.models.secure_score import SecureScore
from msgraph.generated.models.secure_score_collection_response import SecureScoreCollectionResponse
from msgraph.generated.models.secure_score_control_profile import SecureScoreControlProfile
from msgraph.generated.models.secure_score_control_profile_collection_response import (
    SecureScoreControlProfileCollectionResponse,
)
from msgraph.generated.models.secure_score_control_state_update import SecureScoreControlStateUpdate

from dev.graph import GraphSimulator
from dev.graph.simulator import PROFILES, SCORES
from dev.servicenow import SimulatorTransport

GRAPH = "https://graph.microsoft.com"
_DATE_TIME = re.compile(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9:.]+(Z|[+-][0-9]{2}:[0-9]{2})$")
# secureScoreControlStateUpdate is not an open type in the v1.0 metadata: nothing beyond its properties.
_CLOSED = {"controlStateUpdates": set(SecureScoreControlStateUpdate().get_field_deserializers())}


def _normal(value: Any) -> Any:
    if isinstance(value, str) and _DATE_TIME.fullmatch(value):
        whole, _, fraction = value.rstrip("Z").partition(".")
        zone = "+00:00" if value.endswith("Z") else ""
        return datetime.fromisoformat(whole + zone if zone else value).replace(
            microsecond=int((fraction.split("+")[0].split("-")[0] or "0")[:6].ljust(6, "0"))
        )
    if isinstance(value, dict):
        return {k: _normal(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_normal(v) for v in value]
    return value


def mismatches(model: Any, payload: dict[str, Any]) -> list[str]:
    """What the SDK's model could not carry: read `payload` with it, write it back, and compare."""
    node = JsonParseNodeFactory().get_root_parse_node("application/json", json.dumps(payload).encode())
    parsed: Any = node.get_object_value(model)
    writer = JsonSerializationWriter()
    writer.write_object_value(None, parsed)
    again = json.loads(writer.get_serialized_content())
    found = []
    before, after = _normal(payload), _normal(again)
    for name, value in before.items():
        if after.get(name) != value:
            found.append(f"{name}: sent {json.dumps(payload.get(name), default=str)[:80]}, the SDK read "
                         f"{json.dumps(again.get(name), default=str)[:80]}")  # fmt: skip
    for name, allowed in _CLOSED.items():
        for entry in payload.get(name) or []:
            extra = set(entry) - allowed
            if extra:
                found.append(f"{name} entry has properties its closed type lacks: {sorted(extra)}")
    return found


@pytest.fixture
def http(graph: GraphSimulator) -> httpx.Client:
    token = graph.identity.issue(GRAPH)
    return httpx.Client(base_url=GRAPH, transport=SimulatorTransport(graph),
                        headers={"Authorization": f"Bearer {token}"})  # fmt: skip


def test_the_checker_catches_a_type_the_model_cannot_read():
    profile = {"id": "X", "maxScore": "10", "rank": 3, "deprecated": "false",
               "controlStateUpdates": [{"state": "Default", "note": "x"}]}  # fmt: skip
    found = mismatches(SecureScoreControlProfile, profile)
    assert any(f.startswith("maxScore") for f in found) and any(f.startswith("deprecated") for f in found)
    assert any("closed type" in f for f in found)
    assert mismatches(SecureScoreControlProfile, {"id": "X", "maxScore": 10.0, "rank": 3}) == []


def test_every_profile_page_reads_as_the_sdk_reads_it(http):
    url: str | None = PROFILES
    pages = 0
    while url:
        body = http.get(url).json()
        assert mismatches(SecureScoreControlProfileCollectionResponse, body) == []
        for profile in body["value"]:
            assert mismatches(SecureScoreControlProfile, profile) == [], profile["id"]
        url = body.get("@odata.nextLink")
        pages += 1
    assert pages >= 3


def test_filtered_and_single_profiles_read_as_the_sdk_reads_them(http):
    body = http.get(PROFILES, params={"$filter": "service eq 'MDATP'", "$top": "5"}).json()
    assert body["value"] and mismatches(SecureScoreControlProfileCollectionResponse, body) == []
    single = http.get(f"{PROFILES}/AdminMFAV2").json()
    assert mismatches(SecureScoreControlProfile, single) == []


def test_every_snapshot_reads_as_the_sdk_reads_it(http):
    body = http.get(SCORES, params={"$top": "90"}).json()
    assert mismatches(SecureScoreCollectionResponse, body) == []
    for snapshot in body["value"]:  # today's, and the older ones with fewer fields
        assert mismatches(SecureScore, snapshot) == [], snapshot["id"]
    single = http.get(f"{SCORES}/{body['value'][40]['id']}").json()
    assert mismatches(SecureScore, single) == []
    paged = http.get(SCORES, params={"$top": "30", "$skip": "30"}).json()
    assert paged["value"][0]["id"] == body["value"][30]["id"] and "@odata.nextLink" in paged


def test_an_update_answer_and_an_error_read_as_the_sdk_reads_them(http, graph):
    body = {"comment": "c", "state": "Ignored", "vendorInformation": {"provider": "SecureScore", "vendor": "Microsoft"}}
    answer = http.patch(f"{PROFILES}/AdminMFAV2", json=body, headers={"Prefer": "return=representation"})
    assert answer.status_code == 200 and mismatches(SecureScoreControlProfile, answer.json()) == []
    assert graph.state_of("AdminMFAV2")["state"] == "Ignored"
    assert http.patch(f"{PROFILES}/AdminMFAV2", json=body).status_code == 204
    refused = http.patch(f"{PROFILES}/AdminMFAV2", json={**body, "state": "Done"})
    assert refused.status_code == 400 and mismatches(ODataError, refused.json()) == []
    missing = http.get(f"{PROFILES}/NoSuchControl")
    assert missing.status_code == 404 and mismatches(ODataError, missing.json()) == []
