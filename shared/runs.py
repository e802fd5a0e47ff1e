"""Batch-run bookkeeping shared by the status sync and the Secure Score refresh (docs/design.md#robustness): one bad
item never stops the others. A failing item is recorded on its ticket and in the run state's `failures` (which
provisioning lists), skipped, and retried by later runs at most MAX_ITEM_ATTEMPTS times.

The one vocabulary of both runs: a `RunResult` (what a run reports and stores as its `last`), its `Failures` (the
items that failed, merged into the run state at the end) and the errors that stop a whole run rather than one item
(`SYNC_SYSTEMIC`, `REFRESH_SYSTEMIC`)."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from typing import Any, ClassVar, Self, TypeVar

from shared.problems import (
    ConnectorError,
    NotConfigured,
    NotConnected,
    ReauthorizationRequired,
    SecureScoreForbidden,
    SecureScoreUnavailable,
    ServiceNowUnavailable,
    StoreUnavailable,
    TenantNotConsented,
)
from shared.store import TicketStore, change_ticket, update_conditionally, update_document
from shared.tickets import SYS_ID, Ticket, TicketError

log = logging.getLogger(__name__)

SECURE_SCORE_RUN = "secure_score"  # the Secure Score refresh's run state: a store document of this name
MAX_ITEM_ATTEMPTS = 5  # a ticket or record that keeps failing is retried this many runs, then only listed
MAX_LISTED_FAILURES = 100
MAX_LISTED_ERRORS = 50
RETRY_CHUNK = 100  # failed records asked for again in one request

# Failures of a whole status sync run (nothing else in it could succeed either): the run stops, fails, and is retried.
SYNC_SYSTEMIC = (NotConfigured, NotConnected, ReauthorizationRequired, ServiceNowUnavailable, StoreUnavailable)
# Failures of a tenant's whole Secure Score refresh: it stops acting on that tenant's tickets (the snapshot is kept).
REFRESH_SYSTEMIC = (*SYNC_SYSTEMIC, SecureScoreForbidden, SecureScoreUnavailable, TenantNotConsented)


def run_document(store: TicketStore, name: str) -> dict[str, Any]:
    """A run's state as its store document holds it (`{}` before the first run)."""
    found = store.get_document(name)
    return found[0] if found else {}


@dataclass
class RunState:
    """A run's stored state: its last result and its item failures, typed; members this version does not know (or
    holds in a shape it does not expect) are kept in `other` as they were. Written back with the members in the
    order they were read, new ones after them, so a read and a write change nothing else in the stored JSON."""

    MEMBERS: ClassVar[dict[str, type]] = {"last": dict, "failures": dict}  # member -> its JSON type, in write order
    last: dict[str, Any] | None = None
    failures: dict[str, Any] | None = None
    other: dict[str, Any] = field(default_factory=dict)
    _order: list[str] = field(default_factory=list, init=False, repr=False, compare=False)

    @classmethod
    def from_json(cls, data: Any) -> Self:
        state = cls()
        document = data if isinstance(data, dict) else {}
        for name, value in document.items():
            if name in cls.MEMBERS and isinstance(value, cls.MEMBERS[name]):
                setattr(state, name, value)
            else:
                state.other[name] = value
        state._order = list(document)
        return state

    def to_json(self) -> dict[str, Any]:
        values = dict(self.other)
        values.update({name: getattr(self, name) for name in self.MEMBERS if getattr(self, name) is not None})
        order = dict.fromkeys([*self._order, *self.MEMBERS, *self.other])
        return {name: values[name] for name in order if name in values}


