"""Tickets' HTTP functions: POST /api/tickets, GET /api/tickets, GET /api/tickets/{id}. Where tickets go (the rules
and their decision) is create_ticket/routing/, with a blueprint of its own.

Nothing from `shared` is imported at module level: a cold start pays only for azure.functions, and each
function imports what it needs on its first call (docs/design.md#layout-and-ownership).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import azure.functions as func

if TYPE_CHECKING:
    from shared.auth import Caller
    from shared.edge import Inbound
    from shared.services import Services

bp = func.Blueprint()


@bp.route(route="tickets", methods=["POST"], auth_level=func.AuthLevel.ANONYMOUS)
def create_ticket(req: func.HttpRequest) -> func.HttpResponse:
    """Create the ServiceNow ticket for a recommendation, exactly once (201), or return the open one (200)."""
    from create_ticket.creation import creator_for
    from create_ticket.fill import complete_request, known_tenant
    from create_ticket.request import MAX_BODY, parse_ticket_request, validate_idempotency_key
    from shared import web
    from shared.auth import ROLE_CREATE
    from shared.edge import Body

    def run(services: Services, caller: Caller, inbound: Inbound) -> func.HttpResponse:
        request = complete_request(
            services, known_tenant(services, parse_ticket_request(inbound.json, initiating_user=caller.user))
        )
        key = validate_idempotency_key(inbound.header("Idempotency-Key"))
        ticket, created = creator_for(services).create(request, caller=caller, idempotency_key=key)
        location = {"Location": f"/api/tickets/{ticket.id}"}
        return web.json_response(ticket.to_json(services.settings.instance_url), 201 if created else 200, location)

    return web.handle(req, run, role=ROLE_CREATE, body=Body(MAX_BODY))


@bp.route(route="tickets", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
def list_tickets(req: func.HttpRequest) -> func.HttpResponse:
    """The portal's ServiceNow card: tickets by status and category, counts per status, the last sync."""
    from create_ticket.card import ticket_card
    from shared import web

    def run(services: Services, _: Caller, inbound: Inbound) -> func.HttpResponse:
        params = inbound.params
        return web.json_response(
            ticket_card(
                services, status=params.get("status"), category=params.get("category"), tenant=params.get("tenant")
            )
        )

    return web.handle(req, run)


@bp.route(route="tickets/{id}", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
def get_ticket(req: func.HttpRequest) -> func.HttpResponse:
    """One ticket as the connector knows it."""
    from shared import web
    from shared.problems import NotFound
    from shared.text import printable
    from shared.tickets import SYS_ID

    def run(services: Services, _: Caller, inbound: Inbound) -> func.HttpResponse:
        ticket_id = req.route_params.get("id", "")
        found = services.store.get_ticket(ticket_id) if SYS_ID.fullmatch(ticket_id) else None
        if found is None:
            raise NotFound(f"There is no ticket '{printable(ticket_id, 64)}'.")
        return web.json_response(found[0].to_json(services.settings.instance_url))

    return web.handle(req, run)
