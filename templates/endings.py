"""Exceptions that end (docs/templates.md#exceptions-that-end): the `templates_endings` timer's first half.

A control a template wrote with an `until` (the control's own `until` day, else the template's `expiresInDays` from
the apply: `Template.ends`) goes back to `Default` when `until` has passed, once:
- The record is marked `ending` (the intent) before the PATCH and `ended` after it, under the tenant's lease (the
  same lease an apply takes, templates/records.py), so an apply and an ending never write a tenant at once. A crash
  between the two leaves `ending`, which the next run resolves by what Graph holds: `Default` there means the PATCH
  landed and none is sent again.
- Only the template's own decision is ended: a control whose state in Graph is no longer what the template wrote (a
  person changed it in the Secure Score portal) is marked ended and left as the person set it.
- A tenant the connector does not write now (paused, removed, consent not complete) is skipped and named with its
  reason in the run's answer and the log; its exceptions end at the first run after it is written again.
- The control is open again: where a route matches it, its ticket is created (templates/opened.py).
"""

from __future__ import annotations

import contextlib
import logging
import uuid
from dataclasses import dataclass, field
from typing import Any

from secure_score.api import VENDOR, current_update, state_of
from shared import deadlines, tenant_records
from shared.problems import ConnectorError
from shared.services import Services
from shared.store import StoreConflict
from templates import opened, records
from templates.applying import LEASE_MARGIN, not_written, read_states
from templates.model import Template
from templates.saving import load_all

log = logging.getLogger(__name__)

ENDING, ENDED = "ending", "ended"
DEFAULT = "Default"


@dataclass
class Endings:
    """What one run did: controls set back to `Default`, tickets made, tenants an `all` template reached, and
    what was skipped or failed (each with a stable code)."""

    ended: int = 0
    tickets: int = 0
    reached: list[dict[str, Any]] = field(default_factory=list)
    skipped: list[dict[str, Any]] = field(default_factory=list)
    failed: list[dict[str, Any]] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {"ended": self.ended, "tickets": self.tickets, "reached": self.reached, "skipped": self.skipped,
                "failed": self.failed}  # fmt: skip


def due(record: dict[str, Any], now: str) -> bool:
    """An exception whose end has come: done (or its ending interrupted) and `until` passed."""
    until = record.get("until")
    return record.get("status") in (records.DONE, ENDING) and isinstance(until, str) and until <= now


def _work(document: dict[str, Any], now: str) -> dict[str, dict[str, Any]]:
    """The records to act on: exceptions whose end has come, and ended ones whose ticket is due."""
    return {c: r for c, r in records.controls_of(document).items() if due(r, now) or opened.ticket_due(r)}


def end_tenant(services: Services, template: Template, tenant: str, document: dict[str, Any],
               registered: tenant_records.Tenants, result: Endings) -> None:  # fmt: skip
    """End this tenant's due exceptions of `template` (`document`: its records as listed), then make the tickets of
    the controls that opened."""
    store, now = services.store, services.clock()
    if not _work(document, now.isoformat()):
        return
    refused = not_written(services, tenant, registered)
    if refused is not None:
        result.skipped.append({"template": template.id, "tenant": tenant, "code": refused[0], "detail": refused[1]})
        log.info("Template %s: exceptions in tenant %s not ended now: %s", template.id, tenant, refused[1])
        return
    run = uuid.uuid4().hex
    try:
        records.take_lease(store, template.id, tenant, run, now, services.run_deadline + LEASE_MARGIN)
    except (records.LeaseHeld, StoreConflict):
        result.skipped.append(
            {
                "template": template.id,
                "tenant": tenant,
                "code": "apply_in_progress",
                "detail": "An apply of this template is writing this tenant; the next run ends them.",
            }
        )
        return  # fmt: skip
    if template.id not in load_all(store):  # after the lease, as an apply: a removal either sees it or is seen here
        store.delete_document(records.name(template.id, tenant))  # removed: its records go with it (the lease is ours)
        return
    written: dict[str, dict[str, Any]] = {}
    try:
        # Read again under the lease: an apply that ended since the listing may have written newer records
        controls = _work(records.load(store, template.id, tenant), now.isoformat())
        ending = {c: {**r, "status": ENDING} for c, r in controls.items() if due(r, now.isoformat())}
        records.write(store, template.id, tenant, run, ending, {})  # the intents, before any PATCH
        if ending:
            states = read_states(services, tenant, tuple(ending))
            for control, record in ending.items():
                written[control] = _end(services, template, tenant, control, record, states.get(control), result)
        for control, record in {**controls, **written}.items():
            if opened.ticket_due(record):
                written[control], created = opened.make_ticket(services, template, tenant, control, record)
                result.tickets += created
    except (ConnectorError, deadlines.RunOutOfTime) as exc:
        code, detail = (exc.code, exc.detail) if isinstance(exc, ConnectorError) else (
            "deadline_exceeded", "The run reached its deadline; the next run goes on.")  # fmt: skip
        result.failed.append({"template": template.id, "tenant": tenant, "code": code, "detail": detail})
    except records.LeaseHeld:
        return
    with contextlib.suppress(records.LeaseHeld, StoreConflict):
        records.write(store, template.id, tenant, run, written, {}, release=True)


def _end(services: Services, template: Template, tenant: str, control: str, record: dict[str, Any],
         now_in_graph: dict[str, Any] | None, result: Endings) -> dict[str, Any]:  # fmt: skip
    """One control's ending: PATCH `Default` only where Graph still holds what the template wrote."""
    at = services.clock().isoformat()
    state = None if now_in_graph is None else now_in_graph["state"]
    ended = {**record, "status": ENDED, "endedAt": at}
    # Default already (landed before a crash), a person's state, or no control; or the template's state, set again by
    # a person since (the last change is not the connector's): a person's decision, which no ending undoes.
    if state != record.get("after") or not (now_in_graph or {}).get("ours"):
        opens = state == DEFAULT
        return {**ended, "after": DEFAULT, "ticket": opened.DUE if opens else None} if opens else ended
    graph, target = services.graph, opened.graph_tenant(tenant)
    day = str(record.get("until"))[:10]
    body = {"state": DEFAULT, "comment": f"The exception ended on {day} [template: {template.name}]",
            "vendorInformation": dict(VENDOR)}  # fmt: skip
    sent = [False]

    def once() -> None:
        # a retry: read first, so a PATCH whose answer was lost is not sent twice
        if sent[0] and state_of(current_update(graph.control_profile(control, tenant=target, retry=False))) == DEFAULT:
            return
        deadlines.check_run()
        sent[0] = True
        graph.update_control(control, body, tenant=target, retry=False)

    graph.retried(once)
    result.ended += 1
    log.info("Template %s: the exception on %s in tenant %s ended; the control is Default", template.id, control,
             tenant)  # fmt: skip
    return {**ended, "before": record.get("after"), "after": DEFAULT, "ticket": opened.DUE}
