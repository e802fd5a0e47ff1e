"""The status sync fanned out on a Storage queue (docs/architecture.md#fan-out-on-storage-queues): from
`FANOUT_THRESHOLD` ServiceNow connections, the timer queues one message per connection on `status-sync`, and the
queue-triggered `status_sync_connection` syncs that one connection, on whichever instance the Functions host runs it.

Delivery is at least once (https://learn.microsoft.com/azure/azure-functions/functions-bindings-storage-queue-trigger),
so a message's work is idempotent: the connection's lease in its sync state (`syncing`, taken under the sync
state's ETag, lease.py) makes a repeat a no-op while the first runs, and a message whose connection was synced
since it was queued (`due`) is a no-op too. A sync itself is idempotent (every store write is ETag-guarded and
never moves a ticket back: status_sync/sync.py). The queue function's work is in queued.py.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from shared.connections import CONNECTION_ID, Connection
from shared.problems import StoreUnavailable
from shared.queues import STATUS_SYNC, decode_work
from shared.services import Services

log = logging.getLogger(__name__)

QUEUE = STATUS_SYNC
KIND = "sync"
# The lease outlives the sync's run deadline by its last writes (it stops between pages at its deadline).
LEASE_GRACE = 30.0


@dataclass(frozen=True)
class SyncMessage:
    """One connection's queued sync: `due` is when it was queued (a sync that began later covers it)."""

    connection: str  # a connection id (`default`: the one the settings describe)
    due: str

    def to_json(self) -> dict[str, str]:
        return {"kind": KIND, "connection": self.connection, "due": self.due}

    @classmethod
    def parse(cls, body: bytes) -> SyncMessage | None:
        """The message, or None when it is not one the connector queues (never acted on). Checked here, once:
        only exactly the three members, a connection id's shape and a UTC ISO time."""
        decoded = decode_work(body, KIND, "connection")
        if decoded is None or not CONNECTION_ID.fullmatch(decoded[0]):
            return None
        connection, due = decoded
        return cls(connection, due)


@dataclass(frozen=True)
class QueuedSync:
    """What the timer did when it queued the work instead of syncing."""

    at: str
    queued: int

    def to_json(self) -> dict[str, Any]:
        return {"status": "queued", "at": self.at, "queued": self.queued, "queue": QUEUE}


def enqueue(services: Services, connections: Sequence[Connection]) -> QueuedSync | None:
    """One message per connection when they are at least FANOUT_THRESHOLD and the app has a queue; None: the caller
    syncs them itself (also when the queue refused the work: a repeat of what it took is a no-op)."""
    if len(connections) < services.settings.fanout_threshold:
        return None
    queues = services.queues
    if queues is None:
        log.warning("%d ServiceNow connections, but no storage queue is configured: the timer syncs them itself",
                    len(connections))  # fmt: skip
        return None
    due = services.clock().isoformat()
    try:
        sent = queues.send(QUEUE, (SyncMessage(c.id, due).to_json() for c in connections))
    except StoreUnavailable as exc:
        log.warning("The status sync could not be queued (%s): the timer syncs the connections itself", exc.detail)
        return None
    log.info("Status sync queued for %d connections on %s", sent, QUEUE)
    return QueuedSync(due, sent)
