"""What no template overrides (docs/templates.md#the-rules): a version nobody applied, a state a person set again
before an exception's end, and a risk a person accepted in ServiceNow; against the simulators."""

from __future__ import annotations

from dev.entra import FABRIKAM
from tests.conftest import Harness
from tests.routes_support import saved as saved_routes
from tests.secure_score.test_tenants import add, added, entra, msp  # noqa: F401 (fixtures)
from tests.templates.test_endings import CONTROL, excepted, hourly  # noqa: F401 (fixtures)
from tests.templates.test_risk_accepted import CONTROL as MFA
from tests.templates.test_risk_accepted import accepting, closed  # noqa: F401 (fixtures)
from tests.templates_support import apply, created, patches, put, states, template


def test_a_tenant_added_later_gets_the_version_applied_never_an_edit_saved_since(msp, entra):  # noqa: F811
    made = created(msp, template(tenants="all"))
    assert apply(msp, made["id"])["applied"] == 3
    edited = put(msp, made["id"], template(tenants="all", state="Reviewed"))  # saved (or previewed), not applied
    assert edited.status_code == 200, edited.get_body()
    added(msp, entra, FABRIKAM)
    hourly(msp)
    assert patches(msp, FABRIKAM.id) == []  # the draft reaches nobody
    assert apply(msp, made["id"])["applied"] == 6  # applied now: this tenant and the home tenant's three again
    controls = template()["controls"]
    assert states(msp, controls, FABRIKAM.id) == dict.fromkeys(controls, "Reviewed")


def test_an_ending_leaves_the_state_a_person_set_again(excepted):  # noqa: F811
    harness, _ = excepted
    harness.graph.home.set_state(CONTROL, "ThirdParty", by="admin@contoso.example")
    harness.graph.home.set_state(CONTROL, "Ignored", by="ciso@contoso.example", comment="accepted for good")
    harness.clock.advance(days=31)
    sent = len(patches(harness))
    hourly(harness)
    assert states(harness, [CONTROL]) == {CONTROL: "Ignored"} and len(patches(harness)) == sent


def test_a_risk_accepted_in_servicenow_is_drift_to_a_template_not_the_connectors_own(accepting: Harness) -> None:  # noqa: F811
    saved_routes(accepting, [{"match": {"controls": [MFA]}, "set": {"onRiskAccepted": "ignore"}}])
    closed(accepting, "Risk Accepted")
    assert states(accepting, [MFA]) == {MFA: "Ignored"}  # a person's decision, made in ServiceNow
    made = created(accepting, template(controls=[MFA], state="ThirdParty"))
    answer = apply(accepting, made["id"])
    assert states(accepting, [MFA]) == {MFA: "Ignored"}, answer
    assert [d["control"] for d in answer["drifted"]] == [MFA], answer
