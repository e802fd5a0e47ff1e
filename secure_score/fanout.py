"""The Secure Score refresh fanned out on a Storage queue (docs/architecture.md#fan-out-on-storage-queues): from
`FANOUT_THRESHOLD` tenants due, the timer and `POST /api/recommendations/refresh` queue one message per tenant on
`secure-score-refresh`, and the queue-triggered `secure_score_tenant` refreshes that one tenant, on whichever
instance the Functions host runs it.

Delivery is at least once, so a message's work is idempotent: a tenant's lease in the store (`refreshingUntil`,
taken under the tenants document's ETag) makes a repeat a no-op while the first runs, and a message whose tenant
was refreshed since it was queued (`due`) is a no-op too. A refresh writes the same snapshot and acts on an edge
once whatever runs it (edges.py, writeback.py). A message that fails its last try (host.json `maxDequeueCount`)
shows on the tenant's row and in provisioning before the host moves it to the poison queue; the next scheduled
refresh queues the tenant again. The queue function's work is in queued.py.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from secure_score import tenants
from shared.problems import StoreUnavailable
from shared.queues import SECURE_SCORE_REFRESH, decode_work
from shared.services import Services
from shared.store import StoreConflict
from shared.tickets import HOME, TENANT_ID

log = logging.getLogger(__name__)

QUEUE = SECURE_SCORE_REFRESH
KIND = "refresh"
TENANT_DEADLINE = 120.0  # seconds one message's refresh may take (its run deadline)
# The lease outlives the deadline by the refresh's last writes (it stops between tickets at its deadline).
LEASE_GRACE = 30.0
_HOME_NAME = "home"  # the home tenant in a message (its id may not be known when the message is queued)


@dataclass(frozen=True)
class RefreshMessage:
    """One tenant's queued refresh: `due` is when it was found due (a refresh that began later covers it)."""

    tenant: str  # HOME or an added tenant's id
    due: str

    def to_json(self) -> dict[str, str]:
        return {"kind": KIND, "tenant": self.tenant or _HOME_NAME, "due": self.due}

    @classmethod
    def parse(cls, body: bytes) -> RefreshMessage | None:
        """The message, or None when it is not one the connector queues (never acted on)."""
        decoded = decode_work(body, KIND, "tenant")
        if decoded is None:
            return None
        tenant, due = decoded
        if tenant != _HOME_NAME and not TENANT_ID.fullmatch(tenant):
            return None
        return cls(HOME if tenant == _HOME_NAME else tenant, due)


@dataclass(frozen=True)
class QueuedRefresh:
    """What the timer and `POST /api/recommendations/refresh` answer when they queued the work."""

    at: str
    queued: int

    def to_json(self) -> dict[str, Any]:
        return {"status": "queued", "at": self.at, "queued": self.queued, "queue": QUEUE}


def enqueue(services: Services, chosen: list[str]) -> QueuedRefresh | None:
    """One message per tenant in `chosen` when they are at least FANOUT_THRESHOLD and the app has a queue; None:
    the caller refreshes them itself (also when the queue refused the work: a repeat of what it took is a no-op)."""
    if len(chosen) < services.settings.fanout_threshold:
        return None
    queues = services.queues
    if queues is None:
        log.warning("%d tenants are due, but no storage queue is configured: the timer refreshes them itself",
                    len(chosen))  # fmt: skip
        return None
    due = services.clock().isoformat()
    try:
        sent = queues.send(QUEUE, (RefreshMessage(t, due).to_json() for t in chosen))
    except StoreUnavailable as exc:
        log.warning("The refresh could not be queued (%s): the timer refreshes the tenants itself", exc.detail)
        return None
    log.info("Secure Score refresh queued for %d tenants on %s", sent, QUEUE)
    try:
        tenants.note_queued(services, due, sent)  # what the page counts its progress against
    except (StoreUnavailable, StoreConflict) as exc:  # the work is queued all the same; no progress shows for it
        log.warning("The queued refresh could not be noted for the page (%s)", type(exc).__name__)
    return QueuedRefresh(due, sent)
