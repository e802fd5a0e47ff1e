"""The routes in force for a create, read beside its claim (docs/architecture.md#the-routes-beside-the-claim).

A create takes its route from the rules this process read last, writes its row and claim with it, and reads the
routes again at the same time, on a thread: the claim and the read are one store round trip in a row, not two. The
read starts after the create began, so it sees every save committed before (both stores read what they
acknowledged): when it finds the document changed, the create decides again under what it found and rewrites its row
before anything is posted. Until the creator has settled that, its row keeps the request and the ETag it was routed
under (`UNCONFIRMED`), so a creator that dies in between leaves a row the next one routes again under the rules in
force, never posts as it stands. A process that has read no routes yet reads them first, as before.
"""

from __future__ import annotations

import threading
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as ReadTimeout
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from create_ticket.request import TicketRequest
from create_ticket.routing.decision import Target, routed_by
from create_ticket.routing.document import Saved, load
from shared.problems import ConnectorError, StoreUnavailable
from shared.services import Services
from shared.store.outage import RETRY_AFTER, TOTAL_TIMEOUT, WORKER_THREADS

UNCONFIRMED = "unconfirmedRoute"  # the row's `extra` member while its route may not be the one in force


@dataclass(frozen=True)
class Route:
    """A create's target, the services of its connection, the routes' version it was decided under, and when."""

    target: Target
    services: Services
    version: list[str | None]  # the document's ETag (every write changes it) and the save's revision
    now: datetime


def version(saved: Saved) -> list[str | None]:
    return [saved.etag, saved.document.revision]


def rules_in_force(services: Services) -> RulesInForce:
    """This process's reader of the routes for creates (with the rules it read last)."""
    return services.component("rules_in_force", RulesInForce)


class RulesInForce:
    def __init__(self, services: Services) -> None:
        self._services = services
        self._last: Saved | None = None
        self._lock = threading.Lock()
        self._pool: ThreadPoolExecutor | None = None  # one read per create at once, as many as the worker's threads

    def route(self, request: TicketRequest) -> Routing:
        """The request's route: from the rules read last, with the current ones being read; else read first."""
        services, now, last = self._services, self._services.clock(), self._last
        if last is not None:
            try:
                target, chosen = routed_by(services, request, last.rules(), now)
            except ConnectorError:
                pass  # the last rules name what is gone: decide under the current ones, whose answer is the one given
            else:
                return Routing(Route(target, chosen, version(last), now), request, self._read(), self)
        saved = load(services.store)
        self._last = saved
        target, chosen = routed_by(services, request, saved.rules(), now)
        return Routing(Route(target, chosen, version(saved), now), request, None, self)

    def current(self, request: TicketRequest, routed_under: object, now: datetime) -> Route | None:
        """For a row left unconfirmed: None when the routes it was decided under (`routed_under`, their version) are
        still the ones in force, else its route under the current ones (read now)."""
        saved = load(self._services.store)
        self._last = saved
        if version(saved) == routed_under:
            return None
        target, chosen = routed_by(self._services, request, saved.rules(), now)
        return Route(target, chosen, version(saved), now)

    def _read(self) -> Future[Saved]:
        with self._lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(WORKER_THREADS, thread_name_prefix="routes-in-force")
            return self._pool.submit(load, self._services.store)

    def close(self) -> None:
        """Stop the reading threads (Services.close()): reads already submitted finish first."""
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True)

    def _settled(self, saved: Saved, route: Route, request: TicketRequest) -> Route | None:
        self._last = saved
        if version(saved) == route.version:
            return None
        target, chosen = routed_by(self._services, request, saved.rules(), route.now)
        moved = (target, chosen) != (route.target, route.services)
        return Route(target, chosen, version(saved), route.now) if moved else None


class Routing:
    """One create's route: decided under the rules read last while the routes in force are read (`unconfirmed`)."""

    def __init__(self, route: Route, request: TicketRequest, reading: Future[Saved] | None,
                 owner: RulesInForce) -> None:  # fmt: skip
        self.route = route
        self._request = request
        self._reading = reading
        self._owner = owner

    @property
    def unconfirmed(self) -> bool:
        return self._reading is not None

    def marker(self) -> dict[str, Any]:
        """What the row keeps until its route is settled: the routes' version, and the request to route it again."""
        return {"routes": self.route.version, "request": self._request.to_json()}

    def moved_to(self, route: Route) -> Routing:
        """This create's routing once settled on `route`."""
        return Routing(route, self._request, None, self._owner)

    def settle(self) -> Route | None:
        """Wait for the read beside the claim, at most one store call's deadline (a read still queued or slow past it
        is `store_unavailable`, as the store call itself would be): None when the route stands, else the route under
        the rules in force. Raises what the read or that decision raises."""
        if self._reading is None:
            return None
        reading, self._reading = self._reading, None
        try:
            saved = reading.result(timeout=TOTAL_TIMEOUT)
        except ReadTimeout:
            reading.cancel()
            raise StoreUnavailable(
                f"The connector's store did not answer the routes read within {TOTAL_TIMEOUT:g} s; the ticket is "
                "pending and nothing was posted.",
                remediation="Repeat the request after the Retry-After delay. If it lasts, check the storage "
                "account's health (Azure portal > the storage account > Resource health).",
                retry_after=RETRY_AFTER,
            ) from None
        return self._owner._settled(saved, self.route, self._request)
