"""A connection's sync lease (`syncing`: `until`, `by`), kept in its sync state beside the watermark and taken under
the sync state's ETag, so two instances given two copies of one queue message never sync one connection at once
(fanout.py). The sync that holds it ends it in its last write (StatusSync's `lease`)."""

from __future__ import annotations

from datetime import timedelta

from shared.runs import SyncState, update_sync_state
from shared.services import Services


def claim_sync(services: Services, due: str, lease: timedelta, message: str) -> str:
    """Take the lease of the connection `services` talk to, for queue message `message` queued at `due`: `claimed`,
    or why not: `done` (a sync began after `due` and did not fail: this message is a repeat), `busy` (another
    message's sync holds the lease). The queue hides a message while its function runs, so the same message seen
    again means its earlier run is over (its instance died): it takes its own lease back at once."""
    now = services.clock()
    answer = ["claimed"]

    def take(state: SyncState) -> None:
        last = state.last or {}
        if str(last.get("at") or "") > due and last.get("status") != "failed":
            answer[0] = "done"  # a failed one is not: the message's next try syncs again
            return
        held = state.syncing or {}
        if str(held.get("until") or "") > now.isoformat() and held.get("by") != message:
            answer[0] = "busy"
            return
        answer[0] = "claimed"
        state.syncing = {"until": (now + lease).isoformat(), "by": message}

    update_sync_state(services.store, take)
    return answer[0]


def note_poisoned(services: Services, queue: str, attempts: int) -> None:
    """The connection's queued sync failed its last try and the host moves the message to `queue`: the failed run
    (`last`, shown as `lastSync` on the connection's row and in provisioning, with the fix of its error) says so,
    until the next run replaces it."""
    at = services.clock().isoformat()

    def note(state: SyncState) -> None:
        state.last = {**(state.last or {}), "poisoned": {"queue": queue, "attempts": attempts, "at": at}}

    update_sync_state(services.store, note)
