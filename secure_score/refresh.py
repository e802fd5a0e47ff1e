"""Secure Score refresh (docs/design.md#secure-score, docs/design.md#several-microsoft-tenants): for every tenant the
connector reads, read Graph, store the joined snapshot, act on edges, write back.

Tenants are read `SECURE_SCORE_TENANT_PARALLELISM` at a time, each with at most 4 Graph requests in flight (Graph's
limit is per app per tenant). A tenant that fails never stops the others: its failure is kept on its own record
(`GET /api/tenants`). With only the home tenant, a refresh is what it always was, and a failed read raises.

The whole refresh has a deadline (`deadlines.RUN_DEADLINE`): past it, the refresh stops between tickets, keeps
what it did, and says so. Reading is in `reading.py`, edges in `edges.py`, the write-back in `writeback.py`.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Any

from secure_score import confirmation, daily, reading, tenant_runs, tenants
from secure_score.controls import newest_tickets
from secure_score.edges import follow, observe
from secure_score.fanout import QueuedRefresh, enqueue
from secure_score.risk import accept_risks, risk_pending
from secure_score.writeback import WriteBack, clear_forbidden
from shared import deadlines
from shared.graph import WRITE_ROLE, RequestCount
from shared.problems import ConnectorError, SecureScoreUnavailable
from shared.runs import (
    MAX_ITEM_ATTEMPTS,
    REFRESH_SYSTEMIC,
    SECURE_SCORE_RUN,
    Failures,
    RefreshState,
    RunResult,
    describe,
    failure_entry,
    merge_failures,
    record_ticket_error,
    refresh_state,
    remediation_of,
    update_refresh_state,
)
from shared.services import Services
from shared.store import DIGEST, StoreConflict, TicketStore, change_ticket, controls_digest
from shared.tickets import HOME, Ticket

log = logging.getLogger(__name__)

RUN_DOCUMENT = SECURE_SCORE_RUN


@dataclass
class RefreshResult(RunResult):
    """One refresh (of one tenant, or the whole run over several): what `POST /api/recommendations/refresh`
    answers and the run document keeps as `last` (the home tenant's) and `run` (the whole run's)."""

    at: str
    status: str = "ok"  # ok | partial (kept data, with warnings, or stopped at its deadline) | failed
    requests: int = 0
    controls: int = 0
    scored: int = 0
    resolved: int = 0
    reopened: int = 0
    recreated: int = 0
    written: int = 0
    errors: list[str] = field(default_factory=list)
    warnings: list[dict[str, Any]] = field(default_factory=list)  # {code, detail, remediation, provider?, status?}
    error: dict[str, Any] | None = None  # what stopped the run: {code, detail, remediation}
    duration_ms: int = 0
    tenant: str | None = None  # whose (None: the home tenant's, or the whole run over several)
    tenants: list[dict[str, Any]] = field(default_factory=list)  # with several tenants, each one's result

    def to_json(self) -> dict[str, Any]:
        data = super().to_json()
        if not self.tenants:  # one tenant: the result is as before tenants
            data.pop("tenants")
        if self.tenant is None:
            data.pop("tenant")
        return data

    def warn(self, error: ConnectorError, **about: Any) -> None:
        self.warnings.append({"code": error.code, "detail": error.detail, "remediation": error.remediation, **about})
        if self.status == "ok":
            self.status = "partial"

    def fail(self, exc: BaseException) -> None:
        """What stopped the run is also kept whole (`error`, with its remediation): provisioning shows it."""
        code, detail = describe(exc)
        self.error = {"code": code, "detail": detail, "remediation": remediation_of(exc)}
        super().fail(exc)


class TenantRefresh:
    """One tenant's refresh. `failures` (shared by the tenants of one run) collects item failures."""

    def __init__(self, services: Services, tenant: str, failures: Failures) -> None:
        self._services = services
        self._store = services.store
        self._tenant = tenant
        self._failures = failures
        self.count = RequestCount()

    def run(self, result: RefreshResult) -> None:
        """Fill `result`; a read that fails raises after the result says why (the old snapshot stays)."""
        services, tenant = self._services, self._tenant
        now = result.at
        # The summary alone: its digest says whether the controls changed, so a refresh that finds them as they were
        # never reads them back (on Table Storage, 300 rows a tenant). A summary without a digest (stored by an
        # earlier version) is read with its controls, as then.
        previous = self._store.get_secure_score_summary(tenant)
        stored = None if previous is None or DIGEST in previous else self._store.get_secure_score(tenant)
        days = reading.days_to_read(previous, services.clock().date())
        try:
            scores, listing = reading.read(services, tenant, self.count, days)
        except deadlines.RunOutOfTime:
            error = SecureScoreUnavailable(
                f"Microsoft Graph did not finish answering within the refresh's deadline "
                f"({services.run_deadline:g} s); the previous snapshot is kept.",
                retry_after=300,
                remediation="Nothing to fix in the connector: the next refresh tries again.",
            )
            result.fail(error)
            raise error from None
        except Exception as exc:
            result.fail(exc)
            raise
        for warning in dict.fromkeys(scores.warnings + listing.warnings):  # each failed provider once
            reading.provider_warning(services, result, warning)
        drop = refresh_state(self._store).suspect_drop(tenant)
        had = len(stored[1]) if stored else previous.get("controls") if previous else None
        doubt = reading.doubt(scores.items, listing, had if isinstance(had, int) else 0, drop,
                              lambda new: _update(self._store, lambda s: s.set_suspect_drop(tenant, new)))  # fmt: skip
        if doubt is not None:
            result.warn(doubt)
            return
        controls = reading.join(listing.items, scores.items[0], result)
        if result.warnings and previous is not None:
            stored = stored or self._store.get_secure_score(tenant)
            controls = reading.carry_forward(controls, stored[1] if stored else [])
        kept = list((previous.get("history") or []) if previous else [])
        base = previous.get(daily.BASE) if previous else None
        summary = {**reading.summary(scores.items, controls, now, kept, base), DIGEST: controls_digest(controls)}
        # Most refreshes find every control as it was: then only the summary is written (one write, not 300), and
        # only while the stored controls are still those its digest names.
        if not self._store.put_secure_score_summary(summary, tenant):
            self._store.put_secure_score(summary, controls, tenant)
        result.controls = len(controls)
        result.scored = sum(1 for c in controls if c.get("scored"))
        day = str(scores.items[0].get("createdDateTime") or now)[:10]
        try:
            self._act(controls, day, result)
        except deadlines.RunOutOfTime:
            result.warn(SecureScoreUnavailable(
                f"The refresh reached its deadline ({services.run_deadline:g} s) and stopped; the snapshot is stored "
                "and the next refresh goes on with the tickets this one did not reach.", retry_after=300))  # fmt: skip
        except REFRESH_SYSTEMIC as exc:
            result.fail(exc)

    def _act(self, controls: list[dict[str, Any]], day: str, result: RefreshResult) -> None:
        by_id = {c["id"]: c for c in controls}
        newest = newest_tickets((t for t, _ in self._store.list_tickets(self._tenant)), self._tenant)
        followed = []
        for rec, ticket in newest.items():
            if rec in by_id:
                deadlines.check_run()
                followed.append(self._follow_isolated(ticket, by_id[rec], day, result))
        kept = [t for t in followed if t is not None]
        self._permission_back(kept)
        writes = WriteBack(self._services, self._failures, self.count)
        try:
            writes.run(kept)
        finally:
            result.written += writes.written
            result.errors.extend(writes.errors)
            accept_risks(self._services, [t.id for t in kept if risk_pending(t)])  # one a sync failed to write

    def _follow_isolated(
        self, ticket: Ticket, control: dict[str, Any], day: str, result: RefreshResult
    ) -> Ticket | None:
        key = f"ticket:{ticket.id}"
        try:
            followed = follow(self._services, ticket, control, day, result)
            earlier = followed.failure if followed is not None else None
            if earlier is not None and earlier.source == RUN_DOCUMENT:  # an earlier try failed
                followed = change_ticket(self._store, ticket.id, lambda t: replace(t, error=None))
        except (deadlines.RunOutOfTime, *REFRESH_SYSTEMIC):
            raise
        except Exception as exc:
            attempts = record_ticket_error(self._store, result.at, ticket.id, exc, source=RUN_DOCUMENT)
            code, detail = describe(exc)
            result.errors.append(f"ticket {ticket.number or ticket.id}: {code}: {detail}")
            self._failures.record(key, failure_entry("ticket", ticket.id, ticket.number, exc, result.at, attempts))
            if attempts >= MAX_ITEM_ATTEMPTS:  # stop retrying the action: the edge counts as seen
                return observe(self._services, ticket.id, bool(control["completed"]))
            found = self._store.get_ticket(ticket.id)
            return found[0] if found else None
        self._failures.clear(key)
        return followed

    def _permission_back(self, tickets: list[Ticket]) -> None:
        """Writes a 403 stopped may go again once the Graph token carries the write permission (or when the
        token says nothing the connector can read: then one write per refresh finds out)."""
        if not any((t.secure_score or {}).get("forbidden") for t in tickets):
            return
        try:
            roles = self._services.graph.token_roles(self._tenant)
        except ConnectorError:
            return
        if roles is None or WRITE_ROLE in roles:
            cleared = clear_forbidden(self._services, tickets)
            log.info("The Graph token carries %s again: write-back resumes for %d control(s)", WRITE_ROLE, cleared)
            for i, ticket in enumerate(tickets):
                found = self._store.get_ticket(ticket.id)
                if found is not None:
                    tickets[i] = found[0]


