"""A risk accepted in ServiceNow (docs/templates.md#risk-accepted-in-servicenow): the one case where the connector sets
a control's `state` from ServiceNow, because a person decided there.

A ticket whose route said `"onRiskAccepted": "ignore"` (kept on the ticket when it was made), or of a template's
controls and tenants when that template said it at the close (the status sync asks the templates), and that the
status sync found closed with a close code of `SERVICENOW_FIELD_MAP.risk_accepted_codes` carries `riskAccepted`
(shared/records.py). After the sync, its control is set to `Ignored` with the close notes as the comment, exactly
once: the ticket says `written` after the PATCH, and a run that stopped between the two reads Graph first and sends
nothing when the control already says it. A later sync of the same closed ticket writes nothing. The PATCH follows
the note's (if any), so the close notes are the control's comment.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from dataclasses import replace
from typing import Any

from secure_score.controls import current_update, state_of
from secure_score.tenants import being_read
from secure_score.writeback import VENDOR
from shared.problems import ConnectorError
from shared.services import Services
from shared.store import StoreConflict, change_ticket
from shared.tickets import Ticket, is_alert

log = logging.getLogger(__name__)

IGNORED = "Ignored"


# How `comment_of` ends a risk's comment: the mark names the ServiceNow record and the close code a person chose.
_MARK = re.compile(r"\[ServiceNow [^\s\]:]+: [^\]]+\]\Z")


def is_risk_acceptance(comment: Any) -> bool:
    """A comment `comment_of` wrote: the state with it is a person's decision (made in ServiceNow), even though the
    connector's app wrote it, so no template sets it back without `overwriteDrift`."""
    return isinstance(comment, str) and _MARK.search(comment) is not None


def comment_of(ticket: Ticket, accepted: dict[str, Any]) -> str:
    mark = f"[ServiceNow {ticket.number}: {accepted.get('code')}]"
    notes = str(accepted.get("notes") or "")
    return f"{notes} {mark}" if notes else mark


def risk_pending(ticket: Ticket) -> bool:
    """A risk accepted on the ticket and not written yet (a refresh tries again what a sync could not write)."""
    accepted = ticket.extra.get("riskAccepted")
    return isinstance(accepted, dict) and not accepted.get("written")


def accept_risks(services: Services, ticket_ids: Iterable[str]) -> int:
    """Set `Ignored` for each of these tickets whose risk was accepted and not yet written; how many were PATCHed.
    A failure stays on the ticket (`riskAccepted.error`); the next refresh of its tenant, or a sync that sees it,
    tries again."""
    written, read = 0, None
    for ticket_id in dict.fromkeys(ticket_ids):
        found = services.store.get_ticket(ticket_id)
        if found is None or not risk_pending(found[0]) or found[0].duplicate_of or is_alert(found[0].recommendation_id):
            continue  # a score alert's ticket has no control to set Ignored (docs/alerts.md#tickets)
        ticket, accepted = found[0], found[0].extra["riskAccepted"]
        read = being_read(services) if read is None else read
        if ticket.tenant not in read:  # a paused or removed tenant is never written
            continue
        try:
            written += _write(services, ticket, accepted)
        except ConnectorError as exc:
            log.warning("Risk accepted on %s: control %s not set Ignored (%s)", ticket.number, ticket.recommendation_id,
                        exc.code)  # fmt: skip
            _mark(services, ticket.id, {"error": exc.code})
            continue
        _mark(services, ticket.id, {"written": True, "error": None, "at": services.clock().isoformat()})
    return written


def _write(services: Services, ticket: Ticket, accepted: dict[str, Any]) -> bool:
    graph, control = services.graph, ticket.recommendation_id
    comment = comment_of(ticket, accepted)

    def once() -> bool:
        update = current_update(graph.control_profile(control, tenant=ticket.tenant, retry=False))
        if state_of(update) == IGNORED and update.get("comment") == comment:
            return False  # it landed already (an answer lost, or a run that stopped before marking the ticket)
        body = {"state": IGNORED, "comment": comment, "vendorInformation": dict(VENDOR)}
        graph.update_control(control, body, tenant=ticket.tenant, retry=False)
        return True

    wrote = graph.retried(once)
    log.info("Risk accepted in ServiceNow on %s: control %s is Ignored", ticket.number, control)
    return wrote


def _mark(services: Services, ticket_id: str, values: dict[str, Any]) -> None:
    def change(ticket: Ticket) -> Ticket:
        accepted = {**(ticket.extra.get("riskAccepted") or {}), **values}
        return replace(ticket, extra={**ticket.extra, "riskAccepted": accepted})

    try:
        change_ticket(services.store, ticket_id, change)
    except StoreConflict:
        log.warning("Risk accepted: ticket %s kept changing; the next sync marks it", ticket_id)
