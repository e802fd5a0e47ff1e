"""The admin guide's worked examples of routes (section 12) are run as written, against the ServiceNow simulator (the
groups and companies `make run` has): each list is PUT, refused or saved as the guide says, and a ticket made then
looks as the guide shows it."""

from __future__ import annotations

import json
import re
from datetime import datetime, timedelta
from typing import Any

import pytest

from dev.entra import FABRIKAM, NORTHWIND
from shared.tenant_records import DOCUMENT as TENANTS
from tests.conftest import ROOT, Harness
from tests.routes_support import body, create, put_routes, saved


def examples() -> dict[str, list[Any]]:
    """Each subsection of the guide's section 12: its JSON blocks, in order."""
    guide = (ROOT / "docs" / "admin-guide.md").read_text()
    section = guide.split("## 12. Routes", 1)[1].split("\n## ", 1)[0]
    found: dict[str, list[Any]] = {}
    for part in re.split(r"^### ", section, flags=re.MULTILINE)[1:]:
        blocks = re.findall(r"```json\n(.*?)```", part, flags=re.DOTALL)
        found[part.split(" ", 1)[0]] = [json.loads(b) for b in blocks]
    return found


def looks_like(ticket: dict[str, Any], shown: dict[str, Any]) -> None:
    """The ticket has every member the guide shows, as shown (the rule's id and the number vary)."""
    for key, value in shown.items():
        if key == "number":
            continue
        if key == "route":
            assert {**ticket["route"], "rule": None} == {**value, "rule": None}
            assert ticket["route"]["rule"].startswith("rule-")
            continue
        if key == "dueDate" and value is not None:
            created = datetime.fromisoformat(ticket["createdAt"])
            days = ticket["route"]["set"]["dueInDays"]
            assert ticket["dueDate"] == (created + timedelta(days=days)).isoformat().replace("+00:00", "Z")
            continue
        assert ticket[key] == value, key


@pytest.fixture
def guide(connected: Harness) -> Harness:
    tenants = {t.id: {"id": t.id, "name": t.name, "state": "active"} for t in (FABRIKAM, NORTHWIND)}
    connected.services.store.put_document(TENANTS, {"tenants": tenants}, None)
    assert connected.call("refresh_recommendations", "POST", "/recommendations/refresh").status_code == 200
    return connected


def test_the_guide_has_three_examples():
    assert list(examples()) == ["12.1", "12.2", "12.3"]


def made_as_shown(harness: Harness, request: dict[str, Any], ticket: dict[str, Any]) -> dict[str, Any]:
    """Create the ticket; it looks as the guide shows; its record in ServiceNow."""
    status, made = create(harness, request)
    assert status == 201, made
    looks_like(made, ticket)
    return dict(harness.simulator.tables["incident"][made["sysId"]])


def test_by_category_to_teams(guide):
    routes, refusal, ticket = examples()["12.1"]
    response = put_routes(guide, routes["routes"])
    assert response.status_code == 400 and body(response)["errors"] == refusal["errors"]
    routes["routes"][3]["set"]["assignmentGroup"] = "d625dccec0a8016700a222a0f7900d06"  # as the guide says
    saved(guide, routes["routes"])
    record = made_as_shown(guide, {"recommendation": {"id": "AdminMFAV2"}}, ticket)
    assert record["assignment_group"]["value"] == ticket["route"]["set"]["assignmentGroup"]["sysId"]


def test_by_tenant_to_companies(guide):
    routes, ticket = examples()["12.2"]
    saved(guide, routes["routes"])
    request = {"name": "Require MFA for admins", "tenant": FABRIKAM.id,
               "recommendation": {"id": "AdminMFAV2", "source": "microsoft", "category": "Identity"}}  # fmt: skip
    record = made_as_shown(guide, request, ticket)
    assert record["company"]["value"] == ticket["route"]["set"]["company"]["sysId"]


def test_by_points_to_due_dates(guide):
    routes, ticket = examples()["12.3"]
    saved(guide, routes["routes"])
    made_as_shown(guide, {"recommendation": {"id": "AdminMFAV2"}}, ticket)
