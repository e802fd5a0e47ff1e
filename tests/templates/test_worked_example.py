"""docs/templates.md's worked example, run over the simulators: the home tenant, a consented customer (Fabrikam)
and one whose admin has not consented yet (Northwind), through the Entra ID simulator's consent page as a customer's
admin presses it. The template is the JSON the document shows."""

from __future__ import annotations

import json
import re

from dev.entra import FABRIKAM, NORTHWIND
from tests.conftest import ROOT
from tests.secure_score.test_tenants import add, added, entra, msp  # noqa: F401 (fixtures)
from tests.templates_support import apply, body, created, get, patches, preview, put, states

DOC = ROOT / "docs" / "templates.md"


def example() -> dict[str, object]:
    """The JSON block of the worked example's section."""
    section = DOC.read_text().split("## Worked example", 1)[1]
    found = re.search(r"```json\n(.*?)```", section, re.S)
    assert found is not None
    return dict(json.loads(found[1]))


def test_a_mail_filter_covers_the_dlp_controls_for_every_tenant(msp, entra):  # noqa: F811
    added(msp, entra, FABRIKAM)
    assert add(msp, NORTHWIND.domain, NORTHWIND.name).status_code == 201  # pending: its admin has not consented
    payload = example()
    controls = list(payload["controls"])  # type: ignore[call-overload]
    saved = created(msp, payload)
    seen = preview(msp, saved["id"])
    assert {(c["tenant"], c["control"], c["before"], c["after"]) for c in seen["changes"]} == {
        (t, c, "Default", "ThirdParty") for t in ("home", FABRIKAM.id) for c in controls}  # fmt: skip
    assert [(f["tenant"], f["control"], f["code"]) for f in seen["failed"]] == [
        (NORTHWIND.id, None, "tenant_not_consented")]  # fmt: skip
    assert patches(msp) == []
    answer = apply(msp, saved["id"])
    assert (answer["applied"], answer["unchanged"], answer["drifted"]) == (6, 0, [])
    assert [f["code"] for f in answer["failed"]] == ["tenant_not_consented"]
    assert states(msp, controls) == states(msp, controls, FABRIKAM.id) == dict.fromkeys(controls, "ThirdParty")
    assert len(patches(msp, FABRIKAM.id)) == 3 and patches(msp, NORTHWIND.id) == []
    comment = msp.graph.tenant(FABRIKAM.id).state_of("DLPEnabled")["comment"]
    assert comment == "Data loss prevention is done by the mail filter [template: Mail filter]"
    assert apply(msp, saved["id"])["unchanged"] == 6 and len(patches(msp)) == 6
    msp.clock.advance(minutes=5)
    msp.graph.tenant(FABRIKAM.id).set_state("DLPEnabled", "Default", by="admin@fabrikam.example")
    again = apply(msp, saved["id"])
    assert [(d["tenant"], d["control"], d["state"], d["by"]) for d in again["drifted"]] == [
        (FABRIKAM.id, "DLPEnabled", "Default", "admin@fabrikam.example")]  # fmt: skip
    assert len(patches(msp)) == 6
    shown = body(get(msp, saved["id"]))
    assert shown["appliedAt"] and [d["tenant"] for d in shown["drift"]] == [FABRIKAM.id]


def test_a_tenant_removed_after_the_template_was_saved_is_not_written(msp, entra):  # noqa: F811
    added(msp, entra, FABRIKAM)
    saved = created(msp, {**example(), "tenants": [FABRIKAM.id]})
    removed = msp.call("remove_tenant", "DELETE", f"/tenants/{FABRIKAM.id}", route_params={"id": FABRIKAM.id})
    assert removed.status_code == 200, removed.get_body()
    answer = apply(msp, saved["id"])
    assert [(f["tenant"], f["code"]) for f in answer["failed"]] == [(FABRIKAM.id, "tenant_removed")]
    assert patches(msp, FABRIKAM.id) == []
    changed = put(msp, saved["id"], {**example(), "tenants": [FABRIKAM.id]})
    assert changed.status_code == 400 and body(changed)["errors"][0]["field"] == "tenants[0]"
