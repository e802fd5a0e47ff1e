"""The status sync of every connection (docs/design.md#connections-and-routes): each one its own run, with its own
watermark, sweep, failures and deadline, at most four at a time; one connection's failure never stops another's.

The whole timer run has a deadline too (TOTAL x the run deadline, well inside host.json's ten-minute
functionTimeout), and the connection synced longest ago goes first, so slow instances cannot keep the same others
from ever syncing: whoever the deadline cuts short this time starts first next time.

From FANOUT_THRESHOLD connections the timer only queues one message per connection (fanout.py), and the queue
function syncs each on whichever instance takes it (queued.py).
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor

from shared import deadlines
from shared.connections import Connection
from shared.runs import last_sync
from shared.services import Services
from status_sync.fanout import QueuedSync, enqueue
from status_sync.reader import SyncResult
from status_sync.sync import StatusSync

log = logging.getLogger(__name__)

PARALLEL = 4
TOTAL = 3  # the whole run: three connections' worth of run deadlines


def _last_run(services: Services, connection: Connection) -> str:
    """When the connection's last sync started ("" when never): the oldest first."""
    last = last_sync(services.for_connection(connection).store)
    return str(last.get("at") or "") if last is not None else ""


def sync_or_queue(services: Services) -> list[SyncResult] | QueuedSync:
    """The timer's run: from FANOUT_THRESHOLD connections (and with a queue), one queued message per connection
    (fanout.py); below it, every connection synced here, as `sync_every_connection` does."""
    connections = services.connections() or [services.connection]
    queued = enqueue(services, connections)
    return queued if queued is not None else sync_every_connection(services, connections)


def sync_every_connection(services: Services, connections: list[Connection] | None = None) -> list[SyncResult]:
    """Each connection's result (of `connections`, read when not given); raises (so the timer's retry policy runs
    again) only when every one failed."""
    chosen = connections if connections is not None else services.connections() or [services.connection]
    connections = sorted(chosen, key=lambda c: _last_run(services, c))
    outcomes: list[SyncResult | BaseException] = []

    def one(connection_services: Services) -> SyncResult | BaseException:
        try:
            return StatusSync(connection_services).run()
        except Exception as exc:  # already recorded on that connection's sync state
            log.warning("The status sync of connection %s failed (%s)", connection_services.connection.id,
                        type(exc).__name__)  # fmt: skip
            return exc

    with (
        deadlines.run_deadline(services.run_deadline * TOTAL),
        ThreadPoolExecutor(min(PARALLEL, len(connections))) as pool,
    ):
        # One context copy per task: a copy cannot be entered by two threads at once.
        futures = [pool.submit(deadlines.in_this_run(one), services.for_connection(c)) for c in connections]
        outcomes = [f.result() for f in futures]
    failed = [o for o in outcomes if isinstance(o, BaseException)]
    if failed and len(failed) == len(outcomes):
        raise failed[0]
    return [o for o in outcomes if isinstance(o, SyncResult)]
