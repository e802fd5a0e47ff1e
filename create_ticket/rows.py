"""A create's ticket row: the record to POST as its route made it, kept on the row so a resume posts the same record
(docs/architecture.md#exactly-once-ticket-creation)."""

from __future__ import annotations

import uuid
from dataclasses import replace

from create_ticket.request import TicketRequest, servicenow_record
from create_ticket.routing.decision import Target
from create_ticket.routing.in_force import UNCONFIRMED
from shared.services import Services
from shared.tickets import Ticket


def new_row(services: Services, request: TicketRequest, fingerprint: str, caller_sys_id: str | None, target: Target,
            ticket_id: str | None = None) -> Ticket:  # fmt: skip
    """The row for `request` on `services`' connection, where `target` sends it (`ticket_id`: a row routed again
    keeps its id, which the record's reference and any Idempotency-Key name)."""
    settings = services.settings
    connection = services.connection
    now = services.clock().isoformat()
    ticket_id = ticket_id or uuid.uuid4().hex
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


def kept_request(services: Services, row: Ticket) -> TicketRequest:
    """The request of a row left unconfirmed, to route it again: what routes read, from its mark, with the name the
    row has and the description its record carries (the text before the connector's footer, cut to fit it as the
    record was)."""
    kept = row.extra[UNCONFIRMED]["request"]
    payload = row.extra.get("payload") or {}
    text = str(payload.get(services.settings.field_map.target("description") or "", ""))
    start = text.rfind(f"\n---\nRecommendation: {kept['recommendation']['id']}\n")
    return TicketRequest.from_json(kept, name=row.name, description=text[:start] if start >= 0 else text)
