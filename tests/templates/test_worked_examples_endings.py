"""docs/templates.md's worked examples of an exception with an end and of a risk accepted in ServiceNow, run over the
simulators with the JSON the document shows (the template, the route, the field map)."""

from __future__ import annotations

import json
import re
from datetime import timedelta
from typing import Any

from azure.functions.timer import TimerRequest

from dev.entra import FABRIKAM
from tests.conftest import ROOT, Harness
from tests.create_ticket.test_tickets import post
from tests.routes_support import saved as saved_routes
from tests.secure_score.test_secure_score import refresh, sync
from tests.secure_score.test_tenants import added, entra, msp  # noqa: F401 (fixtures)
from tests.shared.test_signin import use
from tests.templates_support import apply, body, created, get, patches, states

DOC = ROOT / "docs" / "templates.md"


def blocks(heading: str) -> list[Any]:
    """The JSON blocks of the section under `heading`."""
    section = DOC.read_text().split(f"## {heading}\n", 1)[1].split("\n## ", 1)[0]
    return [json.loads(found) for found in re.findall(r"```json\n(.*?)```", section, re.S)]


def hourly(harness: Harness) -> None:
    harness.functions["templates_endings"].get_user_function()(TimerRequest(past_due=False))


def incidents(harness: Harness) -> list[dict[str, Any]]:
    return list(harness.simulator.tables.get("incident", {}).values())


def test_a_customer_accepts_a_risk_until_a_date(msp, entra):  # noqa: F811
    template, route = blocks("Worked example: a customer accepts a risk until a date")
    assert template["tenants"] == [FABRIKAM.id]
    (control,) = template["controls"]
    assert list(template["until"]) == [control] and "expiresInDays" not in template
    # the document's date, moved to 90 days from the day the test runs: a date written in a document passes
    last = (msp.clock.now + timedelta(days=90)).date().isoformat()
    template["until"] = {control: last}
    added(msp, entra, FABRIKAM)
    assert refresh(msp)[0] == 200
    saved_routes(msp, [route])
    made = created(msp, template)
    assert apply(msp, made["id"])["applied"] == 1
    assert states(msp, [control], FABRIKAM.id) == {control: "Ignored"}
    msp.clock.advance(days=76)  # the exception ends at the last second of day 90: listed from day 77
    assert body(get(msp, made["id"]))["expiring"] == []
    msp.clock.advance(days=1)
    assert [e["tenant"] for e in body(get(msp, made["id"]))["expiring"]] == [FABRIKAM.id]
    msp.clock.advance(days=14)  # the day after the last
    hourly(msp)
    assert states(msp, [control], FABRIKAM.id) == {control: "Default"}
    assert msp.graph.tenant(FABRIKAM.id).state_of(control)["comment"].startswith(f"The exception ended on {last}")
    (ticket,) = incidents(msp)
    assert ticket["impact"] == "1" and "ended on" in ticket["description"]
    written = len(patches(msp, FABRIKAM.id))
    hourly(msp)
    assert len(patches(msp, FABRIKAM.id)) == written and len(incidents(msp)) == 1


def test_a_servicenow_close_code_accepts_a_risk(connected):
    field_map, route = blocks("Worked example: a ServiceNow close code accepts a risk")
    use(connected, SERVICENOW_FIELD_MAP=json.dumps(field_map))
    assert refresh(connected)[0] == 200
    saved_routes(connected, [route])
    (control,) = route["match"]["controls"]
    status, ticket = post(connected, {"recommendation": {"id": control}})
    assert status == 201, ticket
    connected.clock.advance(seconds=1)
    notes = "The customer accepts this risk until the audit"
    connected.simulator.update("incident", ticket["sysId"], state="7", close_code="Risk Accepted", close_notes=notes)
    sync(connected)
    assert states(connected, [control]) == {control: "Ignored"}
    assert connected.graph.home.state_of(control)["comment"].startswith(notes)
    written = len(patches(connected))
    sync(connected)
    assert len(patches(connected)) == written
