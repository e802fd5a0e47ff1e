"""Creating a ServiceNow record exactly once per request, per recommendation, per Idempotency-Key.

The order of writes is the guarantee:
1. the ticket row (`pending`), the recommendation claim and a lease on the row, with the first POST already
   counted, are stored in one transaction before ServiceNow is called (one store round trip, beside which the
   routes in force are read: routing/in_force.py);
2. the lease makes one worker at a time talk to ServiceNow for the row;
3. `post_attempts` is incremented *before* each POST, with the time it begins (`posted_at`), so whoever holds
   the row next knows a record may exist and looks it up by `correlation_id` (plus the connector reference in the
   description) first, and does not post again while a POST nobody saw answered may still commit (in_doubt.py);
4. the link (sys_id, number, state) is written last (the second round trip).
A crash or an ambiguous failure (timeout, reset, 5xx after commit) anywhere leaves a pending row that the
next request for the same recommendation or key resumes, without a second record.
"""

from __future__ import annotations

import logging
import time
from dataclasses import replace
from datetime import datetime, timedelta

from create_ticket import in_doubt
from create_ticket.directory import UserDirectory
from create_ticket.leases import LEASE, Orphans, free
from create_ticket.posting import Progress, Unconfirmed, confirmed, post_and_link, release_lease, roll_back
from create_ticket.request import TicketRequest
from create_ticket.routing.decision import Target, connection_of
from create_ticket.routing.in_force import UNCONFIRMED, Routing, rules_in_force
from create_ticket.rows import kept_request, new_row
from shared.auth import Caller
from shared.connections import Connection, connection_id
from shared.problems import (
    Conflict,
    ConnectorError,
    IdempotencyKeyReused,
    NotConfigured,
    NotConnected,
    ReauthorizationRequired,
    ServiceNowUnavailable,
    StoreUnavailable,
)
from shared.recommendation_claims import take_claim
from shared.services import Services
from shared.store import IdempotencyRecord, StoreConflict
from shared.tickets import Ticket

log = logging.getLogger(__name__)

KEY_LIFETIME = timedelta(hours=24)  # how long an Idempotency-Key is honoured, as Stripe does


def _expired(record: IdempotencyRecord, now: datetime) -> bool:
    return bool(record.created_at) and datetime.fromisoformat(record.created_at) + KEY_LIFETIME <= now


class _Gone(Exception):
    """The ticket row disappeared: superseded by a concurrent request, or rolled back after a refusal."""


def creator_for(services: Services) -> TicketCreator:
    """The ticket creator of these services (one per process, with its requester cache)."""
    return services.component(
        "ticket_creator",
        lambda built: TicketCreator(built, UserDirectory(built.servicenow, built.tokens, built.clock)),
    )


