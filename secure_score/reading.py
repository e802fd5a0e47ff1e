"""One tenant's Secure Score as Graph answers it: the reads, whether the answer can be trusted, and the snapshot.

One read costs 1 + ceil(profiles / page) Graph requests: today's scores in one `secureScores?$top=N`, read beside
the profile pages (they follow each other by `@odata.nextLink`). N is 90 the first time (the 90-day history Graph
keeps); after that, the days since the newest one stored (a day's snapshot does not change once the next one is
made), so a refresh every four hours reads one or two snapshots instead of ninety (about 1.3 MB in a tenant of 300
controls), and the stored history is kept up to date from them. The snapshot
is stored whole only after every page arrived, so a failure mid-listing leaves the old one; so does a listing that
looks wrong: an empty one, no scores, or fewer than half the profiles the last snapshot had (taken as the truth only
when the next refresh sees it again). A `206` keeps what came, carries the failed provider's controls forward from
the last snapshot, and is reported.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import date, timedelta
from typing import Any, Protocol

from secure_score import daily
from secure_score.controls import ProfileRefused, build_control
from shared import deadlines, tenant_records
from shared.graph import Listing, ProviderWarning, RequestCount
from shared.problems import ConnectorError, SecureScoreUnavailable
from shared.services import Services

HISTORY_DAYS = 90


class Findings(Protocol):
    errors: list[str]

    def warn(self, error: ConnectorError, **about: Any) -> None: ...


def days_to_read(summary: dict[str, Any] | None, today: date) -> int:
    """How many daily snapshots to ask for: all 90 without a stored history, else back to its newest day."""
    dates = [str(h.get("date")) for h in (summary.get("history") or []) if isinstance(h, dict)] if summary else []
    try:
        newest = date.fromisoformat(max(dates)) if dates else None
    except ValueError:
        newest = None
    if newest is None:
        return HISTORY_DAYS
    return max(1, min(HISTORY_DAYS, (today - newest).days + 1))


def read(services: Services, tenant: str, count: RequestCount, days: int = HISTORY_DAYS) -> tuple[Listing, Listing]:
    """The snapshots and the profiles, the one read beside the other (at most two of the tenant's four slots)."""
    graph = services.graph
    with ThreadPoolExecutor(1) as pool:
        scores = pool.submit(deadlines.in_this_run(graph.secure_scores), days, count=count, tenant=tenant)
        profiles = graph.control_profiles(count=count, tenant=tenant)
        return scores.result(), profiles


def summary(
    scores: list[dict[str, Any]],
    controls: list[dict[str, Any]],
    now: str,
    kept: list[dict[str, Any]] | None = None,
    base: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The snapshot's summary; `kept` is the stored history, which the days just read update and extend, each day
    with what a review shows of it (daily.py; `base`: the stored scores of the day before the newest)."""

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
    tenant_id = latest.get("azureTenantId")
    merged = _merged(kept or [], history)
    before = daily.annotate(merged, scores, controls, base)
    return {
        "secureScore": {
            "current": current,
            "max": maximum,
            "percent": round(100 * current / maximum, 1) if current is not None and maximum else None,
            "at": str(latest.get("createdDateTime") or "") or None,
        },
        "refreshedAt": now,
        "history": merged,
        daily.BASE: before,
        "controls": len(controls),
        "tenantId": tenant_id.lower() if isinstance(tenant_id, str) and len(tenant_id) <= 64 else None,
    }


def _merged(kept: list[dict[str, Any]], read: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The stored days and the days read (a day read replaces its stored entry), the last 90 days of them."""
    by_day = {str(h.get("date")): h for h in kept if isinstance(h, dict) and len(str(h.get("date"))) == 10}
    by_day.update({str(h["date"]): h for h in read})
    days = sorted(by_day)
    if days:
        try:
            oldest = (date.fromisoformat(days[-1]) - timedelta(days=HISTORY_DAYS - 1)).isoformat()
        except ValueError:
            oldest = ""
        days = [d for d in days if d >= oldest]
    return [by_day[d] for d in days]


def provider_warning(services: Services, findings: Findings, warning: ProviderWarning) -> None:
    """A provider that failed behind a 206: its 403 is the connector's missing permission, anything else
    Graph's own trouble. Either way the data that came is kept."""
    about = {"provider": f"{warning.vendor}/{warning.provider}", "status": warning.status}
    if warning.status == 403:
        findings.warn(services.graph.forbidden_provider(warning), **about)
        return
    failed = SecureScoreUnavailable(
        f"Microsoft Graph answered without the data of the provider {warning.vendor}/{warning.provider}, which "
        f"failed with {warning.status}; the other providers' data was kept, and that provider's controls as the "
        "last snapshot had them.",
        retry_after=300,
        remediation="Nothing to fix in the connector: the next refresh reads that provider again.",
    )
    findings.warn(failed, **about)


def doubt(
    scores: list[dict[str, Any]],
    listing: Listing,
    previous: int | None,
    suspect: int | None,
    note_suspect: Callable[[int | None], None],
) -> SecureScoreUnavailable | None:
    """Why this answer should not replace the snapshot, if it should not. `previous` is how many controls the
    stored snapshot has (None: there is none); `suspect` is the drop the last refresh saw (`note_suspect` records
    this one's)."""
    keep = "The previous snapshot is kept." if previous is not None else "Nothing was stored."
    again = "Nothing to fix in the connector: the next refresh reads it again."
    if not listing.items:
        return SecureScoreUnavailable(f"Microsoft Graph listed no control profiles. {keep}", retry_after=300,
                                      remediation=again)  # fmt: skip
    if not scores:
        return SecureScoreUnavailable(f"Microsoft Graph returned no Secure Score snapshot. {keep}", retry_after=300,
                                      remediation=again)  # fmt: skip
    had = previous or 0
    now = len(listing.items)
    if had and now < had / 2 and not listing.warnings:
        if suspect == now:
            note_suspect(None)
            return None  # the same drop twice in a row: Microsoft changed the catalogue
        note_suspect(now)
        return SecureScoreUnavailable(
            f"Microsoft Graph listed {now} control profiles, fewer than half of the {had} the last snapshot had. "
            f"{keep} If the next refresh lists the same, it is taken as the truth.",
            retry_after=300,
            remediation="Nothing to fix in the connector; if Microsoft really removed controls, the next refresh "
            "takes the new list.",
        )
    if suspect is not None:
        note_suspect(None)
    return None


def join(profiles: list[dict[str, Any]], latest: dict[str, Any] | None, findings: Findings) -> list[dict[str, Any]]:
    """Each profile with its score from the latest snapshot (a control the snapshot leaves out is not scored)."""
    listed = (latest or {}).get("controlScores")
    scores = {
        str(entry.get("controlName")): entry
        for entry in (listed if isinstance(listed, list) else [])
        if isinstance(entry, dict)
    }
    controls: dict[str, dict[str, Any]] = {}
    for profile in profiles:
        try:
            control = build_control(profile, scores.get(str(profile.get("id"))))
        except ProfileRefused as exc:
            findings.errors.append(f"control profile: {exc}")
            continue
        controls.setdefault(control["id"], control)
    return sorted(controls.values(), key=tenant_records.by_rank)


def carry_forward(controls: list[dict[str, Any]], before: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """After a partial answer: controls it left out, and scores it no longer had, as the last snapshot had them,
    marked `stale` (no edge acts on them)."""
    now = {c["id"]: c for c in controls}
    for old in before:
        held = now.get(str(old.get("id")))
        if held is None:
            now[old["id"]] = {**old, "stale": True}
        elif not held.get("scored") and old.get("scored"):
            now[old["id"]] = {**held, **{k: old.get(k) for k in ("score", "scored", "completed")}, "stale": True}
    return sorted(now.values(), key=tenant_records.by_rank)
