"""The review's findings on the templates core (issue 32), each fixed and held here: a preview past its deadline, the
write-back's own note, a template changed under an apply, the version an apply writes, a person's earlier decision,
records of controls taken out, exceptions' end dates, the store's entity size and the answers' bounds."""

from __future__ import annotations

from typing import Any

from dev.wire import Fault
from secure_score.writeback import patch_body
from templates.api import apply_tenant, load_all, version_of
from tests.conftest import Harness
from tests.templates.test_applying import PROFILES, with_deadline
from tests.templates_support import DLP, apply, body, created, delete, get, patches, put, states, template


def test_a_preview_past_its_deadline_names_the_tenant_in_failed(harness):
    with_deadline(harness, 1.0)
    saved = created(harness, template())
    harness.graph.page_size = 2  # more than one page: the second page is asked for past the deadline
    harness.graph.inject(Fault("latency", seconds=1.2, method="GET", path_prefix=PROFILES, times=1))
    response = harness.call("preview_template", "POST", f"/templates/{saved['id']}/preview",
                            route_params={"id": saved["id"]})  # fmt: skip
    assert response.status_code == 200, response.get_body()
    answer: dict[str, Any] = body(response)
    assert [(f["tenant"], f["code"]) for f in answer["failed"]] == [("home", "deadline_exceeded")]
    assert answer["changes"] == []


def test_drift_names_who_changed_the_state_not_a_later_note(harness):
    saved = created(harness, template(controls=["DLPEnabled"]))
    apply(harness, saved["id"])
    harness.clock.advance(minutes=5)
    harness.graph.set_state("DLPEnabled", "Default", by="person@contoso.com")
    changed = harness.graph.state_of("DLPEnabled")["updatedDateTime"]
    harness.clock.advance(minutes=5)
    harness.services.graph.update_control(
        "DLPEnabled", patch_body({"comment": "ServiceNow INC1: New", "assignedTo": ""}, {})
    )  # a write-back's note
    (drifted,) = apply(harness, saved["id"])["drifted"]
    assert (drifted["state"], drifted["by"], drifted["at"]) == ("Default", "person@contoso.com", changed)
    assert states(harness, ["DLPEnabled"]) == {"DLPEnabled": "Default"}


def test_an_apply_holding_a_template_removed_since_writes_nothing(harness):
    """A queued `apply_tenant` (or an apply that found the template before a DELETE) reads the templates again after
    taking its lease."""
    saved = created(harness, template())
    held = load_all(harness.services.store)[saved["id"]]
    assert delete(harness, saved["id"]).status_code == 204
    outcome = apply_tenant(harness.services, held, version_of(held), "home", "admin@msp.com")
    assert (outcome.applied, [f["code"] for f in outcome.failed]) == (0, ["template_removed"])
    assert patches(harness) == [] and harness.services.store.list_documents("template-apply:") == {}


def test_an_apply_of_a_version_edited_since_writes_nothing(harness):
    saved = created(harness, template())
    held = load_all(harness.services.store)[saved["id"]]
    assert put(harness, saved["id"], template(controls=DLP[1:])).status_code == 200
    outcome = apply_tenant(harness.services, held, version_of(held), "home", "admin@msp.com")
    assert (outcome.applied, [f["code"] for f in outcome.failed]) == (0, ["template_changed"])
    assert patches(harness) == []
    assert apply(harness, saved["id"])["applied"] == 2  # the current version writes, the lease was released


def _post(harness: Harness, template_id: str, what: str, raw: bytes = b"", if_match: str | None = None) -> Any:
    headers = {"If-Match": if_match} if if_match is not None else None
    return harness.call(f"{what}_template", "POST", f"/templates/{template_id}/{what}", body=raw, headers=headers,
                        route_params={"id": template_id})  # fmt: skip


