"""What sits in the refresh's poison queue, by tenant (docs/admin-guide.md, 10.5a): a queued refresh that failed
host.json's `maxDequeueCount` tries is moved to `secure-score-refresh-poison` by the Functions host, whether or not
the connector's code ran on those tries (an instance that died each time never ran it to the end), so the queue
itself is read, not only what the last try noted on the tenant's record.

Anything can be in a queue: a message that is not a refresh the connector queued is counted as unreadable and
shown as such. A message whose tenant was refreshed without a failure since it was queued is stale: nothing is
wrong any more, and it can be cleared.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from secure_score.fanout import QUEUE, RefreshMessage
from shared import tenant_records
from shared.problems import StoreUnavailable
from shared.queues import poison_queue
from shared.services import Services
from shared.tenant_records import Tenants
from shared.tickets import HOME

log = logging.getLogger(__name__)

POISON_QUEUE = poison_queue(QUEUE)
# How an admin clears the queue once the cause is fixed (https://learn.microsoft.com/cli/azure/storage/message).
CLEAR = (f"az storage message clear --queue-name {POISON_QUEUE} --account-name <the app's storage account> "
         "--auth-mode login (with Storage Queue Data Contributor on the account), or the Azure portal: the storage "
         f"account > Queues > {POISON_QUEUE} > Clear queue")  # fmt: skip


@dataclass
class TenantPoison:
    """One tenant's messages in the poison queue, among those read."""

    tenant: str  # HOME or an added tenant's id
    messages: int = 0
    first_at: str | None = None  # when the oldest was moved there
    last_at: str | None = None
    due: str = ""  # the newest message's `due`
    stale: bool = False  # refreshed without a failure since every one was queued: nothing left to fix

    def to_json(self) -> dict[str, object]:
        return {"queue": POISON_QUEUE, "messages": self.messages, "firstAt": self.first_at, "lastAt": self.last_at}


@dataclass
class PoisonedRefreshes:
    """The poison queue as read now: by tenant, what is not a refresh, and how many messages it holds in all."""

    total: int = 0
    read: int = 0  # how many of them were read (the oldest; a peek returns at most 32)
    by_tenant: dict[str, TenantPoison] = field(default_factory=dict)
    unreadable: int = 0
    unreadable_at: str | None = None
    error: str | None = None  # the queue could not be read: why

    def failing(self) -> list[TenantPoison]:
        return [p for p in self.by_tenant.values() if not p.stale]


def read_poisoned(services: Services, document: Tenants | None = None) -> PoisonedRefreshes | None:
    """The refresh's poison queue by tenant (None: the app has no queue, so no fan-out and no poison queue). A queue
    that cannot be read within its deadline is said in `error`, never raised."""
    queues = services.queues
    if queues is None:
        return None
    try:
        peek = queues.poisoned(QUEUE)
    except StoreUnavailable as exc:
        log.warning("The poison queue %s could not be read: %s", POISON_QUEUE, exc.detail)
        return PoisonedRefreshes(error=exc.detail)
    found = PoisonedRefreshes(total=peek.count, read=len(peek.messages))
    for message in peek.messages:
        refresh = RefreshMessage.parse(message.body) if message.body is not None else None
        if refresh is None:
            found.unreadable += 1
            found.unreadable_at = found.unreadable_at or message.inserted_on
            continue
        entry = found.by_tenant.setdefault(refresh.tenant, TenantPoison(refresh.tenant))
        entry.messages += 1
        entry.first_at = entry.first_at or message.inserted_on
        entry.last_at = message.inserted_on or entry.last_at
        entry.due = max(entry.due, refresh.due)
    tenants = document if document is not None else tenant_records.load(services.store)
    for entry in found.by_tenant.values():
        record = tenants.home if entry.tenant == HOME else tenants.added.get(entry.tenant)
        last = (record.last_refresh or {}) if record is not None else {}
        entry.stale = record is not None and record.last_refresh_at > entry.due and last.get("status") != "failed"
    return found
