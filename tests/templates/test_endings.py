"""Exceptions that end and `all` templates reaching tenants added later (docs/templates.md#exceptions-that-end),
through the hourly `templates_endings` timer as the Functions host fires it, against the Graph and ServiceNow
simulators."""

from __future__ import annotations

from typing import Any

import pytest
from azure.functions.timer import TimerRequest

from dev.entra import FABRIKAM, NORTHWIND
from dev.servicenow import Fault
from shared.store import update_document
from tests.conftest import Harness
from tests.routes_support import saved as saved_routes
from tests.secure_score.test_secure_score import refresh
from tests.secure_score.test_tenants import add, added, entra, msp  # noqa: F401 (fixtures)
from tests.templates_support import apply, body, created, get, patches, states, template

CONTROL = "AdminMFAV2"


def hourly(harness: Harness) -> None:
    """`templates_endings` fires, as the Functions host fires it every hour."""
    harness.functions["templates_endings"].get_user_function()(TimerRequest(past_due=False))


def record(harness: Harness, template_id: str, control: str = CONTROL, tenant: str = "home") -> dict[str, Any]:
    found = harness.services.store.get_document(f"template-apply:{template_id}:{tenant}")
    assert found is not None
    return dict(found[0]["controls"][control])


def home_row(harness: Harness) -> dict[str, Any]:
    """The home tenant's row of GET /api/tenants."""
    response = harness.call("list_tenants", path="/tenants")
    assert response.status_code == 200, response.get_body()
    return dict(next(row for row in body(response)["tenants"] if row["home"]))


def ended_at(harness: Harness, template_id: str) -> str:
    return str(record(harness, template_id)["until"])


def incidents(harness: Harness) -> list[dict[str, Any]]:
    return list(harness.simulator.tables.get("incident", {}).values())


@pytest.fixture
def excepted(connected: Harness) -> tuple[Harness, str]:
    """A risk accepted for 30 days on one control of the home tenant, with a route for its tickets."""
    assert refresh(connected)[0] == 200
    saved_routes(connected, [{"name": "MFA", "match": {"controls": [CONTROL]}, "set": {"priority": "high"}}])
    made = created(connected, template(name="Accepted", controls=[CONTROL], state="Ignored", expiresInDays=30,
                                       comment="Accepted by the customer"))  # fmt: skip
    assert apply(connected, made["id"])["applied"] == 1
    return connected, made["id"]


def test_an_exception_ends_once_and_its_ticket_is_made_once(excepted):
    harness, template_id = excepted
    harness.clock.advance(days=20)
    shown = body(get(harness, template_id))
    assert [(e["tenant"], e["control"]) for e in shown["expiring"]] == [("home", CONTROL)]
    assert home_row(harness)["expiring"] is None  # the summary is as of the apply (then 30 days away)
    hourly(harness)
    assert home_row(harness)["expiring"] == {"count": 1, "next": ended_at(harness, template_id)}
    assert states(harness, [CONTROL]) == {CONTROL: "Ignored"} and len(patches(harness)) == 1  # not ended yet
    harness.clock.advance(days=11)
    hourly(harness)
    assert states(harness, [CONTROL]) == {CONTROL: "Default"}
    assert "The exception ended on" in harness.graph.home.state_of(CONTROL)["comment"]
    assert len(patches(harness)) == 2
    ended = record(harness, template_id)
    assert (ended["status"], ended["after"]) == ("ended", "Default") and ended["ticket"] not in (None, "due")
    (made,) = incidents(harness)
    assert "ended on" in made["description"] and made["impact"] == "1"  # the route's priority (high)
    hourly(harness)
    assert len(patches(harness)) == 2 and len(incidents(harness)) == 1
    assert body(get(harness, template_id))["expiring"] == [] and home_row(harness)["expiring"] is None


