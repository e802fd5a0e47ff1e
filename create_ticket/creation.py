"""Creating a ServiceNow record exactly once per request, per recommendation, per Idempotency-Key.

The order of writes is the guarantee:
1. the ticket row (`pending`), the recommendation claim and a lease on the row, with the first POST already
   counted, are stored in one transaction before ServiceNow is called (one store round trip);
2. the lease makes one worker at a time talk to ServiceNow for the row;
3. `post_attempts` is incremented *before* each POST, with the time it begins (`posted_at`), so whoever holds
   the row next knows a record may exist and looks it up by `correlation_id` (plus the connector reference in the
   description) first, and does not post again while a POST nobody saw answered may still commit (in_doubt.py);
4. the link (sys_id, number, state) is written last (the second round trip).
A crash or an ambiguous failure (timeout, reset, 5xx after commit) anywhere leaves a pending row that the
next request for the same recommendation or key resumes, without a second record.
"""

from __future__ import annotations

import contextlib
import logging
import time
import uuid
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from create_ticket import in_doubt
from create_ticket.directory import UserDirectory
from create_ticket.leases import LEASE, Orphans, free
from create_ticket.request import TicketRequest, servicenow_record
from create_ticket.routing.decision import Target, connection_of, route_request, waiting
from shared.auth import Caller
from shared.connections import connection_id
from shared.problems import (
    Conflict,
    IdempotencyKeyReused,
    NotConfigured,
    NotConnected,
    NotFound,
    ReauthorizationRequired,
    ServiceNowRejected,
    ServiceNowUnavailable,
    StoreUnavailable,
)
from shared.recommendation_claims import take_claim
from shared.retries import TransientFailure
from shared.servicenow import table_result
from shared.services import Services
from shared.store import IdempotencyRecord, StoreConflict
from shared.tickets import SYS_ID, RecordRefused, Ticket

log = logging.getLogger(__name__)

KEY_LIFETIME = timedelta(hours=24)  # how long an Idempotency-Key is honoured, as Stripe does


def _expired(record: IdempotencyRecord, now: datetime) -> bool:
    return bool(record.created_at) and datetime.fromisoformat(record.created_at) + KEY_LIFETIME <= now


class _Gone(Exception):
    """The ticket row disappeared: superseded by a concurrent request, or rolled back after a refusal."""


