"""The alerts after a tenant's refresh (docs/alerts.md#what-happens): for each alert covering the tenant, crossed or
not, and the episode that follows.

Crossed: the snapshot's percent is under `below`, or the score fell by `dropOf` points or more within `within` days:
the newest day's score against the HIGHEST score of the days in the window (not the earliest: a dip and a partial
recovery inside the window still counts the whole fall from the top). Either condition set crosses; the alert has
recovered when no condition it sets holds, with a margin against flapping (RECOVERY_MARGIN): an open episode's
percent must be back a point over `below`, its fall a point (at most half the drop) under `dropOf`, so a score
wiggling around the line keeps one ticket instead of making one per crossing. A snapshot without the figures a
condition needs leaves the episode as it is (neither crossed nor recovered).

Per (tenant, alert) one store document (`alert-episode:{tenant}:{alert id}`) keeps the episode: its number, state
(`opening` -> `open` -> `resolving` -> `over`), ticket, the score last noted and the last failure. Every step is
taken under a lease on that document (a conditional write), so two refreshes at once never act twice; the intent is
written before ServiceNow is called, so a crash is finished by the next refresh: `opening` creates again with the
same idempotency key (the create finds its own record), `resolving` resolves again.
"""

from __future__ import annotations

import contextlib
import logging
import math
import uuid
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any, TypeGuard

from alerts import tickets
from alerts.failures import clear_failure, note_failure
from alerts.model import Alert
from alerts.saving import load
from shared import deadlines
from shared.runs import describe
from shared.services import Services
from shared.store import StoreConflict, update_document
from shared.tickets import claim_key

log = logging.getLogger(__name__)

PREFIX = "alert-episode:"
OPENING, OPEN, RESOLVING, OVER = "opening", "open", "resolving", "over"
STATES = (OPENING, OPEN, RESOLVING, OVER)
LEASE_MARGIN = timedelta(seconds=60)
RECOVERY_MARGIN = 1.0  # percent over `below`, points under `dropOf`: an open episode's hysteresis


def tenant_prefix(tenant: str) -> str:
    """A tenant's episodes sort together: one range read per refresh, whatever the number of alerts."""
    return f"{PREFIX}{tenant or 'home'}:"


def document_name(alert_id: str, tenant: str) -> str:
    return f"{tenant_prefix(tenant)}{alert_id}"


@dataclass(frozen=True)
class Crossing:
    crossed: bool
    why: str  # what the score is, in words: the ticket's description and notes
    current: float | None


def _finite(value: Any) -> TypeGuard[float]:
    """A number that compares: Python's JSON reader takes NaN and Infinity, and a NaN is under no line (a false
    recovery would resolve the ticket)."""
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _days(history: Any) -> list[dict[str, Any]]:
    good = [h for h in history or [] if isinstance(h, dict) and _finite(h.get("current"))]
    return sorted(good, key=lambda h: str(h.get("date")))


def decide(alert: Alert, summary: dict[str, Any], ongoing: bool = False) -> Crossing | None:
    """Crossed or not; `ongoing`: the episode is open, so recovering needs the margin (hysteresis)."""
    score = summary.get("secureScore") or {}
    percent, current, maximum = score.get("percent"), score.get("current"), score.get("max")
    days = _days(summary.get("history"))
    found: list[bool] = []
    said: list[str] = []
    if alert.below is not None and _finite(percent) and _finite(current) and _finite(maximum):
        line = min(100.0, alert.below + RECOVERY_MARGIN) if ongoing else alert.below
        found.append(percent < line)
        said.append(f"The Secure Score is {percent:g}% ({current:g} of {maximum:g} points); the alert's line is "
                    f"{alert.below:g}%" + (f" (it recovers at {line:g}%)." if ongoing else "."))  # fmt: skip
    if alert.drop_of is not None and days:
        newest = days[-1]
        try:
            start = (date.fromisoformat(str(newest["date"])) - timedelta(days=alert.within)).isoformat()
        except ValueError:
            start = str(newest["date"])
        window = [h for h in days if str(h["date"]) >= start]
        top = max(window, key=lambda h: (h["current"], str(h["date"])))
        fall = float(top["current"]) - float(newest["current"])
        drop = alert.drop_of - min(RECOVERY_MARGIN, alert.drop_of / 2) if ongoing else alert.drop_of
        found.append(fall >= drop)
        said.append(f"The score fell {fall:g} points within {alert.within} days (from {top['current']:g} on "
                    f"{top['date']} to {newest['current']:g} on {newest['date']}); the alert's drop is "
                    f"{alert.drop_of:g} points" + (f" (it recovers under {drop:g})." if ongoing else "."))  # fmt: skip
        current = newest["current"]
    if not found:
        return None
    return Crossing(any(found), " ".join(said), float(current) if isinstance(current, int | float) else None)


