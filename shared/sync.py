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

from shared.problems import (
    Conflict,
    ConnectorError,
    NotConfigured,
    NotConnected,
    ReauthorizationRequired,
    ServiceNowRejected,
)
from shared.services import Services
from shared.store import StoreConflict, TicketStore
from shared.telemetry import record_sync
from shared.tickets import (
    CLOSED_STATUSES,
    CORRELATION_PREFIX,
    RECOMMENDATION_ID,
    SERVICENOW_TIME,
    SYS_ID,
    Ticket,
)

log = logging.getLogger(__name__)

PAGE_SIZE = 100
OVERLAP = timedelta(minutes=2)
RECONCILE_EVERY = timedelta(hours=1)
RECONCILE_CHUNK = 100
RESUME_PER_RUN = 20
_TIME_FORMAT = "%Y-%m-%d %H:%M:%S"


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
        return data


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
        reconciled_at = None
        try:
            self._resume_pending(index, result)
            self._incremental(index, result)
            if self._reconcile_due(now):
                self._reconcile(index, result)
                reconciled_at = now.isoformat()
        except ConnectorError as exc:
            result.status = "failed"
            result.errors.append(f"{exc.code}: {exc.detail}")
            self._finish(result, started, reconciled_at)
            raise
        return self._finish(result, started, reconciled_at)

    def _finish(self, result: SyncResult, started: float, reconciled_at: str | None) -> SyncResult:
        result.duration_ms = int((time.monotonic() - started) * 1000)

        def update(state: dict[str, Any]) -> dict[str, Any]:
            state["last"] = result.to_json()
            if reconciled_at:
                state["reconciled_at"] = reconciled_at
            return state

        self._update_state(update)
        record_sync(result.to_json())
        log.info(
            "Status sync %s: %d changed, %d adopted, %d resumed, %d missing, %d requests, %d ms",
            result.status, result.changed, result.adopted, result.resumed, result.missing, result.requests,
            result.duration_ms,
        )  # fmt: skip
        return result

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
        now = self._services.clock()
        stale = [
            t
            for t, _ in self._store.list_pending_tickets()
            if t.lease_until is None or datetime.fromisoformat(t.lease_until) <= now
        ]
        for ticket in stale[:RESUME_PER_RUN]:
            try:
                linked = self._services.creator.resume(ticket.id)
            except (ServiceNowRejected, Conflict) as exc:  # rolled back, or someone else has it: move on
                result.errors.append(f"pending ticket {ticket.id}: {exc.code}: {exc.detail}")
                continue
            result.resumed += 1
            if linked.sys_id:
                index.add(linked.sys_id, linked.id)

    # -- 2. changed records ---------------------------------------------------------------------

    def _fields(self) -> str:
        field_map = self._services.settings.field_map
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
                self._apply(row, index, result)
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

    def _apply(self, row: dict[str, Any], index: _Index, result: SyncResult) -> None:
        sys_id = str(row.get("sys_id") or "")
        if not SYS_ID.fullmatch(sys_id):
            result.errors.append(f"ServiceNow returned a record without a valid sys_id: {sys_id[:40]!r}")
            return
        ticket_id = index.get(sys_id)
        if ticket_id is None:
            adopted = self._adopt(row)
            if adopted is not None:
                index.add(sys_id, adopted.id)
                result.adopted += 1
            return
        if self.apply_record(ticket_id, row):
            result.changed += 1

    def apply_record(self, ticket_id: str, row: dict[str, Any]) -> bool:
        """Bring one ticket to the record's state; True if that changed it. Never goes back in time."""
        field_map = self._services.settings.field_map
        for _ in range(10):
            found = self._store.get_ticket(ticket_id)
            if found is None:
                return False
            ticket, etag = found
            stamp = str(row.get("sys_updated_on") or "")
            if ticket.servicenow_updated_on and stamp and stamp < ticket.servicenow_updated_on:
                return False
            now = self._services.clock().isoformat()
            updated = ticket.with_link({**row, "number": row.get("number") or ticket.number}, field_map, now)
            updated = replace(updated, lease_until=ticket.lease_until, extra=ticket.extra)
            if (updated.status, updated.servicenow_state) == (ticket.status, ticket.servicenow_state):
                if stamp != ticket.servicenow_updated_on:
                    self._try_update(replace(ticket, servicenow_updated_on=stamp, synced_at=now), etag)
                return False
            try:
                self._store.update_ticket(updated, etag)
            except StoreConflict:
                continue
            if updated.status in CLOSED_STATUSES:
                self._store.release_claim(ticket.recommendation_id, ticket.id)
            return True
        return False

    def _try_update(self, ticket: Ticket, etag: str) -> None:
        with contextlib.suppress(StoreConflict):  # someone wrote a newer version; the next run sees it
            self._store.update_ticket(ticket, etag)

    def _adopt(self, row: dict[str, Any]) -> Ticket | None:
        """A connector record the store does not know (the store was lost or restored): track it again."""
        services = self._services
        field_map = services.settings.field_map
        correlation = str(row.get(field_map.target("correlation_id")) or "")
        recommendation_id = correlation.removeprefix(CORRELATION_PREFIX)
        if not correlation.startswith(CORRELATION_PREFIX) or not RECOMMENDATION_ID.fullmatch(recommendation_id):
            return None
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
        self._store.add_ticket(ticket)
        if ticket.is_open:
            self._store.claim_recommendation(recommendation_id, ticket.id)
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
                self._apply(row, index, result)
            for sys_id in set(chunk) - seen:
                if self._mark_missing(tracked[sys_id]):
                    result.missing += 1

    def _mark_missing(self, ticket_id: str) -> bool:
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