class TicketCreator:
    def __init__(self, services: Services, directory: UserDirectory) -> None:
        self._services = services
        self._store = services.store
        self._directory = directory
        self._orphans = Orphans()  # leases this process's workers left when the store failed under them

    # -- entry point ----------------------------------------------------------------------------

    def create(
        self, request: TicketRequest, *, caller: Caller, idempotency_key: str | None, routing: Routing | None = None
    ) -> tuple[Ticket, bool]:
        """Returns the ticket and whether this call created it (201) or found it (200). The ticket goes where the
        routes in force send it (`routing`, decided here when not given), on that connection's creator."""
        if routing is None:
            routing = rules_in_force(self._services).route(request)
            if routing.route.services is not self._services:
                chosen = creator_for(routing.route.services)
                return chosen.create(request, caller=caller, idempotency_key=idempotency_key, routing=routing)
        try:
            return self._create(request, caller, idempotency_key, routing)
        except ServiceNowUnavailable as exc:
            if "ticketId" in exc.extra:  # the row stays pending: said to the caller of a create, not to a resume
                exc.detail += " The ticket is pending; repeating the request resumes it without a duplicate."
            raise

    def _create(
        self, request: TicketRequest, caller: Caller, idempotency_key: str | None, routing: Routing
    ) -> tuple[Ticket, bool]:
        services = self._services
        try:
            authorized = True
            try:
                services.tokens.access_token()  # not connected / reauthorization: fail before writing anything
            except (NotConnected, ReauthorizationRequired):
                if services.connection.is_default:
                    raise
                # An added connection: its ticket waits there, pending (docs/design.md#connections-and-routes).
                authorized = False
            caller_sys_id = self._directory.find(request.requested_by) if authorized else None
        except ConnectorError:  # said for the connection the routes in force name (the routes' own problem first)
            moved = routing.settle()
            if moved is None:
                raise
            return creator_for(moved.services)._create(request, caller, idempotency_key, routing.moved_to(moved))
        fingerprint = request.fingerprint()
        scoped_key = f"{caller.principal}\n{idempotency_key}" if idempotency_key else None
        ticket = new_row(services, request, fingerprint, caller_sys_id, routing.route.target)

        if scoped_key is not None:
            record = IdempotencyRecord(ticket.id, fingerprint, ticket.created_at)
            known = self._store.remember_idempotency_key(scoped_key, record)
            if known is not None and _expired(known, self._services.clock()):
                self._store.repoint_idempotency_key(scoped_key, record)  # an old key starts afresh
                known = None
            if known is not None:
                routing.settle()
                if known.fingerprint != fingerprint:
                    raise IdempotencyKeyReused(
                        "This Idempotency-Key was used for a different request.",
                        remediation="Use a new key for a new request; repeat a request only with its own key.",
                    )
                try:
                    # The key's ticket may have lost the recommendation to a concurrent request: check the claim.
                    return self._ensure(known.ticket_id, verify_claim=True), False
                except _Gone:
                    # It was superseded or refused and rolled back: this retry starts afresh under the key.
                    self._store.repoint_idempotency_key(scoped_key, record)

        now = self._services.clock()
        leased = replace(ticket, lease_until=(now + LEASE).isoformat(), post_attempts=1, posted_at=now.isoformat())
        if routing.unconfirmed:  # until the routes in force are read: a creator that dies meanwhile leaves it so
            leased = replace(leased, extra={**leased.extra, UNCONFIRMED: routing.marker()})
        try:
            holder, etag = self._begin(leased)
        except StoreUnavailable:
            self._orphans.leave(leased, None)  # the row may have been written; nothing was posted for it
            raise
        try:
            moved = routing.settle()  # the routes read beside the claim: this create's route stands, or moves
        except StoreUnavailable:  # as a link the outage stopped: the row waits, unconfirmed, for the next repeat
            if holder is None:
                self._orphans.leave(leased, None)
            raise
        except Exception:  # a failure, not the process ending: nothing is left of this request
            if holder is None:
                self._undo(leased)
            raise
        if holder is not None:
            if scoped_key is not None:
                self._store.repoint_idempotency_key(scoped_key, replace(record, ticket_id=holder))
            return self._ensure_or_conflict(holder), False
        settled = confirmed(leased)
        if moved is not None:
            return creator_for(moved.services)._reroute(settled, etag, request, moved.target, self, fresh=True), True
        return self._create_record(Progress(settled, etag, lookup=False, counted=True)), True

    def _reroute(self, row: Ticket, etag: str, request: TicketRequest, target: Target, origin: TicketCreator, *,
                 fresh: bool) -> Ticket:  # fmt: skip
        """Rewrite a row, count kept, to where the routes in force send it, before anything is posted there.
        `fresh`: this request's own row, which a failure before the rewrite leaves nothing of (as a create that
        failed before its claim); else a row left unconfirmed, whose POST (if any) was looked up and is not there,
        and which waits on its new connection as any pending row would. `origin`: the creator of the connection the
        row is on until rewritten, whose repeats take over what a failing store left of it."""
        try:
            authorized = True
            try:
                self._services.tokens.access_token()
            except (NotConnected, ReauthorizationRequired):
                if fresh and self._services.connection.is_default:
                    raise
                authorized = False
            caller_sys_id = self._directory.find(row.requested_by) if authorized else None
            moved = new_row(self._services, request, row.fingerprint, caller_sys_id, target, row.id)
            # The lease and the in-doubt window count from the last write before the POST, this one, not from the
            # claim: the token and requester calls above may have taken longer than a lease
            # (docs/architecture.md#the-routes-beside-the-claim).
            now = self._services.clock()
            moved = replace(moved, created_at=row.created_at, lease_until=(now + LEASE).isoformat(),
                            post_attempts=row.post_attempts, posted_at=now.isoformat())  # fmt: skip
            etag = self._store.update_ticket(moved, etag)
        except StoreConflict:  # another worker took the row over: it routes it
            raise Conflict("Another request is creating this ticket in ServiceNow right now.", retry_after=5,
                           extra={"ticketId": row.id}) from None  # fmt: skip
        except StoreUnavailable:
            if fresh:
                origin._undo(row)
            else:  # the lease this worker took: its next repeat in this process takes the row over at once
                origin._orphans.leave(row, None)
            raise
        except Exception:  # a failure, not the process ending: nothing is left of this request
            if fresh:
                origin._undo(row)
            raise
        return self._create_record(Progress(moved, etag, lookup=False, counted=True))

    def _undo(self, row: Ticket) -> None:
        """Take back this request's own row and claim, before anything was posted; a store that fails meanwhile
        leaves it pending, unconfirmed, for this process's next repeat (or the status sync) to route and finish."""
        try:
            roll_back(self._store, row)
        except StoreUnavailable:
            self._orphans.leave(row, None)

    def resume(self, ticket_id: str) -> Ticket:
        """Finish a pending creation (the status sync does this for creations a crash or an outage left)."""
        return self._ensure_or_conflict(ticket_id, verify_claim=True)

    def _begin(self, leased: Ticket) -> tuple[str | None, str]:
        """Store the row, its lease and its recommendation's claim at once; or the open ticket holding the claim.
        A closed (or vanished) holder gives the claim up, in the same transaction that stores this row."""
        holder, etag = self._store.begin_creation(leased)
        while holder is not None:
            current = self._store.get_ticket(holder)
            if current is not None and current[0].is_open:
                return holder, ""
            holder, etag = self._store.begin_creation(leased, replacing=holder)
        return None, etag

    def _claim(self, ticket: Ticket) -> str | None:
        """Claim the recommendation; returns the id of an open ticket that already holds it, else None."""
        return take_claim(self._store, ticket.claim_key, ticket.id)

    # -- making sure the ServiceNow record exists -----------------------------------------------

    def _ensure_or_conflict(self, ticket_id: str, *, verify_claim: bool = False) -> Ticket:
        try:
            return self._ensure(ticket_id, verify_claim=verify_claim)
        except _Gone:
            raise Conflict(
                "A concurrent request for this ticket failed and was rolled back.",
                remediation="Send the request again.",
                retry_after=1,
            ) from None

    def _ensure(self, ticket_id: str, *, verify_claim: bool) -> Ticket:
        """Return the ticket once its record exists, creating it if this worker gets the lease.
        `verify_claim`: the ticket came from a key or a scan, not from this request's own claim, so only post
        for it if it holds (or can take) its recommendation's claim; otherwise follow the holder."""
        deadline = time.monotonic() + self._services.creation_wait
        pause = 0.01
        while True:
            found = self._store.get_ticket(ticket_id)
            if found is None:
                raise _Gone()
            ticket, etag = found
            if ticket.sys_id:
                return ticket
            if verify_claim:
                holder = self._claim(ticket)
                verify_claim = False
                if holder is not None:
                    ticket_id = holder
                    continue
            stranded = False
            if not self._services.connection.serves(ticket):  # made where its route sent it, never moved
                owner = self._owner(ticket)
                if owner is not None:
                    return creator_for(self._services.for_connection(owner))._ensure(ticket_id, verify_claim=False)
                stranded = True  # unconfirmed on a connection gone since: routed by the rules in force, below
            now = self._services.clock()
            orphan = None if free(ticket, now) else self._orphans.take(ticket)
            if orphan is not None or free(ticket, now):
                # A first attempt counts its POST in the lease write itself: one store write fewer.
                first = ticket.post_attempts == 0
                leased = replace(
                    ticket, lease_until=(now + LEASE).isoformat(), post_attempts=ticket.post_attempts + first,
                    posted_at=now.isoformat() if first else ticket.posted_at,
                )  # fmt: skip
                doubt = orphan.doubt if orphan is not None else None if first else in_doubt.posted_since(ticket)
                try:
                    etag = self._store.update_ticket(leased, etag)
                except StoreConflict:
                    continue
                except StoreUnavailable:
                    self._orphans.leave(leased, doubt)
                    raise
                if stranded:
                    return self._route_again(Progress(leased, etag, lookup=False, counted=False), decide=True)
                return self._create_record(Progress(leased, etag, lookup=not first, counted=first, doubt=doubt))
            if time.monotonic() > deadline:
                raise Conflict(
                    "Another request is creating this ticket in ServiceNow right now.",
                    remediation="Retry after the Retry-After delay; the same ticket is returned.",
                    retry_after=5,
                    extra={"ticketId": ticket.id},
                )
            time.sleep(pause)
            pause = min(pause * 2, 0.25)

    def _owner(self, ticket: Ticket) -> Connection | None:
        """The connection a row not made here lives on; None for a row left unconfirmed on one gone since.

        Routing such a row by the rules in force cannot make a second record: it cannot be looked up where it was
        (the removal erased that connection's tokens), and no POST of it went there. A creator posts a row still
        marked unconfirmed only when its routes read found the rules it routed by still in force, rules that sent it
        to that connection; a removal goes ahead only once no rule names the connection (its fence,
        create_ticket/routing/saving.py), no open ticket lives on it, and then revokes and erases its tokens. So
        that POST needs the claim to land after the removal's ticket check and the POST to leave before its
        disconnect, and the creator to die before its link: the race a create that read the routes before its
        claim had already, when such a row stayed pending there for good (docs/architecture.md)."""
        try:
            owner = connection_of(self._services, connection_id(ticket.connection), f"Ticket {ticket.id}")
        except NotConfigured:
            if UNCONFIRMED in ticket.extra:
                return None
            raise
        if owner.serves(ticket):
            return owner
        if UNCONFIRMED in ticket.extra:  # its connection's id now names another instance: gone for it as well
            return None
        raise NotConfigured(
            f"Ticket {ticket.id} was to be made on {ticket.instance}, which ServiceNow connection "
            f"'{owner.id}' no longer names; the ticket is not made anywhere else.",
            remediation="Request the recommendation again once this ticket is closed, or ask for it to be removed.",
        )

    def _create_record(self, current: Progress) -> Ticket:
        try:
            return post_and_link(self._services, current)
        except Unconfirmed:
            return self._route_again(current)
        except StoreUnavailable:  # the lease could not be released: this process's next repeat takes it over
            self._orphans.leave(current.ticket, current.doubt)
            raise

    def _route_again(self, current: Progress, *, decide: bool = False) -> Ticket:
        """A row left unconfirmed (its creator died before it settled the route), whose record is not in ServiceNow:
        it goes where the routes in force send it, decided as at its creation; the same place if they are unchanged
        (`decide`: its connection is gone, so decided again whatever they are)."""
        marker = current.ticket.extra[UNCONFIRMED]
        request = kept_request(self._services, current.ticket)
        try:
            created = datetime.fromisoformat(current.ticket.created_at)
            routed_under = None if decide else marker.get("routes")
            route = rules_in_force(self._services).current(request, routed_under, created)
        except StoreUnavailable:
            self._orphans.leave(current.ticket, None)
            raise
        except ConnectorError:  # a rule names a connection since removed: the row waits, the fix said
            release_lease(self._store, current.ticket, current.etag, None)
            raise
        current.ticket, current.lookup = confirmed(current.ticket), False  # looked up just now: not there
        if route is None:
            return self._create_record(current)
        counted = replace(current.ticket, post_attempts=current.ticket.post_attempts + 1,
                          posted_at=self._services.clock().isoformat())  # fmt: skip
        return creator_for(route.services)._reroute(counted, current.etag, request, route.target, self, fresh=False)