@dataclass
class _Progress:
    """The row as this worker last wrote it, and whether a record may already exist in ServiceNow."""

    ticket: Ticket
    etag: str
    lookup: bool  # a record may exist already: look before posting
    counted: bool  # the next POST is already counted in `post_attempts`
    doubt: datetime | None = None  # when a POST began whose answer nobody saw: no new POST while it may commit
    own: bool = False  # that unanswered POST was this worker's own


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
        self, request: TicketRequest, *, caller: Caller, idempotency_key: str | None, target: Target | None = None
    ) -> tuple[Ticket, bool]:
        """Returns the ticket and whether this call created it (201) or found it (200). The ticket goes where the
        routes send it (`target`, decided here when not given), on that connection's creator."""
        if target is None:
            target, services = route_request(self._services, request)
            if services is not self._services:
                return creator_for(services).create(request, caller=caller, idempotency_key=idempotency_key,
                                                    target=target)  # fmt: skip
        try:
            return self._create(request, caller, idempotency_key, target)
        except ServiceNowUnavailable as exc:
            if "ticketId" in exc.extra:  # the row stays pending: said to the caller of a create, not to a resume
                exc.detail += " The ticket is pending; repeating the request resumes it without a duplicate."
            raise

    def _create(
        self, request: TicketRequest, caller: Caller, idempotency_key: str | None, target: Target
    ) -> tuple[Ticket, bool]:
        services = self._services
        authorized = True
        try:
            services.tokens.access_token()  # not connected / reauthorization: fail before writing anything
        except (NotConnected, ReauthorizationRequired):
            if services.connection.is_default:
                raise
            authorized = False  # an added connection: its ticket waits, pending (docs/design.md#connections-and-routes)
        fingerprint = request.fingerprint()
        scoped_key = f"{caller.principal}\n{idempotency_key}" if idempotency_key else None
        caller_sys_id = self._directory.find(request.requested_by) if authorized else None
        ticket = self._new_ticket(request, fingerprint, caller_sys_id, target)

        if scoped_key is not None:
            record = IdempotencyRecord(ticket.id, fingerprint, ticket.created_at)
            known = self._store.remember_idempotency_key(scoped_key, record)
            if known is not None and _expired(known, self._services.clock()):
                self._store.repoint_idempotency_key(scoped_key, record)  # an old key starts afresh
                known = None
            if known is not None:
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
        try:
            holder, etag = self._begin(leased)
        except StoreUnavailable:
            self._orphans.leave(leased, None)  # the row may have been written; nothing was posted for it
            raise
        if holder is not None:
            if scoped_key is not None:
                self._store.repoint_idempotency_key(scoped_key, replace(record, ticket_id=holder))
            return self._ensure_or_conflict(holder), False
        return self._create_record(_Progress(leased, etag, lookup=False, counted=True)), True

    def resume(self, ticket_id: str) -> Ticket:
        """Finish a pending creation (the status sync does this for creations a crash or an outage left)."""
        return self._ensure_or_conflict(ticket_id, verify_claim=True)

    def _new_ticket(
        self, request: TicketRequest, fingerprint: str, caller_sys_id: str | None, target: Target
    ) -> Ticket:
        """The row, with the record to POST as the route made it: a resume posts the same record."""
        settings = self._services.settings
        connection = self._services.connection
        now = self._services.clock().isoformat()
        ticket_id = uuid.uuid4().hex
        rec = request.recommendation
        routed = replace(request, priority=target.priority, due_date=target.due_date)
        payload = servicenow_record(routed, ticket_id, settings.field_map, caller_sys_id)
        for name, value in target.record_fields().items():
            payload.setdefault(name, value)  # never over a field the connector writes itself
        return Ticket(
            id=ticket_id,
            recommendation_id=rec.id,
            recommendation={"id": rec.id, "source": rec.source, "category": rec.category, "url": rec.url},
            name=request.name,
            priority=routed.priority,
            due_date=routed.due_date.isoformat().replace("+00:00", "Z") if routed.due_date else None,
            requested_by=request.requested_by,
            table=target.table or settings.table,
            fingerprint=fingerprint,
            created_at=now,
            updated_at=now,
            extra={"payload": payload},
            tenant=request.tenant,
            connection=connection.key,
            instance="" if connection.is_default else connection.instance_url or "",
            route=target.route,
            secure_score=(
                {
                    "scoreAtCreation": request.control.get("score"),
                    "maxScore": request.control.get("maxScore"),
                    "completed": request.control.get("completed"),
                }
                if request.control
                else None
            ),
        )

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
            if not self._services.connection.serves(ticket):  # made where its route sent it, never moved
                owner = connection_of(self._services, connection_id(ticket.connection), f"Ticket {ticket.id}")
                if not owner.serves(ticket):  # its connection's id now names another instance: gone for it
                    raise NotConfigured(
                        f"Ticket {ticket.id} was to be made on {ticket.instance}, which ServiceNow connection "
                        f"'{owner.id}' no longer names; the ticket is not made anywhere else.",
                        remediation="Request the recommendation again once this ticket is closed, or ask for it to be "
                        "removed.",
                    )
                return creator_for(self._services.for_connection(owner))._ensure(ticket_id, verify_claim=False)
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
                return self._create_record(_Progress(leased, etag, lookup=not first, counted=first, doubt=doubt))
            if time.monotonic() > deadline:
                raise Conflict(
                    "Another request is creating this ticket in ServiceNow right now.",
                    remediation="Retry after the Retry-After delay; the same ticket is returned.",
                    retry_after=5,
                    extra={"ticketId": ticket.id},
                )
            time.sleep(pause)
            pause = min(pause * 2, 0.25)

    def _create_record(self, current: _Progress) -> Ticket:
        try:
            return self._post_and_link(current)
        except StoreUnavailable:  # the lease could not be released: this process's next repeat takes it over
            self._orphans.leave(current.ticket, current.doubt)
            raise

    def _post_and_link(self, current: _Progress) -> Ticket:
        services = self._services
        servicenow, tokens = services.servicenow, services.tokens
        state_field = services.settings.field_map.target("state")
        fields = f"sys_id,number,{state_field},sys_updated_on,sys_mod_count"
        ticket = current.ticket
        payload: dict[str, Any] = dict(ticket.extra.get("payload") or {})

        def attempt() -> dict[str, Any]:
            if current.lookup:
                existing = in_doubt.lookup(services, current.ticket, fields)
                if existing is not None:
                    return existing
                in_doubt.check(current.doubt, services.clock(), services.settings.in_doubt_seconds)
            if current.counted:
                current.counted = False
            else:
                counted = replace(current.ticket, post_attempts=current.ticket.post_attempts + 1,
                                  posted_at=services.clock().isoformat())  # fmt: skip
                current.etag = self._store.update_ticket(counted, current.etag)
                current.ticket = counted
            try:
                response = servicenow.table_request(
                    tokens,
                    "POST",
                    current.ticket.table,
                    params={"sysparm_fields": fields},
                    json_body=payload,
                    retry=False,
                )
            except TransientFailure as failure:
                # A 429 was refused before any work; anything else may have committed. Without an answer, it
                # may still commit after this (in_doubt.py); with one, ServiceNow has finished with it.
                if failure.response is None or failure.response.status_code != 429:
                    current.lookup = True
                answered = not in_doubt.unanswered(failure)
                current.doubt = None if answered else in_doubt.posted_since(current.ticket)
                current.own = not answered
                raise
            current.doubt = None
            return table_result(response)

        try:
            record = servicenow.with_retries(attempt)
        except in_doubt.InDoubt as doubt:
            self._release_lease(current.ticket, current.etag, current.doubt)
            raise in_doubt.problem(doubt, ticket.id, own=current.own) from None
        except StoreConflict:  # another worker counted a POST first: it owns the row now, and this one posts nothing
            raise Conflict("Another request is creating this ticket in ServiceNow right now.", retry_after=5,
                           extra={"ticketId": ticket.id}) from None  # fmt: skip
        except ServiceNowUnavailable as exc:
            self._release_lease(current.ticket, current.etag, current.doubt)
            exc.extra["ticketId"] = ticket.id
            raise
        except (NotConnected, ReauthorizationRequired) as exc:
            # No token, so nothing was posted: the count taken for this POST is given back, the fix kept on the row.
            exc = waiting(services, exc)
            attempts = max(1, int((current.ticket.error or {}).get("attempts") or 0))
            error = {"at": services.clock().isoformat(), "code": exc.code, "detail": exc.detail, "attempts": attempts,
                     "source": "create", "remediation": exc.remediation}  # fmt: skip
            unused = max(current.ticket.post_attempts - 1, 0)
            self._release_lease(replace(current.ticket, post_attempts=unused, error=error), current.etag, current.doubt)
            exc.extra["ticketId"] = ticket.id
            raise exc from None
        except (ServiceNowRejected, NotFound) as exc:
            if not current.lookup:
                self._roll_back(current.ticket)
            else:
                self._release_lease(current.ticket, current.etag, current.doubt)
            raise ServiceNowRejected(
                f"ServiceNow refused to create the ticket: {exc.detail}",
                remediation=exc.remediation,
                extra=exc.extra,
            ) from None
        if not SYS_ID.fullmatch(str(record.get("sys_id") or "")):
            self._release_lease(current.ticket, current.etag, None)
            raise ServiceNowRejected("ServiceNow answered the create without the record's sys_id.")
        now = services.clock().isoformat()
        try:
            linked = current.ticket.with_link(record, services.settings.field_map, now)
            linked.error = None
        except RecordRefused as exc:  # the record exists: link it, keep the number out, and say why
            linked = current.ticket.with_link({**record, "number": ""}, services.settings.field_map, now)
            linked.error = {"at": now, "code": exc.code, "detail": exc.detail, "attempts": 1, "source": "create",
                            "remediation": exc.remediation}  # fmt: skip
        linked.extra = {}
        try:
            self._store.update_ticket(linked, current.etag)
        except StoreConflict:
            # Our lease ran out and someone else finished the row: theirs is the same record.
            found = self._store.get_ticket(linked.id)
            if found is None or not found[0].sys_id:
                raise Conflict("The ticket changed while it was being created.", retry_after=5) from None
            return found[0]
        log.info("Ticket %s is %s (%s)", linked.id, linked.number, linked.sys_id)
        return linked

    def _release_lease(self, ticket: Ticket, etag: str, doubt: datetime | None) -> None:
        """Give the row up, keeping when a POST nobody saw answered began (`doubt`), so no one posts too soon."""
        posted_at = doubt.isoformat() if doubt is not None else None
        with contextlib.suppress(StoreConflict):  # someone else holds the row now: nothing to release
            self._store.update_ticket(replace(ticket, lease_until=None, posted_at=posted_at), etag)

    def _roll_back(self, ticket: Ticket) -> None:
        """ServiceNow refused the record and never stored it: leave nothing behind."""
        self._store.release_claim(ticket.claim_key, ticket.id)
        self._store.delete_ticket(ticket.id)
