"""One tenant's Secure Score in the Graph simulator: its control profiles, scores and 90 days of history, its own
switches (complete, regress, a person's state change, a removed grant, failing providers), and how many requests
reached it and how many were in flight at once (Graph's limit of 4 concurrent requests is per app per tenant:
https://learn.microsoft.com/graph/throttling-limits)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from dev.graph import catalogue
from dev.wire import SimRequest


def _by_rank(profile: dict[str, Any]) -> tuple[int, str]:
    rank = profile.get("rank")
    return (rank if isinstance(rank, int) else 10**6, str(profile.get("id")))


class TenantData:
    def __init__(
        self, tenant_id: str, name: str, scores: dict[str, float], clock: Callable[[], float], lock: threading.RLock
    ) -> None:
        self.id = tenant_id
        self.name = name
        self.clock = clock
        self.lock = lock  # the simulator's: one lock guards every tenant's data
        self.profiles = {p["id"]: p for p in catalogue.profiles(tenant_id)}
        self.scores = scores  # scored controls only: the others do not apply to the tenant
        self.forbidden = False  # the app's grant was removed here: every call is 403, whatever its token says
        self.read_only = False  # SecurityEvents.Read.All only: PATCH is 403, whatever its token says
        self.failed_providers: dict[tuple[str, str], int] = {}  # (vendor, provider/service) -> status: a 206
        self.empty = False  # the profile listing answers 200 with no profiles
        self.requests: list[SimRequest] = []  # the requests whose token named this tenant
        self.in_flight = 0
        self.max_in_flight = 0
        self.day_scores: dict[int, float] = {}  # days ago -> that day's currentScore, where a test sets one
        self._history = catalogue.history(
            datetime.fromtimestamp(clock(), UTC), list(self.profiles.values()), scores, tenant=tenant_id
        )

    def add_profile(self, profile: dict[str, Any], score: float | None) -> None:
        """Another control (benchmarks: a tenant with more controls than the catalogue); None: not scored."""
        with self.lock:
            self.profiles[profile["id"]] = profile
            if score is not None:
                self.scores[profile["id"]] = score

    def complete(self, control_id: str) -> None:
        """What an admin's change does once Secure Score's daily sync sees it: all the control's points."""
        with self.lock:
            self.scores[control_id] = float(self.profiles[control_id]["maxScore"])

    def regress(self, control_id: str) -> None:
        with self.lock:
            self.scores[control_id] = 0.0

    def set_state(
        self,
        control_id: str,
        state: str,
        assigned_to: str | None = None,
        by: str = "admin@contoso.com",
        comment: str | None = None,
    ) -> None:
        """What an admin does in the Defender portal: a new history entry with a state and an analyst."""
        with self.lock:
            self.profiles[control_id]["controlStateUpdates"].append(
                {"assignedTo": assigned_to, "comment": comment, "state": state, "updatedBy": by,
                 "updatedDateTime": self.now_text()})  # fmt: skip

    def state_of(self, control_id: str) -> dict[str, Any]:
        """The newest controlStateUpdates entry: where a write-back lands."""
        with self.lock:
            return dict(self.profiles[control_id]["controlStateUpdates"][-1])

    def now_text(self) -> str:
        # Graph writes seven fractional digits (.NET's DateTimeOffset); the docs show six.
        moment = datetime.fromtimestamp(self.clock(), UTC)
        return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond:06d}0Z"

    def ranked(self) -> list[dict[str, Any]]:
        with self.lock:
            return sorted(self.profiles.values(), key=_by_rank)

    def all_scores(self) -> list[dict[str, Any]]:
        """The daily snapshots, newest first: today's from the current scores, the rest as generated."""
        with self.lock:
            today = catalogue.snapshot(
                datetime.fromisoformat(self._history[0]["createdDateTime"].replace("Z", "+00:00")),
                self.ranked(),
                self.scores,
                tenant=self.id,
            )
        every = [today, *self._history[1:]]
        return [{**s, "currentScore": self.day_scores[ago]} if ago in self.day_scores else s
                for ago, s in enumerate(every)]  # fmt: skip

    def set_score(self, current: float, days_ago: int = 0) -> None:
        """One day's total (`currentScore`, out of the day's `maxScore`), as Secure Score reports a day whose controls
        summed to it (https://learn.microsoft.com/graph/api/resources/securescore): what the score alerts read."""
        with self.lock:
            self.day_scores[days_ago] = current
