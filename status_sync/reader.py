"""The records of one status sync run: reading them from ServiceNow and applying each one on its own.

The incremental pass, the retries of failed records and the rolling sweep (status_sync/sweep.py) all read through a
`RecordReader`: it counts the requests, applies each record isolated (a failure is kept on the item and skipped, the
run goes on), links the connector's own records it meets before adoption decides about the rest, and remembers the
tickets it saw for the write-back. It knows nothing of the run around it, so the sweep takes it without an import
circle.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import httpx

from shared.records import apply_record, record_fields
from shared.runs import SYNC_SYSTEMIC, Failures, RunResult, describe, failure_entry, record_ticket_error
from shared.services import Services
from shared.text import printable
from shared.tickets import SYS_ID, RecordRefused
from status_sync.adoption import Adoption
from status_sync.index import Index
from status_sync.own_records import settle_own_record
from templates.api import risk_acceptor


@dataclass
class SyncResult(RunResult):
    """One status sync run of one connection: what `status_sync` returns and the sync state keeps as `last`."""

    at: str
    status: str = "ok"  # ok | partial (stopped at its deadline) | failed | skipped
    changed: int = 0
    adopted: int = 0
    resumed: int = 0
    missing: int = 0
    requests: int = 0
    pages: int = 0
    reconciled: bool = False  # the sweep verified records this run
    verified: int = 0  # records the sweep asked ServiceNow about
    backfilled: int = 0  # tickets done before `resolvedAt` existed that got ServiceNow's (status_sync/backfill.py)
    errors: list[str] = field(default_factory=list)
    duration_ms: int = 0


class RecordReader:
    """Reads and applies records for one run; `seen` is the tickets it read from ServiceNow."""

    def __init__(self, services: Services, failures: Failures) -> None:
        self._services = services
        self._store = services.store
        self._failures = failures
        self._adoption = Adoption(services)  # the routes and tenants adoption goes by, read once per run
        self.seen: list[str] = []
        self._accepts = risk_acceptor(services.store)  # the templates that accept risks, read once per run if asked

    @property
    def services(self) -> Services:
        return self._services

    def list_records(
        self, query: str, limit: int, result: SyncResult, *, offset: int = 0, table: str | None = None,
        fields: str | None = None,
    ) -> tuple[list[dict[str, Any]], httpx.Response]:  # fmt: skip
        services = self._services
        result.requests += 1
        params = {
            "sysparm_query": query,
            "sysparm_fields": fields or record_fields(services),
            "sysparm_limit": str(limit),
            "sysparm_exclude_reference_link": "true",
        }
        if offset:
            params["sysparm_offset"] = str(offset)
        return services.servicenow.table_list(services.tokens, table or services.settings.table, params)

    # -- applying one record --------------------------------------------------------------------

    def apply_isolated(self, row: dict[str, Any], index: Index, result: SyncResult) -> None:
        """One record: a failure is recorded (on its ticket, in provisioning) and skipped; the run goes on."""
        sys_id = str(row.get("sys_id") or "")
        key = f"record:{printable(sys_id, 40)}"
        version = printable(f"{row.get('sys_mod_count') or ''}@{row.get('sys_updated_on') or ''}", 60)
        if self._failures.settled(key, version):
            return
        try:
            self._apply(row, index, result)
        except SYNC_SYSTEMIC:
            raise
        except Exception as exc:
            number = printable(str(row.get("number") or ""), 40) or None
            code, detail = describe(exc)
            result.errors.append(f"record {number or sys_id[:40]}: {code}: {detail}")
            ticket_id = index.get(sys_id) if SYS_ID.fullmatch(sys_id) else None
            if ticket_id is not None:
                record_ticket_error(self._store, self._failures.now, ticket_id, exc, source="sync")
            attempts = self._failures.attempts(key) + 1
            entry = failure_entry("record", printable(sys_id, 40), number, exc, self._failures.now, attempts)
            # where the record was found (docs/design.md#isolation-between-customers: listed with where)
            connection = self._services.connection
            self._failures.record(key, {**entry, "version": version, "connection": connection.id,
                                        "instance": connection.instance_url})  # fmt: skip
        else:
            self._failures.clear(key)

    def _apply(self, row: dict[str, Any], index: Index, result: SyncResult) -> None:
        sys_id = str(row.get("sys_id") or "")
        if not SYS_ID.fullmatch(sys_id):
            raise RecordRefused("ServiceNow returned a record without a valid sys_id")
        # docs/design.md#writes-in-doubt-and-store-outages, before any adoption
        ticket_id = index.get(sys_id) or self._settle_own(row, index)
        if ticket_id is None:
            adopted = self._adoption.adopt(row)
            index.add(sys_id, adopted.id)
            result.adopted += 1
            self.seen.append(adopted.id)
            return
        if apply_record(self._services, ticket_id, row, self._accepts):
            result.changed += 1
        self.seen.append(ticket_id)

    def _settle_own(self, row: dict[str, Any], index: Index) -> str | None:
        """A record of the connector's own the index does not know (status_sync/own_records.py): a pending
        create's, linked to it; or the newer of two open records of its own, cancelled. None: adoption decides."""
        ticket_id = settle_own_record(self._services, row)
        if ticket_id is not None:
            index.add(str(row["sys_id"]), ticket_id)
        return ticket_id
