"""The queue function's work (`secure_score_tenant`): one tenant's refresh for one message of the fan-out
(fanout.py), unless the message is a repeat."""

from __future__ import annotations

import logging
from datetime import timedelta

from secure_score import tenant_runs
from secure_score.fanout import LEASE_GRACE, QUEUE, TENANT_DEADLINE, RefreshMessage
from secure_score.refresh import SecureScoreRefresh
from shared.queues import MAX_DEQUEUE_COUNT, poison_queue
from shared.services import Services

log = logging.getLogger(__name__)


def refresh_queued(services: Services, body: bytes, dequeue_count: int, message_id: str) -> str:
    """Refresh the one tenant a message names, unless a repeat: what happened (`refreshed`, `done`, `busy`, `gone`,
    `ignored`). A failed refresh raises, so the host tries the message again; on its last try, the tenant's row
    says where the message goes first."""
    message = RefreshMessage.parse(body)
    if message is None:
        log.warning("A message on %s is not a refresh the connector queued; it is dropped", QUEUE)
        return "ignored"
    deadline = min(TENANT_DEADLINE, services.run_deadline)
    lease = timedelta(seconds=deadline + LEASE_GRACE)
    outcome = tenant_runs.claim_refresh(services, message.tenant, message.due, lease, message_id)
    if outcome != "claimed":
        log.info("Queued refresh of %s: nothing to do (%s)", message.tenant or "the home tenant", outcome)
        return outcome
    try:
        SecureScoreRefresh(services).refresh_leased(message.tenant, deadline)
    except Exception:
        if dequeue_count >= MAX_DEQUEUE_COUNT:
            tenant_runs.note_poisoned(services, message.tenant, poison_queue(QUEUE), dequeue_count)
        raise
    return "refreshed"
