"""Provisioning's `score_alerts` check (docs/api.md, Provisioning; docs/alerts.md#when-an-alert-fails): an alert whose
last step for a tenant failed (its ticket not made, noted or resolved), one failing check per (alert, tenant), of that
tenant's group, with the error and the fix. No alerts saved and none failing: no check."""

from __future__ import annotations

from alerts.api import FIX, failures, load_alerts
from provisioning.checks import Check
from shared.services import Services

NAME = "score_alerts"


def alert_checks(services: Services) -> list[Check]:
    saved = load_alerts(services.store).alerts
    failed = failures(services.store, saved)
    if not failed:
        count = len(saved)
        if not count:
            return []
        return [Check(NAME, True, f"{count} score alert(s); none failed at the last refresh of its tenants.",
                      group="tenant")]  # fmt: skip
    checks = []
    for item in failed:
        tenant = None if item.get("tenant") in (None, "home") else str(item["tenant"])
        whose = f"tenant {tenant}" if tenant else "the home tenant"
        checks.append(Check(
            NAME, False,
            f"The score alert '{item.get('alert')}' failed for {whose} at {item.get('at')} ({item.get('attempts')} "
            f"time(s) in a row): {item.get('detail')}",
            FIX,
            tenant, str(item.get("code") or "internal_error"), group="tenant",
        ))  # fmt: skip
    return checks
