"""Each tenant's run state in its own store document (secure_score/tenant_runs.py): a refresh writes its tenant's run
document and never the tenants document an admin changes, so two tenants' refreshes never write the same entity; run
state an earlier version kept in the tenants document is still read, and carried into the run document by its first
write. Over the Entra and Graph simulators, as test_tenants.py."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

from dev.entra import FABRIKAM
from secure_score import tenant_runs
from secure_score.fanout import RefreshMessage
from secure_score.queued import refresh_queued
from shared.runs import SECURE_SCORE_RUN
from shared.tenant_records import DOCUMENT, RUN_PREFIX
from shared.tickets import HOME
from tests.secure_score.test_tenants import added, entra, msp, overview, refresh  # noqa: F401  (fixtures)


def test_a_refresh_of_several_tenants_writes_each_ones_run_document_and_never_the_tenants_document(msp, entra):  # noqa: F811
    store = msp.services.store
    added(msp, entra, FABRIKAM)
    before = store.get_document(DOCUMENT)
    assert refresh(msp)[0] == 200
    assert store.get_document(DOCUMENT) == before  # not written: same ETag, same content
    runs = store.list_documents(RUN_PREFIX)
    assert set(runs) == {f"{RUN_PREFIX}home", f"{RUN_PREFIX}{FABRIKAM.id}"}
    rows = overview(msp)
    home_id = next(t for t, row in rows.items() if row.get("home"))
    for tenant, name in ((home_id, f"{RUN_PREFIX}home"), (FABRIKAM.id, f"{RUN_PREFIX}{FABRIKAM.id}")):
        run = runs[name][0]
        assert run["lastRefresh"]["status"] == "ok" and run["lastError"] is None
        assert rows[tenant]["lastRefresh"] == run["lastRefresh"]  # what the row shows is the run document's
    # Removed, its answer shows its last outcome; added again, it is a new registration with none of the old one's
    removed = msp.call("remove_tenant", "DELETE", f"/tenants/{FABRIKAM.id}", route_params={"id": FABRIKAM.id})
    assert removed.status_code == 200 and json.loads(removed.get_body())["lastRefresh"] == run["lastRefresh"]
    again = msp.call("add_tenant", "POST", "/tenants", body=json.dumps({"tenant": FABRIKAM.id}).encode())
    assert again.status_code == 201 and overview(msp)[FABRIKAM.id]["lastRefresh"] is None


def _legacy(store: Any, home: dict[str, Any], fabrikam: dict[str, Any]) -> None:
    """The stored data of a version before run documents: run state inside the tenants document, no run document."""
    for name in store.list_documents(RUN_PREFIX):
        store.delete_document(name)
    document, etag = store.get_document(DOCUMENT)
    document["home"] = {**document.get("home", {}), **home}
    document["tenants"][FABRIKAM.id] = {**document["tenants"][FABRIKAM.id], **fabrikam}
    store.put_document(DOCUMENT, document, etag)


def test_run_state_stored_in_the_tenants_document_by_an_earlier_version_is_read_and_kept_by_the_first_write(
    msp,  # noqa: F811
    entra,  # noqa: F811
):
    store = msp.services.store
    added(msp, entra, FABRIKAM)
    now = msp.clock()
    ok = {"at": now.isoformat(), "status": "ok", "controls": 3}
    failed = {"at": now.isoformat(), "status": "failed", "controls": 0}
    error = {"code": "tenant_forbidden", "detail": "Graph said 403.", "remediation": "Grant it.", "at": ok["at"]}
    _legacy(store, {"lastRefresh": ok}, {"lastRefresh": failed, "lastError": error})
    rows = overview(msp)
    assert rows[FABRIKAM.id]["lastError"] == error and rows[FABRIKAM.id]["lastRefresh"] == failed
    due = (now - timedelta(minutes=5)).isoformat()
    lease = timedelta(seconds=150)
    # The home tenant was refreshed after `due` (the stored outcome says so): a repeat, nothing written
    assert tenant_runs.claim_refresh(msp.services, HOME, due, lease, "m-home") == "done"
    # Fabrikam's stored refresh failed: its lease is taken, in its own run document, which keeps the stored outcome
    assert tenant_runs.claim_refresh(msp.services, FABRIKAM.id, due, lease, "m-fab") == "claimed"
    run = store.get_document(f"{RUN_PREFIX}{FABRIKAM.id}")[0]
    assert run["lastError"] == error and run["lastRefresh"] == failed and run["refreshingBy"] == "m-fab"
    rows = overview(msp)
    assert rows[FABRIKAM.id]["lastError"] == error and rows[FABRIKAM.id]["lastRefresh"] == failed
    home_id = next(t for t, row in rows.items() if row.get("home"))
    assert rows[home_id]["lastRefresh"] == ok
    # The last try failing: the stored error, with where the message went, is still the tenant's
    tenant_runs.note_poisoned(msp.services, FABRIKAM.id, "secure-score-tenant-poison", 5)
    shown = overview(msp)[FABRIKAM.id]["lastError"]
    assert shown["code"] == "tenant_forbidden" and shown["poisoned"]["attempts"] == 5
    assert shown["remediation"].startswith("Grant it.")
    # A later refresh replaces the outcome in the run document; the tenants document's stale copy is not read again
    assert refresh(msp)[0] == 200
    row = overview(msp)[FABRIKAM.id]
    assert row["lastRefresh"]["status"] == "ok" and row["lastError"] is None
    assert store.get_document(DOCUMENT)[0]["tenants"][FABRIKAM.id]["lastError"] == error  # left, and ignored


def test_a_queued_refresh_of_another_tenant_with_nothing_failing_writes_only_its_own_run_document(msp, entra):  # noqa: F811
    """What makes several workers faster than one: a queued refresh of one tenant writes no document another tenant's
    refresh writes too (neither the tenants document nor the refresh's run document, with no item failed or
    cleared), only its own run document."""
    store = msp.services.store
    added(msp, entra, FABRIKAM)
    assert refresh(msp)[0] == 200
    due = msp.clock().isoformat()
    body = json.dumps(RefreshMessage(FABRIKAM.id, due).to_json()).encode()
    msp.clock.advance(seconds=1)
    shared = (DOCUMENT, SECURE_SCORE_RUN)
    before = {name: store.get_document(name) for name in shared}
    assert refresh_queued(msp.services, body, 1, "m1") == "refreshed"
    assert {name: store.get_document(name) for name in shared} == before
    run = store.get_document(f"{RUN_PREFIX}{FABRIKAM.id}")[0]
    assert run["lastRefresh"]["at"] > due and run["lastRefresh"]["status"] == "ok" and run["refreshingBy"] is None
