"""Status sync: every ServiceNow change back into the store, at a cost set by what changed, not the backlog.

One run:
1. resumes tickets whose creation was left pending (a crash, or retries that ran out);
2. reads the records changed since the watermark, minus an overlap window, in keyset pages ordered by
   (sys_updated_on, sys_id): a record updated mid-scan moves behind the cursor and is read again with its
   new state; nothing is skipped. After each page is stored, the watermark advances (ETag-guarded), so a
   run killed anywhere resumes from its last stored page;
3. records the connector created but the store does not know (a lost store) are adopted;
4. about once an hour, reconciles the tracked tickets by `sys_idIN` in chunks: those ServiceNow no longer
   returns (deleted, or hidden by ACLs) are marked `missing`, never dropped.
Every update is conditional on the row's ETag and never moves a ticket back to an older ServiceNow state,
so overlapping runs (or a push notice racing a run) end where one run would.
"""

from __future__ import annotations

import contextlib
import logging
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from shared.claims import take_claim
from shared.problems import (
    Conflict,
    ConnectorError,
    NotConfigured,
    NotConnected,
    ReauthorizationRequired,
    ServiceNowUnavailable,
)
from shared.services import Services
from shared.store import StoreConflict, TicketStore, change_ticket
from shared.telemetry import record_sync
from shared.text import printable
from shared.tickets import (
    CLOSED_STATUSES,
    CORRELATION_PREFIX,
    RECOMMENDATION_ID,
    SERVICENOW_TIME,
    SYS_ID,
    Ticket,
    mod_count,
)

log = logging.getLogger(__name__)

PAGE_SIZE = 100
OVERLAP = timedelta(minutes=2)
RECONCILE_EVERY = timedelta(hours=1)
RECONCILE_CHUNK = 100
RESUME_PER_RUN = 20
MAX_ITEM_ATTEMPTS = 5  # a ticket or record that keeps failing is retried this many runs, then only listed
MAX_LISTED_FAILURES = 100
MAX_LISTED_ERRORS = 50
_TIME_FORMAT = "%Y-%m-%d %H:%M:%S"
# Failures of the whole run (nothing else could succeed either): the run stops, fails, and is retried.
SYSTEMIC = (NotConfigured, NotConnected, ReauthorizationRequired, ServiceNowUnavailable)


class RecordRefused(ConnectorError):
    """A ServiceNow record the connector will not take as its own (e.g. a correlation id edited by hand)."""

    code = "record_refused"


class DuplicateOpenRecord(ConnectorError):
    """Two open ServiceNow records for one recommendation: a closed one was reopened after a new one was made."""

    code = "duplicate_open_record"


def remediation_of(exc: BaseException) -> str | None:
    return exc.remediation if isinstance(exc, ConnectorError) else None


def describe(exc: BaseException) -> tuple[str, str]:
    """A failure as (code, detail) for tickets, provisioning and logs. Only a `ConnectorError`'s own detail is
    shown; anything else is named by its type (its message may quote a request)."""
    if isinstance(exc, ConnectorError):
        return exc.code, exc.detail
    return "internal_error", f"the connector failed with {type(exc).__name__} working on this item"


def record_ticket_error(services: Services, ticket_id: str, exc: BaseException, *, source: str = "sync") -> int:
    """Keep a failure on the ticket (its JSON shows it); returns how many times it has failed in a row.
    `source` says which work failed, so only that work's success clears it."""
    code, detail = describe(exc)
    attempts = [1]

    def change(ticket: Ticket) -> Ticket:
        attempts[0] = int((ticket.error or {}).get("attempts") or 0) + 1
        error = {"at": services.clock().isoformat(), "code": code, "detail": detail, "attempts": attempts[0],
                 "source": source, "remediation": remediation_of(exc)}  # fmt: skip
        return replace(ticket, error=error)

    change_ticket(services.store, ticket_id, change)
    log.warning("Ticket %s failed (%s), attempt %d; other tickets go on", ticket_id, code, attempts[0])
    return attempts[0]


def failure_entry(
    kind: str, item_id: str, number: str | None, exc: BaseException, at: str, attempts: int
) -> dict[str, Any]:
    code, detail = describe(exc)
    return {"kind": kind, "id": item_id, "number": number, "code": code, "detail": detail, "attempts": attempts,
            "at": at, "remediation": remediation_of(exc)}  # fmt: skip