class Busy(Exception):
    """Another refresh holds the episode's lease: it acts; this one leaves the alert alone."""


class Episode:
    """One (alert, tenant) episode document, each change under its ETag and this run's lease."""

    def __init__(self, services: Services, alert: Alert, tenant: str) -> None:
        self.services, self.alert, self.tenant = services, alert, tenant
        self.name = document_name(alert.id, tenant)
        self.run = uuid.uuid4().hex
        self.data: dict[str, Any] = {}

    def take(self) -> dict[str, Any]:
        now = self.services.clock()
        until = (now + timedelta(seconds=self.services.run_deadline) + LEASE_MARGIN).isoformat()

        def edit(document: dict[str, Any]) -> None:
            lease = document.get("lease") or {}
            if lease.get("by") not in (None, self.run) and str(lease.get("until")) > now.isoformat():
                raise Busy
            document.update(alert=self.alert.id, tenant=self.tenant or "home", lease={"by": self.run, "until": until})
            self.data = dict(document)

        update_document(self.services.store, self.name, edit)
        return self.data

    def write(self, release: bool = False, **values: Any) -> None:
        def edit(document: dict[str, Any]) -> None:
            if (document.get("lease") or {}).get("by") != self.run:
                raise Busy  # the lease ran out and another refresh took it: it decides now
            document.update(values)
            if release:
                document.pop("lease", None)
            self.data = dict(document)

        update_document(self.services.store, self.name, edit)


def _note_due(data: dict[str, Any], crossing: Crossing, today: str) -> bool:
    """A work note when the score moved since the last one, at most one a day: Secure Score reports one total a day,
    yet its newest day can move between refreshes (no note per refresh)."""
    return crossing.current != data.get("noted") and data.get("notedOn") != today


def _due(data: dict[str, Any], crossing: Crossing, today: str) -> bool:
    """Whether the episode has a step to take: most refreshes find none, and then write nothing (no lease either)."""
    state = data.get("state") or OVER
    if state in (OPENING, RESOLVING) or data.get("error"):
        return True
    if state == OVER:
        return crossing.crossed
    return not crossing.crossed or _note_due(data, crossing, today)


def _act(episode: Episode, crossing: Crossing, listed: dict[str, Any]) -> str | None:
    """One step (or two: a resolve left half done, then a new crossing); what it did. `listed`: the episode as the
    refresh's one read of the tenant's episodes found it (taking the lease reads it again)."""
    services, alert, tenant = episode.services, episode.alert, episode.tenant
    if not _due(listed, crossing, services.clock().date().isoformat()):
        return None
    data, now = episode.take(), services.clock().isoformat()
    state, number = data.get("state") or OVER, int(data.get("episode") or 0)
    if state in (OPENING, OPEN) and not crossing.crossed:
        state = RESOLVING
        episode.write(state=RESOLVING)  # the intent, before ServiceNow is called
    if state == RESOLVING:
        ticket = tickets.ticket_of(services, data.get("ticket"), tenant)
        if ticket is None and data.get("ticket") is None:
            ticket = _left_by_a_crash(episode, number)
        if tickets.is_open(ticket) and ticket is not None:
            ticket = tickets.as_servicenow_has_it(services, ticket)  # a person's close not yet synced stands
        if tickets.is_open(ticket) and ticket is not None:
            tickets.resolve(services, ticket, f"The Secure Score recovered: {crossing.why}")
        episode.write(state=OVER, endedAt=now, error=None, ticket=ticket.id if ticket else data.get("ticket"))
        state = OVER
        if not crossing.crossed:
            return "resolved"
    if not crossing.crossed:
        return None
    if state == OVER:
        number += 1
        episode.write(state=OPENING, episode=number, since=now, ticket=None, noted=None, endedAt=None)
        state = OPENING
    if state == OPENING:
        ticket = tickets.open_ticket(services, alert, tenant, number, crossing.why)
        episode.write(state=OPEN, ticket=ticket.id, noted=crossing.current, error=None)
        return "opened"
    # open and still crossed: a work note when the score changed since the last note, at most one a day
    ticket = tickets.ticket_of(services, episode.data.get("ticket"), tenant)
    today = services.clock().date().isoformat()
    if not _note_due(episode.data, crossing, today):
        return None
    if tickets.is_open(ticket) and ticket is not None:
        ticket = tickets.as_servicenow_has_it(services, ticket)  # a close the status sync has not seen yet
    if not tickets.is_open(ticket) or ticket is None:
        # a person closed it: their decision stands until the score recovers; taken as noted, so the next
        # refreshes of the day find nothing to do (no lease written for it)
        episode.write(noted=crossing.current, notedOn=today)
        return None
    tickets.note(services, ticket, f"Still crossed: {crossing.why}")
    episode.write(noted=crossing.current, notedOn=today, error=None)
    return "noted"


