"""The apply's rules against the Graph simulator (docs/templates.md#the-rules): one apply per tenant at a time, a
tenant the connector does not read is never written, drift is never set back silently, the intent is stored before
each PATCH and a PATCH is never sent twice, the apply stops at its deadline with what is done recorded, and the
write-back never undoes a template's state."""

from __future__ import annotations

import json
import threading
from datetime import timedelta
from typing import Any

from dev.servicenow import SimulatorTransport
from dev.wire import Fault
from shared import services as services_module
from shared.config import load_settings
from shared.retries import RetryPolicy
from shared.secrets import FileSecretStore
from shared.services import Services
from shared.store import SqliteTicketStore
from status_sync.sync import StatusSync
from tests.conftest import Harness, settings_env
from tests.create_ticket.test_tickets import post
from tests.templates_support import DLP, apply, body, created, delete, get, patches, preview, states, template

PROFILES = "/v1.0/security/secureScoreControlProfiles"


def records(harness: Harness, template_id: str, tenant: str = "home") -> dict[str, Any]:
    found = harness.services.store.get_document(f"template-apply:{template_id}:{tenant}")
    assert found is not None
    return dict(found[0]["controls"])


def test_two_applies_at_once_write_each_control_once(harness):
    saved = created(harness, template())
    second: list[dict[str, Any]] = []

    def apply_again(request: Any) -> None:  # the first apply's first PATCH is in Graph: a second apply starts
        if request.method == "PATCH" and not second:
            second.append({})
            second[0] = apply(harness, saved["id"])

    harness.graph.while_in_flight = apply_again
    first = apply(harness, saved["id"])
    harness.graph.while_in_flight = None
    assert first["applied"] == 3
    refused = [(f["tenant"], f["control"], f["code"]) for f in second[0]["failed"]]
    assert refused == [("home", None, "apply_in_progress")]
    assert second[0]["applied"] == 0 and len(patches(harness)) == 3
    assert apply(harness, saved["id"]) == {"applied": 0, "unchanged": 3, "failed": [], "drifted": []}  # lease released


def test_a_paused_home_tenant_is_named_in_failed_and_never_written(harness):
    saved = created(harness, template())
    home = harness.services.home_tenant_id()
    assert home is not None
    paused = harness.call("remove_tenant", "DELETE", f"/tenants/{home}", route_params={"id": home})
    assert paused.status_code == 200, paused.get_body()
    answer = apply(harness, saved["id"])
    assert [(f["tenant"], f["control"], f["code"]) for f in answer["failed"]] == [("home", None, "tenant_paused")]
    assert answer["applied"] == 0 and patches(harness) == []
    assert preview(harness, saved["id"])["failed"][0]["code"] == "tenant_paused"


def test_a_control_changed_in_the_portal_is_drift_and_never_set_back_silently(harness):
    saved = created(harness, template())
    apply(harness, saved["id"])
    harness.clock.advance(minutes=5)
    harness.graph.set_state("DLPEnabled", "Default", by="person@contoso.com")
    seen = preview(harness, saved["id"])
    assert seen["changes"] == [] and [d["control"] for d in seen["drifted"]] == ["DLPEnabled"]
    answer = apply(harness, saved["id"])
    (drifted,) = answer["drifted"]
    assert (drifted["tenant"], drifted["control"], drifted["state"], drifted["by"]) == (
        "home", "DLPEnabled", "Default", "person@contoso.com")  # fmt: skip
    assert drifted["at"] == harness.graph.home.state_of("DLPEnabled")["updatedDateTime"]
    assert (answer["applied"], answer["unchanged"]) == (0, 2) and len(patches(harness)) == 3
    assert states(harness, DLP)["DLPEnabled"] == "Default"
    assert [(d["tenant"], d["control"], d["by"]) for d in body(get(harness, saved["id"]))["drift"]] == [
        ("home", "DLPEnabled", "person@contoso.com")]  # fmt: skip
    overwritten = apply(harness, saved["id"], {"overwriteDrift": True})
    assert (overwritten["applied"], overwritten["drifted"]) == (1, []) and len(patches(harness)) == 4
    assert states(harness, DLP)["DLPEnabled"] == "ThirdParty" and body(get(harness, saved["id"]))["drift"] == []


def test_the_apply_body_is_checked(harness):
    saved = created(harness, template())
    for wrong in ({"overwriteDrift": "yes"}, {"overwrite": True}, [True], None):
        response = harness.call("apply_template", "POST", f"/templates/{saved['id']}/apply",
                                body=json.dumps(wrong).encode(), route_params={"id": saved["id"]})  # fmt: skip
        assert (response.status_code, body(response)["code"]) == (400, "validation_failed"), wrong
    assert patches(harness) == []


