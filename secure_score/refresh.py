"""Secure Score refresh (DESIGN section 9): read Graph, store the joined snapshot, act on edges, write back.

One refresh costs 1 + ceil(profiles / page) Graph requests whatever the number of tickets: the 90-day
history and today's scores in one `secureScores?$top=90`, then the profile pages (plus, per note written,
the read of the control just before it). The snapshot is stored whole only after every page arrived, so a
failure mid-listing leaves the old one; so does a listing that looks wrong: an empty one, no scores, or fewer than
half the profiles the last snapshot had (taken as the truth only when the next refresh sees it again). A `206`
keeps what came, carries the failed provider's controls forward from the last snapshot, and is reported.

The whole refresh has a deadline (`deadlines.RUN_DEADLINE`): past it, the refresh stops between tickets, keeps
what it did, and says so. Edges are in `shared/edges.py`, the write-back in `shared/writeback.py`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from secure_score.controls import ProfileRefused, build_control, by_rank, newest_tickets
from secure_score.edges import follow, observe
from secure_score.writeback import WriteBack, clear_forbidden
from shared import deadlines
from shared.graph import WRITE_ROLE, Listing, ProviderWarning, RequestCount
from shared.problems import (
    ConnectorError,
    NotConfigured,
    NotConnected,
    ReauthorizationRequired,
    SecureScoreForbidden,
    SecureScoreUnavailable,
    ServiceNowUnavailable,
)
from shared.runs import (
    MAX_ITEM_ATTEMPTS,
    SECURE_SCORE_RUN,
    describe,
    failure_entry,
    listed_errors,
    merge_failures,
    record_ticket_error,
    remediation_of,
    run_document,
)
from shared.services import Services
from shared.store import StoreConflict, change_ticket
from shared.tickets import Ticket

log = logging.getLogger(__name__)

HISTORY_DAYS = 90
RUN_DOCUMENT = SECURE_SCORE_RUN
# Failures of the whole run: stop acting on tickets (the snapshot is kept) and say so.
SYSTEMIC = (NotConfigured, NotConnected, ReauthorizationRequired, ServiceNowUnavailable, SecureScoreForbidden,
            SecureScoreUnavailable)  # fmt: skip


@dataclass
class RefreshResult:
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

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["durationMs"] = data.pop("duration_ms")
        data["errors"] = listed_errors(self.errors)
        return data

    def warn(self, error: ConnectorError, **about: Any) -> None:
        self.warnings.append({"code": error.code, "detail": error.detail, "remediation": error.remediation, **about})
        if self.status == "ok":
            self.status = "partial"


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
        self._count = RequestCount()

    # -- a refresh ------------------------------------------------------------------------------

    def refresh(self) -> RefreshResult:
        with deadlines.run_deadline(self._services.run_deadline):
            return self._refresh()

    def _refresh(self) -> RefreshResult:
        services = self._services
        started = time.monotonic()
        now = services.clock().isoformat()
        result = RefreshResult(at=now)
        try:
            graph = services.graph
            scores = graph.secure_scores(HISTORY_DAYS, count=self._count)
            listing = graph.control_profiles(count=self._count)
        except deadlines.RunOutOfTime:
            error = SecureScoreUnavailable(
                f"Microsoft Graph did not finish answering within the refresh's deadline "
                f"({services.run_deadline:g} s); the previous snapshot is kept.",
                retry_after=300,
                remediation="Nothing to fix in the connector: the next refresh tries again.",
            )
            self._fail(result, error)
            self._finish(result, started)
            raise error from None
        except Exception as exc:  # nothing was stored: the old snapshot stays
            self._fail(result, exc)
            self._finish(result, started)
            raise
        for warning in dict.fromkeys(scores.warnings + listing.warnings):  # each failed provider once
            self._provider_warning(result, warning)
        previous = self._store.get_secure_score()
        doubt = self._doubt(scores.items, listing, previous)
        if doubt is not None:
            result.warn(doubt)
            return self._finish(result, started)
        controls = self._join(listing.items, scores.items[0], result)
        if result.warnings and previous is not None:
            controls = _carry_forward(controls, previous[1])
        self._store.put_secure_score(_summary(scores.items, controls, now), controls)
        result.controls = len(controls)
        result.scored = sum(1 for c in controls if c.get("scored"))
        day = str(scores.items[0].get("createdDateTime") or now)[:10]
        try:
            self._act(controls, day, result)
        except deadlines.RunOutOfTime:
            result.warn(SecureScoreUnavailable(
                f"The refresh reached its deadline ({services.run_deadline:g} s) and stopped; the snapshot is stored "
                "and the next refresh goes on with the tickets this one did not reach.", retry_after=300))  # fmt: skip
        except SYSTEMIC as exc:
            self._fail(result, exc)
        return self._finish(result, started)

    def _act(self, controls: list[dict[str, Any]], day: str, result: RefreshResult) -> None:
        by_id = {c["id"]: c for c in controls}
        tickets = self._newest_tickets(by_id)
        followed = []
        for ticket in tickets:
            deadlines.check_run()
            followed.append(self._follow_isolated(ticket, by_id[ticket.recommendation_id], day, result))
        kept = [t for t in followed if t is not None]
        self._permission_back(kept)
        self.write_back(kept, result)

    def _provider_warning(self, result: RefreshResult, warning: ProviderWarning) -> None:
        """A provider that failed behind a 206: its 403 is the connector's missing permission, anything else
        Graph's own trouble. Either way the data that came is kept."""
        about = {"provider": f"{warning.vendor}/{warning.provider}", "status": warning.status}
        if warning.status == 403:
            result.warn(self._services.graph.forbidden_provider(warning), **about)
            return
        failed = SecureScoreUnavailable(
            f"Microsoft Graph answered without the data of the provider {warning.vendor}/{warning.provider}, which "
            f"failed with {warning.status}; the other providers' data was kept, and that provider's controls as the "
            "last snapshot had them.",
            retry_after=300,
            remediation="Nothing to fix in the connector: the next refresh reads that provider again.",
        )
        result.warn(failed, **about)

    def _doubt(
        self, scores: list[dict[str, Any]], listing: Listing, previous: tuple[dict[str, Any], list[Any]] | None
    ) -> SecureScoreUnavailable | None:
        """Why this answer should not replace the snapshot, if it should not."""
        keep = "The previous snapshot is kept." if previous else "Nothing was stored."
        if not listing.items:
            return SecureScoreUnavailable(f"Microsoft Graph listed no control profiles. {keep}", retry_after=300,
                                          remediation="Nothing to fix in the connector: the next refresh reads "
                                          "them again.")  # fmt: skip
        if not scores:
            return SecureScoreUnavailable(f"Microsoft Graph returned no Secure Score snapshot. {keep}",
                                          retry_after=300, remediation="Nothing to fix in the connector: the next "
                                          "refresh reads it again.")  # fmt: skip
        had = len(previous[1]) if previous else 0
        now = len(listing.items)
        state = run_state(self._services)
        if had and now < had / 2 and not listing.warnings:
            if state.get("suspectDrop") == now:
                self._note_state(suspect=None)
                return None  # the same drop twice in a row: Microsoft changed the catalogue
            self._note_state(suspect=now)
            return SecureScoreUnavailable(
                f"Microsoft Graph listed {now} control profiles, fewer than half of the {had} the last snapshot "
                f"had. {keep} If the next refresh lists the same, it is taken as the truth.", retry_after=300,
                remediation="Nothing to fix in the connector; if Microsoft really removed controls, the next "
                "refresh takes the new list.")  # fmt: skip
        if state.get("suspectDrop") is not None:
            self._note_state(suspect=None)
        return None

    def _note_state(self, *, suspect: int | None) -> None:
        self._update_document(lambda state: {**state, "suspectDrop": suspect})

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

    def _update_document(self, change: Any) -> None:
        for _ in range(10):
            found = self._store.get_document(RUN_DOCUMENT)
            try:
                self._store.put_document(RUN_DOCUMENT, change(dict(found[0]) if found else {}),
                                         found[1] if found else None)  # fmt: skip
                return
            except StoreConflict:
                continue

    def _persist(self, result: RefreshResult | None) -> None:
        """The run's result (if a refresh) and the item failures it changed, merged under the document's ETag
        so a concurrent writer's entries survive."""
        failures = self._failures

        def update(state: dict[str, Any]) -> dict[str, Any]:
            merged = merge_failures(state.get("failures"), failures)
            return {**state, **({"last": result.to_json()} if result else {}), "failures": merged}

        self._update_document(update)

    def _finish(self, result: RefreshResult, started: float) -> RefreshResult:
        result.duration_ms = int((time.monotonic() - started) * 1000)
        result.requests = self._count.value
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

    def _follow_isolated(
        self, ticket: Ticket, control: dict[str, Any], day: str, result: RefreshResult
    ) -> Ticket | None:
        key = f"ticket:{ticket.id}"
        try:
            followed = follow(self._services, ticket, control, day, result)
            if followed is not None and (followed.error or {}).get("source") == RUN_DOCUMENT:  # an earlier try failed
                followed = change_ticket(self._store, ticket.id, _without_error)
        except (deadlines.RunOutOfTime, *SYSTEMIC):
            raise
        except Exception as exc:
            attempts = record_ticket_error(self._store, result.at, ticket.id, exc, source=RUN_DOCUMENT)
            code, detail = describe(exc)
            result.errors.append(f"ticket {ticket.number or ticket.id}: {code}: {detail}")
            self._failures[key] = failure_entry("ticket", ticket.id, ticket.number, exc, result.at, attempts)
            if attempts >= MAX_ITEM_ATTEMPTS:  # stop retrying the action: the edge counts as seen
                return observe(self._services, ticket.id, bool(control["completed"]))
            found = self._store.get_ticket(ticket.id)
            return found[0] if found else None
        self._failures[key] = None
        return followed

    # -- write-back ------------------------------------------------------------------------------

    def _permission_back(self, tickets: list[Ticket]) -> None:
        """Writes a 403 stopped may go again once the Graph token carries the write permission (or when the
        token says nothing the connector can read: then one write per refresh finds out)."""
        if not any((t.secure_score or {}).get("forbidden") for t in tickets):
            return
        try:
            roles = self._services.graph.token_roles()
        except ConnectorError:
            return
        if roles is None or WRITE_ROLE in roles:
            cleared = clear_forbidden(self._services, tickets)
            log.info("The Graph token carries %s again: write-back resumes for %d control(s)", WRITE_ROLE, cleared)
            for i, ticket in enumerate(tickets):
                found = self._store.get_ticket(ticket.id)
                if found is not None:
                    tickets[i] = found[0]

    def write_back(self, tickets: Iterable[Ticket], result: RefreshResult) -> None:
        writes = WriteBack(self._services, self._failures, self._count)
        try:
            writes.run(tickets)
        finally:
            result.written += writes.written
            result.errors.extend(writes.errors)

    def write_back_for(self, ticket_ids: Iterable[str]) -> None:
        """After a status sync: the notes of the tickets it saw, if they changed (point reads, no listing)."""
        if self._services.settings.secure_score_write_back != "comment":
            return
        writes = WriteBack(self._services, self._failures, self._count)
        tickets: list[Ticket] = []
        for ticket_id in dict.fromkeys(ticket_ids):
            found = self._store.get_ticket(ticket_id)
            if found is None or not writes.due(found[0]) or found[0].recommendation.get("source") == "user":
                continue
            if found[0].duplicate_of is None and self._store.get_secure_score_control(found[0].recommendation_id):
                tickets.append(found[0])
        if tickets:
            try:
                writes.run(tickets)
            except (deadlines.RunOutOfTime, *SYSTEMIC) as exc:
                log.warning("Write-back to Secure Score stopped: %s", describe(exc)[0])
            if self._failures:
                self._persist(None)


def _without_error(ticket: Ticket) -> Ticket:
    return replace(ticket, error=None)


def _carry_forward(controls: list[dict[str, Any]], before: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """After a partial answer: controls it left out, and scores it no longer had, as the last snapshot had them,
    marked `stale` (no edge acts on them)."""
    now = {c["id"]: c for c in controls}
    for old in before:
        held = now.get(str(old.get("id")))
        if held is None:
            now[old["id"]] = {**old, "stale": True}
        elif not held.get("scored") and old.get("scored"):
            now[old["id"]] = {**held, **{k: old.get(k) for k in ("score", "scored", "completed")}, "stale": True}
    return sorted(now.values(), key=by_rank)


def run_state(services: Services) -> dict[str, Any]:
    return run_document(services.store, RUN_DOCUMENT)