def test_an_ending_interrupted_after_its_patch_is_resolved_from_graph(excepted):
    """A crash between the PATCH and the record: the intent is `ending`, Graph says Default; no PATCH again."""
    harness, template_id = excepted
    harness.clock.advance(days=31)
    store = harness.services.store
    name = f"template-apply:{template_id}:home"
    found = store.get_document(name)
    assert found is not None
    document, etag = found
    document["controls"][CONTROL]["status"] = "ending"
    store.put_document(name, document, etag)
    harness.graph.home.set_state(CONTROL, "Default", by="connector")
    sent = len(patches(harness))
    hourly(harness)
    assert len(patches(harness)) == sent and record(harness, template_id)["status"] == "ended"
    assert len(incidents(harness)) == 1


def test_a_ticket_that_could_not_be_made_is_made_by_the_next_run(excepted):
    harness, template_id = excepted
    harness.clock.advance(days=31)
    harness.simulator.inject(Fault("status", status=503, path_prefix="/api/now/v2/table/incident", times=20))
    hourly(harness)
    assert states(harness, [CONTROL]) == {CONTROL: "Default"} and record(harness, template_id)["ticket"] == "due"
    harness.simulator.faults.clear()
    hourly(harness)
    assert len(incidents(harness)) == 1 and len(patches(harness)) == 2


def test_a_person_s_change_stands_when_the_exception_ends(excepted):
    harness, template_id = excepted
    harness.graph.home.set_state(CONTROL, "ThirdParty", by="admin@contoso.example")
    harness.clock.advance(days=31)
    hourly(harness)
    assert states(harness, [CONTROL]) == {CONTROL: "ThirdParty"} and len(patches(harness)) == 1
    assert record(harness, template_id)["status"] == "ended" and incidents(harness) == []


def test_no_ticket_where_no_route_matches(connected):
    assert refresh(connected)[0] == 200
    made = created(connected, template(controls=[CONTROL], state="Ignored", expiresInDays=1))
    apply(connected, made["id"])
    connected.clock.advance(days=2)
    hourly(connected)
    assert states(connected, [CONTROL]) == {CONTROL: "Default"} and incidents(connected) == []
    assert record(connected, made["id"])["ticketSkipped"] == "no_route"


def test_a_paused_tenant_is_skipped_and_says_so(excepted, caplog):
    harness, template_id = excepted
    home = harness.services.home_tenant_id()
    paused = harness.call("remove_tenant", "DELETE", f"/tenants/{home}", route_params={"id": str(home)})
    assert paused.status_code == 200, paused.get_body()
    harness.clock.advance(days=31)
    with caplog.at_level("INFO"):
        hourly(harness)
    assert states(harness, [CONTROL]) == {CONTROL: "Ignored"} and len(patches(harness)) == 1
    assert "not ended now" in caplog.text and "paused" in caplog.text
    assert record(harness, template_id)["status"] == "done" and incidents(harness) == []


def test_an_all_template_reaches_a_tenant_whose_consent_completes_later(msp, entra):  # noqa: F811
    made = created(msp, template(tenants="all"))
    assert apply(msp, made["id"])["applied"] == 3
    hourly(msp)
    assert len(patches(msp)) == 3  # nothing new to reach
    added(msp, entra, FABRIKAM)
    assert add(msp, NORTHWIND.domain, NORTHWIND.name).status_code == 201  # pending: not reached
    hourly(msp)
    controls = template()["controls"]
    assert states(msp, controls, FABRIKAM.id) == dict.fromkeys(controls, "ThirdParty")
    assert patches(msp, NORTHWIND.id) == []
    hourly(msp)
    assert len(patches(msp, FABRIKAM.id)) == 3


def test_an_ending_never_writes_a_template_being_removed(excepted):
    """A removal half-way (the template gone from the templates document, its records not yet deleted, as a DELETE
    leaves them between its two steps): the ending writes nothing."""
    harness, template_id = excepted
    harness.clock.advance(days=31)
    store = harness.services.store
    update_document(store, "templates", lambda d: d["templates"].pop(template_id))
    assert store.get_document(f"template-apply:{template_id}:home") is not None
    hourly(harness)
    assert states(harness, [CONTROL]) == {CONTROL: "Ignored"} and len(patches(harness)) == 1
