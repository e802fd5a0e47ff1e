"""Provisioning's `template_apply_queue` check (docs/api.md, Provisioning; docs/templates.md): a template's queued
apply of a tenant that failed every try and sits in `template-apply-poison`, one failing check per apply, with its
tenants, where each one's error is, and the fix. No queue configured: no fan-out, no check."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from provisioning.checks import Check
from provisioning.queue_checks import queue_checks
from shared.services import Services
from templates.api import read_poisoned

NAME = "template_apply_queue"
POISONED = "template_apply_poisoned"
UNREADABLE = "queue_message_unreadable"
POISON_QUEUE = "template-apply-poison"
# How an admin clears the queue once the cause is fixed (https://learn.microsoft.com/cli/azure/storage/message).
CLEAR = (f"az storage message clear --queue-name {POISON_QUEUE} --account-name <the app's storage account> "
         "--auth-mode login, or the Azure portal: the storage account > Queues > "
         f"{POISON_QUEUE} > Clear queue")  # fmt: skip


def poison_checks(services: Services) -> list[Check]:
    """The refresh's and the templates' poison queues, read at once: each within its own 5 s, the page not in 10."""
    if services.queues is None:  # opened here, once, before two threads ask
        return []
    with ThreadPoolExecutor(1) as pool:
        templates = pool.submit(template_checks, services)
        return [*queue_checks(services), *templates.result()]


def template_checks(services: Services) -> list[Check]:
    found = read_poisoned(services)
    if found is None:
        return []
    if found.error is not None:
        return [_check(False, f"The poison queue {POISON_QUEUE} could not be read: {found.error}",
                       "Check that the app's identity has Storage Queue Data Contributor on the app's storage account "
                       "(the Bicep grants it); provisioning reads the queue again when it is loaded again.",
                       "store_unavailable")]  # fmt: skip
    checks = []
    for (template, run), tenants in sorted(found.by_run.items()):
        names = ", ".join(tenants[:10]) + (" and others" if len(tenants) > 10 else "")
        progress = f"/api/templates/{template}/applies/{run}"
        checks.append(_check(
            False,
            f"The queued apply of template {template} failed every try in {len(tenants)} tenant(s) ({names}) and "
            f"was moved to {POISON_QUEUE}; nothing else was written there by it.",
            f"GET {progress} names each tenant's error (its failed entries): fix what it names (the tenant's consent "
            "or permission, Graph's answer), then apply the template again (POST /api/templates/"
            f"{template}/apply): what is already applied is left as it is. Then clear the message(s): {CLEAR}.",
            POISONED,
        ))  # fmt: skip
    if found.unreadable:
        checks.append(_check(False, f"{found.unreadable} message(s) in {POISON_QUEUE} are not applies the connector "
                             "queued; they are never run.", "Find what writes to the app's storage account, then "
                             f"clear them: {CLEAR}.", UNREADABLE))  # fmt: skip
    if not checks:
        checks.append(_check(True, f"No queued template apply failed all its tries: {POISON_QUEUE} is empty."))
    return checks


def _check(ok: bool, detail: str, remediation: str | None = None, code: str | None = None) -> Check:
    return Check(NAME, ok, detail, remediation, None, code, group="tenant")
