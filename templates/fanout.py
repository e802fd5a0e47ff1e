"""A template's apply fanned out on a Storage queue (docs/templates.md#many-tenants-the-apply-goes-out-on-a-queue, as
the Secure Score refresh does: docs/architecture.md#fan-out-on-storage-queues): from `FANOUT_THRESHOLD` tenants,
`POST /api/templates/{id}/apply` queues one message per tenant on `template-apply` and answers 202 with the run's
progress URL; the queue-triggered `templates_apply_tenant` applies that one tenant (queued.py).

A run has a header document (`template-run:{template}:{run}`: how many tenants it has) and one document per tenant
(`template-run:{template}:{run}:{tenant}`: that tenant's outcome), each written by that tenant's work only. The
messages are sent one by one: when the queue refuses one, the tenants not sent are applied inline by the request
(and counted in the same run), so no tenant is both queued and applied inline.
"""

from __future__ import annotations

import json
import logging
import re
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from shared import deadlines
from shared.problems import StoreUnavailable
from shared.queues import MAX_MESSAGE, TEMPLATE_APPLY, poison_queue
from shared.services import Services
from shared.store import StoreConflict, TicketStore, update_document
from shared.tickets import TENANT_ID
from templates.applying import TENANTS_AT_ONCE, Outcome, apply_tenant
from templates.model import HOME_ID, TEMPLATE_ID, Template

log = logging.getLogger(__name__)

QUEUE = TEMPLATE_APPLY
KIND = "apply"
TENANT_DEADLINE = 120.0  # seconds one message's apply may take
RUN_PREFIX = "template-run:"  # then `{template id}:{run}` (the header) and `...:{run}:{tenant}` (each outcome)
RUN_ID = re.compile(r"^[0-9a-f]{32}$")
VERSION = re.compile(r"^[0-9a-f]{20}$")  # templates.saving.version_of
MAX_BY = 256  # characters of the admin's name in a message
_DUE = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d{1,6})?\+00:00")  # as shared/queues.py's decode_work
_MEMBERS = {"kind", "template", "version", "tenant", "run", "by", "overwrite", "due"}


@dataclass(frozen=True)
class ApplyMessage:
    """One tenant's queued apply of one version of a template, in one run."""

    template: str
    version: str
    tenant: str  # HOME_ID or an added tenant's id
    run: str
    by: str | None
    overwrite: bool
    due: str

    def to_json(self) -> dict[str, Any]:
        return {"kind": KIND, "template": self.template, "version": self.version, "tenant": self.tenant,
                "run": self.run, "by": self.by, "overwrite": self.overwrite, "due": self.due}  # fmt: skip

    @classmethod
    def parse(cls, body: bytes) -> ApplyMessage | None:
        """The message, or None when it is not one the connector queued (exact members, types and sizes): it is
        then never acted on."""
        if len(body) > MAX_MESSAGE:
            return None
        try:
            data = json.loads(body)
        except (ValueError, UnicodeDecodeError, RecursionError):
            return None
        if not isinstance(data, dict) or set(data) != _MEMBERS or data["kind"] != KIND:
            return None
        template, version, tenant, run, by, overwrite, due = (data[k] for k in
            ("template", "version", "tenant", "run", "by", "overwrite", "due"))  # fmt: skip
        strings = all(isinstance(v, str) for v in (template, version, tenant, run, due))
        if not strings or not isinstance(overwrite, bool) or not (by is None or isinstance(by, str)):
            return None
        if not (TEMPLATE_ID.fullmatch(template) and VERSION.fullmatch(version) and RUN_ID.fullmatch(run)):
            return None
        if (tenant != HOME_ID and not TENANT_ID.fullmatch(tenant)) or (by is not None and len(by) > MAX_BY):
            return None
        if not _DUE.fullmatch(due):
            return None
        try:
            datetime.fromisoformat(due)
        except ValueError:
            return None
        return cls(template, version, tenant, run, by, overwrite, due)


def short_by(by: str | None) -> str | None:
    """The admin's name as a message carries it: at most MAX_BY characters and 400 bytes of JSON (a name of
    characters JSON escapes would otherwise make a message past MAX_MESSAGE, which would be dropped, not run)."""
    if by is None:
        return None
    by = by[:MAX_BY]
    while len(json.dumps(by)) > 400:
        by = by[:-1]
    return by


def run_name(template_id: str, run: str) -> str:
    return f"{RUN_PREFIX}{template_id}:{run}"


