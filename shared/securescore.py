"""Secure Score refresh (DESIGN section 9): read Graph, store the joined snapshot, act on edges, write back.

One refresh costs 1 + ceil(profiles / page) Graph requests whatever the number of tickets: the 90-day
history and today's scores in one `secureScores?$top=90`, then the profile pages. The snapshot is stored
whole only after every page arrived, so a failure mid-listing leaves the old one.

Edges, not levels: each ticket remembers the completion it last saw for its control. A change from not
completed to completed resolves the ServiceNow record (once); from completed to not completed, a resolved
record goes back to in progress with a work note, a closed one gets a new ticket that names it, a canceled one
is left alone. A human's later change in ServiceNow is never undone, because nothing is re-applied.

Write-back: the newest ticket of each control writes "ServiceNow {number}: {status} - {url}" to the control's
notes when its status or assignee changes, never changing the control's state (the connector claims no
points). A control that refuses updates is marked and not tried again.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import defaultdict
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from shared.auth import SYSTEM_CALLER
from shared.controls import ProfileRefused, build_control, by_rank, complete_from_control, newest_tickets
from shared.graph import MAX_CONCURRENT, ControlRefused
from shared.problems import (
    ConnectorError,
    NotConfigured,
    NotConnected,
    ReauthorizationRequired,
    SecureScoreForbidden,
    SecureScoreUnavailable,
    ServiceNowRejected,
    ServiceNowUnavailable,
)
from shared.servicenow import table_result
from shared.services import Services
from shared.store import StoreConflict, change_ticket
from shared.sync import (
    MAX_ITEM_ATTEMPTS,
    StatusSync,
    describe,
    failure_entry,
    listed_errors,
    merge_failures,
    record_ticket_error,
    remediation_of,
)
from shared.tickets import Recommendation, Ticket, TicketRequest

log = logging.getLogger(__name__)

HISTORY_DAYS = 90
RUN_DOCUMENT = "secure_score"
OPEN = frozenset({"new", "in_progress", "on_hold", "unknown"})
LABELS = {"new": "New", "in_progress": "In progress", "on_hold": "On hold", "resolved": "Resolved",
          "closed": "Closed", "canceled": "Canceled", "missing": "Missing", "unknown": "Unknown"}  # fmt: skip
# Failures of the whole run: stop acting on tickets (the snapshot is kept) and say so.
SYSTEMIC = (NotConfigured, NotConnected, ReauthorizationRequired, ServiceNowUnavailable, SecureScoreForbidden,
            SecureScoreUnavailable)  # fmt: skip
_control_locks: defaultdict[str, threading.Lock] = defaultdict(threading.Lock)  # one write-back at a time per control


@dataclass
class RefreshResult:
    at: str
    status: str = "ok"  # ok | failed
    requests: int = 0
    controls: int = 0
    resolved: int = 0
    reopened: int = 0
    recreated: int = 0
    written: int = 0
    errors: list[str] = field(default_factory=list)
    error: dict[str, Any] | None = None  # what stopped the run: {code, detail, remediation}
    duration_ms: int = 0

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["durationMs"] = data.pop("duration_ms")
        data["errors"] = listed_errors(self.errors)
        return data


def _summary(scores: list[dict[str, Any]], controls: list[dict[str, Any]], now: str) -> dict[str, Any]:
    def number(value: Any) -> float | None:
        return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None

    latest = scores[0] if scores else {}
    current, maximum = number(latest.get("currentScore")), number(latest.get("maxScore"))
    history = []
    for item in scores:
        day = str(item.get("createdDateTime") or "")[:10]
        if len(day) == 10 and number(item.get("currentScore")) is not None:
            history.append(
                {"date": day, "current": number(item.get("currentScore")), "max": number(item.get("maxScore"))}
            )
    return {
        "secureScore": {
            "current": current,
            "max": maximum,
            "percent": round(100 * current / maximum, 1) if current is not None and maximum else None,
            "at": str(latest.get("createdDateTime") or "") or None,
        },
        "refreshedAt": now,
        "history": sorted(history, key=lambda h: str(h["date"])),
        "controls": len(controls),
    }


class SecureScoreSync:
    def __init__(self, services: Services) -> None:
        self._services = services
        self._store = services.store
        self._failures: dict[str, dict[str, Any] | None] = {}

    # -- a refresh ------------------------------------------------------------------------------

    def refresh(self) -> RefreshResult:
        services = self._services
        started = time.monotonic()
        now = services.clock().isoformat()
        result = RefreshResult(at=now)
        graph = services.graph
        sent = graph.requests_sent()
        try:
            scores = graph.secure_scores(HISTORY_DAYS)
            profiles, _ = graph.control_profiles()
            result.requests = graph.requests_sent() - sent
        except Exception as exc:  # nothing was stored: the old snapshot stays
            result.requests = graph.requests_sent() - sent  # the requests it really made, retries included
            self._fail(result, exc)
            self._finish(result, started)
            raise
        controls = self._join(profiles, scores[0] if scores else None, result)
        self._store.put_secure_score(_summary(scores, controls, now), controls)
        result.controls = len(controls)
        by_id = {c["id"]: c for c in controls}
        try:
            followed = [self._follow_isolated(t, by_id[t.recommendation_id], scores, result)
                        for t in self._newest_tickets(by_id)]  # fmt: skip
            self.write_back([t for t in followed if t is not None], by_id, result)
        except SYSTEMIC as exc:
            self._fail(result, exc)
        return self._finish(result, started)

    def _fail(self, result: RefreshResult, exc: BaseException) -> None:
        code, detail = describe(exc)
        result.status = "failed"
        result.error = {"code": code, "detail": detail, "remediation": remediation_of(exc)}
        result.errors.append(f"{code}: {detail}")
        log.warning("Secure Score refresh stopped: %s", code)

    def _join(
        self, profiles: list[dict[str, Any]], latest: dict[str, Any] | None, result: RefreshResult
    ) -> list[dict[str, Any]]:
        scores = {
            str(entry.get("controlName")): entry
            for entry in (latest or {}).get("controlScores") or []
            if isinstance(entry, dict)
        }
        controls: dict[str, dict[str, Any]] = {}
        for profile in profiles:
            try:
                control = build_control(profile, scores.get(str(profile.get("id"))))
            except ProfileRefused as exc:
                result.errors.append(f"control profile: {exc}")
                continue
            controls.setdefault(control["id"], control)
        return sorted(controls.values(), key=by_rank)

    def _persist(self, result: RefreshResult | None) -> None:
        """The run's result (if a refresh) and the item failures it changed, merged under the document's ETag
        so a concurrent writer's entries survive."""
        failures = self._failures

        def update(state: dict[str, Any]) -> dict[str, Any]:
            merged = merge_failures(state.get("failures"), failures)
            return {**state, **({"last": result.to_json()} if result else {}), "failures": merged}

        for _ in range(10):
            found = self._store.get_document(RUN_DOCUMENT)
            try:
                self._store.put_document(RUN_DOCUMENT, update(found[0] if found else {}), found[1] if found else None)
                return
            except StoreConflict:
                continue

    def _finish(self, result: RefreshResult, started: float) -> RefreshResult:
        result.duration_ms = int((time.monotonic() - started) * 1000)
        self._persist(result)
        log.info(
            "Secure Score refresh %s: %d controls, %d requests, %d resolved, %d reopened, %d new, %d written, %d ms",
            result.status, result.controls, result.requests, result.resolved, result.reopened, result.recreated,
            result.written, result.duration_ms,
        )  # fmt: skip
        return result

    def _newest_tickets(self, controls: dict[str, dict[str, Any]]) -> list[Ticket]:
        newest = newest_tickets(t for t, _ in self._store.list_tickets())
        return [ticket for rec, ticket in newest.items() if rec in controls]

    # -- edges ----------------------------------------------------------------------------------

    def _follow_isolated(
        self, ticket: Ticket, control: dict[str, Any], scores: list[dict[str, Any]], result: RefreshResult
    ) -> Ticket | None:
        key = f"ticket:{ticket.id}"
        try:
            followed = self._follow(ticket, control, scores, result)
        except SYSTEMIC:
            raise
        except Exception as exc:
            attempts = record_ticket_error(self._services, ticket.id, exc, source=RUN_DOCUMENT)
            code, detail = describe(exc)
            result.errors.append(f"ticket {ticket.number or ticket.id}: {code}: {detail}")
            self._failures[key] = failure_entry("ticket", ticket.id, ticket.number, exc, result.at, attempts)
            if attempts >= MAX_ITEM_ATTEMPTS:  # stop retrying the action: the edge counts as seen
                return self._observe(ticket.id, bool(control["completed"]))
            found = self._store.get_ticket(ticket.id)
            return found[0] if found else None
        self._failures[key] = None
        return followed

    def _observe(self, ticket_id: str, completed: bool) -> Ticket | None:
        def change(ticket: Ticket) -> Ticket | None:
            data = dict(ticket.secure_score or {})
            if data.get("completed") is completed:
                return None
            return replace(ticket, secure_score={**data, "completed": completed})

        return change_ticket(self._store, ticket_id, change)

    def _follow(
        self, ticket: Ticket, control: dict[str, Any], scores: list[dict[str, Any]], result: RefreshResult
    ) -> Ticket | None:
        if control["score"] is None:  # the snapshot left this control out: no edge either way
            return ticket
        completed = bool(control["completed"])
        seen = (ticket.secure_score or {}).get("completed")
        if seen is None or seen is completed or not ticket.sys_id:
            return self._observe(ticket.id, completed) if seen is None else ticket
        day = str((scores[0] if scores else {}).get("createdDateTime") or self._services.clock().isoformat())[:10]
        figures = f"{control['score']:g} of {control['maxScore']:g} points"
        if self._services.settings.secure_score_auto_resolve:
            if completed and ticket.status in OPEN:
                notes = f"Microsoft Secure Score reports this improvement action completed on {day}: {figures}."
                self._set_state(ticket, "resolved", {"resolution_notes": notes}, resolution=True)
                result.resolved += 1
            elif not completed and ticket.status == "resolved":
                note = (
                    f"Microsoft Secure Score reports this improvement action no longer completed on {day} "
                    f"({figures}); the connector reopened this ticket."
                )
                self._set_state(ticket, "in_progress", {"work_notes": note})
                result.reopened += 1
            elif not completed and ticket.status == "closed":
                self._recreate(ticket, control, day, figures)
                result.recreated += 1
        updated = self._observe(ticket.id, completed)
        if updated is not None and (updated.error or {}).get("source") == RUN_DOCUMENT:  # an earlier try failed
            updated = change_ticket(self._store, ticket.id, lambda t: replace(t, error=None))
        return updated

    def _set_state(self, ticket: Ticket, status: str, notes: dict[str, str], *, resolution: bool = False) -> None:
        services = self._services
        field_map = services.settings.field_map
        raw = field_map.state_for(status)
        if raw is None:
            raise ServiceNowRejected(
                f"The state map for '{ticket.table}' names no '{status}' state, so the connector cannot set it.",
                remediation=f'Add the table\'s {status} state to SERVICENOW_FIELD_MAP "states".',
            )
        body = {field_map.target("state"): raw}
        for logical, text in notes.items():
            if field_map.target(logical):
                body[field_map.target(logical)] = text
        if resolution and field_map.target("resolution_code") and field_map.resolution_code:
            body[field_map.target("resolution_code")] = field_map.resolution_code
        try:
            response = services.servicenow.table_request(
                services.tokens,
                "PATCH",
                ticket.table,
                sys_id=ticket.sys_id,
                params={"sysparm_fields": StatusSync.fields(services), "sysparm_exclude_reference_link": "true"},
                json_body=body,
            )
        except ServiceNowRejected as exc:
            if resolution and "data policy" in exc.detail.lower():
                exc.remediation = (
                    'Set "resolution_code": {"field": "close_code", "value": "<one of its choices>"} in '
                    "SERVICENOW_FIELD_MAP (and map any other mandatory field), or relax the data policy in "
                    "System Policy > Rules > Data Policies."
                )
            raise
        StatusSync(services).apply_record(ticket.id, table_result(response))

    def _recreate(self, old: Ticket, control: dict[str, Any], day: str, figures: str) -> None:
        """A closed record whose control regressed: a new ticket (one, whatever the retries) naming the old."""
        opening = (
            f"Microsoft Secure Score reports this improvement action no longer completed on {day} ({figures}). "
            f"It was closed in {old.number}."
        )
        rec = Recommendation(control["id"], "microsoft", str(control.get("category") or ""), None)
        draft = TicketRequest("", "", old.priority, None, rec, None)
        request = complete_from_control(draft, control)
        request = replace(request, description=f"{opening}\n\n{request.description}")
        self._services.creator.create(request, caller=SYSTEM_CALLER, idempotency_key=f"regressed:{old.id}:{day}")

    # -- write-back ------------------------------------------------------------------------------

    def write_back(self, tickets: Iterable[Ticket], controls: dict[str, dict[str, Any]], result: RefreshResult) -> None:
        """One PATCH per changed note, at most MAX_CONCURRENT at once, one at a time per control."""
        if self._services.settings.secure_score_write_back != "comment":
            return
        jobs = [(t, controls[t.recommendation_id]) for t in tickets if self._note_due(t)]
        if not jobs:
            return
        stop = threading.Event()

        def one(job: tuple[Ticket, dict[str, Any]]) -> None:
            if stop.is_set():
                return
            try:
                if self._write(*job):
                    result.written += 1
            except SecureScoreForbidden:
                stop.set()
                raise

        with ThreadPoolExecutor(MAX_CONCURRENT) as pool:
            for outcome in [pool.submit(one, job) for job in jobs]:
                outcome.result()

    def _note(self, ticket: Ticket) -> dict[str, str]:
        instance = self._services.settings.instance_url
        url = ticket.to_json(instance)["url"] or ""
        comment = f"ServiceNow {ticket.number}: {LABELS.get(ticket.status, ticket.status)} - {url}"
        if ticket.assigned_to:
            comment += f" (assigned to {ticket.assigned_to})"
        return {"comment": comment, "assignedTo": ticket.assigned_to or ""}

    def _note_due(self, ticket: Ticket) -> bool:
        data = ticket.secure_score or {}
        return (
            bool(ticket.sys_id and ticket.number)
            and not data.get("refused")
            and data.get("written") != self._note(ticket)
        )

    def _write(self, ticket: Ticket, control: dict[str, Any]) -> bool:
        note = self._note(ticket)
        body = {
            **note,
            "state": control["state"],
            "vendorInformation": {"provider": "SecureScore", "vendor": "Microsoft"},
        }
        now = self._services.clock().isoformat()
        with _control_locks[control["id"]]:
            try:
                self._services.graph.update_control(control["id"], body)
            except ControlRefused as exc:
                self._record_write(ticket.id, {"writtenAt": now, "ok": False, "detail": exc.detail, "refused": True})
                self._failures[f"control:{control['id']}"] = failure_entry(
                    "control", control["id"], ticket.number, exc, now, 1
                )
                return False
            except ConnectorError as exc:
                self._record_write(ticket.id, {"writtenAt": now, "ok": False, "detail": exc.detail})
                if isinstance(exc, SecureScoreForbidden):
                    raise
                return False
        self._record_write(ticket.id, {"writtenAt": now, "ok": True, "detail": None, "written": note})
        return True

    def _record_write(self, ticket_id: str, values: dict[str, Any]) -> None:
        change_ticket(self._store, ticket_id, lambda t: replace(t, secure_score={**(t.secure_score or {}), **values}))

    def write_back_for(self, ticket_ids: Iterable[str]) -> None:
        """After a status sync: the notes of the tickets it saw, if they changed (point reads, no listing)."""
        if self._services.settings.secure_score_write_back != "comment":
            return
        tickets: list[Ticket] = []
        controls: dict[str, dict[str, Any]] = {}
        for ticket_id in dict.fromkeys(ticket_ids):
            found = self._store.get_ticket(ticket_id)
            if found is None or not self._note_due(found[0]) or found[0].recommendation.get("source") == "user":
                continue
            control = controls.get(found[0].recommendation_id) or self._store.get_secure_score_control(
                found[0].recommendation_id
            )
            if control is not None:
                controls[control["id"]] = control
                tickets.append(found[0])
        if tickets:
            result = RefreshResult(at=self._services.clock().isoformat())
            try:
                self.write_back(tickets, controls, result)
            except SYSTEMIC as exc:
                log.warning("Write-back to Secure Score stopped: %s", describe(exc)[0])
            if self._failures:
                self._persist(None)


def run_state(services: Services) -> dict[str, Any]:
    found = services.store.get_document(RUN_DOCUMENT)
    return found[0] if found else {}
