"""Status sync: every ServiceNow change back into the store, at a cost set by what changed, not the backlog.

One run, within its deadline (`deadlines.RUN_DEADLINE`; past it the run stops between pages, keeps what it did
and says so, and the next run resumes):
1. resumes tickets whose creation was left pending (a crash, or retries that ran out);
2. reads the records changed since the watermark, minus an overlap window, in pages ordered by
   (sys_updated_on, sys_id), until ServiceNow's `Link` header names no next page. ServiceNow applies
   `sysparm_limit` before ACLs (docs/design.md#servicenow-facts), so a page can come back short, or empty, while more
   follow: a page with visible rows moves a keyset cursor past them (a record updated mid-scan moves behind the
   cursor and is read again with its new state; nothing is skipped); a page of hidden rows is stepped over by
   offset. After each page the watermark advances (ETag-guarded), so a run killed anywhere resumes from its
   last stored page; a finished scan moves it to ServiceNow's own clock at the scan's start, so hidden rows are
   not read again and again;
3. records the connector created but the store does not know (a lost store) are adopted; one a person opened
   by hand with the connector's correlation id while the connector's own ticket is open is a duplicate, shown as
   one and never acted on;
4. verifies a slice of the tracked open records (the rolling sweep, `status_sync/sweep.py`): deleted or hidden ones
   are marked `missing`, never dropped;
5. gives tickets done before `resolvedAt` existed ServiceNow's resolution time, a few requests per run until none
   is left (`status_sync/backfill.py`).
Every record is read and applied through the run's `RecordReader` (status_sync/reader.py), one at a time: a
record that fails is kept on its item and skipped.
Every update is conditional on the row's ETag and never moves a ticket back to an older ServiceNow state
(`shared/records.py`), so overlapping runs (or a push notice racing a run) end where one run would.
"""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime

import httpx

from shared import deadlines
from shared.problems import (
    NotConfigured,
    NotConnected,
    ReauthorizationRequired,
)
from shared.runs import MAX_ITEM_ATTEMPTS as MAX_ITEM_ATTEMPTS
from shared.runs import Failures, SyncState, describe, merge_failures, sync_state, update_sync_state
from shared.services import Services
from shared.telemetry import record_sync
from shared.tickets import CORRELATION_PREFIX, SERVICENOW_TIME, SYS_ID
from status_sync.backfill import Backfill
from status_sync.index import Index
from status_sync.pending import forget_recovered, resume_pending
from status_sync.reader import RecordReader, SyncResult
from status_sync.sweep import Sweep

log = logging.getLogger(__name__)

PAGE_SIZE = 100
OVERLAP = timedelta(minutes=2)
MAX_PAGES = 1000  # a bound on one run's scan, whatever an instance answers
TIME_FORMAT = "%Y-%m-%d %H:%M:%S"


def has_next(response: httpx.Response) -> bool:
    """ServiceNow's `Link` header names a next page (none on the last page, none when everything fits one)."""
    return "next" in response.links


def server_time(response: httpx.Response, near: datetime) -> str | None:
    """ServiceNow's clock from the response's `Date` header, in its own format; None when absent or more than an
    hour away from `near` (a broken header must not move the watermark)."""
    try:
        moment = parsedate_to_datetime(response.headers.get("Date", ""))
    except (TypeError, ValueError, IndexError):
        return None
    if moment.tzinfo is None or abs(moment - near) > timedelta(hours=1):
        return None
    return moment.astimezone(UTC).strftime(TIME_FORMAT)


