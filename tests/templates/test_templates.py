"""Templates saved, checked and versioned (docs/templates.md), and applied to the home tenant over the Graph simulator:
no mocks, the app called as the worker calls it."""

from __future__ import annotations

import json

from templates.model import MAX_COMMENT, MAX_CONTROLS
from tests.templates_support import (
    DLP,
    apply,
    body,
    create,
    created,
    delete,
    get,
    patches,
    preview,
    put,
    states,
    template,
)


def fields(response):
    problem = body(response)
    assert (response.status_code, problem["code"]) == (400, "validation_failed"), problem
    return {e["field"] for e in problem["errors"]}


def test_every_bound_is_validation_failed_by_field(harness):
    wrong = template(controls=["ok_id"] * (MAX_CONTROLS + 1), comment="x" * (MAX_COMMENT + 1), state="Default",
                     tenants=["b2e4f6a8-3c5d-4e7f-8a9b-0c1d2e3f4a5b"])  # fmt: skip
    assert fields(create(harness, wrong)) == {"controls", "comment", "state", "tenants[0]"}
    odd = template(controls=["AdminMFAV2", "../x", "a/b", "a#b", "a?b", "a\\b", ".hidden", "x" * 65], tenants="some")
    assert fields(create(harness, odd)) == {f"controls[{i}]" for i in range(1, 8)} | {"tenants"}
    assert fields(create(harness, template(name="", expiresInDays=0, extra=1))) == {"name", "expiresInDays", "extra"}
    assert fields(create(harness, template(comment="two\nlines"))) == {"comment"}
    assert fields(create(harness, [1])) == {"body"}
    assert body(harness.call("list_templates", path="/templates"))["templates"] == []


def test_a_template_is_saved_read_and_changed_under_its_version(harness):
    saved = created(harness, template(expiresInDays=30))
    assert saved["controls"] == DLP and saved["tenants"] == ["home"] and saved["expiresInDays"] == 30
    assert saved["drift"] == [] and saved["expiring"] == [] and saved["appliedAt"] is None
    (listed,) = body(harness.call("list_templates", path="/templates"))["templates"]
    assert listed["version"] == saved["version"] and "drift" not in listed  # the list reads no records
    response = get(harness, saved["id"])
    assert response.headers["ETag"] == f'"{saved["version"]}"' and body(response)["name"] == "Mail filter"
    assert put(harness, saved["id"], template(), if_match=None).status_code == 428
    assert put(harness, saved["id"], template(), if_match="*").status_code == 428
    changed = put(harness, saved["id"], {**body(response), "state": "Ignored"})  # GET's answer sent back, changed
    assert changed.status_code == 200, changed.get_body()
    assert body(changed)["state"] == "Ignored" and body(changed)["version"] != saved["version"]
    stale = put(harness, saved["id"], template(), if_match=f'"{saved["version"]}"')
    assert (stale.status_code, body(stale)["code"]) == (412, "precondition_failed")
    assert body(stale)["template"]["state"] == "Ignored"
    assert delete(harness, saved["id"], if_match=None).status_code == 428
    assert delete(harness, saved["id"], if_match=f'"{saved["version"]}"').status_code == 412
    assert delete(harness, saved["id"]).status_code == 204
    assert get(harness, saved["id"]).status_code == 404
    assert get(harness, "../../x").status_code == 404
    assert put(harness, "a" * 12, [1], if_match=None).status_code == 428  # the precondition first, as PUT /api/routes
    assert put(harness, "a" * 12, [1], if_match='"x"').status_code == 404
    assert delete(harness, "a" * 12, if_match=None).status_code == 428


def test_a_control_in_a_tenant_belongs_to_one_template_at_most(harness):
    first = created(harness, template(tenants="all"))
    overlap = create(harness, template(name="Accepted risk", controls=["AdminMFAV2", "DLPEnabled"], state="Ignored"))
    assert fields(overlap) == {"controls"}
    message = body(overlap)["errors"][0]["message"]
    assert first["id"] in message and "'Mail filter'" in message and "DLPEnabled" in message
    other = created(harness, template(name="Accepted risk", controls=["AdminMFAV2"], state="Ignored"))
    moved = put(harness, other["id"], template(name="Accepted risk", controls=["AdminMFAV2", "mip_DLP_policies"]))
    assert fields(moved) == {"controls"}  # a PUT is checked against the others too


def test_apply_writes_each_change_once_and_nothing_for_unchanged_controls(harness):
    saved = created(harness, template())
    seen = preview(harness, saved["id"])
    assert seen["changes"] == [{"tenant": "home", "control": c, "before": "Default", "after": "ThirdParty"}
                               for c in DLP]  # fmt: skip
    assert seen["missing"] == [] and patches(harness) == []
    answer = apply(harness, saved["id"])
    assert answer == {"applied": 3, "unchanged": 0, "failed": [], "drifted": []}
    assert states(harness, DLP) == dict.fromkeys(DLP, "ThirdParty")
    sent = [json.loads(p.body) for p in patches(harness)]
    assert len(sent) == 3 and all(s["comment"] == "Covered by the mail filter [template: Mail filter]" for s in sent)
    assert all(s["vendorInformation"] == {"provider": "SecureScore", "vendor": "Microsoft"} for s in sent)
    assert apply(harness, saved["id"]) == {"applied": 0, "unchanged": 3, "failed": [], "drifted": []}
    assert len(patches(harness)) == 3
    shown = body(get(harness, saved["id"]))
    assert shown["appliedBy"] is not None or shown["appliedAt"] is not None
    records = harness.services.store.get_document(f"template-apply:{saved['id']}:home")
    assert records is not None
    assert {c: (r["before"], r["after"], r["status"]) for c, r in records[0]["controls"].items()} == dict.fromkeys(
        DLP, ("Default", "ThirdParty", "done")
    )


def test_a_control_the_tenant_does_not_have_is_missing_not_written(harness):
    saved = created(harness, template(controls=["DLPEnabled", "NoSuchControl"]))
    assert preview(harness, saved["id"])["missing"] == [{"tenant": "home", "control": "NoSuchControl"}]
    assert apply(harness, saved["id"])["applied"] == 1
    assert [p.path.rsplit("/", 1)[-1] for p in patches(harness)] == ["DLPEnabled"]
