"""The status sync of every connection (DESIGN 13): each one its own run, with its own watermark, sweep, failures
and deadline, at most four at a time; one connection's failure never stops another's."""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor

from shared.services import Services
from status_sync.sync import StatusSync, SyncResult

log = logging.getLogger(__name__)

PARALLEL = 4


def sync_every_connection(services: Services) -> list[SyncResult]:
    """Each connection's result; raises (so the timer's retry policy runs again) only when every one failed."""
    connections = services.connections() or [services.connection]
    outcomes: list[SyncResult | BaseException] = []

    def one(connection_services: Services) -> SyncResult | BaseException:
        try:
            return StatusSync(connection_services).run()
        except Exception as exc:  # already recorded on that connection's sync state
            log.warning("The status sync of connection %s failed (%s)", connection_services.connection.id,
                        type(exc).__name__)  # fmt: skip
            return exc

    with ThreadPoolExecutor(min(PARALLEL, len(connections))) as pool:
        outcomes = list(pool.map(one, [services.for_connection(c) for c in connections]))
    failed = [o for o in outcomes if isinstance(o, BaseException)]
    if failed and len(failed) == len(outcomes):
        raise failed[0]
    return [o for o in outcomes if isinstance(o, SyncResult)]