class StatusSync:
    def __init__(
        self, services: Services, *, page_size: int = PAGE_SIZE, overlap: timedelta = OVERLAP, lease: str | None = None
    ) -> None:
        self._services = services
        self._lease = lease  # the queue message whose lease this run ends in its last write (status_sync/lease.py)
        self._store = services.store
        self._page_size = page_size
        self._overlap = overlap
        self._failures = Failures(None, services.clock().isoformat())
        self._reader: RecordReader | None = None  # made when the run has read its stored failures

    @property
    def services(self) -> Services:
        return self._services

    # -- a run ----------------------------------------------------------------------------------

    def run(self) -> SyncResult:
        with deadlines.run_deadline(self._services.run_deadline):
            return self._run()

    def _run(self) -> SyncResult:
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
            return self._finish(result, started)
        index = Index(self._store)
        self._failures = Failures(sync_state(self._store).failures, now.isoformat())
        reader = self._reader = RecordReader(services, self._failures)
        try:
            forget_recovered(services, self._failures)
            resume_pending(services, self._failures, index, result)
            self._retry_failed_records(reader, index, result)
            since = self._incremental(reader, index, result)
            Sweep(reader).run(index, result, since)
            Backfill(reader).run(result)
        except deadlines.RunOutOfTime:
            result.status = "partial"
            result.errors.append(f"The run reached its deadline ({services.run_deadline:g} s) and stopped; the next "
                                 "run goes on from where this one got to.")  # fmt: skip
        except Exception as exc:  # the run itself failed: record it now, then let the retry policy run it again
            result.fail(exc)
            self._finish(result, started)
            raise
        self._write_back()
        return self._finish(result, started)

    def _write_back(self) -> None:
        """The notes of Secure Score controls whose tickets this run saw change (never fails the run)."""
        from secure_score.api import SecureScoreRefresh  # the status sync hands changes to Secure Score, one way

        seen = self._reader.seen if self._reader else []
        if not seen:
            return
        try:
            SecureScoreRefresh(self._services).write_back_for(seen)
        except Exception as exc:
            log.warning("Write-back to Secure Score after the status sync failed (%s)", describe(exc)[0])

    def _finish(self, result: SyncResult, started: float) -> SyncResult:
        result.duration_ms = int((time.monotonic() - started) * 1000)
        changes = self._failures.snapshot()

        def update(state: SyncState) -> None:
            state.last = result.to_json()
            if changes:
                state.failures = merge_failures(state.failures, changes)
            if self._lease is not None and (state.syncing or {}).get("by") == self._lease:
                state.syncing = None

        update_sync_state(self._store, update)
        record_sync(result.to_json())
        log.info(
            "Status sync %s: %d changed, %d adopted, %d resumed, %d missing, %d requests, %d failed items, %d ms",
            result.status, result.changed, result.adopted, result.resumed, result.missing, result.requests,
            len(result.errors), result.duration_ms,
        )  # fmt: skip
        return result

    def _retry_failed_records(self, reader: RecordReader, index: Index, result: SyncResult) -> None:
        """Records that failed in an earlier run, asked for again (one request), a bounded number of times."""
        due = self._failures.retryable("record")
        if not due:
            return
        rows, _ = reader.list_records(f"sys_idIN{','.join(due)}", len(due), result)
        seen = set()
        for row in rows:
            seen.add(str(row.get("sys_id")))
            reader.apply_isolated(row, index, result)
        for sys_id in set(due) - seen:  # gone from ServiceNow or hidden: nothing left to retry
            self._failures.clear(f"record:{sys_id}")

    # -- 2. changed records ---------------------------------------------------------------------

    def _incremental(self, reader: RecordReader, index: Index, result: SyncResult) -> str | None:
        """The changed records, page by page until the last; returns the window's start (None on a first run)."""
        watermark = sync_state(self._store).watermark
        since = None
        if watermark is not None and SERVICENOW_TIME.fullmatch(watermark):
            since = (datetime.strptime(watermark, TIME_FORMAT) - self._overlap).strftime(TIME_FORMAT)
        base = f"{self._services.settings.field_map.target('correlation_id')}STARTSWITH{CORRELATION_PREFIX}"
        order = "^ORDERBYsys_updated_on^ORDERBYsys_id"
        cursor: tuple[str, str] | None = None
        offset = 0
        clock: str | None = None
        for _ in range(MAX_PAGES):
            deadlines.check_run()
            if cursor is not None:
                # Keyset: after (ts, sys_id). Both values come from ServiceNow and are checked before use.
                ts, sys_id = cursor
                query = f"{base}^sys_updated_on>{ts}^NQ{base}^sys_updated_on={ts}^sys_id>{sys_id}{order}"
            elif since is not None:
                query = f"{base}^sys_updated_on>={since}{order}"
            else:
                query = base + order
            rows, response = reader.list_records(query, self._page_size, result, offset=offset)
            result.pages += 1
            clock = clock or server_time(response, self._services.clock())
            newest = cursor
            for row in rows:
                reader.apply_isolated(row, index, result)
                stamp, row_id = str(row.get("sys_updated_on") or ""), str(row.get("sys_id") or "")
                if SERVICENOW_TIME.fullmatch(stamp) and SYS_ID.fullmatch(row_id):
                    newest = max(newest, (stamp, row_id)) if newest else (stamp, row_id)
            if not has_next(response):
                # The scan is complete: everything updated before it started was read (or is hidden from us).
                self._advance_watermark(max(filter(None, [clock, newest[0] if newest else None]), default=None))
                return since
            if newest is not None and newest != cursor:
                self._advance_watermark(newest[0])
                cursor, offset = newest, 0
            elif rows:
                # Visible rows that do not move the cursor: the instance did not order or filter as asked.
                # Stop rather than loop; the watermark stays where the stored rows put it.
                result.errors.append("ServiceNow returned a page that did not advance the sync cursor; stopped")
                return since
            else:
                offset += self._page_size  # a page of rows ACLs hide from the integration user: step over it
        result.errors.append(f"The scan stopped after {MAX_PAGES} pages; the next run goes on from there.")
        return since

    def _advance_watermark(self, stamp: str | None) -> None:
        if stamp is None:
            return

        def advance(state: SyncState) -> None:
            if state.watermark is None or stamp > state.watermark:
                state.watermark = stamp

        update_sync_state(self._store, advance)
