"""The queue function's work (`status_sync_connection`): one connection's status sync for one message of the
fan-out (fanout.py), unless the message is a repeat."""

from __future__ import annotations

import logging
from datetime import timedelta

from shared.problems import NotFound, ValidationFailed
from shared.queues import MAX_DEQUEUE_COUNT, poison_queue
from shared.services import Services
from status_sync.fanout import LEASE_GRACE, QUEUE, SyncMessage
from status_sync.lease import claim_sync, note_poisoned
from status_sync.sync import StatusSync

log = logging.getLogger(__name__)


def sync_queued(services: Services, body: bytes, dequeue_count: int, message_id: str) -> str:
    """Sync the one connection a message names, unless a repeat: what happened (`synced`, `done`, `busy`, `gone`,
    `ignored`). A failed sync raises, so the host tries the message again; on its last try, the connection's sync
    state says where the message goes."""
    message = SyncMessage.parse(body)
    if message is None:
        log.warning("A message on %s is not a sync the connector queued; it is dropped", QUEUE)
        return "ignored"
    try:
        connection = services.connection_named(message.connection)
    except (NotFound, ValidationFailed):
        log.info("Queued sync of connection %s: it is gone", message.connection)
        return "gone"
    scoped = services.for_connection(connection)
    lease = timedelta(seconds=scoped.run_deadline + LEASE_GRACE)
    outcome = claim_sync(scoped, message.due, lease, message_id)
    if outcome != "claimed":
        log.info("Queued sync of connection %s: nothing to do (%s)", connection.id, outcome)
        return outcome
    try:
        StatusSync(scoped, lease=message_id).run()
    except Exception:
        if dequeue_count >= MAX_DEQUEUE_COUNT:
            note_poisoned(scoped, poison_queue(QUEUE), dequeue_count)
        raise
    return "synced"