@dataclass
class SyncState(RunState):
    """A connection's status sync state (its store's sync state): the watermark, the sweep's place, whether the
    audit table refused it, the last run and the failing records and tickets; with the fan-out, the lease of the
    queue message syncing it (`syncing`: `until`, `by`); the backfill's place (status_sync/backfill.py)."""

    MEMBERS: ClassVar[dict[str, type]] = {
        "watermark": str,
        "audit": dict,
        "sweep": dict,
        "last": dict,
        "failures": dict,
        "syncing": dict,
        "backfill": dict,
    }
    watermark: str | None = None
    sweep: dict[str, Any] | None = None
    audit: dict[str, Any] | None = None
    syncing: dict[str, Any] | None = None
    backfill: dict[str, Any] | None = None  # the resolution times' backfill: `{after}`, then `{done}`


@dataclass
class RefreshState(RunState):
    """The Secure Score refresh's run state (the `secure_score` document): the home tenant's last result, the whole
    run's (`run`, with several tenants), the failing tickets and notes, and each tenant's suspect drop."""

    MEMBERS: ClassVar[dict[str, type]] = {"last": dict, "run": dict, "failures": dict}
    run: dict[str, Any] | None = None

    @staticmethod
    def _drop_key(tenant: str) -> str:
        return f"suspectDrop:{tenant}" if tenant else "suspectDrop"

    def suspect_drop(self, tenant: str) -> Any:
        return self.other.get(self._drop_key(tenant))

    def set_suspect_drop(self, tenant: str, drop: Any) -> None:
        self.other[self._drop_key(tenant)] = drop


S = TypeVar("S", bound=RunState)


def sync_state(store: TicketStore) -> SyncState:
    found = store.get_sync_state()
    return SyncState.from_json(found[0] if found else {})


def _edited_as(kind: type[S], edit: Callable[[S], None]) -> Callable[[dict[str, Any]], None]:
    """`edit` of a typed run state, as an edit of its stored document in place."""

    def change(document: dict[str, Any]) -> None:
        state = kind.from_json(document)
        edit(state)
        document.clear()
        document.update(state.to_json())

    return change


def update_sync_state(store: TicketStore, edit: Callable[[SyncState], None]) -> None:
    """Change the sync's run state under its ETag, re-reading on a lost race (`edit` may run more than once)."""
    update_conditionally(store.get_sync_state, store.put_sync_state, _edited_as(SyncState, edit), "the sync state")


def refresh_state(store: TicketStore) -> RefreshState:
    found = store.get_document(SECURE_SCORE_RUN)
    return RefreshState.from_json(found[0] if found else {})


def update_refresh_state(store: TicketStore, edit: Callable[[RefreshState], None]) -> None:
    """Change the refresh's run state under its ETag (`edit` may run more than once)."""
    update_document(store, SECURE_SCORE_RUN, _edited_as(RefreshState, edit))


def last_sync(store: TicketStore) -> dict[str, Any] | None:
    """The last status sync run of the connection whose store this is, as its sync state keeps it (None: never)."""
    return sync_state(store).last


def remediation_of(exc: BaseException) -> str | None:
    return exc.remediation if isinstance(exc, ConnectorError) else None


def describe(exc: BaseException) -> tuple[str, str]:
    """A failure as (code, detail) for tickets, provisioning and logs. Only a `ConnectorError`'s own detail is
    shown; anything else is named by its type (its message may quote a request)."""
    if isinstance(exc, ConnectorError):
        return exc.code, exc.detail
    return "internal_error", f"the connector failed with {type(exc).__name__} working on this item"


def record_ticket_error(store: TicketStore, now: str, ticket_id: str, exc: BaseException, *, source: str) -> int:
    """Keep a failure on the ticket (its JSON shows it); returns how many times it has failed in a row.
    `source` says which work failed, so only that work's success clears it."""
    code, detail = describe(exc)
    attempts = [1]

    def change(ticket: Ticket) -> Ticket:
        attempts[0] = ticket.failed_attempts + 1
        error = TicketError(now, code, detail, attempts[0], source, remediation_of(exc))
        return replace(ticket, error=error.to_json())

    change_ticket(store, ticket_id, change)
    log.warning("Ticket %s failed (%s), attempt %d; other tickets go on", ticket_id, code, attempts[0])
    return attempts[0]