@dataclass
class SyncResult:
    at: str
    status: str = "ok"  # ok | failed | skipped
    changed: int = 0
    adopted: int = 0
    resumed: int = 0
    missing: int = 0
    requests: int = 0
    pages: int = 0
    reconciled: bool = False
    errors: list[str] = field(default_factory=list)
    duration_ms: int = 0

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["durationMs"] = data.pop("duration_ms")
        data["errors"] = listed_errors(self.errors)
        return data


def listed_errors(errors: list[str]) -> list[str]:
    """A run's errors as stored and shown: the first MAX_LISTED_ERRORS, then how many more (the run state
    stays small however many records fail; each failing item is also in `failures`)."""
    if len(errors) <= MAX_LISTED_ERRORS:
        return list(errors)
    return [*errors[:MAX_LISTED_ERRORS], f"... and {len(errors) - MAX_LISTED_ERRORS} more"]


class StatusSync:
    def __init__(
        self,
        services: Services,
        *,
        page_size: int = PAGE_SIZE,
        overlap: timedelta = OVERLAP,
        reconcile_every: timedelta = RECONCILE_EVERY,
    ) -> None:
        self._services = services
        self._store = services.store
        self._page_size = page_size
        self._overlap = overlap
        self._reconcile_every = reconcile_every
        self._failures = _Failures(None, services.clock().isoformat())
        self._seen: list[str] = []  # tickets this run read from ServiceNow

    # -- a run ----------------------------------------------------------------------------------

    def run(self) -> SyncResult:
        services = self._services
        started = time.monotonic()
        now = services.clock()
        result = SyncResult(at=now.isoformat())
        try:
            services.require_configured()
            services.tokens.access_token()
        except (NotConfigured, NotConnected, ReauthorizationRequired) as exc:
            result.status = "skipped"
            result.errors.append(f"{exc.code}: {exc.detail}")
            return self._finish(result, started, reconciled_at=None)
        index = _Index(self._store)
        found = self._store.get_sync_state()
        self._failures = _Failures((found[0] if found else {}).get("failures"), now.isoformat())
        reconciled_at = None
        try:
            self._forget_recovered()
            self._resume_pending(index, result)
            self._retry_failed_records(index, result)
            self._incremental(index, result)
            if self._reconcile_due(now):
                self._reconcile(index, result)
                reconciled_at = now.isoformat()
            self._write_back()
        except Exception as exc:  # the run itself failed: record it now, then let the retry policy run it again
            code, detail = describe(exc)
            result.status = "failed"
            result.errors.append(f"{code}: {detail}")
            self._finish(result, started, reconciled_at)
            raise
        return self._finish(result, started, reconciled_at)

    def _write_back(self) -> None:
        """The notes of Secure Score controls whose tickets this run saw change (never fails the run)."""
        from shared.securescore import SecureScoreSync  # the two syncs share their helpers one way only

        if not self._seen:
            return
        try:
            SecureScoreSync(self._services).write_back_for(self._seen)
        except Exception as exc:
            log.warning("Write-back to Secure Score after the status sync failed (%s)", describe(exc)[0])

    def _finish(self, result: SyncResult, started: float, reconciled_at: str | None) -> SyncResult:
        result.duration_ms = int((time.monotonic() - started) * 1000)
        changes = self._failures.changes

        def update(state: dict[str, Any]) -> dict[str, Any]:
            state["last"] = result.to_json()
            if reconciled_at:
                state["reconciled_at"] = reconciled_at
            if changes:
                state["failures"] = merge_failures(state.get("failures"), changes)
            return state

        self._update_state(update)
        record_sync(result.to_json())
        log.info(
            "Status sync %s: %d changed, %d adopted, %d resumed, %d missing, %d requests, %d failed items, %d ms",
            result.status, result.changed, result.adopted, result.resumed, result.missing, result.requests,
            len(result.errors), result.duration_ms,
        )  # fmt: skip
        return result

    def note_failures(self, changes: dict[str, dict[str, Any] | None]) -> None:
        """Record (or clear, with None) item failures in the sync state, where provisioning lists them."""
        self._update_state(lambda state: {**state, "failures": merge_failures(state.get("failures"), changes)})

    def _update_state(self, change: Callable[[dict[str, Any]], dict[str, Any]]) -> None:
        for _ in range(10):
            found = self._store.get_sync_state()
            state, etag = (dict(found[0]), found[1]) if found else ({}, None)
            try:
                self._store.put_sync_state(change(state), etag)
                return
            except StoreConflict:
                continue
        raise StoreConflict("the sync state kept changing")

    # -- 1. pending creations -------------------------------------------------------------------

    def _resume_pending(self, index: _Index, result: SyncResult) -> None:
        """Finish creations a crash or an outage left pending. One that keeps failing is retried
        MAX_ITEM_ATTEMPTS runs, then only listed: a new request for its recommendation resumes it."""
        now = self._services.clock()
        stale = [
            t
            for t, _ in self._store.list_pending_tickets()
            if (t.lease_until is None or datetime.fromisoformat(t.lease_until) <= now)
            and int((t.error or {}).get("attempts") or 0) < MAX_ITEM_ATTEMPTS
        ]
        for ticket in stale[:RESUME_PER_RUN]:
            key = f"ticket:{ticket.id}"
            try:
                linked = self._services.creator.resume(ticket.id)
            except SYSTEMIC:
                raise
            except Conflict:  # someone else is finishing it right now: not a failure of the ticket
                continue
            except Exception as exc:
                attempts = record_ticket_error(self._services, ticket.id, exc)
                code, detail = describe(exc)
                result.errors.append(f"pending ticket {ticket.id}: {code}: {detail}")
                self._failures.record(key, failure_entry("ticket", ticket.id, None, exc, now.isoformat(), attempts))
                continue
            self._failures.clear(key)
            result.resumed += 1
            if linked.sys_id:
                index.add(linked.sys_id, linked.id)

    def _forget_recovered(self) -> None:
        """Pending tickets that were finished since they failed (a new request resumed them) leave the list."""
        for key, entry in self._failures.stored.items():
            if isinstance(entry, dict) and entry.get("kind") == "ticket":
                found = self._store.get_ticket(str(entry.get("id")))
                if found is None or found[0].sys_id:
                    self._failures.clear(key)

    def _retry_failed_records(self, index: _Index, result: SyncResult) -> None:
        """Records that failed in an earlier run, asked for again (one request), a bounded number of times."""
        due = self._failures.retryable("record")
        if not due:
            return
        rows = self._list(f"sys_idIN{','.join(due)}", len(due), result)
        seen = set()
        for row in rows:
            seen.add(str(row.get("sys_id")))
            self._apply_isolated(row, index, result)
        for sys_id in set(due) - seen:  # gone from ServiceNow or hidden: nothing left to retry
            self._failures.clear(f"record:{sys_id}")

    # -- 2. changed records ---------------------------------------------------------------------

    def _fields(self) -> str:
        return self.fields(self._services)

    @staticmethod
    def fields(services: Services) -> str:
        """The only fields the sync reads (and a push notice's GET)."""
        field_map = services.settings.field_map
        return ",".join(
            dict.fromkeys(
                [
                    "sys_id",
                    "number",
                    field_map.target("state"),
                    "sys_updated_on",
                    field_map.target("correlation_id"),
                    field_map.target("name"),
                    "priority",
                    "sys_mod_count",
                    f"{field_map.target('assignee')}.email",
                ]
            )
        )

    def _incremental(self, index: _Index, result: SyncResult) -> None:
        found = self._store.get_sync_state()
        watermark = (found[0] if found else {}).get("watermark")
        since = None
        if isinstance(watermark, str) and SERVICENOW_TIME.fullmatch(watermark):
            since = (datetime.strptime(watermark, _TIME_FORMAT) - self._overlap).strftime(_TIME_FORMAT)
        base = f"{self._services.settings.field_map.target('correlation_id')}STARTSWITH{CORRELATION_PREFIX}"
        order = "^ORDERBYsys_updated_on^ORDERBYsys_id"
        cursor: tuple[str, str] | None = None
        while True:
            if cursor is not None:
                # Keyset: after (ts, sys_id). Both values come from ServiceNow and are checked before use.
                ts, sys_id = cursor
                query = f"{base}^sys_updated_on>{ts}^NQ{base}^sys_updated_on={ts}^sys_id>{sys_id}{order}"
            elif since is not None:
                query = f"{base}^sys_updated_on>={since}{order}"
            else:
                query = base + order
            rows = self._list(query, self._page_size, result)
            result.pages += 1
            last: tuple[str, str] | None = cursor
            for row in rows:
                self._apply_isolated(row, index, result)
                stamp, sys_id = str(row.get("sys_updated_on") or ""), str(row.get("sys_id") or "")
                if SERVICENOW_TIME.fullmatch(stamp) and SYS_ID.fullmatch(sys_id):
                    last = max(last, (stamp, sys_id)) if last else (stamp, sys_id)
            if len(rows) < self._page_size or last is None:
                if last is not None:
                    self._advance_watermark(last[0])
                return
            if last == cursor:
                # A full page that does not move the cursor: the instance did not order or filter as asked.
                # Stop rather than loop; the watermark stays where the stored rows put it.
                result.errors.append("ServiceNow returned a page that did not advance the sync cursor; stopped")
                return
            self._advance_watermark(last[0])
            cursor = last

    def _advance_watermark(self, stamp: str) -> None:
        def advance(state: dict[str, Any]) -> dict[str, Any]:
            current = state.get("watermark")
            if not isinstance(current, str) or stamp > current:
                state["watermark"] = stamp
            return state

        self._update_state(advance)

    def _list(self, query: str, limit: int, result: SyncResult) -> list[dict[str, Any]]:
        services = self._services
        result.requests += 1
        rows, _ = services.servicenow.table_list(
            services.tokens,
            services.settings.table,
            {
                "sysparm_query": query,
                "sysparm_fields": self._fields(),
                "sysparm_limit": str(limit),
                "sysparm_exclude_reference_link": "true",
                "sysparm_no_count": "true",
            },
        )
        return rows

    # -- applying one record --------------------------------------------------------------------

    def _apply_isolated(self, row: dict[str, Any], index: _Index, result: SyncResult) -> None:
        """One record: a failure is recorded (on its ticket, in provisioning) and skipped; the run goes on."""
        sys_id = str(row.get("sys_id") or "")
        key = f"record:{printable(sys_id, 40)}"
        version = printable(f"{row.get('sys_mod_count') or ''}@{row.get('sys_updated_on') or ''}", 60)
        if self._failures.settled(key, version):
            return
        try:
            self._apply(row, index, result)
        except SYSTEMIC:
            raise
        except Exception as exc:
            number = printable(str(row.get("number") or ""), 40) or None
            code, detail = describe(exc)
            result.errors.append(f"record {number or sys_id[:40]}: {code}: {detail}")
            ticket_id = index.get(sys_id) if SYS_ID.fullmatch(sys_id) else None
            if ticket_id is not None:
                record_ticket_error(self._services, ticket_id, exc)
            attempts = self._failures.attempts(key) + 1
            entry = failure_entry("record", printable(sys_id, 40), number, exc, self._failures.now, attempts)
            self._failures.record(key, {**entry, "version": version})
        else:
            self._failures.clear(key)

    def _apply(self, row: dict[str, Any], index: _Index, result: SyncResult) -> None:
        sys_id = str(row.get("sys_id") or "")
        if not SYS_ID.fullmatch(sys_id):
            raise RecordRefused("ServiceNow returned a record without a valid sys_id")
        ticket_id = index.get(sys_id)
        if ticket_id is None:
            adopted = self._adopt(row)
            index.add(sys_id, adopted.id)
            result.adopted += 1
            self._seen.append(adopted.id)
            return
        if self.apply_record(ticket_id, row):
            result.changed += 1
        self._seen.append(ticket_id)

    def apply_record(self, ticket_id: str, row: dict[str, Any]) -> bool:
        """Bring one ticket to what ServiceNow's record says; True if that changed it. Never goes back to an
        older version (`sys_mod_count`, then `sys_updated_on`). A ticket that reopens takes its recommendation's
        claim back; if another open ticket holds it, the conflict is recorded rather than a second claim made."""
        field_map = self._services.settings.field_map
        for _ in range(10):
            found = self._store.get_ticket(ticket_id)
            if found is None:
                return False
            ticket, etag = found
            order = _compare(row, ticket)
            if order < 0:
                return False
            now = self._services.clock().isoformat()
            updated = ticket.with_link({**row, "number": row.get("number") or ticket.number}, field_map, now)
            updated = replace(updated, lease_until=ticket.lease_until, extra=ticket.extra, error=ticket.error)
            if (updated.status, updated.servicenow_state, updated.assigned_to) == (
                ticket.status,
                ticket.servicenow_state,
                ticket.assigned_to,
            ):
                if order > 0:
                    self._try_update(replace(updated, updated_at=ticket.updated_at), etag)
                return False
            conflict_changes: dict[str, dict[str, Any] | None] = {}
            if updated.is_open and not ticket.is_open:
                updated = self._retake_claim(updated, conflict_changes)
            elif not updated.is_open and _is_conflict(ticket.error):
                updated = replace(updated, error=None)
                conflict_changes[f"ticket:{ticket.id}"] = None
            try:
                self._store.update_ticket(updated, etag)
            except StoreConflict:
                continue
            if updated.status in CLOSED_STATUSES:
                self._store.release_claim(ticket.recommendation_id, ticket.id)
            if conflict_changes:
                self.note_failures(conflict_changes)
            return True
        return False

    def _retake_claim(self, ticket: Ticket, changes: dict[str, dict[str, Any] | None]) -> Ticket:
        holder = take_claim(self._store, ticket.recommendation_id, ticket.id)
        key = f"ticket:{ticket.id}"
        if holder is None:
            if _is_conflict(ticket.error):
                changes[key] = None
                return replace(ticket, error=None)
            return ticket
        other = self._store.get_ticket(holder)
        other_name = (other[0].number if other else None) or holder
        error = DuplicateOpenRecord(
            f"ServiceNow reopened {ticket.number}, but {other_name} is already the open ticket for recommendation "
            f"{ticket.recommendation_id}; close one of the two in ServiceNow.",
        )
        now = self._services.clock().isoformat()
        changes[key] = failure_entry("conflict", ticket.id, ticket.number, error, now, 1)
        log.warning("Ticket %s reopened while %s holds its recommendation", ticket.number, other_name)
        return replace(ticket, error={"at": now, "code": error.code, "detail": error.detail, "attempts": 1})

    def _try_update(self, ticket: Ticket, etag: str) -> None:
        with contextlib.suppress(StoreConflict):  # someone wrote a newer version; the next run sees it
            self._store.update_ticket(ticket, etag)

    def _adopt(self, row: dict[str, Any]) -> Ticket:
        """A connector record the store does not know (the store was lost or restored): track it again."""
        services = self._services
        field_map = services.settings.field_map
        correlation = str(row.get(field_map.target("correlation_id")) or "")
        recommendation_id = correlation.removeprefix(CORRELATION_PREFIX)
        if not correlation.startswith(CORRELATION_PREFIX) or not RECOMMENDATION_ID.fullmatch(recommendation_id):
            raise RecordRefused(
                f"Its correlation_id '{printable(correlation, 80)}' is not one the connector mints "
                f"('{CORRELATION_PREFIX}' and a recommendation id of A-Z, a-z, 0-9, '.', '_', ':', '-'), so it "
                "was not adopted.",
                remediation="Restore the record's correlation_id in ServiceNow, or clear it if the record is not "
                "the connector's.",
            )
        now = services.clock().isoformat()
        priority = str(row.get("priority") or "")
        ticket = Ticket(
            id=uuid.uuid4().hex,
            recommendation_id=recommendation_id,
            recommendation={"id": recommendation_id, "source": None, "category": None, "url": None},
            name=str(row.get(field_map.target("name")) or "")[:160],
            priority=int(priority) if priority in ("1", "2", "3", "4", "5") else 3,
            due_date=None,
            requested_by=None,
            table=services.settings.table,
            fingerprint="",
            created_at=now,
            updated_at=now,
            extra={"adopted": True},
        ).with_link(row, field_map, now)
        changes: dict[str, dict[str, Any] | None] = {}
        if ticket.is_open:
            ticket = self._retake_claim(ticket, changes)
        self._store.add_ticket(ticket)
        if changes:
            self.note_failures(changes)
        log.info("Adopted %s (%s), a connector record the store did not know", ticket.number, ticket.sys_id)
        return ticket

    # -- 4. reconcile ---------------------------------------------------------------------------

    def _reconcile_due(self, now: datetime) -> bool:
        found = self._store.get_sync_state()
        last = (found[0] if found else {}).get("reconciled_at")
        return not isinstance(last, str) or datetime.fromisoformat(last) + self._reconcile_every <= now

    def _reconcile(self, index: _Index, result: SyncResult) -> None:
        result.reconciled = True
        tracked = {
            t.sys_id: t.id
            for t, _ in self._store.list_tickets()
            if t.sys_id and SYS_ID.fullmatch(t.sys_id) and t.status not in ("closed", "canceled")
        }
        for sys_id, ticket_id in tracked.items():
            index.add(sys_id, ticket_id)
        for chunk in _chunks(sorted(tracked), RECONCILE_CHUNK):
            rows = self._list(f"sys_idIN{','.join(chunk)}", len(chunk), result)
            seen = set()
            for row in rows:
                seen.add(str(row.get("sys_id")))
                self._apply_isolated(row, index, result)
            for sys_id in set(chunk) - seen:
                if self.mark_missing(tracked[sys_id]):
                    result.missing += 1

    def mark_missing(self, ticket_id: str) -> bool:
        for _ in range(10):
            found = self._store.get_ticket(ticket_id)
            if found is None or found[0].status == "missing":
                return False
            ticket, etag = found
            now = self._services.clock().isoformat()
            try:
                self._store.update_ticket(replace(ticket, status="missing", updated_at=now, synced_at=now), etag)
            except StoreConflict:
                continue
            log.warning("Ticket %s (%s) is gone from ServiceNow or hidden by ACLs", ticket.number, ticket.sys_id)
            return True
        return False


