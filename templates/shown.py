"""A template as the API answers it (docs/templates.md#the-api): what was saved, its version, its last apply, and
what drifted or ends soon, read from its records."""

from __future__ import annotations

from typing import Any

from shared import deadlines
from shared.services import Services
from templates import records
from templates.applying import listed
from templates.model import Template
from templates.saving import version_of

READ_SECONDS = 10.0  # one template's answer reads its tenants' records (and snapshots) for this long at most


def shown(services: Services, template: Template, *, detail: bool = True, snapshots: bool = False) -> dict[str, Any]:
    """`detail`: with `drift` and `expiring`, read from the template's records (one listing of its tenants' record
    documents: one template's answer, never the list's, which stays one read whatever the tenants); `snapshots`: also
    compare with each tenant's latest refreshed snapshot (one read per tenant)."""
    data = template.to_json()
    data.pop("revision", None)
    answer = {**data, "version": version_of(template)}
    if detail:
        with deadlines.run_deadline(READ_SECONDS):
            drift, expiring, whole = records.drift_and_expiring(services.store, template, services.clock(), snapshots)
        answer = listed(answer, drift=drift, expiring=expiring)
        if not whole:  # some tenants' records were not read in time: the lists are the others'
            answer["partial"] = True
    return answer


def apply_options(raw: bytes, body: Any) -> bool:
    """The apply's body: nothing, or `{"overwriteDrift": true|false}` (a JSON `null` is no object: refused)."""
    from shared.problems import FieldError, ValidationFailed

    if not raw.strip():
        return False
    if not isinstance(body, dict) or set(body) - {"overwriteDrift"}:
        raise ValidationFailed([FieldError("body", 'must be empty or {"overwriteDrift": true|false}')])
    overwrite = body.get("overwriteDrift", False)
    if not isinstance(overwrite, bool):
        raise ValidationFailed([FieldError("overwriteDrift", "must be true or false")])
    return overwrite