def failure_entry(
    kind: str, item_id: str, number: str | None, exc: BaseException, at: str, attempts: int
) -> dict[str, Any]:
    code, detail = describe(exc)
    return {"kind": kind, "id": item_id, "number": number, "code": code, "detail": detail, "attempts": attempts,
            "at": at, "remediation": remediation_of(exc)}  # fmt: skip


def listed_errors(errors: list[str]) -> list[str]:
    """A run's errors as stored and shown: the first MAX_LISTED_ERRORS, then how many more (the run state
    stays small however many records fail; each failing item is also in `failures`)."""
    if len(errors) <= MAX_LISTED_ERRORS:
        return list(errors)
    return [*errors[:MAX_LISTED_ERRORS], f"... and {len(errors) - MAX_LISTED_ERRORS} more"]


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


class RunResult:
    """What every batch run reports (and stores as its run state's `last`): when it started, how it ended (`ok`,
    `partial`, `failed`, ...), its requests, its errors and its duration. Each run's result is a dataclass of its
    own fields, in the order its JSON has always had; this is what they share."""

    at: str
    status: str
    requests: int
    errors: list[str]
    duration_ms: int

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)  # type: ignore[call-overload]  # every run result is a dataclass
        data["durationMs"] = data.pop("duration_ms")
        data["errors"] = listed_errors(self.errors)
        return dict(data)

    def fail(self, exc: BaseException) -> None:
        """The run itself failed (a systemic error): it says so, and why, last among its errors."""
        code, detail = describe(exc)
        self.status = "failed"
        self.errors.append(f"{code}: {detail}")


class Failures:
    """The items that failed: as the last run left them, and this run's changes (merged at the end, so a
    concurrent writer's entries survive). Safe to share between threads (the refresh's tenants and writes).

    A run that never read its stored failures (`Failures.unread`: the refresh merges blind) records every clear,
    so the merge removes the entry whatever the store holds."""

    def __init__(self, stored: Any, now: str) -> None:
        self.stored: dict[str, dict[str, Any]] = dict(stored) if isinstance(stored, dict) else {}
        self.changes: dict[str, dict[str, Any] | None] = {}
        self.now = now
        self._read = True
        self._lock = threading.Lock()

    @classmethod
    def unread(cls, now: str) -> Failures:
        failures = cls(None, now)
        failures._read = False
        return failures

    def attempts(self, key: str) -> int:
        entry = self.changes[key] if key in self.changes else self.stored.get(key)
        return int((entry or {}).get("attempts") or 0)

    def record(self, key: str, entry: dict[str, Any]) -> None:
        with self._lock:
            self.changes[key] = entry

    def snapshot(self) -> dict[str, dict[str, Any] | None]:
        """This run's changes so far, as `merge_failures` takes them."""
        with self._lock:
            return dict(self.changes)

    def settled(self, key: str, version: str) -> bool:
        """A record that failed in this very version is not tried again in the run that tried it, nor once its
        attempts are spent (the overlap window, the retry query and the sweep would each bring it back)."""
        entry = self.changes[key] if key in self.changes else self.stored.get(key)
        if not entry or entry.get("version") != version:
            return False
        return key in self.changes or int(entry.get("attempts") or 0) >= MAX_ITEM_ATTEMPTS

    def clear(self, key: str) -> None:
        with self._lock:
            if not self._read or key in self.stored or key in self.changes:
                self.changes[key] = None

    def retryable(self, kind: str) -> list[str]:
        return [
            str(entry.get("id"))
            for entry in self.stored.values()
            if isinstance(entry, dict)
            and entry.get("kind") == kind
            and SYS_ID.fullmatch(str(entry.get("id")))
            and int(entry.get("attempts") or 0) < MAX_ITEM_ATTEMPTS
        ][:RETRY_CHUNK]