def test_the_intent_is_stored_before_each_patch(harness):
    saved = created(harness, template())
    seen: dict[str, str] = {}

    def look(request: Any) -> None:
        if request.method == "PATCH":
            control = request.path.rsplit("/", 1)[-1]
            seen[control] = records(harness, saved["id"])[control]["status"]

    harness.graph.while_in_flight = look
    apply(harness, saved["id"])
    harness.graph.while_in_flight = None
    assert seen == dict.fromkeys(DLP, "pending")
    assert {c: r["status"] for c, r in records(harness, saved["id"]).items()} == dict.fromkeys(DLP, "done")


def test_a_patch_whose_answer_was_lost_is_never_sent_again(harness):
    """The PATCH lands and its answer is lost, and Graph then fails every read of the control: the apply ends with
    the control failed and its intent kept. The next apply finds the state there and sends nothing."""
    saved = created(harness, template())
    path = f"{PROFILES}/DLPEnabled"
    harness.graph.inject(Fault("commit_then_drop", method="PATCH", path_prefix=path))
    harness.graph.inject(Fault("status", 503, method="GET", path_prefix=path, times=50))
    answer = apply(harness, saved["id"])
    assert [(f["control"], f["code"]) for f in answer["failed"]] == [("DLPEnabled", "secure_score_unavailable")]
    assert records(harness, saved["id"])["DLPEnabled"]["status"] == "failed"
    harness.graph.faults.clear()
    again = apply(harness, saved["id"])
    assert again == {"applied": 0, "unchanged": 3, "failed": [], "drifted": []}
    assert [p.path for p in patches(harness)].count(path) == 1
    assert records(harness, saved["id"])["DLPEnabled"]["status"] == "done"


def with_deadline(harness: Harness, seconds: float) -> None:
    """The harness's connector with the run deadline `seconds` (Services' own parameter)."""
    harness.services.close()
    short = Services(load_settings(settings_env()), transport=harness.transport,
                     graph_transport=SimulatorTransport(harness.graph),
                     store=SqliteTicketStore(harness.tmp / "store.db"),
                     secrets=FileSecretStore(harness.tmp / "secrets.json"), clock=harness.clock,
                     retry=RetryPolicy(base_delay=0.01, max_delay=0.05, max_total=60.0), sleep=harness.sleeps,
                     run_deadline=seconds)  # fmt: skip
    services_module.install(short)
    harness.services = short


def test_a_tenant_whose_turn_comes_after_the_deadline_is_not_touched(harness):
    with_deadline(harness, 0.0)
    saved = created(harness, template())
    answer = apply(harness, saved["id"])
    assert [(f["tenant"], f["control"], f["code"]) for f in answer["failed"]] == [("home", None, "deadline_exceeded")]
    assert harness.graph.requests == [] and harness.services.store.list_documents("template-apply:") == {}


def test_the_apply_stops_at_its_deadline_with_what_is_done_recorded(harness):
    with_deadline(harness, 1.0)
    saved = created(harness, template())
    harness.graph.page_size = 1000  # the listing is one page, answered after the deadline
    harness.graph.inject(Fault("latency", seconds=1.2, method="GET", path_prefix=PROFILES))  # past the deadline
    answer = apply(harness, saved["id"])
    assert {(f["control"], f["code"]) for f in answer["failed"]} == {(c, "deadline_exceeded") for c in DLP}
    assert {r["status"] for r in records(harness, saved["id"]).values()} == {"pending"}  # recorded, never sent
    assert patches(harness) == []
    again = apply(harness, saved["id"])
    assert (again["applied"], again["unchanged"], again["failed"]) == (3, 0, [])
    assert states(harness, DLP) == dict.fromkeys(DLP, "ThirdParty")


def test_a_template_undone_by_a_write_back_is_set_back_by_the_next_apply_without_drift(harness):
    """The write-back reads the control, a template is applied, then the write-back's PATCH lands with the state it
    read (docs/design.md: it sends it back): the connector's own write, no person's drift, so the next apply sets the
    template's state back without overwriteDrift and records what it set back."""
    assert harness.connect().status_code == 200
    assert harness.call("refresh_recommendations", "POST", "/recommendations/refresh").status_code == 200
    saved = created(harness, template(controls=["DLPEnabled"]))
    status, _ = post(harness, {"recommendation": {"id": "DLPEnabled"}})
    assert status == 201
    applied: list[dict[str, Any]] = []

    def apply_now(request: Any) -> None:  # the write-back read the control; its PATCH is on the way
        if request.method == "PATCH" and b"ServiceNow" in (request.body or b"") and not applied:
            applied.append(apply(harness, saved["id"]))

    harness.graph.while_in_flight = apply_now
    harness.clock.advance(minutes=5)
    assert StatusSync(harness.services).run().status == "ok"
    harness.graph.while_in_flight = None
    assert applied and applied[0]["applied"] == 1
    latest = harness.graph.home.state_of("DLPEnabled")
    assert latest["comment"].startswith("ServiceNow ") and latest["state"] == "Default"  # the read state, re-sent
    harness.clock.advance(minutes=5)
    again = apply(harness, saved["id"])
    assert (again["applied"], again["drifted"], again["failed"]) == (1, [], [])
    assert states(harness, ["DLPEnabled"]) == {"DLPEnabled": "ThirdParty"}
    assert records(harness, saved["id"])["DLPEnabled"]["restored"]["state"] == "Default"


