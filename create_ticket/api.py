"""Ticket creation's public face: the only module of create_ticket another feature may import (the import-linter
contract `public`, pyproject.toml; docs/design.md#layout-and-ownership). Everything else in create_ticket and
create_ticket/routing is private to it, so it can change without reaching into Secure Score or the status sync."""

from __future__ import annotations

from create_ticket.creation import creator_for
from create_ticket.fill import complete_from_control
from create_ticket.request import Recommendation, TicketRequest, parse_ticket_request
from create_ticket.routing.decision import control_facts, decide, route_request
from create_ticket.routing.document import load as load_routes
from create_ticket.routing.preview import preview as preview_routes
from create_ticket.routing.rules import Rules
from create_ticket.routing.saving import fence, save, unfence, version_of

__all__ = [
    "Recommendation", "Rules", "TicketRequest", "complete_from_control", "control_facts", "creator_for", "decide",
    "fence", "load_routes", "parse_ticket_request", "preview_routes", "route_request", "save", "unfence",
    "version_of",
]  # fmt: skip
