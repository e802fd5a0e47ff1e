"""The queue function's work (`templates_apply_tenant`): one tenant's apply for one message of the fan-out
(fanout.py); a run's progress, added up from its tenants' documents; and what sits in the poison queue.

Delivery is at least once: a tenant whose outcome in the run is recorded is not applied again, and while a copy of
the message runs, another finds the tenant's lease held and is tried again later. The message carries the
template's version: an edit since the admin applied it is never written (`template_changed`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from shared import deadlines
from shared.problems import NotFound, StoreUnavailable
from shared.queues import MAX_DEQUEUE_COUNT
from shared.services import Services
from templates.applying import Outcome, apply_tenant
from templates.fanout import (
    QUEUE,
    RUN_ID,
    TENANT_DEADLINE,
    ApplyMessage,
    outcome_name,
    poisoned_queue,
    record,
    run_name,
)
from templates.saving import load_all, version_of

log = logging.getLogger(__name__)

# A tenant the connector does not write now: its outcome is final, not tried again.
FINAL = frozenset({"tenant_paused", "tenant_removed", "tenant_not_consented"})
POISONED = "apply_poisoned"


class ApplyFailed(Exception):
    """A tenant's apply failed in a way another try may fix (Graph, the store, another apply holding the tenant)."""


def apply_queued(services: Services, body: bytes, dequeue_count: int) -> str:
    """Apply the one tenant a message names, unless done: what happened (`applied`, `failed`, `done`, `gone`,
    `template_changed`, `ignored`). A failure another try may fix raises, so the host tries again; on the last try
    the tenant's outcome says so (`apply_poisoned`), before the host moves the message to the poison queue."""
    message = ApplyMessage.parse(body)
    if message is None:
        log.warning("A message on %s is not an apply the connector queued; it is dropped", QUEUE)
        return "ignored"
    store = services.store
    if store.get_document(outcome_name(message.template, message.run, message.tenant)) is not None:
        return "done"
    template = load_all(store).get(message.template)
    if template is None:
        log.info("Queued apply of template %s: the template was removed; nothing is written", message.template)
        return "gone"
    if version_of(template) != message.version:
        changed = Outcome()
        changed.fail(message.tenant, None, "template_changed", "The template was edited after this apply was queued: "
                     "nothing was written. Preview and apply the template again.")  # fmt: skip
        record(store, message, "template_changed", changed)
        return "template_changed"
    last = dequeue_count >= MAX_DEQUEUE_COUNT
    poisoned = {"queue": poisoned_queue(), "attempts": dequeue_count}
    try:
        with deadlines.run_deadline(min(TENANT_DEADLINE, services.run_deadline)):
            outcome = apply_tenant(services, template, message.version, message.tenant, message.by, message.overwrite)
    except Exception as exc:
        if last:
            failed = Outcome()
            failed.fail(message.tenant, None, POISONED, f"The apply failed its last try ({type(exc).__name__}).")
            record(store, message, "failed", failed, poisoned)
        raise
    again = [f for f in outcome.failed if f["code"] not in FINAL]
    if again and not last:
        raise ApplyFailed(f"{len(again)} failure(s), the first {again[0]['code']}: tried again")
    record(store, message, "failed" if outcome.failed else "applied", outcome, poisoned if again else None)
    if again:
        raise ApplyFailed(f"{len(again)} failure(s) on the last try, the first {again[0]['code']}")
    return "failed" if outcome.failed else "applied"


def progress(services: Services, template_id: str, run: str) -> dict[str, Any]:
    """A run's progress from its tenants' documents (one listing), lists capped as an apply's answer."""
    found = services.store.get_document(run_name(template_id, run)) if RUN_ID.fullmatch(run) else None
    if found is None:
        raise NotFound(f"There is no apply '{run}' of template '{template_id}'.",
                       remediation="The apply's 202 answer names its progress URL.")  # fmt: skip
    header = found[0]
    total, done = Outcome(), 0
    for document, _ in services.store.list_documents(run_name(template_id, run) + ":").values():
        done += 1
        total.applied += int(document.get("applied") or 0)
        total.unchanged += int(document.get("unchanged") or 0)
        poisoned = document.get("poisoned")  # its last try failed: the message is in the poison queue
        total.failed.extend({**f, **({"poisoned": poisoned} if poisoned else {})}
                            for f in document.get("failed") or [] if isinstance(f, dict))  # fmt: skip
        total.drifted.extend(d for d in document.get("drifted") or [] if isinstance(d, dict))
    queued = int(header.get("tenants") or 0)
    if done < queued:  # a message whose every try stopped midway (an instance died) noted nothing: the queue says
        done += _poisoned_unrecorded(services, template_id, run, total, {str(f.get("tenant")) for f in total.failed})
    answer = total.applied_json()
    return {"run": run, "queued": queued, "done": done, **answer, "finished": done >= queued}


def _poisoned_unrecorded(services: Services, template_id: str, run: str, total: Outcome, recorded: set[str]) -> int:
    """The run's tenants whose message sits in the poison queue with no outcome recorded (at most the 32 oldest
    messages are read), each added to `failed`; how many."""
    found = read_poisoned(services)
    tenants = sorted(set(found.by_run.get((template_id, run), [])) - recorded) if found is not None else []
    for tenant in tenants:
        total.fail(tenant, None, POISONED, "The queued apply failed every try without noting an error (an instance "
                   "stopped midway each time): look at the templates_apply_tenant invocations in Application "
                   "Insights, then apply the template again.")  # fmt: skip
        total.failed[-1]["poisoned"] = {"queue": poisoned_queue(), "attempts": None}
    return len(tenants)


@dataclass
class PoisonedApplies:
    """The poison queue as read now: by (template, run), the tenants whose message failed every try."""

    total: int = 0
    by_run: dict[tuple[str, str], list[str]] = field(default_factory=dict)
    unreadable: int = 0
    error: str | None = None


def read_poisoned(services: Services) -> PoisonedApplies | None:
    """None: the app has no queue (no fan-out). A queue that cannot be read is said in `error`, never raised."""
    queues = services.queues
    if queues is None:
        return None
    try:
        peek = queues.poisoned(QUEUE)
    except StoreUnavailable as exc:
        return PoisonedApplies(error=exc.detail)
    found = PoisonedApplies(total=peek.count)
    for poisoned in peek.messages:
        message = ApplyMessage.parse(poisoned.body) if poisoned.body is not None else None
        if message is None:
            found.unreadable += 1
            continue
        found.by_run.setdefault((message.template, message.run), []).append(message.tenant)
    return found