def outcome_name(template_id: str, run: str, tenant: str) -> str:
    return f"{run_name(template_id, run)}:{tenant}"


def progress_url(template_id: str, run: str) -> str:
    return f"/api/templates/{template_id}/applies/{run}"


@dataclass(frozen=True)
class QueuedApply:
    """What the apply answers when it queued its tenants (some may have been applied inline: `inline`)."""

    template: str
    run: str
    queued: int
    inline: int

    @property
    def progress(self) -> str:
        return progress_url(self.template, self.run)

    def to_json(self) -> dict[str, Any]:
        answer = {"status": "queued", "queued": self.queued, "run": self.run, "progress": self.progress}
        return {**answer, "inline": self.inline} if self.inline else answer


def enqueue(services: Services, template: Template, version: str, tenants: list[str], by: str | None,
            overwrite: bool) -> tuple[QueuedApply | None, list[str]]:  # fmt: skip
    """The queued run and the tenants the caller applies itself: all of them (None) below FANOUT_THRESHOLD, with no
    queue, or when the queue took none; after a partial send, only those not sent."""
    if len(tenants) < services.settings.fanout_threshold:
        return None, tenants
    queues = services.queues
    if queues is None:
        log.warning("%d tenants to apply, but no storage queue is configured: the request applies them itself",
                    len(tenants))  # fmt: skip
        return None, tenants
    run, due, store, by = uuid.uuid4().hex, services.clock().isoformat(), services.store, short_by(by)
    header = {"template": template.id, "version": version, "run": run, "by": by, "at": due, "tenants": len(tenants)}
    try:
        store.put_document(run_name(template.id, run), header, None)
    except (StoreUnavailable, StoreConflict) as exc:
        log.warning("The apply's run could not be stored (%s): the request applies the tenants itself", exc)
        return None, tenants
    sent = 0
    for tenant in tenants:
        message = ApplyMessage(template.id, version, tenant, run, by, overwrite, due)
        try:
            queues.send(QUEUE, [message.to_json()])
        except StoreUnavailable as exc:
            log.warning("The apply could not be queued for every tenant (%s): the request applies the %d not queued "
                        "itself", exc.detail, len(tenants) - sent)  # fmt: skip
            break
        sent += 1
    if sent == 0:
        store.delete_document(run_name(template.id, run))
        return None, tenants
    log.info("Template %s: apply queued for %d tenants on %s (run %s)", template.id, sent, QUEUE, run)
    return QueuedApply(template.id, run, sent, len(tenants) - sent), tenants[sent:]


def record(store: TicketStore, message: ApplyMessage, status: str, outcome: Outcome,
           poisoned: dict[str, Any] | None = None) -> None:  # fmt: skip
    """A tenant's outcome in the run, in its own document (a later copy of the message finds it and does nothing)."""
    data = {"template": message.template, "run": message.run, "tenant": message.tenant, "status": status,
            "applied": outcome.applied, "unchanged": outcome.unchanged, "failed": outcome.failed,
            "drifted": outcome.drifted, "poisoned": poisoned}  # fmt: skip

    def edit(document: dict[str, Any]) -> None:
        document.clear()
        document.update(data)

    update_document(store, outcome_name(message.template, message.run, message.tenant), edit)


def apply_rest(services: Services, template: Template, version: str, queued: QueuedApply, tenants: list[str],
               by: str | None, overwrite: bool) -> None:  # fmt: skip
    """The tenants a partial send left, applied by the request, each outcome recorded in the run as a message's."""
    if not tenants:
        return
    due = services.clock().isoformat()

    def one(tenant: str) -> None:
        outcome = apply_tenant(services, template, version, tenant, by, overwrite)
        message = ApplyMessage(template.id, version, tenant, queued.run, by, overwrite, due)
        record(services.store, message, "failed" if outcome.failed else "applied", outcome)

    with deadlines.run_deadline(services.run_deadline), ThreadPoolExecutor(TENANTS_AT_ONCE) as pool:
        jobs = [pool.submit(deadlines.in_this_run(one), tenant) for tenant in tenants]
    for job in jobs:
        job.result()


def forget_runs(store: TicketStore, template_id: str) -> None:
    """A removed template's runs go with it (a message still queued finds no template and writes nothing)."""
    for name in store.list_documents(f"{RUN_PREFIX}{template_id}:"):
        store.delete_document(name)


def poisoned_queue() -> str:
    return poison_queue(QUEUE)