def _left_by_a_crash(episode: Episode, number: int) -> Any:
    """An episode that recovered while its ticket's create was left `opening`: the ticket holding its claim, if a
    create began (then it is finished first, with the same key: exactly once), else none was ever posted."""
    services, alert, tenant = episode.services, episode.alert, episode.tenant
    holder = services.store.claim_holder(claim_key(tenant, tickets.recommendation_id(alert)))
    found = services.store.get_ticket(holder) if holder else None
    if found is None or not found[0].is_open:
        return None
    return tickets.open_ticket(services, alert, tenant, number, "The score recovered before this ticket was made.")


@dataclass
class Outcome:
    done: dict[str, str]
    failed: list[dict[str, Any]]


def after_refresh(services: Services, tenant: str, summary: dict[str, Any]) -> Outcome:
    """Every alert covering `tenant`, each on its own: one that fails is recorded on its episode (provisioning shows
    it) and never stops the others, nor the refresh."""
    outcome = Outcome({}, [])
    alerts = [a for a in load(services.store).alerts if a.covers(tenant)]
    found = services.store.list_documents(tenant_prefix(tenant)) if alerts else {}
    listed = {name: data for name, (data, _) in found.items()}
    for alert in alerts:
        state = (listed.get(document_name(alert.id, tenant)) or {}).get("state")
        crossing = decide(alert, summary, ongoing=state in (OPENING, OPEN))
        if crossing is None:
            continue
        episode = Episode(services, alert, tenant)
        try:
            deadlines.check_run()
            did = _act(episode, crossing, listed.get(episode.name) or {})
        except (Busy, StoreConflict):
            continue  # another refresh acts on it now
        except deadlines.RunOutOfTime:  # the refresh's deadline: the next refresh goes on (no failure of the alert)
            if episode.data:
                with contextlib.suppress(Busy, StoreConflict):
                    episode.write(release=True)
            break
        except Exception as exc:
            outcome.failed.append(_record(episode, exc))
            continue
        if episode.data:  # taken: released, with the error of an earlier try cleared
            episode_release(episode)
            if (listed.get(episode.name) or {}).get("error"):
                clear_failure(services.store, episode.name)
        if did:
            outcome.done[alert.id] = did
            log.info("Alert %s in %s: %s", alert.id, tickets.whose(tenant), did)
    return outcome


def episode_release(episode: Episode) -> None:
    with contextlib.suppress(Busy, StoreConflict):
        episode.write(release=True, error=None)


def _record(episode: Episode, exc: Exception) -> dict[str, Any]:
    code, detail = describe(exc)
    at = episode.services.clock().isoformat()
    attempts = int((episode.data.get("error") or {}).get("attempts") or 0) + 1
    error = {"at": at, "code": code, "detail": detail, "attempts": attempts}
    log.warning("Alert %s in %s failed: %s", episode.alert.id, tickets.whose(episode.tenant), code)
    with contextlib.suppress(Busy, StoreConflict):
        episode.write(release=True, error=error)
    entry = {"alert": episode.alert.id, "tenant": episode.tenant or "home", **error}
    note_failure(episode.services.store, episode.name, entry)
    return entry
