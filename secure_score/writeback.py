"""Write-back (docs/design.md#secure-score): each ticket's number, status and link in its Secure Score control's notes.

The connector never undoes a person's decision: just before each write it reads the control as Graph holds it now
and carries that read's `state` (an admin's `Ignored` or `ThirdParty` of a minute ago) and `assignedTo` (an
analyst assigned in Secure Score, unless ServiceNow names an assignee) into the PATCH unchanged. It never claims
points. One write per change of the note, one at a time per control, at most `MAX_CONCURRENT` at once.

A write is idempotent: every PATCH adds an entry to the control's history, so a PATCH that landed but whose
answer was lost must not be sent again. The read before each PATCH compares the control's newest note with the one
to write, and when it already says it, nothing is written; a PATCH is never retried on its own, only read, compare
and PATCH together.

Failures are kept on the ticket (`secureScore`) and listed in provisioning, never silent: 429, 5xx, timeouts and
a 400 without a clear refusal are tried again by later runs, at most MAX_ITEM_ATTEMPTS times for the same note; a
403 stops them until a refresh finds the permission in place. A documented refusal (Defender for Endpoint `scid_*`:
"not supported through this API") is no failure: there is nothing to fix, so it is said on the ticket (`refused`,
with `REFUSED`) and nowhere else, and that control's notes are not written again.
"""

from __future__ import annotations

import logging
import re
import threading
from collections import defaultdict
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import Any

from secure_score.controls import STATES, current_update
from shared import deadlines
from shared.graph import MAX_CONCURRENT, ControlRefused, RequestCount, WriteFailed
from shared.problems import ConnectorError, SecureScoreForbidden, SecureScoreUnavailable
from shared.runs import MAX_ITEM_ATTEMPTS, Failures, failure_entry
from shared.services import Services
from shared.store import change_ticket
from shared.tickets import Ticket, is_alert

log = logging.getLogger(__name__)

LABELS = {"new": "New", "in_progress": "In progress", "on_hold": "On hold", "resolved": "Resolved",
          "closed": "Closed", "canceled": "Canceled", "missing": "Missing", "unknown": "Unknown"}  # fmt: skip
VENDOR = {"provider": "SecureScore", "vendor": "Microsoft"}  # the documented values (securescorecontrolprofile-update)
_control_locks: defaultdict[str, threading.Lock] = defaultdict(threading.Lock)
REFUSED = (
    "Secure Score does not accept notes for this control: Microsoft manages it in the Defender portal, and Graph "
    "answers that updating it is not supported through this API. Nothing to fix; the ticket is worked as any other."
)


def note_of(ticket: Ticket, instance_url: str | None) -> dict[str, str]:
    """What the connector says in the control's notes: the ticket, its status, its link and ServiceNow's assignee."""
    url = ticket.to_json(instance_url)["url"] or ""
    comment = f"ServiceNow {ticket.number}: {LABELS.get(ticket.status, ticket.status)} - {url}"
    if ticket.assigned_to:
        comment += f" (assigned to {ticket.assigned_to})"
    return {"comment": comment, "assignedTo": ticket.assigned_to or ""}


NOTE = re.compile(r"ServiceNow \S+: ")  # how every note of `note_of` begins


def is_note(comment: Any) -> bool:
    """A comment the write-back wrote (`note_of`): its PATCH re-sends the state it read, so an entry with it is the
    connector's, never a person's decision (docs/templates.md#the-write-back)."""
    return isinstance(comment, str) and NOTE.match(comment) is not None


def patch_body(note: dict[str, str], current: dict[str, Any]) -> dict[str, Any]:
    """The PATCH: the note, plus the state and analyst the control has *now* (as just read), unchanged. A state
    outside the documented four is left out rather than sent back (Graph refuses it); ServiceNow's assignee, when
    there is one, is the analyst."""
    update = current_update(current)
    body: dict[str, Any] = {"comment": note["comment"], "vendorInformation": dict(VENDOR)}
    state = update.get("state")
    if isinstance(state, str) and state.lower() in STATES:
        body["state"] = state
    elif not update:
        body["state"] = "Default"  # a control nobody has touched: Default is its state
    assigned = note["assignedTo"] or update.get("assignedTo")
    if isinstance(assigned, str):
        body["assignedTo"] = assigned
    return body


