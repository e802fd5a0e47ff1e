"""The `templates_endings` timer's work, every hour (docs/templates.md#exceptions-that-end): the exceptions whose end
has come (templates/endings.py), then each template applied to `all` reaching the tenants whose consent completed
since (docs/design.md, section 17: "A template applied to `all` also applies to tenants added later").

A tenant is reached when the connector writes it (its consent complete, not paused) and the template has no record
of any control there yet: it is applied as an admin's apply would, with the same lease, intents and records
(`apply_tenant`), by the person who last applied the template, whose decision it was. A tenant the template already
wrote (or found unchanged) is never applied again here: re-applying stays an admin's act. Secure Score cannot import
the templates (the import-linter layers, pyproject.toml), so the templates come to the tenants, at most an hour
after a consent completes.
"""

from __future__ import annotations

import contextlib
import logging
from datetime import timedelta
from typing import Any

from shared import deadlines, expiring, tenant_records
from shared.services import Services
from shared.store import StoreConflict
from templates import records
from templates.applying import apply_tenant, not_written, tenants_of
from templates.endings import Endings, end_tenant
from templates.model import Template
from templates.saving import load_all, version_of

log = logging.getLogger(__name__)


def run(services: Services) -> Endings:
    result = Endings()
    store = services.store
    with deadlines.run_deadline(services.run_deadline):
        registered = tenant_records.registrations(store)
        for template in sorted(load_all(store).values(), key=lambda t: t.id):
            documents = records.all_of(store, template.id)  # one listing: every tenant's record of the template
            for tenant, document in sorted(documents.items()):
                end_tenant(services, template, tenant, document, registered, result)
            if template.tenants is None and template.applied_at and applied_version(template) == version_of(template):
                known = {t for t, d in documents.items() if records.controls_of(d)}
                _reach(services, template, known, registered, result)
    summarize(services)
    log.info("Templates, hourly: %d exceptions ended, %d tickets made, %d tenants reached, %d skipped, %d failed",
             result.ended, result.tickets, len(result.reached), len(result.skipped), len(result.failed))  # fmt: skip
    return result


def applied_version(template: Template) -> str | None:
    """The version its last apply wrote (`lastApply`, templates/saving.py): only that one reaches tenants added later,
    never an edit saved (or previewed) since and not applied."""
    last = template.others.get("lastApply")
    return str(last.get("version")) if isinstance(last, dict) and last.get("version") else None


def summarize(services: Services) -> None:
    """Per tenant, the exceptions that end within 14 days (`GET /api/tenants` shows them: shared/expiring.py); after
    each hourly run, apply and removal. A summary that kept changing under this write is left to the next."""
    store, now = services.store, services.clock()
    soon = (now + timedelta(days=records.EXPIRING_DAYS)).isoformat()
    by_tenant: dict[str, dict[str, Any]] = {}
    for template_id in sorted(load_all(store)):
        for tenant, document in records.all_of(store, template_id).items():
            for record in records.controls_of(document).values():
                until = record.get("until")
                if record.get("status") == records.DONE and isinstance(until, str) and until <= soon:
                    seen = by_tenant.setdefault(tenant, {"count": 0, "next": until})
                    seen.update(count=seen["count"] + 1, next=min(seen["next"], until))
    with contextlib.suppress(StoreConflict):
        expiring.save(store, by_tenant, now.isoformat())


def _reach(services: Services, template: Template, known: set[str], registered: tenant_records.Tenants,
           result: Endings) -> None:  # fmt: skip
    """Apply an `all` template to each tenant it has no record in (`known`: those it has) and the connector writes
    now."""
    for tenant in tenants_of(services, template):
        if not_written(services, tenant, registered) is not None:
            continue  # pending, confirming, paused: reached once its consent completes (or it is resumed)
        if tenant in known:
            continue
        outcome = apply_tenant(services, template, version_of(template), tenant, template.applied_by)
        result.reached.append({"template": template.id, "tenant": tenant, "applied": outcome.applied,
                               "unchanged": outcome.unchanged})  # fmt: skip
        result.failed.extend({"template": template.id, **f} for f in outcome.failed)
        log.info("Template %s (all) reached tenant %s: %d applied, %d unchanged", template.id, tenant,
                 outcome.applied, outcome.unchanged)  # fmt: skip