MAIL = ["mdo_atpprotection", "mdo_safelinksforOfficeApps", "mdo_safeattachments", "mdo_antiphishingpolicies",
        "mdo_zapspam", "mdo_zapphish", "mdo_commonattachmentsfilter", "mdo_phishthresholdlevel", "exo_mailboxaudit",
        "exo_outlookaddins", "exo_storageproviderrestricted", "exo_individualsharing"]  # fmt: skip


def test_at_most_four_requests_are_in_flight_per_tenant(harness):
    saved = created(harness, template(controls=MAIL))
    harness.graph.latency = 0.05
    answer = apply(harness, saved["id"])
    harness.graph.latency = 0.0
    assert answer["applied"] == len(MAIL) and len(patches(harness)) == len(MAIL)
    assert 2 <= harness.graph.home.max_in_flight <= 4


def test_a_tenant_whose_grant_cannot_write_is_named_per_control(harness):
    saved = created(harness, template())
    harness.graph.home.read_only = True  # SecurityEvents.Read.All only
    answer = apply(harness, saved["id"])
    assert {(f["tenant"], f["control"], f["code"]) for f in answer["failed"]} == {
        ("home", c, "secure_score_forbidden") for c in DLP}  # fmt: skip
    assert answer["applied"] == 0 and states(harness, DLP) == dict.fromkeys(DLP, "Default")


def test_an_exception_that_ends_within_two_weeks_shows_as_expiring(harness):
    soon = created(harness, template(expiresInDays=10))
    later = created(harness, template(name="Later", controls=["AdminMFAV2"], expiresInDays=30))
    apply(harness, soon["id"])
    apply(harness, later["id"])
    shown = body(get(harness, soon["id"]))
    until = (harness.clock() + timedelta(days=10)).isoformat()
    assert shown["expiring"] == [{"tenant": "home", "control": c, "until": until} for c in sorted(DLP)]
    assert body(get(harness, later["id"]))["expiring"] == []


def test_a_change_a_refresh_saw_after_the_apply_shows_as_drift(harness):
    assert harness.connect().status_code == 200
    saved = created(harness, template())
    assert harness.call("refresh_recommendations", "POST", "/recommendations/refresh").status_code == 200
    apply(harness, saved["id"])
    assert body(get(harness, saved["id"]))["drift"] == []  # the snapshot is older than the apply: no drift from it
    harness.clock.advance(minutes=5)
    harness.graph.set_state("mip_DLP_policies", "Reviewed", by="person@contoso.com")
    assert harness.call("refresh_recommendations", "POST", "/recommendations/refresh").status_code == 200
    drift = body(get(harness, saved["id"]))["drift"]
    assert [(d["tenant"], d["control"], d["state"], d["by"]) for d in drift] == [
        ("home", "mip_DLP_policies", "Reviewed", None)]  # fmt: skip
    assert apply(harness, saved["id"])["drifted"][0]["by"] == "person@contoso.com"
    assert [d["by"] for d in body(get(harness, saved["id"]))["drift"]] == ["person@contoso.com"]


def test_an_answer_lists_at_most_its_limit_and_counts_the_rest(harness, monkeypatch):
    """The cut itself (MAX_LISTED, 2,000 in use) shown on a small limit: the constant, not the code, is changed."""
    monkeypatch.setattr("templates.applying.MAX_LISTED", 2)
    saved = created(harness, template())
    seen = preview(harness, saved["id"])
    assert len(seen["changes"]) == 2 and seen["listedOf"] == {"changes": 3}
    answer = apply(harness, saved["id"])
    assert answer["applied"] == 3 and "listedOf" not in answer


def test_a_template_removed_while_an_apply_of_it_writes_leaves_no_records(harness):
    """The removal goes first, then its records: the apply's lease went with them, so what it would record after is
    never written, and nothing outlives the template."""
    saved = created(harness, template())
    removed: list[Any] = []
    once = threading.Lock()

    def remove_now(request: Any) -> None:  # up to 4 PATCHes are in flight at once: one of them removes it
        if request.method == "PATCH" and once.acquire(blocking=False):
            removed.append(delete(harness, saved["id"]))

    harness.graph.while_in_flight = remove_now
    apply(harness, saved["id"])
    harness.graph.while_in_flight = None
    assert removed[0].status_code == 204, removed[0].get_body()
    assert harness.services.store.list_documents("template-apply:") == {}
    assert get(harness, saved["id"]).status_code == 404
