"""The rolling sweep: every tracked open record verified at least once a day, at a few requests per run.

The incremental pass sees every change, but not a record that was deleted or that ACLs now hide: ServiceNow
just stops returning it. So the tracked open records are asked for by `sys_idIN` in chunks, a slice per run.
sys_ids are random hex, so the day is laid over the sys_id space: a cycle of SWEEP_PERIOD walks it once, and
each run verifies the records whose position the clock has passed. Chunks go out full (SWEEP_CHUNK sys_ids,
a URL well under the 10,000 characters past which pysnc switches to the Batch API); a record never waits more
than MAX_LAG past its place, so none goes longer than about a day between two checks. At 100,000 tracked records
and a run every 5 minutes that is about 1.5 requests per run.

Deletions are also read from `sys_audit_delete`, where the integration user may read it (it usually needs an
admin-granted role): one request per run sees a deleted record within minutes instead of within the day. Where
it is refused, the sweep alone finds them, and the table is tried again a day later.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

from shared import deadlines
from shared.problems import ConnectorError
from shared.records import mark_missing
from shared.runs import SyncState, sync_state, update_sync_state
from shared.store import TicketStore
from shared.tickets import SYS_ID
from status_sync.index import Index
from status_sync.reader import RecordReader, SyncResult

log = logging.getLogger(__name__)

SWEEP_PERIOD = timedelta(hours=23)
SWEEP_CHUNK = 250
MAX_LAG = timedelta(minutes=55)
MAX_CHUNKS_PER_RUN = 40
AUDIT_TABLE = "sys_audit_delete"
AUDIT_RETRY = timedelta(days=1)
_SPACE = 16**32


def position_at(fraction: float) -> str:
    """The sys_id the cycle has reached at `fraction` of its period."""
    return f"{min(int(fraction * _SPACE), _SPACE - 1):032x}"


class Sweep:
    def __init__(self, reader: RecordReader) -> None:
        self._reader = reader
        self._services = reader.services
        self._store = reader.services.store

    def run(self, index: Index, result: SyncResult, since: str | None) -> None:
        self._deletions(index, result, since)
        self._slice(index, result)

    # -- the slice ------------------------------------------------------------------------------

    def _slice(self, index: Index, result: SyncResult) -> None:
        now = self._services.clock()
        state = sync_state(self._store).sweep or {}
        try:
            started = datetime.fromisoformat(str(state["started"]))
            position = str(state.get("position") or "")
        except (KeyError, ValueError):
            started, position = now, ""
        fraction = (now - started) / SWEEP_PERIOD
        target = position_at(fraction) if fraction < 1 else "g"  # "g": past every hex sys_id
        before = None if "started" not in state else (started, position)  # a first cycle is saved at once
        for _ in range(MAX_CHUNKS_PER_RUN):
            deadlines.check_run()
            batch = self._store.list_tracked_by_sys_id(position, target, SWEEP_CHUNK, self._services.connection.key)
            if not batch:
                if fraction >= 1:  # the cycle is done: the next one starts now
                    started, position = now, ""
                break
            if len(batch) < SWEEP_CHUNK and fraction < 1:
                waiting_since = started + SWEEP_PERIOD * (int(batch[0][0], 16) / _SPACE)
                if now - waiting_since < MAX_LAG:
                    break  # wait for a full chunk, unless a record has waited long enough
            self._verify(batch, index, result)
            position = batch[-1][0]
            self._save(started, position)  # progress kept, should the run be cut short
        if (started, position) != before:
            self._save(started, position)

    def _save(self, started: datetime, position: str) -> None:
        def save(state: SyncState) -> None:
            state.sweep = {"started": started.isoformat(), "position": position}

        update_sync_state(self._store, save)

    def _verify(self, batch: list[tuple[str, str]], index: Index, result: SyncResult) -> None:
        connection = self._services.connection
        if connection.tag:  # an id added again: its earlier connection's tickets are never asked of this instance
            batch = [(s, t) for s, t in batch if (found := self._store.get_ticket(t)) and connection.serves(found[0])]
            if not batch:
                return
        result.reconciled = True
        result.verified += len(batch)
        tracked = dict(batch)
        for sys_id, ticket_id in batch:
            index.add(sys_id, ticket_id)
        rows, _ = self._reader.list_records(f"sys_idIN{','.join(tracked)}", len(tracked), result)
        seen = set()
        for row in rows:
            seen.add(str(row.get("sys_id")))
            self._reader.apply_isolated(row, index, result)
        for sys_id in set(tracked) - seen:  # deleted, or hidden by ACLs
            if mark_missing(self._services, tracked[sys_id]):
                result.missing += 1

    # -- deletions ------------------------------------------------------------------------------

    def _deletions(self, index: Index, result: SyncResult, since: str | None) -> None:
        now = self._services.clock()
        if since is None:  # a first run: the sweep finds older deletions; this learns whether the table is readable
            since = (now - timedelta(minutes=2)).strftime("%Y-%m-%d %H:%M:%S")
        audit = sync_state(self._store).audit or {}
        refused_at = audit.get("refused_at")
        if isinstance(refused_at, str) and datetime.fromisoformat(refused_at) + AUDIT_RETRY > now:
            return
        table = self._services.settings.table  # validated as a table name: safe in the query
        query = f"tablename={table}^sys_created_on>={since}^ORDERBYsys_created_on"
        try:
            rows, _ = self._reader.list_records(
                query, 100, result, table=AUDIT_TABLE, fields="documentkey,sys_created_on"
            )
        except ConnectorError as exc:
            if exc.extra.get("serviceNow", {}).get("status") in (403, 400) or exc.code == "not_found":
                log.info("%s is not readable by the integration user; deletions are found by the sweep", AUDIT_TABLE)
                _set_audit(self._store, {"refused_at": now.isoformat()})
                return
            raise
        if refused_at:
            _set_audit(self._store, {})
        for row in rows:
            sys_id = str(row.get("documentkey") or "")
            ticket_id = index.get(sys_id) if SYS_ID.fullmatch(sys_id) else None
            if ticket_id is not None and mark_missing(self._services, ticket_id):
                result.missing += 1


def _set_audit(store: TicketStore, audit: dict[str, Any]) -> None:
    def save(state: SyncState) -> None:
        state.audit = audit

    update_sync_state(store, save)
