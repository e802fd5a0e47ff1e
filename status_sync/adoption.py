"""Adoption: a record the store does not know, found by its correlation id, becomes a ticket only when it may be the
connector's own (docs/admin-guide.md: What one customer can and cannot reach).

A `correlation_id` proves nothing about who made a record: anyone who may create records in an instance can write
any tenant's (tenant ids are public). So a record is adopted only when all three hold:
(a) its correlation names the home tenant or a tenant the connector reads (`active`);
(b) the routes in force send that (tenant, control) to the connection where the record was found;
(c) the recommendation has no ticket yet: no open ticket holds its claim (a pending one counts).
Otherwise it is `record_refused`, listed in provisioning's failed items with where it was found and why, and it
never takes a claim, becomes a ticket, is written back to Secure Score, or answers a create. The usual case is a
store that was lost or restored: the connector's own records, each on the instance its route sent it to.
"""

from __future__ import annotations

import logging
import uuid
from typing import Any

from alerts.api import CATEGORY as ALERT_CATEGORY
from create_ticket.api import Rules, control_facts, decide, load_routes
from shared import tenant_records
from shared.services import Services
from shared.text import printable
from shared.tickets import CORRELATION_PREFIX, HOME, RecordRefused, Ticket, is_alert, parse_correlation

log = logging.getLogger(__name__)


class Adoption:
    """The rules one status sync run adopts by: the routes and tenants in force, each read once per run."""

    def __init__(self, services: Services) -> None:
        self._services = services
        self._rules: Rules | None = None
        self._tenants: dict[str, tenant_records.Tenant] | None = None

    def _where(self) -> str:
        connection = self._services.connection
        return f"found on ServiceNow connection '{connection.id}' ({connection.instance_url})"

    def refusal(self, tenant: str, control: str) -> str | None:
        """Why a record naming (tenant, control), found on this connection, may not be adopted by (a) and (b)."""
        if tenant != HOME:
            if self._tenants is None:
                self._tenants = tenant_records.registered(self._services.store)
            state = self._tenants[tenant].state if tenant in self._tenants else None
            if state != "active":
                return (f"its correlation id names the tenant {tenant}, which the connector does not read "
                        f"({state or 'not registered'})")  # fmt: skip
        if self._rules is None:
            self._rules = load_routes(self._services.store).rules()
        # An alert's ticket has no control: it was routed by its category (docs/alerts.md#tickets), as here
        stored = {"category": ALERT_CATEGORY} if is_alert(control) else (
            self._services.store.get_secure_score_control(control, tenant) or {})  # fmt: skip
        facts = control_facts(tenant, {**stored, "id": control})
        target = decide(self._rules, facts, priority=None, due=None, now=self._services.clock())
        if target.connection != self._services.connection.id:
            whose = f"tenant {tenant}" if tenant else "the home tenant"
            return f"the routes send {whose}'s {control} to connection '{target.connection}', not to this one"
        return None

    def refused(self, row: dict[str, Any], why: str) -> RecordRefused:
        number = printable(str(row.get("number") or ""), 40) or "a record"
        return RecordRefused(
            f"{number} was not adopted: {why}. It was {self._where()}; the connector never takes it as a ticket, "
            "never writes it to Secure Score and never answers a create with it.",
            remediation="If it is a copy or was made by hand, close it or clear its correlation_id in ServiceNow. If "
            "it is the connector's own (a store that was lost or restored), check that its tenant is read and that "
            "the routes send it to this connection.",
        )

    def adopt(self, row: dict[str, Any]) -> Ticket:
        services = self._services
        field_map = services.settings.field_map
        correlation = str(row.get(field_map.target("correlation_id")) or "")
        minted = parse_correlation(correlation)
        if minted is None:
            raise RecordRefused(
                f"Its correlation_id '{printable(correlation, 80)}' is not one the connector mints "
                f"('{CORRELATION_PREFIX}' and a recommendation id of A-Z, a-z, 0-9, '.', '_', ':', '-'), so it "
                f"was not adopted. It was {self._where()}.",
                remediation="Restore the record's correlation_id in ServiceNow, or clear it if the record is not "
                "the connector's.",
            )
        tenant, recommendation_id = minted
        why = self.refusal(tenant, recommendation_id)
        if why is not None:
            raise self.refused(row, why)
        ticket = self._ticket(row, tenant, recommendation_id)
        holder = self._claimed(ticket)
        if holder is not None:
            raise self.refused(row, self._has_ticket(holder, recommendation_id))
        log.info("Adopted %s (%s), a connector record the store did not know", ticket.number, ticket.sys_id)
        return ticket

    def _ticket(self, row: dict[str, Any], tenant: str, recommendation_id: str) -> Ticket:
        services = self._services
        field_map = services.settings.field_map
        now = services.clock().isoformat()
        priority = str(row.get("priority") or "")
        return Ticket(
            id=uuid.uuid4().hex,
            recommendation_id=recommendation_id,
            recommendation={"id": recommendation_id, "source": None, "category": None, "url": None},
            name=str(row.get(field_map.target("name")) or "")[:160],
            priority=int(priority) if priority in ("1", "2", "3", "4", "5") else 3,
            due_date=None,
            requested_by=None,
            table=services.settings.table,
            fingerprint="",
            created_at=now,
            updated_at=now,
            extra={"adopted": True},
            tenant=tenant,
            connection=services.connection.key,
            instance="" if services.connection.is_default else services.settings.instance_url or "",
        ).with_link(row, field_map, now)

    def _claimed(self, ticket: Ticket) -> str | None:
        """Store the ticket with its recommendation's claim in one transaction (the create's own `begin_creation`),
        or the id of the open ticket (pending included) that holds the claim: then nothing is written. A closed
        record is history: it is stored, and holds no claim."""
        store = self._services.store
        holder, _ = store.begin_creation(ticket)
        while holder is not None:
            current = store.get_ticket(holder)
            if current is not None and current[0].is_open:
                return holder
            holder, _ = store.begin_creation(ticket, replacing=holder)
        if not ticket.is_open:
            store.release_claim(ticket.claim_key, ticket.id)
        return None

    def _has_ticket(self, holder: str, recommendation_id: str) -> str:
        found = self._services.store.get_ticket(holder)
        other = found[0] if found else None
        if other is not None and other.status == "pending":
            # A pending create's own record on its connection was linked before adoption (own_records.py); one
            # met here is on another connection, or not that create's: refused like any record of a ticketed one.
            return f"recommendation {recommendation_id} has a ticket being created (pending, {other.id})"
        name = (other.number if other else None) or holder
        return f"recommendation {recommendation_id} has a ticket already ({name})"
