"""The tenants document as the kernel reads it (shared/tenant_records.py): a record written back is the record
read, byte for byte, with only what changed changed."""

from __future__ import annotations

import json
from typing import Any

from shared.tenant_records import Tenant, Tenants, by_rank
from shared.tickets import HOME

# As secure_score/tenants.py wrote it: members in the order its history added them; one of a later version.
STORED: dict[str, Any] = {
    "id": "1b6f0a2c-0000-4000-8000-00000000000a", "name": "Fabrikam", "domain": "fabrikam.com", "state": "pending",
    "addedAt": "2026-01-02T03:04:05+00:00", "addedBy": "admin@contoso.com", "lastError": {"code": "consent_declined"},
    "consent": {"hash": "ab", "expiresAt": "2026-01-16T03:04:05+00:00"}, "consentState": "s", "newer": [1, {"x": 2}],
}  # fmt: skip


def test_a_record_read_and_written_back_is_the_same_json_byte_for_byte():
    assert json.dumps(Tenant.from_json(STORED).to_json()) == json.dumps(STORED)
    assert Tenant.from_json({}).to_json() == {} and Tenant.from_json(None).to_json() == {}


def test_a_change_is_written_as_a_dicts_update_would_write_it():
    expected = dict(STORED)
    expected.update(state="removed", consent=None, consentState=None, consentReportedAt=None, confirm=None)
    changed = Tenant.from_json(STORED).updated(state="removed", consent=None, consent_state=None,
                                               consent_reported_at=None, confirm=None)  # fmt: skip
    assert json.dumps(changed.to_json()) == json.dumps(expected)
    assert changed.removed and not changed.active and changed.unknown == {"newer": [1, {"x": 2}]}


def test_the_document_reads_the_home_tenant_and_lists_the_readable_ones():
    removed = {**STORED, "id": "1b6f0a2c-0000-4000-8000-00000000000b", "state": "removed"}
    document = Tenants.from_json({"tenants": {STORED["id"]: STORED, removed["id"]: removed}, "home": {}})
    assert document.home_state == "active" and document.readable() == [HOME, STORED["id"]]
    assert Tenants.from_json({"home": {"state": "paused"}, "tenants": None}).home_state == "paused"
    assert document.added[STORED["id"]].consent_expires_at == "2026-01-16T03:04:05+00:00"


def test_confirming_is_the_state_or_a_pending_tenant_whose_consent_was_reported():
    assert Tenant(state="confirming").confirming and Tenant(state="pending", consent_reported_at="t").confirming
    assert not Tenant(state="pending").confirming and not Tenant(state="active", consent_reported_at="t").confirming


def test_controls_are_listed_by_rank_unranked_last_then_by_id():
    controls: list[dict[str, Any]] = [{"id": "b", "rank": None}, {"id": "c", "rank": 2}, {"id": "a", "rank": None},
                                      {"id": "d", "rank": 1}]  # fmt: skip
    assert [c["id"] for c in sorted(controls, key=by_rank)] == ["d", "c", "a", "b"]