def test_an_apply_writes_only_the_version_its_preview_answered(harness):
    saved = created(harness, template())
    seen = _post(harness, saved["id"], "preview")
    version = body(seen)["version"]
    assert seen.headers["ETag"] == f'"{version}"' == get(harness, saved["id"]).headers["ETag"]
    assert put(harness, saved["id"], template(state="Ignored")).status_code == 200  # another admin edits it
    refused = _post(harness, saved["id"], "apply", if_match=f'"{version}"')
    assert (refused.status_code, body(refused)["code"]) == (412, "precondition_failed")
    assert body(refused)["template"]["state"] == "Ignored" and patches(harness) == []
    current = body(_post(harness, saved["id"], "preview"))["version"]
    written = _post(harness, saved["id"], "apply", if_match=f'"{current}"')
    assert written.status_code == 200 and states(harness, DLP) == dict.fromkeys(DLP, "Ignored")


def test_a_preview_checks_its_body_and_previews_an_overwrite(harness):
    saved = created(harness, template(controls=["DLPEnabled"]))
    for raw in (b'{"x": 1}', b"[]", b"null", b'{"overwriteDrift": 1}'):
        refused = _post(harness, saved["id"], "preview", raw)
        assert (refused.status_code, body(refused)["code"]) == (400, "validation_failed"), raw
    apply(harness, saved["id"])
    harness.clock.advance(minutes=5)
    harness.graph.set_state("DLPEnabled", "Default", by="person@contoso.com")
    assert body(_post(harness, saved["id"], "preview"))["changes"] == []
    seen = body(_post(harness, saved["id"], "preview", b'{"overwriteDrift": true}'))
    assert [(c["control"], c["before"], c["after"]) for c in seen["changes"]] == [
        ("DLPEnabled", "Default", "ThirdParty")
    ]


def test_a_persons_decision_before_the_first_apply_is_drift(harness):
    saved = created(harness, template(controls=["DLPEnabled"]))
    harness.graph.set_state("DLPEnabled", "Ignored", by="ciso@customer.com")  # before any apply of the template
    at = harness.graph.state_of("DLPEnabled")["updatedDateTime"]
    answer = apply(harness, saved["id"])
    assert answer["applied"] == 0 and patches(harness) == []
    assert answer["drifted"] == [{"tenant": "home", "control": "DLPEnabled", "state": "Ignored",
                                  "by": "ciso@customer.com", "at": at}]  # fmt: skip
    assert [d["control"] for d in body(get(harness, saved["id"]))["drift"]] == ["DLPEnabled"]
    assert apply(harness, saved["id"], {"overwriteDrift": True})["applied"] == 1
    assert states(harness, ["DLPEnabled"]) == {"DLPEnabled": "ThirdParty"}


def test_records_of_controls_and_tenants_taken_out_go_with_them(harness):
    saved = created(harness, template(expiresInDays=5))
    apply(harness, saved["id"])
    harness.clock.advance(minutes=5)
    harness.graph.set_state("DLPEnabled", "Ignored", by="person@contoso.com")
    apply(harness, saved["id"])  # DLPEnabled drifted
    shown = body(get(harness, saved["id"]))
    assert [d["control"] for d in shown["drift"]] == ["DLPEnabled"] and len(shown["expiring"]) == 3
    assert put(harness, saved["id"], template(controls=DLP[1:], expiresInDays=5)).status_code == 200
    shown = body(get(harness, saved["id"]))
    assert shown["drift"] == [] and [e["control"] for e in shown["expiring"]] == DLP[1:]
    stored = harness.services.store.get_document(f"template-apply:{saved['id']}:home")
    assert stored is not None and set(stored[0]["controls"]) == set(DLP[1:]) and stored[0]["drift"] == {}


def test_an_unchanged_exception_keeps_its_end_until_its_days_change(harness):
    saved = created(harness, template(expiresInDays=10))
    apply(harness, saved["id"])
    first = {e["until"] for e in body(get(harness, saved["id"]))["expiring"]}
    harness.clock.advance(days=9)
    assert put(harness, saved["id"], template(name="Mail filter (renamed)", expiresInDays=10)).status_code == 200
    assert apply(harness, saved["id"])["unchanged"] == 3 and len(patches(harness)) == 3
    assert {e["until"] for e in body(get(harness, saved["id"]))["expiring"]} == first  # a rename ends nothing later
    assert put(harness, saved["id"], template(expiresInDays=12)).status_code == 200
    apply(harness, saved["id"])
    later = {e["until"] for e in body(get(harness, saved["id"]))["expiring"]}
    assert later and min(later) > max(first)  # new days: a new end, from this apply