class WriteBack:
    """One batch of writes (a refresh's, or a status sync's), recording each outcome on its ticket and the
    failures in the run's `failures` for the run state."""

    def __init__(self, services: Services, failures: Failures, count: RequestCount) -> None:
        self._services = services
        self._failures = failures
        self._count = count
        self.written = 0
        self.errors: list[str] = []

    def note(self, ticket: Ticket) -> dict[str, str]:
        return note_of(ticket, self._services.settings.instance_url)

    def due(self, ticket: Ticket) -> bool:
        """The note changed since it was last written, and nothing stops writing it."""
        data = ticket.secure_score or {}
        if not (ticket.sys_id and ticket.number) or data.get("refused") or data.get("forbidden"):
            return False
        if is_alert(ticket.recommendation_id):  # a score alert's ticket has no control to write to (docs/alerts.md)
            return False
        note = self.note(ticket)
        if data.get("written") == note:
            return False
        return not (data.get("failedNote") == note and int(data.get("attempts") or 0) >= MAX_ITEM_ATTEMPTS)

    def run(self, tickets: Iterable[Ticket]) -> None:
        """Write every due note, at most MAX_CONCURRENT at once. A 403 stops the batch (`SecureScoreForbidden` is
        raised once all started writes ended); so does the run's deadline."""
        if self._services.settings.secure_score_write_back != "comment":
            return
        jobs = [t for t in tickets if self.due(t)]
        stop = threading.Event()

        def one(ticket: Ticket) -> None:
            if stop.is_set():
                return
            try:
                if self._write(ticket):
                    self.written += 1
            except (SecureScoreForbidden, deadlines.RunOutOfTime):
                stop.set()
                raise

        with ThreadPoolExecutor(MAX_CONCURRENT) as pool:
            outcomes = [pool.submit(deadlines.in_this_run(one), ticket) for ticket in jobs]
        for outcome in outcomes:
            outcome.result()

    def _write(self, ticket: Ticket) -> bool:
        graph = self._services.graph
        control_id = ticket.recommendation_id
        note = self.note(ticket)
        now = self._services.clock().isoformat()
        key = f"control:{ticket.tenant}|{control_id}" if ticket.tenant else f"control:{control_id}"

        def once() -> bool:
            current = graph.control_profile(control_id, count=self._count, tenant=ticket.tenant, retry=False)
            if current_update(current).get("comment") == note["comment"]:
                return False  # it landed already (an answer lost on the way back, or an earlier run's write)
            graph.update_control(control_id, patch_body(note, current), count=self._count, tenant=ticket.tenant,
                                 retry=False)  # fmt: skip
            return True

        with _control_locks[ticket.claim_key]:
            try:
                wrote = graph.retried(once)
            except ControlRefused:
                self._record(ticket.id, {"writtenAt": now, "ok": False, "detail": REFUSED, "refused": True,
                                         "attempts": 0, "failedNote": None})  # fmt: skip
                self._failures.clear(key)  # as the entry an earlier version kept for it
                log.info("Secure Score does not accept notes for control %s: not written again", control_id)
                return False
            except SecureScoreForbidden as exc:
                self._record(ticket.id, {"writtenAt": now, "ok": False, "detail": exc.detail, "forbidden": True})
                self._fail(key, ticket, exc, now, 1)
                raise
            except (WriteFailed, SecureScoreUnavailable) as exc:
                data = ticket.secure_score or {}
                attempts = int(data.get("attempts") or 0) + 1 if data.get("failedNote") == note else 1
                self._record(ticket.id, {"writtenAt": now, "ok": False, "detail": exc.detail, "attempts": attempts,
                                         "failedNote": note})  # fmt: skip
                self._fail(key, ticket, exc, now, attempts)
                return False
        self._record(ticket.id, {"writtenAt": now, "ok": True, "detail": None, "written": note, "attempts": 0,
                                 "failedNote": None})  # fmt: skip
        self._failures.clear(key)
        return wrote

    def _fail(self, key: str, ticket: Ticket, exc: ConnectorError, now: str, attempts: int) -> None:
        self._failures.record(
            key, failure_entry("control", ticket.recommendation_id, ticket.number, exc, now, attempts)
        )
        self.errors.append(f"control {ticket.recommendation_id}: {exc.code}: {exc.detail}")
        log.warning("Write-back to control %s failed (%s), attempt %d", ticket.recommendation_id, exc.code, attempts)

    def _record(self, ticket_id: str, values: dict[str, Any]) -> None:
        store = self._services.store
        change_ticket(store, ticket_id, lambda t: replace(t, secure_score={**(t.secure_score or {}), **values}))


def clear_forbidden(services: Services, tickets: Iterable[Ticket]) -> int:
    """A refresh found the permission in place: writes stopped by a 403 may go again. Returns how many."""

    def allowed(ticket: Ticket) -> Ticket:
        return replace(ticket, secure_score={**(ticket.secure_score or {}), "forbidden": False})

    cleared = 0
    for ticket in tickets:
        if (ticket.secure_score or {}).get("forbidden"):
            change_ticket(services.store, ticket.id, allowed)
            cleared += 1
    return cleared