class _Index:
    """sys_id -> ticket id, asked of the store only for the records a run actually meets."""

    def __init__(self, store: TicketStore) -> None:
        self._store = store
        self._known: dict[str, str | None] = {}

    def get(self, sys_id: str) -> str | None:
        if sys_id not in self._known:
            found = self._store.find_ticket_by_sys_id(sys_id)
            self._known[sys_id] = found[0].id if found else None
        return self._known[sys_id]

    def add(self, sys_id: str, ticket_id: str) -> None:
        self._known[sys_id] = ticket_id


def _chunks(items: list[str], size: int) -> Iterable[list[str]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _is_conflict(error: dict[str, Any] | None) -> bool:
    return error is not None and error.get("code") == DuplicateOpenRecord.code


def _compare(row: dict[str, Any], ticket: Ticket) -> int:
    """-1 if the record is older than what the ticket holds, 0 the same version, 1 newer. `sys_mod_count` is
    the record's own version counter; `sys_updated_on` (one-second resolution) only when a count is missing."""
    theirs, ours = mod_count(row), ticket.servicenow_mod_count
    if theirs is not None and ours is not None:
        return (theirs > ours) - (theirs < ours)
    stamp = str(row.get("sys_updated_on") or "")
    held = ticket.servicenow_updated_on
    if SERVICENOW_TIME.fullmatch(stamp) and held and ours is not None:
        return (stamp > held) - (stamp < held)
    return 1  # a ticket without a version yet: what ServiceNow says now is the truth


def merge_failures(current: Any, changes: dict[str, dict[str, Any] | None]) -> dict[str, Any]:
    """Stored item failures with `changes` applied (None clears an entry), the newest MAX_LISTED_FAILURES kept."""
    merged = dict(current) if isinstance(current, dict) else {}
    for key, entry in changes.items():
        if entry is None:
            merged.pop(key, None)
        else:
            merged[key] = entry
    if len(merged) > MAX_LISTED_FAILURES:  # keep the newest
        newest = sorted(merged.items(), key=lambda kv: str(kv[1].get("at")), reverse=True)[:MAX_LISTED_FAILURES]
        merged = dict(newest)
    return merged


class _Failures:
    """The items that failed: as the last run left them, and this run's changes (merged at the end, so a
    concurrent writer's entries survive)."""

    def __init__(self, stored: Any, now: str) -> None:
        self.stored: dict[str, dict[str, Any]] = dict(stored) if isinstance(stored, dict) else {}
        self.changes: dict[str, dict[str, Any] | None] = {}
        self.now = now

    def attempts(self, key: str) -> int:
        entry = self.changes[key] if key in self.changes else self.stored.get(key)
        return int((entry or {}).get("attempts") or 0)

    def record(self, key: str, entry: dict[str, Any]) -> None:
        self.changes[key] = entry

    def settled(self, key: str, version: str) -> bool:
        """A record that failed in this very version is not tried again in the run that tried it, nor once its
        attempts are spent (the overlap window and the retry query would both bring it back every run)."""
        entry = self.changes[key] if key in self.changes else self.stored.get(key)
        if not entry or entry.get("version") != version:
            return False
        return key in self.changes or int(entry.get("attempts") or 0) >= MAX_ITEM_ATTEMPTS

    def clear(self, key: str) -> None:
        if key in self.stored or key in self.changes:
            self.changes[key] = None

    def retryable(self, kind: str) -> list[str]:
        return [
            str(entry.get("id"))
            for entry in self.stored.values()
            if isinstance(entry, dict)
            and entry.get("kind") == kind
            and SYS_ID.fullmatch(str(entry.get("id")))
            and int(entry.get("attempts") or 0) < MAX_ITEM_ATTEMPTS
        ][:RECONCILE_CHUNK]