def test_a_templates_answer_lists_at_most_its_limit_and_the_list_shows_counts(harness, monkeypatch):
    monkeypatch.setattr("templates.applying.MAX_LISTED", 2)
    saved = created(harness, template(expiresInDays=5))
    apply(harness, saved["id"])
    shown = body(get(harness, saved["id"]))
    assert len(shown["expiring"]) == 2 and shown["listedOf"] == {"expiring": 3} and "partial" not in shown
    (listed,) = body(harness.call("list_templates", path="/templates"))["templates"]
    assert "drift" not in listed and "expiring" not in listed
    assert {k: listed["lastApply"][k] for k in ("applied", "unchanged", "failed", "drifted", "version")} == {
        "applied": 3, "unchanged": 0, "failed": 0, "drifted": 0, "version": saved["version"]}  # fmt: skip


def test_a_templates_answer_reads_its_tenants_under_a_deadline(harness, monkeypatch):
    monkeypatch.setattr("templates.shown.READ_SECONDS", 0.0)
    saved = created(harness, template(expiresInDays=5))
    apply(harness, saved["id"])
    shown = body(get(harness, saved["id"]))
    assert (shown["expiring"], shown["partial"]) == ([], True)


def test_an_apply_that_wrote_nothing_is_no_last_apply(harness):
    saved = created(harness, template())
    home = harness.services.home_tenant_id()
    assert harness.call("remove_tenant", "DELETE", f"/tenants/{home}", route_params={"id": home}).status_code == 200
    assert apply(harness, saved["id"])["failed"][0]["code"] == "tenant_paused"
    shown = body(get(harness, saved["id"]))
    assert shown["appliedAt"] is None and shown["appliedBy"] is None
    assert (shown["lastApply"]["applied"], shown["lastApply"]["failed"]) == (0, 1)


def test_a_tenant_that_refuses_a_write_is_not_sent_the_rest(harness):
    from tests.templates.test_applying import MAIL

    saved = created(harness, template(controls=MAIL))
    harness.graph.home.read_only = True  # SecurityEvents.Read.All only
    answer = apply(harness, saved["id"])
    assert {(f["control"], f["code"]) for f in answer["failed"]} == {(c, "secure_score_forbidden") for c in MAIL}
    assert len(patches(harness)) <= 4 < len(MAIL)  # at most those already in flight when the first 403 came


def test_a_tenant_paused_while_an_apply_reads_it_is_not_written(harness):
    saved = created(harness, template())
    home = harness.services.home_tenant_id()
    paused: list[Any] = []

    def pause_now(request: Any) -> None:  # the apply is reading the tenant's controls: its admin pauses it
        if request.method == "GET" and request.path.startswith(PROFILES) and not paused:
            paused.append(harness.call("remove_tenant", "DELETE", f"/tenants/{home}", route_params={"id": home}))

    harness.graph.while_in_flight = pause_now
    answer = apply(harness, saved["id"])
    harness.graph.while_in_flight = None
    assert paused[0].status_code == 200
    assert [(f["tenant"], f["code"]) for f in answer["failed"]] == [("home", "tenant_paused")]
    assert answer["applied"] == 0 and patches(harness) == []


def test_a_pending_intent_that_landed_then_a_person_reverted_is_drift(harness):
    """The PATCH landed, its answer was lost (the intent still pending), then a person set the control back: the
    entry after the intent is the person's, so it is drift, not a PATCH that never landed."""
    saved = created(harness, template(controls=["DLPEnabled"]))
    store = harness.services.store
    name = f"template-apply:{saved['id']}:home"
    apply(harness, saved["id"])
    found = store.get_document(name)
    assert found is not None
    document, etag = found
    document["controls"]["DLPEnabled"]["status"] = "pending"  # as if the answer had been lost
    store.put_document(name, document, etag)
    harness.clock.advance(minutes=5)
    harness.graph.set_state("DLPEnabled", "Default", by="person@contoso.com")
    answer = apply(harness, saved["id"])
    assert [(d["control"], d["by"]) for d in answer["drifted"]] == [("DLPEnabled", "person@contoso.com")]
    assert len(patches(harness)) == 1 and states(harness, ["DLPEnabled"]) == {"DLPEnabled": "Default"}
