"""Resolution times for tickets done before the connector kept them (docs/status-sync.md#older-resolution-times).

`resolvedAt` came with the reviews. A ticket that was already done in the store had none, and nothing reads its record
again: the incremental pass reads changed records, the sweep open ones. So a review counted it resolved in no period.
Each run walks this connection's such tickets in ticket id order from a cursor kept in its sync state (`backfill`),
at most MAX_REQUESTS `sys_idIN` requests of CHUNK sys_ids, through the run's reader (the same fields, the same
deadline). Each ticket gets ServiceNow's `resolved_at`, else `closed_at`, and nothing else: one conditional write of
`resolved_at`; a ticket the sync changed since it was listed, or whose record is no longer done, is left to it. The
cursor passing a ticket is its mark: a record ServiceNow does not return, or that has neither stamp, is asked once
and keeps null. When the walk finds none left the state says `done`, and later runs read nothing for it.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from shared import deadlines
from shared.runs import SYNC_SYSTEMIC, SyncState, describe, sync_state, update_sync_state
from shared.store import StoreConflict
from shared.text import printable
from shared.tickets import RESOLVED_STATUSES, SYS_ID, Ticket, resolution_stamp
from status_sync.reader import RecordReader, SyncResult

CHUNK = 100  # sys_ids in one request (a URL far below the length where pysnc turns to the Batch API)
MAX_REQUESTS = 2  # per run: 200 tickets, about 57,000 a day at a run every 5 minutes
# Done tickets one store call looks at, at most: Table Storage cannot filter on a missing `resolved_at`, and a walk over
# 100,000 stamped ones took 13.5 s on Azurite in one call; this is 5 of its pages, well under a second.
SCAN = 5000


class Backfill:
    def __init__(self, reader: RecordReader) -> None:
        self._reader = reader
        self._services = reader.services
        self._store = reader.services.store

    def run(self, result: SyncResult) -> None:
        state = sync_state(self._store).backfill or {}
        if state.get("done"):
            return
        after = str(state.get("after") or "")
        connection = self._services.connection
        for _ in range(MAX_REQUESTS):
            deadlines.check_run()
            found, more = self._store.list_unstamped_done(after, CHUNK, connection.key, SCAN)
            # an id added again: its earlier connection's tickets are never asked of this instance
            mine = [(t, etag) for t, etag in found if connection.serves(t) and SYS_ID.fullmatch(t.sys_id or "")]
            if mine:
                self._stamp(mine, result)
            if more is None:
                self._save({"done": self._services.clock().isoformat()})
                return
            after = more
            self._save({"after": after})  # progress kept, should the next request fail or the run be cut short

    def _save(self, backfill: dict[str, Any]) -> None:
        def save(state: SyncState) -> None:
            state.backfill = backfill

        update_sync_state(self._store, save)

    def _stamp(self, tickets: list[tuple[Ticket, str]], result: SyncResult) -> None:
        by_sys_id = {str(t.sys_id): (t, etag) for t, etag in tickets}
        rows, _ = self._reader.list_records(f"sys_idIN{','.join(by_sys_id)}", len(by_sys_id), result)
        for row in rows:
            found = by_sys_id.get(str(row.get("sys_id") or ""))
            if found is None:
                continue
            try:
                result.backfilled += self._write(*found, row)
            except SYNC_SYSTEMIC:
                raise
            except Exception as exc:  # one bad record never stops the others
                code, detail = describe(exc)
                result.errors.append(f"resolution time of {printable(found[0].number or found[0].id, 40)}: "
                                     f"{code}: {detail}")  # fmt: skip

    def _write(self, ticket: Ticket, etag: str, row: dict[str, Any]) -> bool:
        field_map = self._services.settings.field_map
        state = row.get(field_map.target("state"))
        if field_map.status_of(state if isinstance(state, str) else "") not in RESOLVED_STATUSES:
            return False  # reopened since: the sync brings it up to date
        stamp = resolution_stamp(row, self._services.clock().isoformat())
        if stamp is None:
            return False
        try:
            self._store.update_ticket(replace(ticket, resolved_at=stamp), etag)
            return True
        except StoreConflict:
            pass
        # Changed since it was listed. Still done, without one, at the ServiceNow version it was listed with: only the
        # connector's own bookkeeping changed (a write-back, an error), so it is stamped still, once more
        # conditionally. Any other change is the sync's, which stamps a done record it applies itself.
        found = self._store.get_ticket(ticket.id)
        if found is None or _version(found[0]) != _version(ticket):
            return False
        try:
            self._store.update_ticket(replace(found[0], resolved_at=stamp), found[1])
        except StoreConflict:
            return False
        return True


def _version(ticket: Ticket) -> tuple[Any, ...]:
    """What the backfill stamps by: the record, done, without a resolution time, at one ServiceNow version."""
    return (ticket.sys_id, ticket.status in RESOLVED_STATUSES, ticket.resolved_at, ticket.servicenow_mod_count,
            ticket.servicenow_updated_on)  # fmt: skip