class SecureScoreRefresh:
    """The Secure Score refresh of every tenant the connector reads (the `secure_score_sync` timer's work, and
    `POST /api/recommendations/refresh`), and the write-back a status sync hands over."""

    def __init__(self, services: Services) -> None:
        self._services = services
        self._store = services.store
        # Merged into the run document at the end, never read first: a clear always removes the stored entry.
        self._failures = Failures.unread(services.clock().isoformat())

    def refresh(self, only: Iterable[str] | None = None) -> RefreshResult:
        """Every tenant to read (or `only` those); with just the home tenant, its result (raising on a failed read).
        A whole refresh first tries to confirm each `confirming` tenant (confirmation.py); one it confirms is active
        and read with the others."""
        with deadlines.run_deadline(self._services.run_deadline):
            if only is None:
                confirmation.run_due(self._services, at_refresh=True)
            chosen = list(only) if only is not None else tenants.to_read(self._services)
            if chosen == [HOME]:
                return self._home_alone()
            return self._several(chosen)

    def refresh_or_queue(self) -> RefreshResult | QueuedRefresh:
        """The timer's and `POST /api/recommendations/refresh`'s refresh: from FANOUT_THRESHOLD tenants due, one
        queue message each (fanout.py), else every tenant here, as `refresh()`."""
        with deadlines.run_deadline(self._services.run_deadline):
            confirmation.run_due(self._services, at_refresh=True)
            chosen = tenants.to_read(self._services)
            queued = enqueue(self._services, chosen)
            if queued is not None:
                return queued
            if chosen == [HOME]:
                return self._home_alone()
            return self._several(chosen)

    def refresh_leased(self, tenant: str, deadline: float) -> RefreshResult:
        """One tenant's refresh for a queue message whose lease it holds (fanout.py): the lease ends with the
        outcome's write; a failed read raises (the host tries the message again). Another tenant's refresh reads the
        stored item failures first, so only an entry stored for it is cleared: with none failing or cleared, it
        writes nothing to the refresh's one run document, which every queued refresh would otherwise rewrite."""
        if tenant != HOME:
            self._failures = Failures(refresh_state(self._store).failures, self._services.clock().isoformat())
        with deadlines.run_deadline(deadline):
            result, failure = self._one(tenant, release=True)
        self._persist(result if tenant == HOME else None)
        if failure is not None:
            raise failure
        return result

    def _one(self, tenant: str, *, release: bool = False) -> tuple[RefreshResult, BaseException | None]:
        started = time.monotonic()
        result = RefreshResult(at=self._services.clock().isoformat(), tenant=tenant or None)
        work = TenantRefresh(self._services, tenant, self._failures)
        failure: BaseException | None = None
        try:
            work.run(result)
        except Exception as exc:  # the read failed: the result says why, the old snapshot stays
            failure = exc
        result.duration_ms = int((time.monotonic() - started) * 1000)
        result.requests = work.count.value
        tenant_runs.record_run(self._services, tenant, _last(result), result.error, release=release)
        log.info("Secure Score refresh of %s %s: %d controls, %d requests, %d resolved, %d reopened, %d new, "
                 "%d written, %d ms", tenant or "the home tenant", result.status, result.controls, result.requests,
                 result.resolved, result.reopened, result.recreated, result.written, result.duration_ms)  # fmt: skip
        return result, failure

    def _home_alone(self) -> RefreshResult:
        result, failure = self._one(HOME)
        self._persist(result)
        if failure is not None:
            raise failure
        return result

    def _several(self, chosen: list[str]) -> RefreshResult:
        started = time.monotonic()
        outcomes: dict[str, tuple[RefreshResult, BaseException | None]] = {}
        parallelism = max(1, self._services.settings.tenant_parallelism)
        # Each tenant's token is asked for ahead of its reads, in the order they start, so a tenant's wave waits on
        # Graph alone, not on Entra ID first (one token request per tenant, as before: the reads find it held).
        with ThreadPoolExecutor(parallelism) as tokens, ThreadPoolExecutor(parallelism) as pool:
            for tenant in chosen:
                tokens.submit(deadlines.in_this_run(self._services.graph.prepare_token), tenant)
            futures = {t: pool.submit(deadlines.in_this_run(self._one), t) for t in chosen}
        for tenant, future in futures.items():
            outcomes[tenant] = future.result()
        total = RefreshResult(at=self._services.clock().isoformat())
        for tenant, (result, _) in outcomes.items():
            total.tenants.append({**result.to_json(), "tenant": tenant or None})
            for name in ("requests", "controls", "scored", "resolved", "reopened", "recreated", "written"):
                setattr(total, name, getattr(total, name) + getattr(result, name))
            total.errors.extend(f"{tenant or 'home'}: {e}" for e in result.errors)
            total.warnings.extend({**w, "tenant": tenant or None} for w in result.warnings)
        failed = [t for t, (r, _) in outcomes.items() if r.status == "failed"]
        total.status = (
            "failed" if failed and len(failed) == len(outcomes) else "partial" if failed or total.warnings else "ok"
        )
        if HOME in outcomes:
            total.error = outcomes[HOME][0].error
        total.duration_ms = int((time.monotonic() - started) * 1000)
        self._persist(total, home=outcomes[HOME][0] if HOME in outcomes else None)
        first = next((f for _, f in outcomes.values() if f is not None), None)
        if total.status == "failed" and first is not None:
            raise first
        return total

    def _persist(self, result: RefreshResult | None, *, home: RefreshResult | None = None) -> None:
        """The run's result and the item failures it changed, merged under the document's ETag so a concurrent
        writer's entries survive; `last` stays the home tenant's (provisioning reads it)."""
        failures = self._failures.snapshot()
        shown = home if home is not None else (result if result is not None and not result.tenants else None)
        if shown is None and (result is None or not result.tenants) and not failures:
            return  # nothing of this run's to store (another tenant's queued refresh, no item failed or cleared)

        def update(state: RefreshState) -> None:
            if shown is not None:
                state.last = shown.to_json()
            if result is not None and result.tenants:
                state.run = {k: v for k, v in result.to_json().items() if k != "tenants"}
            state.failures = merge_failures(state.failures, failures)

        _update(self._store, update)

    def write_back_for(self, ticket_ids: Iterable[str]) -> None:
        """After a status sync: the notes of the tickets it saw, if they changed (point reads, no listing), then the
        risks a person accepted in ServiceNow (secure_score/risk.py: a route's or a template's choice, with or without
        notes)."""
        try:
            self._notes_for(ticket_ids := list(ticket_ids))
        finally:
            accept_risks(self._services, ticket_ids)

    def _notes_for(self, ticket_ids: Iterable[str]) -> None:
        if self._services.settings.secure_score_write_back != "comment":
            return
        writes = WriteBack(self._services, self._failures, RequestCount())
        chosen: list[Ticket] = []
        read = tenants.being_read(self._services)  # a removed or paused tenant is never written to
        for ticket_id in dict.fromkeys(ticket_ids):
            found = self._store.get_ticket(ticket_id)
            if found is None or not writes.due(found[0]) or found[0].recommendation.get("source") == "user":
                continue
            if found[0].tenant not in read:
                continue
            ticket = found[0]
            if ticket.duplicate_of is None and self._store.get_secure_score_control(
                ticket.recommendation_id, ticket.tenant
            ):
                chosen.append(ticket)
        if chosen:
            try:
                writes.run(chosen)
            except (deadlines.RunOutOfTime, *REFRESH_SYSTEMIC) as exc:
                log.warning("Write-back to Secure Score stopped: %s", describe(exc)[0])
            if self._failures.snapshot():
                self._persist(None)


def _last(result: RefreshResult) -> dict[str, Any]:
    keep = ("at", "status", "requests", "controls", "scored", "resolved", "reopened", "recreated", "written")
    return {k: getattr(result, k) for k in keep}


def _update(store: TicketStore, edit: Callable[[RefreshState], None]) -> None:
    """The run document changed under its ETag; one that keeps changing is left to the next run, as before."""
    with contextlib.suppress(StoreConflict):
        update_refresh_state(store, edit)
