"""A person changes a control's state on the Graph simulator's page (`/sim`), as in the Defender portal: the change is
a new controlStateUpdates entry that Graph then answers, and a template's drift names that person. Only Graph's four
states (https://learn.microsoft.com/graph/api/securescorecontrolprofile-update) and a bounded comment are taken."""

from __future__ import annotations

import httpx

from dev.entra import FABRIKAM
from dev.graph import GraphSimulator, ManagedIdentity
from dev.graph.simulator import PROFILES
from dev.servicenow import SimulatorTransport
from tests.templates_support import apply, body, created, get, preview, template

GRAPH = "https://graph.microsoft.com"


def page(graph: GraphSimulator) -> httpx.Client:
    return httpx.Client(transport=SimulatorTransport(graph), base_url=GRAPH)


def test_a_state_set_on_the_page_is_a_history_entry_graph_answers(graph: GraphSimulator, identity: ManagedIdentity):
    with page(graph) as browser:
        shown = browser.get("/sim").text
        assert 'action="/sim/controls/AdminMFAV2/state"' in shown and "<option>Reviewed</option>" in shown
        before = len(graph.profiles["AdminMFAV2"]["controlStateUpdates"])
        form = {"state": "ThirdParty", "comment": "Covered by Duo", "by": "alex@contoso.com"}
        done = browser.post("/sim/controls/AdminMFAV2/state", data=form)
        assert done.status_code == 303 and done.headers["location"] == "/sim"
        assert "ThirdParty by alex@contoso.com" in browser.get("/sim").text
        read = browser.get(f"{PROFILES}/AdminMFAV2", headers={"Authorization": f"Bearer {identity.issue(GRAPH)}"})
    history = read.json()["controlStateUpdates"]
    assert len(history) == before + 1
    assert {k: history[-1][k] for k in ("state", "updatedBy", "comment")} == {
        "state": "ThirdParty", "updatedBy": "alex@contoso.com", "comment": "Covered by Duo"}  # fmt: skip


def test_another_tenants_state_is_set_on_its_own_page(graph: GraphSimulator):
    graph.tenant(FABRIKAM.id, FABRIKAM.name)
    home = graph.state_of("AdminMFAV2")
    with page(graph) as browser:
        shown = browser.get("/sim", params={"tenant": FABRIKAM.id}).text
        assert f"/sim/controls/AdminMFAV2/state?tenant={FABRIKAM.id}" in shown
        done = browser.post(f"/sim/controls/AdminMFAV2/state?tenant={FABRIKAM.id}", data={"state": "ignored"})
    assert done.status_code == 303 and done.headers["location"] == f"/sim?tenant={FABRIKAM.id}"
    assert graph.tenant(FABRIKAM.id).state_of("AdminMFAV2")["state"] == "Ignored"
    assert graph.tenant(FABRIKAM.id).state_of("AdminMFAV2")["updatedBy"] == "alex@contoso.com"  # the default person
    assert graph.state_of("AdminMFAV2") == home  # the home tenant's control is untouched


def test_a_state_outside_graphs_four_or_a_long_comment_is_refused(graph: GraphSimulator):
    before = graph.state_of("AdminMFAV2")
    with page(graph) as browser:
        for form in ({"state": "Resolved"}, {}, {"state": "Reviewed", "comment": "x" * 1001},
                     {"state": "Reviewed", "by": "a" * 300}):  # fmt: skip
            refused = browser.post("/sim/controls/AdminMFAV2/state", data=form)
            assert refused.status_code == 400 and refused.headers["content-type"].startswith("text/plain")
        assert browser.post("/sim/controls/NoSuchControl/state", data={"state": "Reviewed"}).status_code == 404
        longest = {"state": "Reviewed", "comment": "x" * 1000}
        assert browser.post("/sim/controls/AdminMFAV2/state", data=longest).is_redirect
    assert graph.state_of("AdminMFAV2")["state"] == "Reviewed" and before["state"] != "Reviewed"


def test_a_person_s_change_on_the_page_is_a_templates_drift_naming_them(harness):
    saved = created(harness, template())
    apply(harness, saved["id"])
    harness.clock.advance(minutes=5)
    with page(harness.graph) as browser:
        form = {"state": "Default", "comment": "Mail filter removed", "by": "alex@contoso.com"}
        assert browser.post("/sim/controls/DLPEnabled/state", data=form).status_code == 303
    (drifted,) = preview(harness, saved["id"])["drifted"]
    assert (drifted["control"], drifted["state"], drifted["by"]) == ("DLPEnabled", "Default", "alex@contoso.com")
    assert apply(harness, saved["id"])["drifted"][0]["by"] == "alex@contoso.com"  # never set back silently
    assert [(d["control"], d["by"]) for d in body(get(harness, saved["id"]))["drift"]] == [
        ("DLPEnabled", "alex@contoso.com")]  # fmt: skip
